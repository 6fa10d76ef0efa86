"""The store API: a multi-tenant shop whose logins live in Redis-backed sessions."""

import logging

from apiflask import APIFlask
from werkzeug.middleware.proxy_fix import ProxyFix

from config import Config, ConfigError, load_config

from . import logs, metrics
from .cli import register_commands
from .database import register_database
from .errors import is_outage, register_error_handlers
from .json import StoreJSONProvider
from .redis import client as redis_client
from .redis.pending import SendAhead
from .redis.sessions import StoreSessionInterface
from .redis.throttle import Throttle
from .redis.user_sessions import UserSessions
from .routes import register_routes
from .routes.catalogue import page_read_with_session

log = logging.getLogger(__name__)


class StoreAPI(APIFlask):
    """APIFlask, logging an outage as the one line of its 503 rather than as a crash."""

    def log_exception(self, exc_info) -> None:
        # An outage while opening the session reaches here before its 503 handler, which logs it.
        if not is_outage(exc_info[1]):
            super().log_exception(exc_info)


def create_app(config: Config | None = None) -> APIFlask:
    """Build the app: settings, the database, Redis, routes, error handling and commands."""
    if config is None:
        try:
            config = load_config()
        except ConfigError as error:
            # gunicorn, flask and run.py all stop here: one line, no traceback.
            raise SystemExit(f"error: {error}") from None
    app = StoreAPI(
        __name__, title=Config.TITLE, version=Config.VERSION, docs_ui="swagger-ui", static_folder=None
    )
    app.config.from_object(config)
    app.json = StoreJSONProvider(app)
    register_database(app)
    register_redis(app)
    register_routes(app)
    register_error_handlers(app)
    register_commands(app)
    metrics.register(app)
    logs.configure(app)
    if app.config["TRUSTED_PROXY_COUNT"]:
        count = app.config["TRUSTED_PROXY_COUNT"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=count, x_proto=count, x_host=count)
    # Outermost: every request has its id before anything else logs about it.
    app.wsgi_app = logs.RequestIdentity(app.wsgi_app)
    return app


def register_redis(app: APIFlask) -> None:
    """One client for sessions, pages, sales and the throttle; reads sent ahead of each request."""
    url = app.config.get("REDIS_URL")
    if url:
        client = redis_client.connect(app.config)
    else:
        client = redis_client.stand_in()
        if not app.testing:
            log.warning(
                "REDIS_URL is unset: sessions live in an in-process Redis stand-in "
                "and vanish on restart (development only)"
            )
    if app.config["ADMIN_TOKEN"] is None:
        log.warning(
            "ADMIN_TOKEN is unset: administrator routes are open to clients on this machine "
            "(development only)"
        )
    client.breaker.on_change = metrics.breaker_changed
    app.extensions["redis"] = client
    app.extensions["throttle"] = Throttle(client)
    app.session_interface = StoreSessionInterface(app, client)
    app.extensions["user_sessions"] = UserSessions(app.session_interface, app.config["SECRET_KEY"])
    app.wsgi_app = SendAhead(app.wsgi_app, client, app.session_interface)
    app.wsgi_app.with_session["GET", "/products"] = page_read_with_session
