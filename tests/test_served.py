"""The production configuration served by gunicorn on the real PostgreSQL and Redis."""

import json
import socket
from concurrent.futures import ThreadPoolExecutor

import pytest

from . import servers
from .http import HttpClient

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


@pytest.fixture
def served(live_app, postgres_url, redis_server):
    server = servers.Gunicorn(postgres_url, redis_server.url).start()
    yield server.port, server.admin_headers
    server.stop()


def test_forty_concurrent_purchases_of_ten_in_stock_sell_exactly_ten(served):
    port, admin_headers = served
    admin = HttpClient(port, admin_headers)
    status, body, _ = admin.request("POST", "/register_tenants", {"tenant_names": ["acme"]})
    assert status == 201
    branch_id = body["tenants"][0]["branches"][0]["id"]
    credentials = {"username": "buyer", "password": "password123"}
    assert admin.request("POST", "/register_user", {**credentials, "branch_id": branch_id})[0] == 201
    status, product, _ = admin.request(
        "POST", "/products", {"name": "Limited", "price": 9.99, "stock": 10, "branch_id": branch_id}
    )
    assert status == 201

    buyer = HttpClient(port)
    status, _, response = buyer.request("POST", "/login", credentials)
    assert status == 200 and buyer.cookie
    # Production cookies are Secure and HttpOnly.
    assert "Secure" in response.getheader("Set-Cookie") and "HttpOnly" in response.getheader("Set-Cookie")

    def buy(_):
        return buyer.request("POST", "/purchase", {"product_id": product["id"], "quantity": 1})[0]

    with ThreadPoolExecutor(max_workers=40) as pool:
        statuses = list(pool.map(buy, range(40)))
    assert statuses.count(201) == 10
    assert statuses.count(409) == 30
    assert buyer.request("GET", f"/products/{product['id']}")[1]["stock"] == 0
    status, history, _ = buyer.request("GET", "/purchases?limit=100")
    assert len(history["purchases"]) == 10
    assert buyer.request("GET", "/stats/top-products")[1]["products"][0]["units_sold"] == 10


def test_errors_are_json_when_served(served):
    port, _ = served
    client = HttpClient(port)
    for method, path, status in [("GET", "/nope", 404), ("DELETE", "/health", 405), ("GET", "/me", 401)]:
        got, body, response = client.request(method, path)
        assert got == status
        assert response.getheader("Content-Type") == "application/json"
        assert isinstance(body["error"], str)


def raw_exchange(port: int, request: bytes) -> tuple[int, dict, bytes]:
    """Send bytes as they are and read the whole answer: status, headers, body."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(request)
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in header_lines)
    return int(status_line.split()[1]), {k.lower(): v for k, v in headers.items()}, body


@pytest.mark.parametrize(
    "request_bytes, status",
    [
        (b"GET /" + b"x" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"y" * 9000 + b"\r\n\r\n", 431),
        (
            b"GET /health HTTP/1.1\r\nHost: x\r\n"
            + b"".join(b"X-%d: 1\r\n" % n for n in range(200))
            + b"\r\n",
            431,
        ),
        (b"NOT A REQUEST\r\n\r\n", 400),
        (b"GET /health HTTP/1.1\r\nHost: x\r\nX-Nul: a\x00b\r\n\r\n", 400),
    ],
    ids=["line too long", "header too long", "too many headers", "not http", "nul in header"],
)
def test_requests_gunicorn_refuses_itself_are_answered_in_json(served, request_bytes, status):
    port, _ = served
    got, headers, body = raw_exchange(port, request_bytes)
    assert got == status
    assert headers["content-type"] == "application/json"
    assert isinstance(json.loads(body)["error"], str)


def test_a_chunked_body_over_1_mib_is_a_413_and_buys_nothing(served):
    port, admin_headers = served
    admin = HttpClient(port, admin_headers)
    branch_id = admin.request("POST", "/register_tenants", {"tenant_names": ["acme"]})[1]["tenants"][0][
        "branches"
    ][0]["id"]
    credentials = {"username": "buyer", "password": "password123"}
    assert admin.request("POST", "/register_user", {**credentials, "branch_id": branch_id})[0] == 201
    product = admin.request(
        "POST", "/products", {"name": "Tea", "price": 1, "stock": 5, "branch_id": branch_id}
    )[1]
    buyer = HttpClient(port)
    assert buyer.request("POST", "/login", credentials)[0] == 200
    body = json.dumps({"product_id": product["id"], "quantity": 1}).encode() + b" " * (2 * 1024 * 1024)
    chunks = b"".join(
        b"%x\r\n%s\r\n" % (len(part), part)
        for part in (body[i : i + 65536] for i in range(0, len(body), 65536))
    )
    request = (
        b"POST /purchase HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\nCookie: session="
        + buyer.cookie.encode()
        + b"\r\n\r\n"
        + chunks
        + b"0\r\n\r\n"
    )
    status, headers, answer = raw_exchange(port, request)
    assert status == 413 and headers["content-type"] == "application/json"
    assert buyer.request("GET", f"/products/{product['id']}")[1]["stock"] == 5
    # Within the limit, the same chunked framing buys.
    small = json.dumps({"product_id": product["id"], "quantity": 1}).encode()
    request = request.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n" + b"%x\r\n%s\r\n0\r\n\r\n" % (len(small), small)
    assert raw_exchange(port, request)[0] == 201
