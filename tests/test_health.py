"""Liveness, readiness, and what a fault looks like to a client."""

import logging

import pytest

from app import create_app
from config import TestingConfig

from . import servers


@pytest.fixture
def app_with(make_app):
    """An app that answers faults as served, rather than raising them into the test."""

    def make(**env):
        app = make_app(**env)
        app.config["PROPAGATE_EXCEPTIONS"] = False
        return app

    return make


def test_ready_when_redis_and_the_database_answer(client):
    response = client.get("/health/ready")
    assert response.status_code == 200
    assert response.json == {"status": "ok", "redis": "ok", "database": "ok"}


@pytest.mark.redis
def test_ready_names_redis_when_it_is_down_and_health_stays_up(app_with):
    app = app_with(REDIS_URL=f"redis://127.0.0.1:{servers.free_port()}/0")
    client = app.test_client()
    client.set_cookie("session", "a-session-id-that-needs-redis-to-read")
    response = client.get("/health/ready")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert response.json["redis"] == "down" and response.json["database"] == "ok"
    assert "redis" in response.json["error"]
    assert client.get("/health").status_code == 200
    me = client.get("/me")
    assert me.status_code == 503 and me.json == {"error": "Service temporarily unavailable"}


@pytest.mark.redis
def test_an_outage_is_logged_as_one_warning_not_as_a_crash(app_with, caplog):
    app = app_with(REDIS_URL=f"redis://127.0.0.1:{servers.free_port()}/0")
    client = app.test_client()
    client.set_cookie("session", "a-session-id-that-needs-redis-to-read")
    with caplog.at_level(logging.WARNING):
        assert client.get("/me").status_code == 503
    assert [(r.levelname, r.getMessage().split(":")[0]) for r in caplog.records] == [
        ("WARNING", "dependency unavailable")
    ]
    assert not any(r.exc_info for r in caplog.records)


@pytest.mark.postgres
def test_ready_names_the_database_when_it_is_down():
    unreachable = f"postgresql+psycopg://postgres@127.0.0.1:{servers.free_port()}/store"
    broken = create_app(TestingConfig({"DATABASE_URL": unreachable}))
    broken.config["PROPAGATE_EXCEPTIONS"] = False
    response = broken.test_client().get("/health/ready")
    assert response.status_code == 503
    assert response.json["database"] == "down" and response.json["redis"] == "ok"
    login = broken.test_client().post("/login", json={"username": "alice", "password": "password123"})
    assert login.status_code == 503 and login.headers["Retry-After"] == "1"


def test_an_unexpected_error_is_a_json_500_without_a_trace(app_with):
    app = app_with()

    @app.get("/boom")
    def boom():
        raise RuntimeError("secret detail")

    response = app.test_client().get("/boom")
    assert response.status_code == 500
    assert response.json == {"error": "Internal server error"}
    assert b"secret detail" not in response.data and b"Traceback" not in response.data
