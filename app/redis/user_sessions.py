"""Each user's live sessions, known to Redis: one hash per user, of handle to session id.

Kept at login (a session and its entry are written together), logout and password change, and
read only by the routes that manage sessions: a request's own session still costs one GET. So
ending every session of a user is a few commands, not a scan. The hash expires no later than
the longest a session can live; entries of sessions that expired are dropped as they are listed.

A handle is an HMAC of the session id under SECRET_KEY: it names a session to its user without
revealing the id, and nobody holding a cookie can work out its handle.
"""

import base64
import hashlib
import hmac

from flask import current_app
from flask_session.base import ServerSideSession

from .sessions import CREATED, SEEN, StoreSessionInterface

INDEX_PREFIX = "user-sessions:"


def index_key(user_id: int) -> str:
    return f"{INDEX_PREFIX}{user_id}"


class UserSessions:
    def __init__(self, interface: StoreSessionInterface, secret: str):
        self.interface = interface
        self.client = interface.client
        self.secret = secret.encode()

    def handle(self, sid: str) -> str:
        digest = hmac.new(self.secret, sid.encode(), hashlib.sha256).digest()[:12]
        return base64.urlsafe_b64encode(digest).decode()

    def create(self, session: ServerSideSession) -> None:
        """Write a new session now, with its entry in its user's hash, in one transaction."""
        data, ttl = self.interface.stored_form(session)
        index = index_key(session["user_id"])
        with self.client.pipeline(transaction=True) as pipe:
            pipe.set(self.interface.key_prefix + session.sid, data, ex=ttl, nx=True)
            pipe.hset(index, self.handle(session.sid), session.sid)
            pipe.expire(index, self.interface.absolute_timeout)
            pipe.execute()

    def forget(self, user_id: int, sid: str) -> None:
        """Drop a session's entry (its key is deleted by the session interface)."""
        self.client.hdel(index_key(user_id), self.handle(sid))

    def _entries(self, user_id: int) -> dict[str, str]:
        stored = self.client.hgetall(index_key(user_id))
        return {handle.decode(): sid.decode() for handle, sid in stored.items()}

    def end(self, user_id: int, keep_sid: str | None = None) -> int:
        """End every session of the user but `keep_sid`; returns how many were ended."""
        entries = {
            handle.decode(): sid.decode() for handle, sid in self.client.hgetall(index_key(user_id)).items()
        }
        doomed = {handle: sid for handle, sid in entries.items() if sid != keep_sid}
        if not doomed:
            return 0
        with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(*(self.interface.key_prefix + sid for sid in doomed.values()))
            pipe.hdel(index_key(user_id), *doomed)
            pipe.execute()
        return len(doomed)

    def end_one(self, user_id: int, handle: str) -> bool:
        """End the user's session of this handle; False if it is not one of their live sessions."""
        sid = self.client.hget(index_key(user_id), handle)
        if sid is None:
            return False
        with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(self.interface.key_prefix + sid.decode())
            pipe.hdel(index_key(user_id), handle)
            deleted, _ = pipe.execute()
        return bool(deleted)

    def live(self, user_id: int) -> list[tuple[str, str, int, int]]:
        """The user's live sessions: (handle, session id, created, last seen), oldest first."""
        entries = {
            handle.decode(): sid.decode() for handle, sid in self.client.hgetall(index_key(user_id)).items()
        }
        if not entries:
            return []
        with self.client.pipeline(transaction=False) as pipe:
            for sid in entries.values():
                pipe.get(self.interface.key_prefix + sid)
            stored = pipe.execute()
        found, gone = [], []
        for (handle, sid), data in zip(entries.items(), stored, strict=True):
            decoded = self.interface.serializer.decode(data) if data is not None else None
            if decoded is None or decoded.get("user_id") != user_id:
                gone.append(handle)
            else:
                found.append((handle, sid, decoded.get(CREATED, 0), decoded.get(SEEN, 0)))
        if gone:
            self.client.hdel(index_key(user_id), *gone)
        return sorted(found, key=lambda entry: entry[2])


def user_sessions() -> UserSessions:
    return current_app.extensions["user_sessions"]
