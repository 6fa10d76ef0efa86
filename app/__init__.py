"""The store API: a multi-tenant shop whose logins live in Redis-backed sessions."""

import logging
import os

from apiflask import APIFlask
from redis import Redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from config import Config, load_config

from . import accounts, catalogue, docs, health, purchases, tenants
from .cli import register_commands
from .errors import register_error_handlers
from .extensions import db, migrate
from .json import StoreJSONProvider
from .schemas import require_json_body
from .sessions import StoreSessionInterface

log = logging.getLogger(__name__)


def create_app(config: Config | None = None) -> APIFlask:
    """Build the app: settings, extensions, routes, error handling and commands."""
    app = APIFlask(
        __name__, title=Config.TITLE, version=Config.VERSION, docs_ui="swagger-ui", static_folder=None
    )
    app.config.from_object(config or load_config())
    app.json = StoreJSONProvider(app)

    register_database(app)
    register_redis(app)
    for blueprint in (tenants.bp, accounts.bp, catalogue.bp, purchases.bp, health.bp):
        app.register_blueprint(blueprint)
    docs.configure(app)
    app.before_request(require_json_body)
    register_error_handlers(app)
    register_commands(app)
    return app


def register_database(app: APIFlask) -> None:
    if not app.config.get("SQLALCHEMY_DATABASE_URI"):
        os.makedirs(app.instance_path, exist_ok=True)
        path = os.path.join(app.instance_path, "store.db")
        app.config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{path}"
        log.warning("DATABASE_URL is unset: using SQLite at %s (development only)", path)
    db.init_app(app)
    # Batch mode lets later migrations alter tables on SQLite too.
    migrate.init_app(
        app, db, directory=os.path.join(os.path.dirname(app.root_path), "migrations"), render_as_batch=True
    )


def register_redis(app: APIFlask) -> None:
    url = app.config.get("REDIS_URL")
    if url:
        client = Redis.from_url(
            url,
            socket_timeout=app.config["REDIS_SOCKET_TIMEOUT"],
            socket_connect_timeout=app.config["REDIS_SOCKET_TIMEOUT"],
            retry=Retry(ExponentialBackoff(cap=0.05, base=0.01), retries=1),
            health_check_interval=30,
        )
    else:
        import fakeredis

        client = fakeredis.FakeRedis()
        if not app.testing:
            log.warning(
                "REDIS_URL is unset: sessions live in an in-process Redis stand-in "
                "and vanish on restart (development only)"
            )
    if app.config["ADMIN_TOKEN"] is None:
        log.warning("ADMIN_TOKEN is unset: administrator routes are open to anyone (development only)")
    app.extensions["redis"] = client
    app.session_interface = StoreSessionInterface(app, client)
