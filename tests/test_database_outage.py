"""A database that refuses new connections: every route that needs it is a quick 503, never a 500."""

import re
import time

import psycopg
import pytest

from config import TestingConfig

from . import servers

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

# Every route, as (method, path, caller, body) with the answer it gives while the database
# refuses connections: 503, or what it gives without the database.
ROUTES = [
    ("POST", "/register_tenants", "admin", {"tenant_names": ["initech"]}, 503),
    ("POST", "/branches", "admin", {"tenant_id": 1, "name": "north"}, 503),
    (
        "POST",
        "/register_user",
        "anonymous",
        {"username": "bob", "password": "password123", "branch_id": 1},
        503,
    ),
    ("POST", "/login", "anonymous", {"username": "alice", "password": "password123"}, 503),
    ("GET", "/me", "customer", None, 503),
    ("GET", "/products?limit=7", "customer", None, 503),
    ("GET", "/products/1", "customer", None, 503),
    ("POST", "/products", "manager", {"name": "Cake", "price": 2}, 503),
    ("PATCH", "/products/1", "manager", {"price": 3}, 503),
    ("DELETE", "/products/1", "manager", None, 503),
    ("POST", "/purchase", "customer", {"product_id": 1, "quantity": 1}, 503),
    ("GET", "/purchases", "customer", None, 503),
    ("GET", "/stats/top-products", "customer", None, 503),
    ("GET", "/health/ready", "anonymous", None, 503),
    ("POST", "/logout", "customer", None, 200),
    ("GET", "/health", "anonymous", None, 200),
    ("GET", "/openapi.json", "anonymous", None, 200),
    ("GET", "/docs", "anonymous", None, 200),
]


@pytest.fixture
def refusing(live_app, live_store, postgres_url):
    """A shop whose database then refuses new connections and loses the ones it had."""
    live_app.config["PASSWORD_HASH_METHOD"] = TestingConfig.PASSWORD_HASH_METHOD
    branch_id = live_store.tenant("acme")["branches"][0]["id"]
    live_store.user("alice", branch_id)
    live_store.user("boss", branch_id, role="manager")
    product = live_store.product(branch_id, "Tea", price=1, stock=5)
    assert (branch_id, product["id"]) == (1, 1)
    clients = {
        "customer": live_store.login("alice"),
        "manager": live_store.login("boss"),
        "admin": live_app.test_client(),
        "anonymous": live_app.test_client(),
    }
    assert clients["customer"].post("/purchase", json={"product_id": 1, "quantity": 1}).status_code == 201
    live_app.config["PROPAGATE_EXCEPTIONS"] = False
    name = postgres_url.rsplit("/", 1)[1]
    with psycopg.connect(servers.POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        try:
            yield clients, live_store.admin
        finally:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')


def test_every_route_is_listed(live_app):
    listed = {(method, path.split("?")[0]) for method, path, *_ in ROUTES}
    served = {
        (method, re.sub(r"<(?:[^<>:]+:)?[^<>]+>", "1", rule.rule))
        for rule in live_app.url_map.iter_rules()
        if not rule.rule.startswith("/docs/")
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    assert listed == served


@pytest.mark.timing
@pytest.mark.parametrize("method, path, caller, body, status", ROUTES, ids=[f"{r[0]} {r[1]}" for r in ROUTES])
def test_a_database_refusing_connections_is_a_503_within_a_second(
    refusing, method, path, caller, body, status
):
    clients, admin = refusing
    started = time.monotonic()
    response = clients[caller].open(
        path, method=method, json=body, headers=admin if caller == "admin" else None
    )
    elapsed = time.monotonic() - started
    assert response.status_code == status, response.get_data(as_text=True)[:300]
    if status == 503:
        assert response.json["error"] and response.headers["Retry-After"] == "1"
    assert elapsed < 1.0
