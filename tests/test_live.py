"""The store on the real PostgreSQL and Redis of this machine."""

import logging
import os
import re
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
import redis
from sqlalchemy import text
from sqlalchemy.exc import DataError
from werkzeug.security import check_password_hash

from app import create_app
from app.database import call, dispose_engines
from app.extensions import db
from app.models import Product, Purchase, User
from config import TestingConfig

from . import servers
from .conftest import Store

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


def session_cookie(client) -> str | None:
    cookie = client.get_cookie("session")
    return cookie.value if cookie else None


def connections_to(server: redis.Redis) -> int:
    """Clients connected to the Redis server, this one left out: a leak makes it grow."""
    return server.info("clients")["connected_clients"] - 1


def alice_with_tea(live_store, price=1):
    """A customer logged in to a branch that sells Tea, five in stock; her client and the product."""
    branch_id = live_store.tenant("acme")["branches"][0]["id"]
    live_store.user("alice", branch_id)
    product = live_store.product(branch_id, "Tea", price=price, stock=5)
    return live_store.login("alice"), product


def test_registration_stores_a_real_scrypt_hash_on_postgres(live_app, live_store):
    tenant = live_store.tenant("acme")
    live_store.user("alice", tenant["branches"][0]["id"], password="correct horse")
    with live_app.app_context():
        stored = db.session.scalar(db.select(User.password_hash).where(User.username == "alice"))
    assert re.match(r"^scrypt:32768:8:3\$", stored) and len(stored) > 150
    assert check_password_hash(stored, "correct horse")
    live_store.login("alice", "correct horse")


def test_login_creates_redis_key_with_bounded_ttl_and_logout_deletes_it(live_app, live_store):
    tenant = live_store.tenant("acme")
    live_store.user("alice", tenant["branches"][0]["id"])
    client = live_store.login("alice")
    redis = live_app.extensions["redis"]
    key = f"session:{session_cookie(client)}"
    assert redis.exists(key)
    assert 0 < redis.ttl(key) <= live_app.config["SESSION_IDLE_TIMEOUT"]
    # Lean: ids, role and two timestamps, well under 200 bytes with the key itself.
    assert redis.memory_usage(key, samples=0) <= 200
    assert client.post("/logout").status_code == 200
    assert not redis.exists(key)
    assert client.get("/me").status_code == 401


def test_login_issues_a_new_session_id_and_the_old_one_is_anonymous(live_app, live_store):
    tenant = live_store.tenant("acme")
    live_store.user("alice", tenant["branches"][0]["id"])
    client = live_store.login("alice")
    before = session_cookie(client)
    assert client.post("/login", json={"username": "alice", "password": "password123"}).status_code == 200
    after = session_cookie(client)
    assert after and after != before
    assert not live_app.extensions["redis"].exists(f"session:{before}")
    stale = live_app.test_client()
    stale.set_cookie("session", before)
    assert stale.get("/me").status_code == 401
    assert client.get("/me").json["username"] == "alice"


def test_purchases_and_stock_agree_on_postgres(live_app, live_store):
    client, product = alice_with_tea(live_store, price=0.1)
    response = client.post("/purchase", json={"product_id": product["id"], "quantity": 3})
    assert response.status_code == 201 and response.json["total"] == 0.3
    assert client.post("/purchase", json={"product_id": product["id"], "quantity": 3}).status_code == 409
    with live_app.app_context():
        assert db.session.get(Product, product["id"]).stock == 2
        assert db.session.query(Purchase).count() == 1
    assert client.get("/stats/top-products").json["products"][0]["units_sold"] == 3


def test_sales_are_counted_after_redis_forgets_its_scripts(live_app, live_store):
    """A restarted Redis has no scripts loaded; a sale sends its script whole and still runs it."""
    client, product = alice_with_tea(live_store)
    body = {"product_id": product["id"], "quantity": 1}
    assert client.post("/purchase", json=body).status_code == 201
    assert client.get("/products").json["products"][0]["stock"] == 4
    live_app.extensions["redis"].script_flush()
    assert client.post("/purchase", json=body).status_code == 201
    assert client.get("/products").json["products"][0]["stock"] == 3
    assert client.get("/stats/top-products").json["products"][0]["units_sold"] == 2


def test_a_read_costs_the_session_one_get_and_keeps_no_connection(live_app, live_store, redis_server):
    client, product = alice_with_tea(live_store)
    server = redis.Redis.from_url(redis_server.url)
    server.config_resetstat()
    assert client.get("/me").json["username"] == "alice"
    calls = {name: stats["calls"] for name, stats in server.info("commandstats").items()}
    assert calls == {"cmdstat_get": 1, "cmdstat_config|resetstat": 1}
    stranger = live_app.test_client()
    stranger.set_cookie("session", "never-issued")
    before = connections_to(server)
    for _ in range(20):
        assert client.get("/me").status_code == 200
        assert client.get("/products").status_code == 200
        assert stranger.get("/me").status_code == 401
    assert connections_to(server) <= before


