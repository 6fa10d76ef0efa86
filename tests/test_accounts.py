"""Registration, login, logout, /me and the server-side session behind them."""

import os
import pickle
import time

import msgspec
import pytest
import redis
import time_machine
from werkzeug.security import check_password_hash

from app.extensions import db
from app.models import User
from config import ProductionConfig, TestingConfig

CREDENTIALS = {"username": "alice", "password": "password123"}


def session_id(client) -> str:
    return client.get_cookie("session").value


@pytest.fixture
def logged_in(make_app):
    """An app of its own, with a customer registered through the API, and a client logged in as them."""

    def make(config_class=TestingConfig, **env):
        app = make_app(config_class, **env)
        client = app.test_client()
        admin = {"Authorization": f"Bearer {app.config['ADMIN_TOKEN']}"}
        tenant = client.post("/register_tenants", json={"tenant_names": ["own"]}, headers=admin).json
        branch_id = tenant["tenants"][0]["branches"][0]["id"]
        client.post("/register_user", json={**CREDENTIALS, "branch_id": branch_id}, headers=admin)
        assert client.post("/login", json=CREDENTIALS).status_code == 200
        return app, client

    return make


@pytest.fixture
def branch_id(store):
    return store.tenant("acme")["branches"][0]["id"]


@pytest.fixture
def alice(store, branch_id):
    user_id = store.user("alice", branch_id)
    return {"user_id": user_id, "branch_id": branch_id, "client": store.login("alice")}


def test_register_user_returns_201_with_user_id(client, branch_id):
    response = client.post("/register_user", json={**CREDENTIALS, "branch_id": branch_id})
    assert response.status_code == 201
    assert response.json == {"message": "User registered", "user_id": response.json["user_id"]}
    assert isinstance(response.json["user_id"], int)


@pytest.mark.parametrize(
    "change, status",
    [({"username": "ALICE"}, 409), ({"branch_id": 999}, 404), ({"role": "manager"}, 403)],
    ids=["username taken in another case", "unknown branch", "role without admin token"],
)
def test_refused_registration_creates_nothing(app, client, alice, change, status):
    body = {"username": "bob", "password": "password123", "branch_id": alice["branch_id"], **change}
    response = client.post("/register_user", json=body)
    assert response.status_code == status
    assert isinstance(response.json["error"], str)
    with app.app_context():
        assert db.session.query(User).count() == 1


def test_password_is_stored_as_scrypt_hash(app, alice):
    with app.app_context():
        stored = db.session.get(User, alice["user_id"]).password_hash
    assert stored.startswith("scrypt:")
    assert "password123" not in stored
    assert check_password_hash(stored, "password123")


@pytest.mark.parametrize("username", ["alice", "ALICE", "Alice"])
def test_login_returns_user_and_branch_whatever_the_username_case(client, alice, username):
    response = client.post("/login", json={**CREDENTIALS, "username": username})
    assert response.status_code == 200
    assert response.json == {
        "message": "Login successful",
        "user_id": alice["user_id"],
        "branch_id": alice["branch_id"],
    }


@pytest.mark.parametrize("username, password", [("nobody", "password123"), ("alice", "wrong-password")])
def test_unknown_user_and_wrong_password_get_the_same_401(client, alice, username, password):
    response = client.post("/login", json={"username": username, "password": password})
    assert response.status_code == 401
    assert response.json == {"error": "Invalid credentials"}
    assert client.get_cookie("session") is None


def test_session_cookie_is_httponly_samesite_lax_and_not_secure_in_tests(alice):
    cookie = alice["client"].get_cookie("session")
    assert cookie.http_only and cookie.same_site == "Lax"
    assert not cookie.secure


@pytest.mark.redis
def test_session_cookie_is_secure_in_production(logged_in, redis_server):
    env = {"SECRET_KEY": "x" * 40, "REDIS_URL": redis_server.url, "ADMIN_TOKEN": "y" * 40}
    app, client = logged_in(ProductionConfig, **env)
    assert app.config["SESSION_COOKIE_SECURE"] is True
    cookie = client.get_cookie("session")
    assert cookie.secure and cookie.http_only and cookie.same_site == "Lax"


def test_second_login_issues_new_id_and_old_cookie_is_anonymous(app, alice):
    client = alice["client"]
    old = session_id(client)
    assert client.post("/login", json=CREDENTIALS).status_code == 200
    assert session_id(client) != old
    assert not app.extensions["redis"].exists(f"session:{old}")
    thief = app.test_client()
    thief.set_cookie("session", old)
    assert thief.get("/me").status_code == 401
    assert client.get("/me").status_code == 200


