"""Extension objects, created unbound here and bound to the app in create_app."""

from functools import wraps

from flask import Flask, current_app, g
from flask_limiter import Limiter
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from redis import Redis
from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

from .ratelimits import client_address

# Stable constraint names keep migrations reproducible across databases.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


# Views commit once and then answer from the objects they hold; reloading them after the
# commit would cost a query per object for nothing.
db = SQLAlchemy(model_class=Base, session_options={"expire_on_commit": False})
migrate = Migrate()


# Set on `g` when a route's limits are checked.
LIMITS_CHECKED = "limits_checked"


class RouteLimiter(Limiter):
    """Flask-Limiter doing its work only for the routes that declare limits.

    Flask-Limiter hooks into every request: before dispatch, to check application-wide and
    blueprint limits, which the store does not have; after it, for the deductions and
    headers of the limits the request checked. The first cost about a sixth of the CPU of
    a catalogue read, and the others a twentieth of a purchase's. A `limit` decorator checks
    its route by itself; the hooks after the request run only when it did.
    """

    def init_app(self, app: Flask) -> None:
        super().init_app(app)
        app.before_request_funcs[None] = [
            hook for hook in app.before_request_funcs.get(None, []) if not self._owns(hook)
        ]
        for hooks in (app.after_request_funcs, app.teardown_request_funcs):
            hooks[None] = [
                self._when_checked(hook) if self._owns(hook) else hook for hook in hooks.get(None, [])
            ]

    def _owns(self, hook) -> bool:
        # A bound method of this limiter, or a partial given it.
        return getattr(hook, "__self__", None) is self or self in getattr(hook, "args", ())

    @staticmethod
    def _when_checked(hook):
        @wraps(hook)
        def run_when_checked(*args):
            if g.get(LIMITS_CHECKED):
                return hook(*args)
            # An after-request hook passes the response on; a teardown's result is unused.
            return args[0] if args else None

        return run_when_checked

    def _check_request_limit(self, callable_name: str | None = None, in_middleware: bool = True) -> None:
        g.setdefault(LIMITS_CHECKED, True)
        super()._check_request_limit(callable_name, in_middleware)


# Counters share the app's Redis client. Headers off: the limiter would stamp its
# Retry-After on every login answer, a 503 included; errors.py sets it on the 429 alone.
limiter = RouteLimiter(key_func=client_address, strategy="fixed-window", headers_enabled=False)


def redis_client() -> Redis:
    """The app's one Redis client, shared by sessions, statistics and health checks."""
    return current_app.extensions["redis"]