def test_reads_sent_ahead_but_never_used_keep_no_connection(live_app, live_store, redis_server):
    """A session id naming another branch has that branch's page read along with it; the read
    is never used, and its reply is still read and its connection returned."""
    client, _ = alice_with_tea(live_store)
    own = client.get("/products").json
    other = live_store.tenant("globex")["branches"][0]["id"]
    real = session_cookie(client)
    forged = f"{other}.{real.partition('.')[2]}"
    server = redis.Redis.from_url(redis_server.url)
    server.rename(f"session:{real}", f"session:{forged}")
    client.set_cookie("session", forged)
    assert client.get("/products").json == own
    before = connections_to(server)
    for _ in range(20):
        assert client.get("/products").json == own
    assert connections_to(server) <= before


@pytest.fixture
def store_on(live_app, live_store):
    """A Store for the live database served with another Redis URL (a server the test owns)."""
    apps = []

    def make(redis_url: str) -> Store:
        database_url = live_app.config["SQLALCHEMY_DATABASE_URI"]
        app = create_app(TestingConfig({"DATABASE_URL": database_url, "REDIS_URL": redis_url}))
        # Faults answer as served, not raised into the test.
        app.config["PROPAGATE_EXCEPTIONS"] = False
        apps.append(app)
        return Store(app, live_store.admin)

    yield make
    for app in apps:
        dispose_engines(app)
        app.extensions["redis"].close()


@pytest.mark.timing
def test_while_redis_is_known_down_requests_answer_at_once(store_on, tmp_path):
    """Once a call has timed out, the session's read sent as a request arrives is refused at
    once, as every other call is, rather than waiting out another timeout."""
    own = servers.RedisServer(tmp_path).start()
    try:
        store = store_on(own.url)
        client, product = alice_with_tea(store)
        os.kill(own.process.pid, signal.SIGSTOP)
        try:
            assert client.get("/me").status_code == 503  # waits out one timeout
            started = time.monotonic()
            assert client.get("/me").status_code == 503
            body = {"product_id": product["id"], "quantity": 1}
            assert client.post("/purchase", json=body).status_code == 503
            elapsed = time.monotonic() - started
        finally:
            os.kill(own.process.pid, signal.SIGCONT)
        # Each would take the 0.2 s timeout if it tried Redis.
        assert elapsed < store.app.config["REDIS_SOCKET_TIMEOUT"]
    finally:
        own.stop()


def test_a_sale_is_recorded_in_redis_before_its_answer_leaves(live_app, live_store, redis_server):
    """The sale's Redis script is read back within the request: the buyer's next reads see the
    sale, and no connection is left behind."""
    client, product = alice_with_tea(live_store)
    body = {"product_id": product["id"], "quantity": 1}
    server = redis.Redis.from_url(redis_server.url)
    assert client.get("/products").status_code == 200
    before = connections_to(server)
    for sold in (1, 2, 3):
        assert client.post("/purchase", json=body).status_code == 201
        assert client.get("/products").json["products"][0]["stock"] == 5 - sold
        assert client.get("/stats/top-products").json["products"][0]["units_sold"] == sold
    assert connections_to(server) <= before


def test_a_sale_whose_redis_script_fails_still_stands(live_app, live_store, redis_server, caplog):
    """The ranking's key holding the wrong type makes the script fail in Redis: the sale is
    committed and answered, and the miss is logged for rebuild-top-products."""
    client, product = alice_with_tea(live_store)
    branch_id = client.get("/me").json["branch_id"]
    redis.Redis.from_url(redis_server.url).set(f"top-products:{branch_id}", "not a ranking")
    with caplog.at_level(logging.WARNING, logger="app.sales.ranking"):
        response = client.post("/purchase", json={"product_id": product["id"], "quantity": 2})
    assert response.status_code == 201
    assert "not counted in Redis" in caplog.text
    assert client.get("/products").json["products"][0]["stock"] == 3
    with live_app.app_context():
        assert db.session.get(Product, product["id"]).stock == 3


def test_a_sale_whose_redis_reply_is_lost_still_stands(store_on, redis_server, caplog):
    """The connection to Redis dropped once the script is on its way: the sale is committed and
    answered, the miss is logged, and the service goes on by itself."""
    proxy = servers.CuttingProxy(redis_server.port)
    try:
        store = store_on(proxy.url)
        client, product = alice_with_tea(store)
        proxy.cut_after = b"ZINCRBY"
        with caplog.at_level(logging.WARNING, logger="app.sales.ranking"):
            response = client.post("/purchase", json={"product_id": product["id"], "quantity": 2})
        assert proxy.cuts == 1
        assert response.status_code == 201
        assert "not counted in Redis" in caplog.text
        deadline = time.monotonic() + 5
        while client.get("/me").status_code != 200:
            assert time.monotonic() < deadline, "the service did not recover"
            time.sleep(0.1)
        with store.app.app_context():
            assert db.session.get(Product, product["id"]).stock == 3
    finally:
        proxy.close()


