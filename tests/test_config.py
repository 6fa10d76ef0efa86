"""Settings per environment, start-up checks and the demo data command."""

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from app import create_app
from app.extensions import db
from app.models import Branch, Product, Tenant, User
from config import ConfigError, DevelopmentConfig, ProductionConfig, TestingConfig, load_config

ROOT = Path(__file__).resolve().parent.parent

REQUIRED = ("SECRET_KEY", "DATABASE_URL", "REDIS_URL", "ADMIN_TOKEN")


@pytest.fixture
def production_env(tmp_path):
    return {
        "APP_ENV": "production",
        "SECRET_KEY": "s" * 32,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'prod.db'}",
        "REDIS_URL": "redis://127.0.0.1:1/0",
        "ADMIN_TOKEN": "a" * 32,
    }


def test_production_accepts_complete_settings(production_env):
    config = ProductionConfig(production_env)
    assert config.SESSION_COOKIE_SECURE is True
    assert config.SQLALCHEMY_DATABASE_URI == production_env["DATABASE_URL"]


@pytest.mark.parametrize("name", REQUIRED)
@pytest.mark.parametrize("value", [None, ""], ids=["missing", "empty"])
def test_production_refuses_to_start_without_a_required_variable(production_env, name, value):
    if value is None:
        del production_env[name]
    else:
        production_env[name] = value
    with pytest.raises(RuntimeError, match=name):
        ProductionConfig(production_env)
    with pytest.raises(RuntimeError, match=name):
        load_config(production_env)


@pytest.mark.parametrize("name", ["SECRET_KEY", "ADMIN_TOKEN"])
def test_production_refuses_short_secrets(production_env, name):
    production_env[name] = "k" * 31
    with pytest.raises(RuntimeError, match=f"{name}.*32"):
        ProductionConfig(production_env)


def test_production_app_builds_without_contacting_dependencies(production_env):
    # Port 1 has no Redis: building the app and answering /health must not need it.
    app = create_app(load_config(production_env))
    assert app.config["APP_ENV"] == "production" and not app.testing
    response = app.test_client().get("/health")
    assert response.status_code == 200 and response.json == {"status": "ok"}


def test_development_runs_on_defaults_and_says_so(caplog):
    with caplog.at_level(logging.WARNING):
        app = create_app(DevelopmentConfig({}))
    assert app.config["APP_ENV"] == "development"
    assert len(app.config["SECRET_KEY"]) >= 32
    # instance/ (git-ignored) holds the SQLite file that `make run` migrates.
    assert os.path.isdir(app.instance_path)
    store_db = os.path.join(app.instance_path, "store.db")
    assert app.config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{store_db}"
    warnings = " ".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)
    for name in ("DATABASE_URL", "REDIS_URL", "ADMIN_TOKEN"):
        assert name in warnings
    # The in-process stand-in answers like Redis, scripts included.
    with app.test_request_context():
        client = app.extensions["redis"]
        assert client.ping() and client.eval("return 1", 0) == 1


def test_development_without_admin_token_opens_administration_to_this_machine_only(make_app):
    app = make_app(DevelopmentConfig)
    client = app.test_client()

    def register_tenant(name, address):
        body = {"tenant_names": [name]}
        return client.post("/register_tenants", json=body, environ_base={"REMOTE_ADDR": address})

    assert register_tenant("local", "127.0.0.1").status_code == 201
    assert register_tenant("local6", "::1").status_code == 201
    assert register_tenant("remote", "192.0.2.7").status_code == 403


def test_development_with_admin_token_requires_it(caplog):
    app = create_app(DevelopmentConfig({"DATABASE_URL": "sqlite://", "ADMIN_TOKEN": "t" * 40}))
    assert "ADMIN_TOKEN" not in caplog.text
    with app.app_context():
        db.create_all()
    response = app.test_client().post("/register_tenants", json={"tenant_names": ["dev"]})
    assert response.status_code == 403


def test_load_config_picks_the_environment(production_env):
    assert type(load_config({"APP_ENV": "testing"})) is TestingConfig
    assert type(load_config({"APP_ENV": "development"})) is DevelopmentConfig
    del production_env["APP_ENV"]
    assert type(load_config(production_env)) is ProductionConfig


def test_a_forgotten_app_env_is_production_and_refuses_to_start_without_its_secrets(tmp_path):
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}", "REDIS_URL": "redis://127.0.0.1:1/0"}
    with pytest.raises(ConfigError) as refused:
        load_config(env)
    message = str(refused.value)
    assert "SECRET_KEY" in message and "ADMIN_TOKEN" in message and "\n" not in message


def test_every_variable_at_fault_is_named_at_once():
    with pytest.raises(ConfigError) as refused:
        load_config({"SECRET_KEY": "short", "SESSION_IDLE_TIMEOUT": "ten"})
    message = str(refused.value)
    for name in ("SECRET_KEY", "DATABASE_URL", "REDIS_URL", "ADMIN_TOKEN", "SESSION_IDLE_TIMEOUT"):
        assert name in message


