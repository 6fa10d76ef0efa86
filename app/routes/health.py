"""Liveness and readiness probes."""

from apiflask import APIBlueprint, Schema, fields
from flask import jsonify
from sqlalchemy import text

from ..draining import is_draining
from ..errors import OUTAGES, RETRY_AFTER
from ..extensions import db, redis_client

bp = APIBlueprint("health", __name__, tag="Health")


class HealthOut(Schema):
    status = fields.String()


class ReadyOut(HealthOut):
    redis = fields.String()
    database = fields.String()


@bp.get("/health")
@bp.output(HealthOut)
def health():
    """Alive: touches no dependency and no session."""
    return {"status": "ok"}


def _check(probe) -> str:
    try:
        probe()
    except OUTAGES:
        return "down"
    return "ok"


def _ping_database() -> None:
    # No breaker stands before the database: each probe tries it as it is now.
    try:
        db.session.execute(text("SELECT 1"))
    finally:
        db.session.rollback()


@bp.get("/health/ready")
@bp.output(ReadyOut)
@bp.doc(responses={503: "Redis or the database is down, or the instance is stopping"})
def ready():
    """Ready to serve: Redis and the database both answer."""
    parts = {"redis": _check(redis_client().ping_now), "database": _check(_ping_database)}
    down = [name for name, state in parts.items() if state != "ok"]
    if not down and not is_draining():
        return {"status": "ok", **parts}
    error = f"{' and '.join(down)} unavailable" if down else "stopping"
    # A finished response: APIFlask would otherwise pass a tuple's body through ReadyOut.
    response = jsonify(status="down" if down else "stopping", error=error, **parts)
    response.status_code = 503
    response.headers["Retry-After"] = RETRY_AFTER
    return response
