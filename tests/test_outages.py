"""Outages on every route: PostgreSQL refusing connections or locked, Redis stalled or killed.

Every route answers 2xx or a 503 with Retry-After within a second, never a 500 or a hang;
nothing bought is lost; /health/ready says which part is down and is ready again within two
seconds of the part answering.
"""

import os
import re
import signal
import time
from contextlib import contextmanager

import psycopg
import pytest

from app import create_app
from app.database import dispose_engines
from config import TestingConfig

from . import servers
from .conftest import Store

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.timing]

STOCK = 5
# Every route, as (method, path, caller, body).
ROUTES = [
    ("POST", "/register_tenants", "admin", {"tenant_names": ["initech"]}),
    ("POST", "/branches", "admin", {"tenant_id": 1, "name": "north"}),
    ("POST", "/register_user", "anonymous", {"username": "bob", "password": "password123", "branch_id": 1}),
    ("POST", "/login", "anonymous", {"username": "alice", "password": "password123"}),
    ("GET", "/me", "customer", None),
    ("GET", "/products?limit=7", "customer", None),
    ("GET", "/products/1", "customer", None),
    ("POST", "/products", "manager", {"name": "Cake", "price": 2}),
    ("POST", "/products", "admin", {"name": "Pie", "price": 2, "branch_id": 1}),
    ("PATCH", "/products/1", "manager", {"price": 3}),
    ("DELETE", "/products/1", "manager", None),
    ("POST", "/purchase", "customer", {"product_id": 1, "quantity": 1}),
    ("GET", "/purchases", "customer", None),
    ("GET", "/stats/top-products", "customer", None),
    ("GET", "/users", "manager", None),
    ("PATCH", "/users/1", "manager", {"active": False}),
    ("DELETE", "/users/1", "manager", None),
    ("POST", "/me/password", "customer", {"current_password": "password123", "new_password": "another-pass"}),
    ("GET", "/me/sessions", "customer", None),
    ("DELETE", "/me/sessions/{other}", "customer", None),
    ("POST", "/logout/all", "customer", None),
    ("GET", "/health/ready", "anonymous", None),
    ("POST", "/logout", "customer", None),
    ("GET", "/health", "anonymous", None),
    ("GET", "/metrics", "anonymous", None),
    ("GET", "/openapi.json", "anonymous", None),
    ("GET", "/docs", "anonymous", None),
]
FAULTS = ("database refusing", "database locked", "redis stalled", "redis killed")
# What /health/ready says of each part during each fault.
READY = {
    "database refusing": {"database": "down", "redis": "ok"},
    "database locked": {"database": "ok", "redis": "ok"},  # SELECT 1 answers: the tables wait
    "redis stalled": {"database": "ok", "redis": "down"},
    "redis killed": {"database": "ok", "redis": "down"},
}


