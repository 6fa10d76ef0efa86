"""Extension objects, created unbound here and bound to the app in create_app."""

from flask import current_app, request
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
# Only routes that ask for it are limited; counters share the app's Redis client.
# Headers off: the limiter would stamp its Retry-After on every login answer, a 503 included;
# errors.py sets it on the 429 alone.
limiter = Limiter(key_func=client_address, strategy="fixed-window", headers_enabled=False)


@limiter.request_filter
def _unlimited_route() -> bool:
    # Only /login has limits; skip the limiter's per-request bookkeeping everywhere else.
    return request.endpoint != "accounts.login"


def redis_client() -> Redis:
    """The app's one Redis client, shared by sessions, statistics and health checks."""
    return current_app.extensions["redis"]