def test_connections_killed_while_idle_are_replaced_before_use(live_app, live_store, postgres_url):
    """A server restart or an administrator's kill leaves the pools holding dead connections;
    the next requests must take fresh ones rather than answer 503."""
    client, product = alice_with_tea(live_store)
    body = {"product_id": product["id"], "quantity": 1}
    assert client.post("/purchase", json=body).status_code == 201
    assert client.get("/products").status_code == 200
    name = postgres_url.rsplit("/", 1)[1]
    with psycopg.connect(servers.POSTGRES_ADMIN_URL, autocommit=True) as admin:
        killed = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        ).fetchall()
        assert killed, "the pools held no connection to kill"
        deadline = time.monotonic() + 10
        left = "SELECT count(*) FROM pg_stat_activity WHERE datname = %s"
        while admin.execute(left, (name,)).fetchone()[0]:
            assert time.monotonic() < deadline, "the killed connections never went away"
            time.sleep(0.02)
    assert client.post("/purchase", json=body).status_code == 201
    assert client.get("/purchases").status_code == 200
    with live_app.app_context():
        assert db.session.get(Product, product["id"]).stock == 3


def test_a_sale_cut_off_mid_call_is_a_503_and_changes_nothing(live_app, live_store, postgres_url):
    live_app.config["DATABASE_LOCK_TIMEOUT_MS"] = 10_000  # the sale waits on purpose, to be cut off
    client, product = alice_with_tea(live_store)
    body = {"product_id": product["id"], "quantity": 1}
    admin_url = postgres_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(admin_url) as holder, psycopg.connect(admin_url, autocommit=True) as killer:
        # Hold the product's row so that the sale waits inside store_purchase() ...
        holder.execute("SELECT 1 FROM products WHERE id = %s FOR UPDATE", (product["id"],))
        with ThreadPoolExecutor(max_workers=1) as pool:
            buying = pool.submit(
                client.post,
                "/purchase",
                json=body,
                headers={"Idempotency-Key": "cut"},
            )
            # ... then cut its connection there.
            deadline = time.monotonic() + 10
            while not killer.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE query LIKE 'SELECT * FROM store_purchase%%' AND wait_event_type = 'Lock'"
            ).fetchall():
                assert time.monotonic() < deadline, "the purchase never reached the row lock"
                time.sleep(0.02)
            response = buying.result(timeout=10)
        holder.rollback()
    assert response.status_code == 503
    assert response.json == {"error": "Service temporarily unavailable"}
    assert response.headers["Retry-After"] == "1"
    with live_app.app_context():
        assert db.session.get(Product, product["id"]).stock == 5
        assert db.session.query(Purchase).count() == 0
    # The retry with the same key gets a fresh connection and buys once.
    retry = client.post("/purchase", json=body, headers={"Idempotency-Key": "cut"})
    assert retry.status_code == 201 and "Idempotent-Replayed" not in retry.headers
    with live_app.app_context():
        assert db.session.get(Product, product["id"]).stock == 4


def test_a_username_taken_by_a_concurrent_registration_is_a_409(live_app, live_store, postgres_url):
    """The unique index, not only the check before it, decides: a lost race is a 409, not a 500."""
    live_app.config["DATABASE_LOCK_TIMEOUT_MS"] = 10_000  # the race is held open on purpose
    branch_id = live_store.tenant("acme")["branches"][0]["id"]
    url = postgres_url.replace("postgresql+psycopg://", "postgresql://", 1)
    body = {"username": "ALICE", "password": "password123", "branch_id": branch_id}
    with psycopg.connect(url) as other:
        # Not yet committed: the registration's check cannot see it; its insert waits on the index.
        other.execute(
            "INSERT INTO users (username, username_key, password_hash, role, branch_id, created_at)"
            " VALUES ('alice', 'alice', 'x', 'customer', %s, now())",
            (branch_id,),
        )
        with ThreadPoolExecutor(max_workers=1) as pool:
            registering = pool.submit(live_app.test_client().post, "/register_user", json=body)
            servers.wait_for_lock_wait(postgres_url, "INSERT INTO users%")
            other.commit()
            response = registering.result(timeout=10)
    assert response.status_code == 409 and response.json == {"error": "Username taken"}
    with live_app.app_context():
        assert db.session.query(User).count() == 1


def test_a_single_statement_call_raises_what_sqlalchemy_raises(live_app):
    """The sale's fast path to PostgreSQL meets a failing statement as every other query does."""
    with live_app.app_context():
        with pytest.raises(DataError) as through_orm:
            db.session.execute(text("SELECT 1 / :zero"), {"zero": 0})
        db.session.rollback()
        with pytest.raises(DataError) as through_call:
            call("SELECT 1 / %(zero)s", {"zero": 0})
    assert type(through_call.value) is type(through_orm.value)
    assert type(through_call.value.orig) is type(through_orm.value.orig)