class Shop:
    """The store on the test's PostgreSQL database and a redis-server of its own, with a customer
    who bought once, a manager, and the faults to put it through."""

    def __init__(self, live_app, postgres_url, redis):
        self.redis = redis
        self.database = postgres_url.rsplit("/", 1)[1]
        config = TestingConfig({"DATABASE_URL": postgres_url, "REDIS_URL": redis.url})
        self.app = create_app(config)
        self.app.config["PROPAGATE_EXCEPTIONS"] = False
        store = Store(self.app, {"Authorization": f"Bearer {self.app.config['ADMIN_TOKEN']}"})
        branch_id = store.tenant("acme")["branches"][0]["id"]
        store.user("alice", branch_id)
        store.user("boss", branch_id, role="manager")
        product = store.product(branch_id, "Tea", price=1, stock=STOCK)
        assert (branch_id, product["id"]) == (1, 1)
        self.clients = {
            "customer": store.login("alice"),
            "manager": store.login("boss"),
            "admin": self.app.test_client(),
            "anonymous": self.app.test_client(),
        }
        self.headers = {"admin": store.admin}
        assert self.call("POST", "/purchase", "customer", {"product_id": 1, "quantity": 1}).status_code == 201
        # Another session of the customer's, for the route that ends one.
        store.login("alice")
        others = [
            s["id"] for s in self.call("GET", "/me/sessions", "customer").json["sessions"] if not s["current"]
        ]
        self.other_session = others[0]

    def call(self, method, path, caller, body=None):
        path = path.replace("{other}", getattr(self, "other_session", ""))
        return self.clients[caller].open(path, method=method, json=body, headers=self.headers.get(caller))

    @contextmanager
    def fault(self, name: str):
        if name.startswith("database"):
            with psycopg.connect(servers.POSTGRES_ADMIN_URL, autocommit=True) as admin:
                if name == "database refusing":
                    admin.execute(f'ALTER DATABASE "{self.database}" ALLOW_CONNECTIONS false')
                    admin.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                        (self.database,),
                    )
                    try:
                        yield
                    finally:
                        admin.execute(f'ALTER DATABASE "{self.database}" ALLOW_CONNECTIONS true')
                else:
                    url = servers.POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{self.database}"
                    with psycopg.connect(url) as holder:
                        holder.execute(
                            "LOCK TABLE tenants, branches, users, products, purchases, idempotency_keys"
                            " IN ACCESS EXCLUSIVE MODE"
                        )
                        yield
                        holder.rollback()
        elif name == "redis stalled":
            os.kill(self.redis.process.pid, signal.SIGSTOP)
            try:
                yield
            finally:
                os.kill(self.redis.process.pid, signal.SIGCONT)
        else:
            self.redis.stop()
            try:
                yield
            finally:
                self.redis.start()

    def sold_equals_stock_removed(self) -> bool:
        url = servers.POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{self.database}"
        with psycopg.connect(url) as conn:
            sold = conn.execute("SELECT coalesce(sum(quantity), 0) FROM purchases").fetchone()[0]
            stock = conn.execute("SELECT stock FROM products WHERE id = 1").fetchone()[0]
        return sold == STOCK - stock and sold >= 1

    def close(self):
        dispose_engines(self.app)
        self.app.extensions["redis"].close()


@pytest.fixture
def shop(live_app, postgres_url, own_redis):
    shop = Shop(live_app, postgres_url, own_redis)
    yield shop
    shop.close()


def test_every_route_is_listed(live_app):
    listed = {(method, path.split("?")[0]) for method, path, *_ in ROUTES}
    served = {
        (
            method,
            re.sub(r"<(?:[^<>:]+:)?[^<>]+>", "1", rule.rule).replace(
                "/me/sessions/1", "/me/sessions/{other}"
            ),
        )
        for rule in live_app.url_map.iter_rules()
        if not rule.rule.startswith("/docs/")
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    assert listed == served


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("method, path, caller, body", ROUTES, ids=[f"{r[0]} {r[1]} {r[2]}" for r in ROUTES])
def test_every_route_answers_2xx_or_a_quick_503(shop, fault, method, path, caller, body):
    with shop.fault(fault):
        started = time.monotonic()
        response = shop.call(method, path, caller, body)
        elapsed = time.monotonic() - started
    assert response.status_code < 300 or response.status_code == 503, response.get_data(as_text=True)[:300]
    if response.status_code == 503:
        assert response.json["error"] and response.headers["Retry-After"] == "1"
    assert elapsed < 1.0
    if path == "/health":
        assert response.status_code == 200
    if path == "/health/ready":
        assert {part: response.json[part] for part in ("database", "redis")} == READY[fault]
    assert shop.sold_equals_stock_removed()


@pytest.mark.parametrize("fault", FAULTS)
def test_ready_again_as_soon_as_the_part_answers(shop, fault):
    """Readiness tries each part as it is now: no breaker's memory of the outage keeps the
    instance out of rotation once the part answers (the contract allows two seconds)."""
    with shop.fault(fault):
        during = [shop.call("GET", "/health/ready", "anonymous") for _ in range(3)]
    assert [r.status_code for r in during] == [200 if fault == "database locked" else 503] * 3
    after = shop.call("GET", "/health/ready", "anonymous")
    assert after.status_code == 200 and after.json == {"status": "ok", "redis": "ok", "database": "ok"}
    # And the service itself is back as soon (a Redis restarted empty has forgotten the session).
    assert shop.call("GET", "/me", "customer").status_code == (401 if fault == "redis killed" else 200)