def test_logout_deletes_the_redis_key(app, alice):
    client = alice["client"]
    key = f"session:{session_id(client)}"
    assert app.extensions["redis"].exists(key)
    response = client.post("/logout")
    assert response.status_code == 200
    assert response.json == {"message": "Logged out"}
    assert not app.extensions["redis"].exists(key)
    assert client.get("/me").json == {"error": "User not logged in"}


def test_me_describes_user_branch_and_tenant(store, alice):
    response = alice["client"].get("/me")
    assert response.status_code == 200
    assert response.json == {
        "user_id": alice["user_id"],
        "username": "alice",
        "role": "customer",
        "branch_id": alice["branch_id"],
        "branch_name": "main",
        "tenant_id": response.json["tenant_id"],
        "tenant_name": "acme",
    }


def test_cookie_never_issued_is_anonymous_and_stores_nothing(app, client):
    redis = app.extensions["redis"]
    client.set_cookie("session", "made-up-session-id")
    assert client.get("/me").status_code == 401
    assert client.get("/products").status_code == 401
    assert redis.keys("session:*") == []


@pytest.mark.parametrize("idle, absolute", [("1800", "43200"), ("100", "30")])
def test_session_key_ttl_never_exceeds_idle_or_remaining_absolute_time(logged_in, idle, absolute):
    app, client = logged_in(SESSION_IDLE_TIMEOUT=idle, SESSION_ABSOLUTE_TIMEOUT=absolute)
    key = f"session:{session_id(client)}"
    assert 0 < app.extensions["redis"].ttl(key) <= min(int(idle), int(absolute))
    # The stored session is plain msgpack of ints and strings.
    data = msgspec.msgpack.decode(app.extensions["redis"].get(key))
    assert data["user_id"] and all(isinstance(value, int | str) for value in data.values())


def planted(kind: str, marker, user_id: int) -> bytes:
    if kind == "other types":  # msgpack, but a list where an int belongs
        now = int(time.time())
        data = {"user_id": [user_id], "branch_id": 1, "tenant_id": 1, "role": "customer"}
        return msgspec.msgpack.encode({**data, "created_at": now, "seen_at": now})

    class Exploit:  # touches a file if anything ever unpickles it
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    return pickle.dumps(Exploit(), protocol=int(kind.split()[-1]))


@pytest.mark.parametrize("kind", ["pickle 0", "pickle 2", f"pickle {pickle.HIGHEST_PROTOCOL}", "other types"])
def test_planted_session_is_never_unpickled_and_is_anonymous(app, client, tmp_path, alice, kind):
    marker = tmp_path / "pwned"
    app.extensions["redis"].set("session:planted", planted(kind, marker, alice["user_id"]))
    client.set_cookie("session", "planted")
    assert client.get("/me").status_code == 401
    assert not marker.exists()


@pytest.mark.parametrize(
    "idle, absolute, schedule",
    [
        ("2", "100", [(1, 200), (2, 401)]),
        ("2", "100", [(1, 200)] * 5),
        ("3", "5", [(1, 200)] * 4 + [(1, 401)]),
    ],
    ids=["idle timeout ends it", "activity keeps it alive", "absolute timeout ends it"],
)
def test_session_timeouts(logged_in, idle, absolute, schedule):
    with time_machine.travel(time.time(), tick=False) as clock:
        app, client = logged_in(SESSION_IDLE_TIMEOUT=idle, SESSION_ABSOLUTE_TIMEOUT=absolute)
        key = f"session:{session_id(client)}"
        for seconds, status in schedule:
            clock.shift(seconds)
            assert client.get("/me").status_code == status
        assert app.extensions["redis"].exists(key) == (schedule[-1][1] == 200)


@pytest.mark.redis
def test_reading_a_session_does_not_write_to_redis(logged_in, redis_server):
    """Reads cost Redis one GET for the session (and the page's HGET); the idle timer is
    written back only once the refresh interval has passed."""
    server = redis.Redis.from_url(redis_server.url)
    with time_machine.travel(time.time(), tick=False) as clock:
        app, client = logged_in(REDIS_URL=redis_server.url)
        assert client.get("/products").status_code == 200  # the page is cached from now on
        server.config_resetstat()
        for _ in range(5):
            assert client.get("/me").status_code == 200
            assert client.get("/products").status_code == 200
        calls = {name: stats["calls"] for name, stats in server.info("commandstats").items()}
        assert calls == {"cmdstat_get": 10, "cmdstat_hget": 5, "cmdstat_config|resetstat": 1}
        clock.shift(120)  # well past the refresh interval, well within the idle timeout
        assert client.get("/me").status_code == 200
        assert server.info("commandstats")["cmdstat_set"]["calls"] == 1
    app.extensions["redis"].close()
