"""Scaled out on real engines, as deploy/ configures them: HAProxy, two app instances, PgBouncer in
transaction pooling, two Redis servers under three Sentinels, all on free ports."""

import importlib.util
import os
import signal
import socket
import stat
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from . import servers, traffic
from .http import HttpClient

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.timing]

spec = importlib.util.spec_from_file_location("topology", servers.ROOT / "deploy" / "topology.py")
topology = importlib.util.module_from_spec(spec)
spec.loader.exec_module(topology)

CREDENTIALS = {"username": "buyer", "password": "password123"}
STOCK = 100_000
# Through HAProxy: its own 503 while no instance is ready counts as a quick refusal too.
ALLOWED = {200, 201, 401, 409, 503}


@pytest.fixture
def stack(tmp_path):
    ports = {part: servers.free_port() for part in topology.DEFAULT_PORTS if part != "postgres"}
    ports["postgres"] = int(servers.POSTGRES_ADMIN_URL.rsplit(":", 1)[1].split("/")[0])
    database = f"store_scale_{uuid.uuid4().hex[:8]}"
    stack = topology.Topology(ports, database=database, workdir=tmp_path).start()
    try:
        admin = HttpClient(ports["haproxy"], {"Authorization": f"Bearer {stack.admin_token}"})
        branch_id = admin.request("POST", "/register_tenants", {"tenant_names": ["acme"]})[1]["tenants"][0][
            "branches"
        ][0]["id"]
        assert admin.request("POST", "/register_user", {**CREDENTIALS, "branch_id": branch_id})[0] == 201
        product = {"name": "Tea", "price": 1.5, "stock": STOCK, "branch_id": branch_id}
        stack.product_id = admin.request("POST", "/products", product)[1]["id"]
        stack.branch_id, stack.admin = branch_id, admin
        yield stack
    finally:
        stack.stop()
        for name in ("haproxy", "app1", "app2"):
            print(f"--- {name}\n{stack.log(name)[-3000:]}")
        servers.drop_database(f"postgresql+psycopg://x/{database}")


def database_counts(stack):
    url = servers.POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{stack.database}"
    with psycopg.connect(url) as conn:
        purchases = conn.execute("SELECT count(*) FROM purchases").fetchone()[0]
        stock = conn.execute("SELECT stock FROM products WHERE id = %s", (stack.product_id,)).fetchone()[0]
        keys = conn.execute("SELECT count(*) FROM idempotency_keys WHERE outcome = 'sold'").fetchone()[0]
    assert keys == purchases
    return purchases, STOCK - stock


def test_redis_primary_killed_under_traffic_the_app_follows_the_new_one(stack):
    port, checked = stack.ports["haproxy"], {}

    def faults():
        checked["began"] = time.monotonic()
        time.sleep(1.5)
        client = HttpClient(port)
        assert client.request("POST", "/login", CREDENTIALS)[0] == 200
        stack.stop_part("redis1", signal.SIGKILL)
        killed = time.monotonic()
        # The same cookie works again within 10 s: the session reached the replica.
        while client.request("GET", "/me")[0] != 200:
            assert time.monotonic() - killed < 10, "the app did not follow the new primary"
            time.sleep(0.2)
        checked["back after"] = time.monotonic() - killed
        time.sleep(2)

    buyers = traffic.run(port, stack.product_id, faults, CREDENTIALS)
    answers = traffic.check(buyers, lambda: database_counts(stack), ALLOWED, health_always_up=False)
    # Timed from the faults on: the buyers' first logins hash at once before them.
    timed = [a for a in answers if a[3] >= checked["began"]]
    assert max(a[2] for a in timed) < 1.5, sorted(timed, key=lambda a: a[2])[-5:]
    assert 201 in {a[1] for a in answers}
    print("served again after", checked["back after"])


