"""The one place error JSON is built: {"error": ..., "details": {field: [messages]}}, and the one
translation of Redis and database faults into a 503."""

import logging

from apiflask import APIFlask, abort
from apiflask.exceptions import HTTPError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from werkzeug.exceptions import InternalServerError

from .extensions import db
from .metrics import count_outage
from .redis.throttle import TooManyAttempts

log = logging.getLogger(__name__)

# Seconds a client should wait before retrying while a dependency is down.
RETRY_AFTER = "1"

OUTAGES = (
    RedisConnectionError,
    RedisTimeoutError,
    OperationalError,
    InterfaceError,
    PoolTimeoutError,
)


def is_outage(exc: BaseException | None) -> bool:
    """True for errors that mean Redis or the database is unreachable, not a bug."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, OUTAGES)


def _flatten(detail: dict) -> dict:
    """Merge the parsers' per-location messages ({"json": {...}}) into one field map."""
    details: dict = {}
    for location, fields in detail.items():
        if isinstance(fields, dict):
            for field, messages in fields.items():
                details.setdefault(field, []).extend(_as_list(messages))
        else:
            details.setdefault(location, []).extend(_as_list(fields))
    return details


def _as_list(messages) -> list:
    if isinstance(messages, list):
        return messages
    if isinstance(messages, dict):
        # Nested errors, e.g. {"tenant_names": {"0": ["Too long."]}}.
        return [f"{key}: {', '.join(_as_list(value))}" for key, value in messages.items()]
    return [str(messages)]


def commit_or_conflict(message: str) -> None:
    """Commit; a unique name taken by a concurrent request since the check is a 409 too."""
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        abort(409, message)


def error_response(status: int, message: str, details: dict | None = None, headers=None):
    body: dict = {"error": message}
    if details:
        body["details"] = details
    return body, status, headers or {}


def unavailable(cause: BaseException):
    dependency = "redis" if isinstance(cause, RedisError) else "database"
    count_outage(dependency)
    log.warning("dependency unavailable: %s: %r", dependency, cause)
    return error_response(503, "Service temporarily unavailable", headers={"Retry-After": RETRY_AFTER})


def register_error_handlers(app: APIFlask) -> None:
    @app.error_processor
    def http_error(error: HTTPError):
        details = None
        if error.status_code == app.config["VALIDATION_ERROR_STATUS_CODE"] and error.detail:
            details = _flatten(error.detail)
        elif error.status_code == 400:
            # The one 400 a JSON-only API raises: a body that does not parse as JSON.
            return error_response(400, "Malformed JSON body", headers=error.headers)
        return error_response(error.status_code, error.message, details, error.headers)

    @app.errorhandler(TooManyAttempts)
    def too_many_attempts(error: TooManyAttempts):
        return error_response(
            429, "Too many failed attempts; retry later", headers={"Retry-After": str(error.retry_after)}
        )

    # Outages raised inside a view: handled here, so Flask does not log them as crashes.
    for outage in OUTAGES:
        app.register_error_handler(outage, unavailable)

    @app.errorhandler(InternalServerError)
    def server_error(error: InternalServerError):
        # Also reached by outages while opening the session, before any view runs.
        cause = error.original_exception
        if is_outage(cause):
            return unavailable(cause)
        return error_response(500, "Internal server error")
