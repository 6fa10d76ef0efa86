"""Accounts a store can run: each change that takes rights away ends the user's sessions at once.

On PostgreSQL and real Redis, from two clients: the victim's cookie is a 401 on its very next
request after the change.
"""

import hashlib

import psycopg
import pytest
import redis
from sqlalchemy import text

from app.extensions import db
from app.models import Purchase, User

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

PASSWORD = "password123"


@pytest.fixture
def branch(live_app, live_store):
    live_app.config["PASSWORD_HASH_METHOD"] = "scrypt:1024:8:1"
    branch_id = live_store.tenant("acme")["branches"][0]["id"]
    live_store.user("boss", branch_id, role="manager")
    victim_id = live_store.user("victim", branch_id)
    product = live_store.product(branch_id, "Tea", price=1, stock=10)
    return {"branch_id": branch_id, "victim_id": victim_id, "product_id": product["id"]}


def victim_and_changer(live_store, changer: str):
    victim = live_store.login("victim")
    assert victim.get("/me").status_code == 200
    if changer == "admin":
        client = live_store.app.test_client()
        client.environ_base["HTTP_AUTHORIZATION"] = live_store.admin["Authorization"]
        return victim, client
    if changer == "victim":
        return victim, live_store.login("victim")
    return victim, live_store.login(changer)


@pytest.mark.parametrize(
    "changer, method, path, body, status",
    [
        ("boss", "PATCH", "/users/{victim}", {"active": False}, 200),
        ("admin", "PATCH", "/users/{victim}", {"active": False}, 200),
        ("boss", "DELETE", "/users/{victim}", None, 204),
        ("admin", "PATCH", "/users/{victim}", {"role": "manager"}, 200),
        (
            "victim",
            "POST",
            "/me/password",
            {"current_password": PASSWORD, "new_password": "a-new-password"},
            200,
        ),
        ("victim", "POST", "/logout/all", None, 200),
    ],
    ids=[
        "manager disables",
        "admin disables",
        "manager deletes",
        "admin changes the role",
        "password change",
        "logout everywhere",
    ],
)
def test_the_victims_next_request_is_a_401(live_store, branch, changer, method, path, body, status):
    victim, client = victim_and_changer(live_store, changer)
    response = client.open(path.format(victim=branch["victim_id"]), method=method, json=body)
    assert response.status_code == status, response.json
    assert victim.get("/me").status_code == 401
    assert (
        victim.post("/purchase", json={"product_id": branch["product_id"], "quantity": 1}).status_code == 401
    )


def test_ending_one_session_by_its_handle(live_store, branch):
    victim, other = victim_and_changer(live_store, "victim")
    sessions = other.get("/me/sessions").json["sessions"]
    assert len(sessions) == 2 and sum(s["current"] for s in sessions) == 1
    [victims] = [s["id"] for s in sessions if not s["current"]]
    assert other.delete(f"/me/sessions/{victims}").status_code == 204
    assert victim.get("/me").status_code == 401
    assert other.get("/me").status_code == 200
    assert other.delete(f"/me/sessions/{victims}").status_code == 404
    assert [s["current"] for s in other.get("/me/sessions").json["sessions"]] == [True]


def test_the_current_session_survives_its_own_password_change_under_a_new_id(live_store, branch):
    victim, changer = victim_and_changer(live_store, "victim")
    before = changer.get_cookie("session").value
    body = {"current_password": PASSWORD, "new_password": "a-new-password"}
    assert changer.post("/me/password", json=body).json == {"message": "Password changed"}
    after = changer.get_cookie("session").value
    assert after != before and changer.get("/me").status_code == 200
    stale = live_store.app.test_client()
    stale.set_cookie("session", before)
    assert stale.get("/me").status_code == 401
    assert (
        live_store.app.test_client()
        .post("/login", json={"username": "victim", "password": PASSWORD})
        .status_code
        == 401
    )
    live_store.login("victim", "a-new-password")


def test_a_wrong_current_password_is_a_401_counted_like_a_failed_login(live_app, live_store, branch):
    live_app.config["LOGIN_LIMIT_PER_USERNAME_AND_ADDRESS"] = "2 per minute"
    victim = live_store.login("victim")
    body = {"current_password": "not-it-at-all", "new_password": "a-new-password"}
    assert [victim.post("/me/password", json=body).status_code for _ in range(3)] == [401, 401, 429]
    assert victim.get("/me").status_code == 200


@pytest.mark.parametrize("change", [{"active": False}, "delete"])
def test_a_disabled_or_deleted_user_logs_in_like_a_wrong_password(live_store, branch, change):
    admin = victim_and_changer(live_store, "admin")[1]
    path = f"/users/{branch['victim_id']}"
    response = admin.delete(path) if change == "delete" else admin.patch(path, json=change)
    assert response.status_code in (200, 204)
    client = live_store.app.test_client()
    refused = client.post("/login", json={"username": "victim", "password": PASSWORD})
    wrong = client.post("/login", json={"username": "boss", "password": "not-the-password"})
    assert (
        (refused.status_code, refused.json)
        == (wrong.status_code, wrong.json)
        == (401, {"error": "Invalid credentials"})
    )


