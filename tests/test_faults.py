"""Faults under traffic: Redis stalled, killed and restarted; database connections cut.

Every answer is 2xx, 401, 409 or a quick 503, never a 500 or a hang, and purchases
retried with their idempotency key are neither lost nor doubled.
"""

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from app.extensions import db
from app.models import Product, Purchase

from . import servers, traffic
from .http import HttpClient

# Every answer within a second is part of what is judged.
pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.timing]

ALLOWED = {200, 201, 401, 409, 503}
STOCK = 100_000
CREDENTIALS = {"username": "buyer", "password": "password123"}


@pytest.fixture
def shop(live_app, postgres_url, own_redis):
    """gunicorn on PostgreSQL and a redis-server this test may stall or kill."""
    server = servers.Gunicorn(postgres_url, own_redis.url).start()
    admin = HttpClient(server.port, server.admin_headers)
    branch_id = admin.request("POST", "/register_tenants", {"tenant_names": ["acme"]})[1]["tenants"][0][
        "branches"
    ][0]["id"]
    assert admin.request("POST", "/register_user", {**CREDENTIALS, "branch_id": branch_id})[0] == 201
    product = admin.request(
        "POST", "/products", {"name": "Tea", "price": 1.5, "stock": STOCK, "branch_id": branch_id}
    )[1]
    yield server, product["id"]
    # Shown with a failure: what the server logged while the faults happened.
    print(server.output()[-5000:])
    server.stop()


def check(app, product_id, buyers):
    def counts():
        with app.app_context():
            return db.session.query(Purchase).count(), STOCK - db.session.get(Product, product_id).stock

    return traffic.check(buyers, counts, ALLOWED)


def timed(call):
    started = time.monotonic()
    return call(), time.monotonic() - started


def wait_until_serving(port, product_id, deadline=10.0):
    client = HttpClient(port)
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if client.request("POST", "/login", CREDENTIALS)[0] == 200:
            return
        time.sleep(0.1)
    pytest.fail("the service did not recover")


def test_redis_stalled_then_killed_and_restarted(live_app, shop, own_redis):
    server, product_id = shop
    probe = {}

    def faults():
        time.sleep(1)
        os.kill(own_redis.process.pid, signal.SIGSTOP)
        time.sleep(1)
        probe["login while stalled"] = timed(
            lambda: HttpClient(server.port).request("POST", "/login", CREDENTIALS)[0]
        )
        time.sleep(1.5)
        os.kill(own_redis.process.pid, signal.SIGCONT)
        time.sleep(1.5)
        own_redis.stop()
        time.sleep(1.5)
        own_redis.start()
        wait_until_serving(server.port, product_id)
        time.sleep(1)

    buyers = traffic.run(server.port, product_id, faults, CREDENTIALS)
    status, seconds = probe["login while stalled"]
    assert status == 503 and seconds < 1.0
    answers = check(live_app, product_id, buyers)
    statuses = {answer[1] for answer in answers}
    assert 503 in statuses and 201 in statuses


def test_database_connections_terminated_mid_traffic(live_app, shop, postgres_url):
    server, product_id = shop
    name = postgres_url.rsplit("/", 1)[1]

    def faults():
        with psycopg.connect(servers.POSTGRES_ADMIN_URL, autocommit=True) as conn:
            for _ in range(6):
                time.sleep(0.4)
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid()",
                    (name,),
                )
        time.sleep(1)

    buyers = traffic.run(server.port, product_id, faults, CREDENTIALS)
    check(live_app, product_id, buyers)


def test_one_idempotency_key_buys_once_under_concurrency_and_after_a_redis_restart(live_app, shop, own_redis):
    server, product_id = shop
    body, key = {"product_id": product_id, "quantity": 1}, {"Idempotency-Key": "order-42"}
    buyer = HttpClient(server.port)
    assert buyer.request("POST", "/login", CREDENTIALS)[0] == 200

    def attempt(_):
        return buyer.request("POST", "/purchase", body, key)

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(attempt, range(20)))
    statuses = [status for status, _, _ in answers]
    assert set(statuses) <= {201, 409} and 201 in statuses
    created = {answer["purchase_id"] for status, answer, _ in answers if status == 201}
    with live_app.app_context():
        assert db.session.scalars(db.select(Purchase.id)).all() == list(created)
        assert db.session.get(Product, product_id).stock == STOCK - 1

    own_redis.stop()
    own_redis.start()
    status, _, _ = buyer.request("POST", "/purchase", body, key)
    assert status == 401  # the session was in the Redis that restarted empty
    assert buyer.request("POST", "/login", CREDENTIALS)[0] == 200
    status, replay, response = buyer.request("POST", "/purchase", body, key)
    assert status == 201 and replay["purchase_id"] in created
    assert response.getheader("Idempotent-Replayed") == "true"
    with live_app.app_context():
        assert db.session.query(Purchase).count() == 1
