"""Extension objects, created unbound here and bound to the app in create_app."""

from flask import current_app
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


class RouteLimiter(Limiter):
    """Flask-Limiter checking only the routes that declare limits, when they are called.

    Flask-Limiter also checks every request before dispatch, for application-wide and
    blueprint limits. The store has neither, and that check alone cost about a sixth of
    the CPU of a catalogue read. A `limit` decorator checks its route by itself.
    """

    def _check_request_limit(self, callable_name: str | None = None, in_middleware: bool = True) -> None:
        if not in_middleware:
            super()._check_request_limit(callable_name, in_middleware)


# Counters share the app's Redis client. Headers off: the limiter would stamp its
# Retry-After on every login answer, a 503 included; errors.py sets it on the 429 alone.
limiter = RouteLimiter(key_func=client_address, strategy="fixed-window", headers_enabled=False)


def redis_client() -> Redis:
    """The app's one Redis client, shared by sessions, statistics and health checks."""
    return current_app.extensions["redis"]