def test_a_deleted_user_keeps_their_purchases_and_their_name(live_app, live_store, branch):
    victim = live_store.login("victim")
    assert (
        victim.post("/purchase", json={"product_id": branch["product_id"], "quantity": 2}).status_code == 201
    )
    admin = victim_and_changer(live_store, "admin")[1]
    assert admin.delete(f"/users/{branch['victim_id']}").status_code == 204
    with live_app.app_context():
        assert db.session.scalars(db.select(Purchase.user_id)).all() == [branch["victim_id"]]
        assert db.session.get(User, branch["victim_id"]).deleted_at is not None
    again = {"username": "VICTIM", "password": PASSWORD, "branch_id": branch["branch_id"]}
    assert admin.post("/register_user", json=again).status_code == 409
    listed = admin.get(f"/users?branch_id={branch['branch_id']}").json["users"]
    assert [u["username"] for u in listed] == ["boss"]
    assert admin.get(f"/users/{branch['victim_id']}").status_code == 405
    assert admin.delete(f"/users/{branch['victim_id']}").status_code == 404
    boss = live_store.login("boss")
    assert boss.get("/purchases").json["purchases"][0]["user_id"] == branch["victim_id"]


def test_me_of_a_session_whose_user_is_gone_is_a_401(live_app, live_store, branch):
    victim = live_store.login("victim")
    with live_app.app_context():
        db.session.execute(text("DELETE FROM users WHERE id = :id"), {"id": branch["victim_id"]})
        db.session.commit()
    response = victim.get("/me")
    assert (response.status_code, response.json) == (401, {"error": "User not logged in"})
    assert victim.get("/me").status_code == 401


def test_session_handles_reveal_nothing_usable(live_app, live_store, branch, redis_server):
    victim = live_store.login("victim")
    sid = victim.get_cookie("session").value
    [handle] = [s["id"] for s in victim.get("/me/sessions").json["sessions"]]
    digests = {hashlib.new(name, sid.encode()).hexdigest() for name in ("md5", "sha1", "sha256")}
    assert handle != sid and sid not in handle and handle not in sid
    assert not any(handle in digest or digest.startswith(handle) for digest in digests)
    server = redis.Redis.from_url(redis_server.url)
    index = f"user-sessions:{branch['victim_id']}"
    assert 0 < server.ttl(index) <= live_app.config["SESSION_ABSOLUTE_TIMEOUT"]
    assert victim.post("/logout").status_code == 200
    assert server.hlen(index) == 0


def test_a_role_change_is_served_with_the_new_rights_after_logging_in_again(live_store, branch):
    victim, admin = victim_and_changer(live_store, "admin")
    assert victim.post("/products", json={"name": "Cake", "price": 2}).status_code == 403
    assert admin.patch(f"/users/{branch['victim_id']}", json={"role": "manager"}).status_code == 200
    promoted = live_store.login("victim")
    assert promoted.post("/products", json={"name": "Cake", "price": 2}).status_code == 201
    boss = live_store.login("boss")
    assert admin.patch(f"/users/{branch['victim_id']}", json={"role": "customer"}).status_code == 200
    assert promoted.post("/products", json={"name": "Pie", "price": 2}).status_code == 401
    assert boss.get("/me").status_code == 200


def test_listing_sessions_drops_those_that_expired(live_app, live_store, branch, redis_server):
    victim, other = victim_and_changer(live_store, "victim")
    server = redis.Redis.from_url(redis_server.url)
    server.delete(f"session:{victim.get_cookie('session').value}")  # as its TTL would
    assert [s["current"] for s in other.get("/me/sessions").json["sessions"]] == [True]
    assert server.hlen(f"user-sessions:{branch['victim_id']}") == 1


def test_a_user_disabled_while_their_password_is_checked_gets_no_session(
    live_store, branch, postgres_url, monkeypatch
):
    """The change commits (and ends the user's sessions) while the login hashes: the session the
    login then makes must not outlive it."""
    from app.routes import accounts as routes

    check_password = routes.check_password

    def disabled_meanwhile(user, password):
        checked = check_password(user, password)
        url = postgres_url.replace("postgresql+psycopg://", "postgresql://", 1)
        with psycopg.connect(url) as other:
            other.execute("UPDATE users SET active = false WHERE id = %s", (branch["victim_id"],))
        return checked

    monkeypatch.setattr(routes, "check_password", disabled_meanwhile)
    client = live_store.app.test_client()
    response = client.post("/login", json={"username": "victim", "password": PASSWORD})
    assert (response.status_code, response.json) == (401, {"error": "Invalid credentials"})
    assert client.get("/me").status_code == 401
