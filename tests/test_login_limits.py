"""Brute force on /login and /register_user: 429 per address, per username and address, and per
username; never a lockout from one address; also while Redis is down; equal timing; hash upgrades."""

import os
import signal
import statistics
import time

import pytest
from limits import parse_many
from werkzeug.security import check_password_hash, generate_password_hash

from app import accounts
from app.extensions import db
from app.models import User
from config import Config


def fail_login(client, username, address="198.51.100.1"):
    return client.post(
        "/login",
        json={"username": username, "password": "wrong-password"},
        environ_base={"REMOTE_ADDR": address},
    )


LIMITS = {
    "LOGIN_LIMIT_PER_ADDRESS": "5 per minute",
    "LOGIN_LIMIT_PER_USERNAME_AND_ADDRESS": "3 per minute",
    "LOGIN_LIMIT_PER_USERNAME": "7 per minute",
}


def log_in(client, username, address, password="password123"):
    return client.post(
        "/login", json={"username": username, "password": password}, environ_base={"REMOTE_ADDR": address}
    )


@pytest.fixture
def limited(app):
    app.config.update(LIMITS)
    return app


def test_a_guess_spread_over_many_addresses_is_stopped_per_username(limited, store):
    store.user("alice", store.tenant("acme")["branches"][0]["id"])
    client = limited.test_client()
    statuses = [fail_login(client, "alice", f"203.0.113.{n}").status_code for n in range(8)]
    assert statuses == [401] * 7 + [429]
    # While it holds, the username is refused from everywhere, in any case: the price of stopping it.
    response = log_in(client, "ALICE", "192.0.2.9")
    assert response.status_code == 429
    assert response.json == {"error": "Too many failed attempts; retry later"}
    assert 0 < int(response.headers["Retry-After"]) <= 60


def test_failures_from_one_address_never_lock_the_user_out_elsewhere(limited, store):
    store.user("alice", store.tenant("acme")["branches"][0]["id"])
    client = limited.test_client()
    statuses = [fail_login(client, "alice", "203.0.113.66").status_code for _ in range(30)]
    # Attempts answered 429 count toward nothing, so one address never fills the username's window.
    assert statuses == [401] * 3 + [429] * 27
    assert log_in(client, "alice", "203.0.113.66").status_code == 429
    assert log_in(client, "alice", "192.0.2.10").status_code == 200


def test_the_default_limits_keep_one_address_from_a_lockout(app):
    """Fixed windows let one address fill two of its windows back to back: the username's own
    limit is above that, in each window length they share."""

    def per(setting):
        return {item.get_expiry(): item.amount for item in parse_many(app.config[setting])}

    one_address, everywhere = per("LOGIN_LIMIT_PER_USERNAME_AND_ADDRESS"), per("LOGIN_LIMIT_PER_USERNAME")
    for window, amount in everywhere.items():
        # The most one address can count within this window: two of its own of that length.
        assert 2 * min(n for w, n in one_address.items() if w >= window) < amount
    assert max(one_address.values()) <= 10 and max(everywhere.values()) <= 20
    assert max(per("LOGIN_LIMIT_PER_ADDRESS").values()) <= 60


def test_failed_logins_reach_429_per_address_across_usernames(limited):
    client = limited.test_client()
    statuses = [fail_login(client, f"user{n}").status_code for n in range(6)]
    assert statuses == [401] * 5 + [429]
    assert fail_login(client, "someone-else", "198.51.100.2").status_code == 401


def test_successful_logins_are_not_counted(limited, store):
    store.user("alice", store.tenant("acme")["branches"][0]["id"])
    for _ in range(6):
        store.login("alice")


def test_client_address_comes_from_the_proxy_when_configured(make_app):
    app = make_app(TRUSTED_PROXY_COUNT="1")
    app.config.update(LOGIN_LIMIT_PER_ADDRESS="2 per minute")
    client = app.test_client()

    def attempt(forwarded_for):
        return client.post(
            "/login",
            json={"username": f"u{time.monotonic_ns()}", "password": "wrong-password"},
            headers={"X-Forwarded-For": forwarded_for},
        ).status_code

    assert [attempt("192.0.2.1") for _ in range(3)] == [401, 401, 429]
    assert attempt("192.0.2.2") == 401


