"""The store API: a multi-tenant shop whose logins live in Redis-backed sessions."""

import logging
import os
import select

from apiflask import APIFlask
from sqlalchemy import create_engine, event
from sqlalchemy.exc import DBAPIError, DisconnectionError
from werkzeug.middleware.proxy_fix import ProxyFix

from config import Config, load_config

from . import accounts, catalogue, docs, health, purchases, redis_client, tenants
from .cli import register_commands
from .errors import register_error_handlers
from .extensions import db, limiter, migrate
from .json import StoreJSONProvider
from .schemas import require_json_body
from .services import SALES_ENGINE, finish_recording_sales
from .sessions import StoreSessionInterface, finish_early_read

log = logging.getLogger(__name__)


class StoreAPI(APIFlask):
    """APIFlask, remembering which functions are synchronous.

    Flask checks whether a view is a coroutine function every time it calls one, and
    APIFlask's decorators call through it several times per request; the answer never
    changes for a function.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._synchronous: dict = {}

    def request_context(self, environ):
        # Before Flask builds the request: see StoreSessionInterface.send_early_read.
        self.session_interface.send_early_read(environ)
        return super().request_context(environ)

    def ensure_sync(self, func):
        try:
            return self._synchronous[func]
        except KeyError:
            sync = super().ensure_sync(func)
            # Views, hooks and handlers are a fixed set; the bound is against a leak all the same.
            if len(self._synchronous) < 1024:
                self._synchronous[func] = sync
            return sync


def create_app(config: Config | None = None) -> APIFlask:
    """Build the app: settings, extensions, routes, error handling and commands."""
    app = StoreAPI(
        __name__, title=Config.TITLE, version=Config.VERSION, docs_ui="swagger-ui", static_folder=None
    )
    app.config.from_object(config or load_config())
    app.json = StoreJSONProvider(app)

    if app.config["TRUSTED_PROXY_COUNT"]:
        count = app.config["TRUSTED_PROXY_COUNT"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=count, x_proto=count, x_host=count)
    register_database(app)
    register_redis(app)
    for blueprint in (tenants.bp, accounts.bp, catalogue.bp, purchases.bp, health.bp):
        app.register_blueprint(blueprint)
    docs.configure(app)
    app.before_request(require_json_body)
    app.teardown_request(finish_recording_sales)
    app.teardown_request(finish_early_read)
    register_error_handlers(app)
    register_commands(app)
    return app


def register_database(app: APIFlask) -> None:
    if not app.config.get("SQLALCHEMY_DATABASE_URI"):
        os.makedirs(app.instance_path, exist_ok=True)
        path = os.path.join(app.instance_path, "store.db")
        app.config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{path}"
        log.warning("DATABASE_URL is unset: using SQLite at %s (development only)", path)
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
        # Fail fast when the server is gone or the pool is exhausted rather than hold a worker;
        # libpq's shortest connect timeout is 2 s.
        options = app.config["SQLALCHEMY_ENGINE_OPTIONS"] = {
            **app.config["SQLALCHEMY_ENGINE_OPTIONS"],
            "pool_timeout": 1,
            "connect_args": {"connect_timeout": 2},
        }
        # Purchases run as one function call, each its own transaction: on connections
        # kept in autocommit, that is one round trip with no BEGIN or COMMIT.
        # Its pre-ping looks at the socket instead of sending a query, which on a busy
        # machine cost as much as the sale itself.
        url = app.config["SQLALCHEMY_DATABASE_URI"]
        sales = create_engine(url, isolation_level="AUTOCOMMIT", **{**options, "pool_pre_ping": False})
        event.listen(sales, "checkout", replace_if_ended_by_server)
        app.extensions[SALES_ENGINE] = sales
    db.init_app(app)

    # Runs before Flask-SQLAlchemy's own teardown. Ending the session rolls back on the
    # request's connection; if the server cut that connection after the response was made,
    # the rollback fails, and the answer already given must stand rather than become a 500.
    @app.teardown_appcontext
    def end_database_session(exc):
        try:
            db.session.remove()
        except DBAPIError as error:
            log.warning("discarding a database connection lost at the end of a request: %r", error.orig)
            db.session.registry.clear()

    # Batch mode lets later migrations alter tables on SQLite too.
    migrate.init_app(
        app, db, directory=os.path.join(os.path.dirname(app.root_path), "migrations"), render_as_batch=True
    )


def replace_if_ended_by_server(dbapi_connection, connection_record, connection_proxy) -> None:
    """A pre-ping without a round trip, for a pool whose connections sit idle between calls.

    Nothing arrives on an idle connection unless the server ends it (a restart, a kill, an
    idle timeout), when it sends its farewell and closes: anything to read means the
    connection must not be used. The pool then opens a fresh one. A connection that fails
    after this check fails the call, as it would after a ping.
    """
    if dbapi_connection.closed:
        raise DisconnectionError("connection already closed")
    poller = select.poll()
    poller.register(dbapi_connection.fileno(), select.POLLIN)
    if poller.poll(0):
        raise DisconnectionError("the server ended this idle connection")


def register_redis(app: APIFlask) -> None:
    url = app.config.get("REDIS_URL")
    if url:
        client = redis_client.connect(url, app.config["REDIS_SOCKET_TIMEOUT"])
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
    app.session_interface.prefetchers["GET", "/products"] = catalogue.page_to_prefetch
    if url:
        app.config["RATELIMIT_STORAGE_URI"] = "redis+fallback://"
        app.config["RATELIMIT_STORAGE_OPTIONS"] = {"client": client}
    else:
        app.config["RATELIMIT_STORAGE_URI"] = "memory://"
    limiter.init_app(app)
