"""The store on the real PostgreSQL and Redis of this machine."""

import logging
import re
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from werkzeug.security import check_password_hash

from app import services as app_services
from app.extensions import db
from app.models import Product, Purchase, User

from . import services

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


def session_cookie(client) -> str | None:
    cookie = client.get_cookie("session")
    return cookie.value if cookie else None


def redis_connections_out(live_app) -> set:
    """The app's Redis connections taken from the pool and not returned."""
    return live_app.extensions["redis"].connection_pool._in_use_connections


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


def test_a_request_reads_its_session_with_the_one_get_sent_as_it_arrives(live_app, live_store, monkeypatch):
    """The session's GET goes out before Flask builds the request, not through the client's
    command path when the session opens; still one command, and its connection returned."""
    client, _ = alice_with_tea(live_store)
    redis = live_app.extensions["redis"]
    late_gets = []
    execute_command = redis.execute_command

    def counted(*args, **options):
        if args[0] == "GET":
            late_gets.append(args)
        return execute_command(*args, **options)

    monkeypatch.setattr(redis, "execute_command", counted)
    redis.config_resetstat()
    assert client.get("/me").json["username"] == "alice"
    assert redis.info("commandstats")["cmdstat_get"]["calls"] == 1 and not late_gets
    assert not redis_connections_out(live_app)
    stranger = live_app.test_client()
    stranger.set_cookie("session", "never-issued")
    assert stranger.get("/me").status_code == 401
    assert not redis_connections_out(live_app)


def test_a_session_read_early_but_never_opened_returns_its_connection(live_app, live_store, monkeypatch):
    client, _ = alice_with_tea(live_store)
    interface = live_app.session_interface
    monkeypatch.setattr(interface, "open_session", lambda app, request: interface.make_null_session(app))
    assert client.get("/me").status_code == 401
    assert not redis_connections_out(live_app)


def test_while_redis_is_known_down_requests_take_no_connection(live_app, live_store, monkeypatch):
    """Once the breaker is open, the session's early read refuses at once, as every other call
    does, rather than connecting to a Redis that may hang."""
    client, product = alice_with_tea(live_store)
    redis = live_app.extensions["redis"]
    taken = []
    get_connection = redis.connection_pool.get_connection

    def counted_get_connection(*args, **kwargs):
        taken.append(args)
        return get_connection(*args, **kwargs)

    monkeypatch.setattr(redis.connection_pool, "get_connection", counted_get_connection)
    monkeypatch.setitem(live_app.config, "PROPAGATE_EXCEPTIONS", False)
    redis.breaker.open_until = time.monotonic() + 60
    assert client.get("/me").status_code == 503
    assert client.post("/purchase", json={"product_id": product["id"], "quantity": 1}).status_code == 503
    assert not taken


def test_a_sale_is_recorded_in_redis_before_its_answer_leaves(live_app, live_store):
    """The sale's Redis script is read back within the request: its connection returns to the
    pool, and the buyer's next reads see the sale."""
    client, product = alice_with_tea(live_store)
    body = {"product_id": product["id"], "quantity": 1}
    for sold in (1, 2, 3):
        assert client.post("/purchase", json=body).status_code == 201
        assert not redis_connections_out(live_app)
        assert client.get("/products").json["products"][0]["stock"] == 5 - sold
        assert client.get("/stats/top-products").json["products"][0]["units_sold"] == sold


def test_a_sale_whose_redis_reply_is_lost_still_stands(live_app, live_store, monkeypatch, caplog):
    """Redis dropping the connection after the script was sent: the sale is committed and
    answered, the miss is logged for rebuild-top-products, and the connection is returned."""
    client, product = alice_with_tea(live_store)
    send = app_services.send

    def send_then_lose_the_connection(*args):
        sent = send(*args)
        sent.connection.disconnect()
        return sent

    monkeypatch.setattr(app_services, "send", send_then_lose_the_connection)
    with caplog.at_level(logging.WARNING, logger="app.services"):
        response = client.post("/purchase", json={"product_id": product["id"], "quantity": 2})
    assert response.status_code == 201
    assert "not counted in Redis" in caplog.text
    assert not redis_connections_out(live_app)
    with live_app.app_context():
        assert db.session.get(Product, product["id"]).stock == 3


def test_connections_killed_while_idle_are_replaced_before_use(live_app, live_store, postgres_url):
    """A server restart or an administrator's kill leaves the pools holding dead connections;
    the next requests must take fresh ones rather than answer 503."""
    client, product = alice_with_tea(live_store)
    body = {"product_id": product["id"], "quantity": 1}
    assert client.post("/purchase", json=body).status_code == 201
    assert client.get("/products").status_code == 200
    name = postgres_url.rsplit("/", 1)[1]
    with psycopg.connect(services.POSTGRES_ADMIN_URL, autocommit=True) as admin:
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