@pytest.mark.redis
def test_limits_hold_while_redis_is_down(make_app, own_redis):
    app = make_app(REDIS_URL=own_redis.url)
    app.config.update(LIMITS)
    client = app.test_client()
    assert fail_login(client, "alice").status_code == 401
    own_redis.stop()
    # Per username, from new addresses; then per address, with new usernames.
    by_username = [fail_login(client, "alice", f"203.0.113.{n}").status_code for n in range(8)]
    by_address = [fail_login(client, f"user{n}", "198.51.100.7").status_code for n in range(6)]
    # Counted afresh in memory: the failure Redis holds is out of reach.
    assert by_username == [401] * 7 + [429]
    assert by_address == [401] * 5 + [429]
    app.extensions["redis"].close()


def register(client, username, address):
    body = {"username": username, "password": "password123", "branch_id": 1}
    return client.post("/register_user", json=body, environ_base={"REMOTE_ADDR": address})


def test_registrations_are_limited_per_address_but_not_for_the_administrator(app, store, admin):
    store.tenant("acme")
    app.config["REGISTER_LIMIT_PER_ADDRESS"] = "3 per minute"
    client = app.test_client()
    statuses = [register(client, f"user{n}", "198.51.100.3").status_code for n in range(5)]
    assert statuses == [201, 201, 201, 429, 429]
    refused = register(client, "user9", "198.51.100.3")
    assert refused.json == {"error": "Too many failed attempts; retry later"}
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    assert register(client, "other", "198.51.100.4").status_code == 201
    for n in range(5):
        body = {"username": f"staff{n}", "password": "password123", "branch_id": 1}
        assert client.post("/register_user", json=body, headers=admin).status_code == 201


# Each try hashes once per username; enough tries that the medians settle on a noisy machine.
TIMING_TRIES = 31


@pytest.mark.timing
def test_unknown_user_costs_as_much_as_a_wrong_password(app, store):
    """Logins differ by under 10 ms in the median, with the production hash (0.2 to 0.4 s each).

    Each unknown-user try is compared with the wrong-password try beside it: on a shared
    machine a hash's time wanders by tens of milliseconds between tries, and comparing
    neighbours cancels that where comparing the two medians did not (±20 ms run to run).
    """
    app.config.update(
        PASSWORD_HASH_METHOD=Config.PASSWORD_HASH_METHOD,
        LOGIN_LIMIT_PER_USERNAME="1000 per minute",
        LOGIN_LIMIT_PER_USERNAME_AND_ADDRESS="1000 per minute",
        LOGIN_LIMIT_PER_ADDRESS="1000 per minute",
    )
    store.user("alice", store.tenant("acme")["branches"][0]["id"])
    client = app.test_client()
    timings = {"alice": [], "nobody": []}
    for _ in range(TIMING_TRIES):
        for username in timings:  # interleaved, so drift affects both alike
            started = time.perf_counter()
            assert client.post("/login", json={"username": username, "password": "wrong!"}).status_code == 401
            timings[username].append(time.perf_counter() - started)
    assert statistics.median(timings["alice"]) > 0.05, "the production hash must be in use"
    pairs = zip(timings["nobody"], timings["alice"], strict=True)
    differences = [unknown - wrong for unknown, wrong in pairs]
    assert abs(statistics.median(differences)) < 0.010


def test_an_older_hash_is_upgraded_at_the_next_successful_login(app, store):
    store.user("alice", store.tenant("acme")["branches"][0]["id"])
    with app.app_context():
        user = db.session.scalar(db.select(User).where(User.username == "alice"))
        user.password_hash = generate_password_hash("password123", method="pbkdf2:sha256:1000")
        db.session.commit()
    client = app.test_client()
    assert client.post("/login", json={"username": "alice", "password": "wrong-password"}).status_code == 401
    with app.app_context():
        assert db.session.scalar(db.select(User.password_hash)).startswith("pbkdf2:")
    store.login("alice")
    with app.app_context():
        upgraded = db.session.scalar(db.select(User.password_hash))
    assert upgraded.startswith(app.config["PASSWORD_HASH_METHOD"] + "$")
    assert check_password_hash(upgraded, "password123")
    store.login("alice")


@pytest.mark.redis
def test_a_login_that_finds_redis_stalled_is_a_503_without_hashing(make_app, own_redis, monkeypatch):
    app = make_app(REDIS_URL=own_redis.url)
    hashed = []
    monkeypatch.setattr(accounts, "verify_password", lambda *args: hashed.append(args) or False)
    client = app.test_client()
    assert fail_login(client, "alice").status_code == 401 and len(hashed) == 1
    os.kill(own_redis.process.pid, signal.SIGSTOP)
    try:
        # No cookie, so the session costs no Redis call: the throttle's check is the first.
        response = fail_login(client, "alice", "203.0.113.9")
    finally:
        os.kill(own_redis.process.pid, signal.SIGCONT)
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    assert len(hashed) == 1
    app.extensions["redis"].close()
