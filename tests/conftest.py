"""Fixtures: a fresh app, database and Redis per test, and a client that speaks the store's API."""

import itertools
import shutil
import subprocess

import flask_migrate
import pytest
from sqlalchemy import text

from app import create_app
from app.database import dispose_engines
from app.extensions import db
from config import Config, TestingConfig

from . import servers


@pytest.fixture
def make_app(tmp_path):
    """Builds apps of their own, each on a fresh SQLite file, with the given settings."""
    numbers = itertools.count()

    def make(config_class=TestingConfig, **env):
        # A file, not sqlite://, so that threads in concurrency tests share one database.
        url = f"sqlite:///{tmp_path / f'store{next(numbers)}.db'}"
        app = create_app(config_class({"DATABASE_URL": url, **env}))
        with app.app_context():
            db.create_all()
        return app

    return make


@pytest.fixture
def sqlite_app(make_app):
    return make_app()


@pytest.fixture
def app(sqlite_app):
    return sqlite_app


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def admin(app):
    """Headers of the platform administrator."""
    return {"Authorization": f"Bearer {app.config['ADMIN_TOKEN']}"}


class Store:
    """Builds tenants, users and products through the API itself."""

    def __init__(self, app, admin):
        self.app = app
        self.admin = admin
        self.admin_client = app.test_client()

    def tenant(self, name: str) -> dict:
        response = self.admin_client.post(
            "/register_tenants", json={"tenant_names": [name]}, headers=self.admin
        )
        assert response.status_code == 201, response.json
        return response.json["tenants"][0]

    def branch(self, tenant_id: int, name: str) -> dict:
        response = self.admin_client.post(
            "/branches", json={"tenant_id": tenant_id, "name": name}, headers=self.admin
        )
        assert response.status_code == 201, response.json
        return response.json

    def user(self, username: str, branch_id: int, role: str = "customer", password: str = "password123"):
        response = self.admin_client.post(
            "/register_user",
            json={"username": username, "password": password, "branch_id": branch_id, "role": role},
            headers=self.admin,
        )
        assert response.status_code == 201, response.json
        return response.json["user_id"]

    def login(self, username: str, password: str = "password123"):
        """A new test client holding a logged-in session."""
        client = self.app.test_client()
        response = client.post("/login", json={"username": username, "password": password})
        assert response.status_code == 200, response.json
        return client

    def product(self, branch_id: int, name: str = "Coffee", price=10, stock: int = 10) -> dict:
        response = self.admin_client.post(
            "/products",
            json={"name": name, "price": price, "stock": stock, "branch_id": branch_id},
            headers=self.admin,
        )
        assert response.status_code == 201, response.json
        return response.json


@pytest.fixture
def store(app, admin):
    return Store(app, admin)


@pytest.fixture
def shop(store):
    """One tenant with a branch, a manager, a customer and a product in stock."""
    tenant = store.tenant("acme")
    branch_id = tenant["branches"][0]["id"]
    store.user("manager1", branch_id, role="manager")
    store.user("customer1", branch_id)
    product = store.product(branch_id, "Coffee", price=2.5, stock=10)
    return {
        "tenant_id": tenant["id"],
        "branch_id": branch_id,
        "product": product,
        "manager": store.login("manager1"),
        "customer": store.login("customer1"),
    }


# Real services: PostgreSQL and redis-server owned by this test run. They fail, never skip,
# when the service is missing.


@pytest.fixture(scope="session")
def postgres_url():
    url = servers.create_database()
    app = create_app(TestingConfig({"DATABASE_URL": url}))
    with app.app_context():
        flask_migrate.upgrade()
    dispose_engines(app)
    yield url
    servers.drop_database(url)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    server = servers.RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def own_redis(tmp_path):
    """A redis-server of this test's own, which it may stall, stop and start again."""
    server = servers.RedisServer(tmp_path).start()
    yield server
    server.stop()


@pytest.fixture
def live_app(postgres_url, redis_server):
    """The app on real PostgreSQL and Redis, starting from empty tables and an empty Redis."""
    app = create_app(TestingConfig({"DATABASE_URL": postgres_url, "REDIS_URL": redis_server.url}))
    app.config["PASSWORD_HASH_METHOD"] = Config.PASSWORD_HASH_METHOD
    with app.app_context():
        tables = ", ".join(table.name for table in db.metadata.sorted_tables)
        db.session.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        db.session.commit()
    app.extensions["redis"].flushdb()
    yield app
    dispose_engines(app)
    app.extensions["redis"].close()


@pytest.fixture(params=["sqlite", "postgres"])
def app_on_each_database(request):
    """The app on SQLite with an in-process Redis, then on PostgreSQL and Redis.

    For rules that each database enforces its own way (PostgreSQL sells in one function
    call), so that both give the same answers.
    """
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_app")
    app = request.getfixturevalue("live_app")
    app.config["PASSWORD_HASH_METHOD"] = TestingConfig.PASSWORD_HASH_METHOD
    return app


@pytest.fixture
def live_store(live_app):
    return Store(live_app, {"Authorization": f"Bearer {live_app.config['ADMIN_TOKEN']}"})


@pytest.fixture
def checkout(tmp_path):
    """A copy of the checkout (its files git knows or would add), using this run's virtualenv."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=servers.ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    for name in files.stdout.splitlines():
        target = tmp_path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if (servers.ROOT / name).is_file():
            shutil.copy2(servers.ROOT / name, target)
    (tmp_path / ".venv").symlink_to(servers.ROOT / ".venv")
    return tmp_path