def test_forty_buyers_of_ten_in_stock_through_pgbouncer_buy_exactly_ten(stack):
    admin = stack.admin
    product = {"name": "Limited", "price": 9.99, "stock": 10, "branch_id": stack.branch_id}
    limited = admin.request("POST", "/products", product)[1]["id"]
    buyer = HttpClient(stack.ports["haproxy"])
    assert buyer.request("POST", "/login", CREDENTIALS)[0] == 200

    def buy(n):
        body, key = {"product_id": limited, "quantity": 1}, {"Idempotency-Key": f"order-{n % 20}"}
        return buyer.request("POST", "/purchase", body, key)[0]

    with ThreadPoolExecutor(max_workers=40) as pool:
        statuses = list(pool.map(buy, range(40)))
    assert set(statuses) <= {201, 409}
    # Twenty keys, each buying at most once, of ten in stock.
    url = servers.POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{stack.database}"
    with psycopg.connect(url) as conn:
        sold = conn.execute("SELECT count(*) FROM purchases WHERE product_id = %s", (limited,)).fetchone()[0]
        stock = conn.execute("SELECT stock FROM products WHERE id = %s", (limited,)).fetchone()[0]
    assert (sold, stock) == (10, 0)
    replays = [buy(n) for n in range(20)]
    assert replays.count(201) == 10 and replays.count(409) == 10
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM purchases").fetchone()[0] == 10


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["killed", "told to stop"])
def test_an_instance_lost_under_load_costs_nothing_bought_and_the_other_serves(stack, sig):
    port, lost = stack.ports["haproxy"], {}

    def faults():
        time.sleep(1.5)
        lost["at"] = time.monotonic()
        stack.stop_part("app1", sig)
        time.sleep(4)

    buyers = traffic.run(port, stack.product_id, faults, CREDENTIALS)
    answers = traffic.check(buyers, lambda: database_counts(stack), ALLOWED | {502}, health_always_up=False)
    # Once HAProxy has seen it gone (two failed checks a second apart), the other serves all.
    settled = [a for a in answers if a[3] > lost["at"] + 2.5]
    assert settled and all(a[1] in (200, 201) for a in settled), [a for a in settled if a[1] >= 300][:5]
    if sig == signal.SIGTERM:
        # Told to stop, it finished its requests and HAProxy sent the rest to the other: no failures.
        assert not [a for a in answers if a[1] in (-1, 502, 503)], [a for a in answers if a[1] >= 500][:5]


CONNECT_AS_NOBODY = """
import socket, sys
family, address = (socket.AF_UNIX, sys.argv[1]) if sys.argv[1].startswith("/") else (
    socket.AF_INET, ("127.0.0.1", int(sys.argv[1])))
try:
    socket.socket(family).connect(address)
    print("connected")
except PermissionError:
    print("refused")
"""


def test_only_haproxy_reaches_the_instances_on_its_host(stack):
    """Nobody else on the host can send an instance a request, with a forged X-Forwarded-For."""
    instance = stack.socket_path(1)
    assert topology.ready(topology.UnixHTTPConnection(instance))
    directory = os.stat(instance.parent)
    assert (directory.st_uid, stat.S_IMODE(directory.st_mode)) == (os.geteuid(), 0o700)
    if os.geteuid() == 0:
        # Another user of the host: HAProxy lets it in, the instance's socket does not.
        def connect(target):
            command = ["runuser", "-u", "nobody", "--", "/usr/bin/python3", "-c", CONNECT_AS_NOBODY, target]
            return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()

        assert connect(str(stack.ports["haproxy"])) == "connected"
        assert connect(str(instance)) == "refused"


def test_slow_clients_against_haproxy_never_hold_a_normal_request_back(stack):
    port = stack.ports["haproxy"]
    slow = []
    for _ in range(50):
        conn = socket.create_connection(("127.0.0.1", port))
        conn.sendall(b"POST /login HTTP/1.1\r\nHost: store\r\nContent-Type: application/json\r\n")
        slow.append(conn)
    try:
        time.sleep(0.5)
        started = time.monotonic()
        status = HttpClient(port, timeout=5).request("GET", "/health")[0]
        assert status == 200 and time.monotonic() - started < 1.0
    finally:
        for conn in slow:
            conn.close()


def test_haproxys_own_answers_are_json(stack):
    stack.stop_part("app1")
    stack.stop_part("app2")
    deadline = time.monotonic() + 10
    client = HttpClient(stack.ports["haproxy"], timeout=5)
    while (answer := client.request("GET", "/health"))[0] != 503:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    status, body, response = answer
    assert body == {"error": "Service Unavailable"} and response.getheader("Retry-After") == "1"
