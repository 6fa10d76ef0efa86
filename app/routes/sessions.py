"""The caller's own sessions: where they are logged in, and ending one or all of them."""

from datetime import UTC, datetime

from apiflask import APIBlueprint, Schema, abort, fields
from flask import session

from ..access import Identity, end_session, login_required
from ..redis.user_sessions import user_sessions
from ..schemas import MessageOut

bp = APIBlueprint("sessions", __name__, tag="Sessions")


class SessionOut(Schema):
    id = fields.String(metadata={"description": "An opaque handle, never the session id itself."})
    created_at = fields.DateTime()
    last_seen_at = fields.DateTime(metadata={"description": "Refreshed at most once a minute."})
    current = fields.Boolean()


class SessionsOut(Schema):
    sessions = fields.List(fields.Nested(SessionOut))


def _at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


@bp.get("/me/sessions")
@login_required
@bp.output(SessionsOut)
@bp.doc(responses={401: "User not logged in"})
def my_sessions(identity: Identity):
    """The caller's live sessions, oldest first."""
    return {
        "sessions": [
            {
                "id": handle,
                "created_at": _at(created),
                "last_seen_at": _at(seen),
                "current": sid == session.sid,
            }
            for handle, sid, created, seen in user_sessions().live(identity.user_id)
        ]
    }


@bp.delete("/me/sessions/<string(maxlength=64):handle>")
@login_required
@bp.output({}, status_code=204)
@bp.doc(responses={401: "User not logged in", 404: "Not one of the caller's live sessions"})
def end_my_session(identity: Identity, handle: str):
    """End one of the caller's sessions (this one included)."""
    if handle == user_sessions().handle(session.sid):
        end_session()
        return ""
    if not user_sessions().end_one(identity.user_id, handle):
        abort(404, "Session not found")
    return ""


@bp.post("/logout/all")
@login_required
@bp.output(MessageOut)
@bp.doc(responses={401: "User not logged in"})
def logout_everywhere(identity: Identity):
    """End every session of the caller, this one included."""
    user_sessions().end(identity.user_id)
    end_session()
    return {"message": "Logged out everywhere"}