def test_testing_has_no_secret_a_server_would_accept_from_the_source():
    code = "from config import TestingConfig; c = TestingConfig(); print(c.ADMIN_TOKEN, c.SECRET_KEY)"
    runs = [
        subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
        for _ in range(2)
    ]
    first, second = (run.stdout.split() for run in runs)
    assert first[0] != second[0] and first[1] != second[1]
    source = (ROOT / "config.py").read_text()
    assert all(len(secret) >= 32 and secret not in source for secret in first)


@pytest.mark.parametrize("name", ["staging", "Production", "prod"])
def test_load_config_rejects_unknown_app_env(name):
    with pytest.raises(RuntimeError, match="APP_ENV"):
        load_config({"APP_ENV": name})


def test_session_timeouts_default_and_bound_the_session_lifetime():
    config = TestingConfig({})
    assert (config.SESSION_IDLE_TIMEOUT, config.SESSION_ABSOLUTE_TIMEOUT) == (1800, 43200)
    assert config.PERMANENT_SESSION_LIFETIME == 1800
    config = TestingConfig({"SESSION_IDLE_TIMEOUT": "60", "SESSION_ABSOLUTE_TIMEOUT": "600"})
    assert (config.SESSION_IDLE_TIMEOUT, config.SESSION_ABSOLUTE_TIMEOUT) == (60, 600)


@pytest.mark.parametrize("name", ["SESSION_IDLE_TIMEOUT", "SESSION_ABSOLUTE_TIMEOUT"])
@pytest.mark.parametrize("value", ["0", "-5", "ten", "1.5"])
def test_bad_session_timeout_is_refused(name, value):
    with pytest.raises(RuntimeError, match=name):
        TestingConfig({name: value})


def test_session_ids_are_not_signed(app):
    assert "SESSION_USE_SIGNER" not in app.config
    assert app.session_interface.use_signer is False
    for config_class in (DevelopmentConfig, TestingConfig, ProductionConfig):
        assert not hasattr(config_class, "SESSION_USE_SIGNER")


def row_counts(app) -> dict:
    with app.app_context():
        return {model.__name__: db.session.query(model).count() for model in (Tenant, Branch, User, Product)}


def test_seed_demo_is_idempotent_and_prints_logins(app, runner):
    first = runner.invoke(args=["seed-demo"])
    assert first.exit_code == 0, first.output
    counts = row_counts(app)
    assert counts == {"Tenant": 1, "Branch": 2, "User": 3, "Product": 8}
    second = runner.invoke(args=["seed-demo"])
    assert second.exit_code == 0, second.output
    assert row_counts(app) == counts
    for login in ("demo_manager / manager-pass-123", "demo_customer / customer-pass-123"):
        assert login in first.output
    assert "demo_manager / (existed already; password unchanged)" in second.output


def test_seeded_logins_work(app, runner):
    output = runner.invoke(args=["seed-demo"]).output
    assert "downtown_customer / customer-pass-123" in output
    client = app.test_client()
    response = client.post("/login", json={"username": "demo_manager", "password": "manager-pass-123"})
    assert response.status_code == 200
    assert client.get("/me").json["role"] == "manager"
    assert len(client.get("/products").json["products"]) == 4


@pytest.mark.redis
def test_seed_demo_in_production_makes_passwords_nobody_knows(production_env, redis_server):
    production_env["REDIS_URL"] = redis_server.url
    app = create_app(load_config(production_env))
    with app.app_context():
        db.create_all()
    output = app.test_cli_runner().invoke(args=["seed-demo"]).output
    assert "manager-pass-123" not in output and "customer-pass-123" not in output
    assert "shown this once" in output
    password = re.search(r"demo_manager / (\S+)", output).group(1)
    client = app.test_client()
    known = client.post("/login", json={"username": "demo_manager", "password": "manager-pass-123"})
    assert known.status_code == 401
    assert client.post("/login", json={"username": "demo_manager", "password": password}).status_code == 200
    again = app.test_cli_runner().invoke(args=["seed-demo"]).output
    assert password not in again
    app.extensions["redis"].close()


def test_a_sentinel_url_is_read_as_documented(production_env):
    production_env["REDIS_URL"] = "redis+sentinel://:p%40ss@h1:26379,[::1]:26380/store/2"
    production_env["REDIS_SENTINEL_PASSWORD"] = "sentinels-own"
    config = load_config(production_env)
    assert config.REDIS_SENTINEL == ([("h1", 26379), ("::1", 26380)], "store", 2, "p@ss")
    assert config.REDIS_SENTINEL_PASSWORD == "sentinels-own"
    production_env["REDIS_URL"] = "redis+sentinel://h1:26379/store"
    assert load_config(production_env).REDIS_SENTINEL.db == 0


@pytest.mark.parametrize(
    "url", ["redis+sentinel://h1/store", "redis+sentinel://h1:1/", "redis+sentinel://h1:1/s/x"]
)
def test_a_sentinel_url_that_is_not_as_documented_is_refused(production_env, url):
    production_env["REDIS_URL"] = url
    with pytest.raises(ConfigError, match="REDIS_URL"):
        load_config(production_env)
