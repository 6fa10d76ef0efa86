"""The production configuration served by gunicorn on the real PostgreSQL and Redis."""

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
