"""Server-side sessions in Redis: lean, strictly decoded, with idle and absolute timeouts.

Flask-Session's Redis interface does the storage and cookie work; this subclass fills in the
hooks it asks a backend for (`_retrieve_session_data`, `_upsert_session`) and adds what a store
login needs: a decoder that accepts only the msgpack we write (never pickle), a key TTL that
never exceeds the idle timeout, and idle/absolute expiry that costs one Redis GET per request
in the usual case, refreshing the key at most once a minute instead of on every request.
"""

import time
from datetime import UTC, datetime, timedelta

import msgspec
from flask import Flask
from flask_session.base import ServerSideSession
from flask_session.redis import RedisSessionInterface
from werkzeug.http import parse_cookie

from . import pending
from .client import GuardedRedis

# Session values are ints and strings only; anything else is treated as no session.
SessionData = dict[str, int | str | bool]

CREATED = "created_at"
SEEN = "seen_at"
# The idle timer is written back at most this often (and twice per idle timeout at least).
REFRESH_AFTER = 60

# Probes and documentation never read the session, so they must not wait on Redis.
SESSIONLESS_PREFIXES = ("/health", "/docs", "/openapi.json")


class StrictSerializer:
    """Msgpack in and out; data it cannot decode is never handed to pickle."""

    def __init__(self):
        self.encoder = msgspec.msgpack.Encoder()
        self.decoder = msgspec.msgpack.Decoder(SessionData)

    def encode(self, session: ServerSideSession) -> bytes:
        data = dict(session)
        # Always true here (the interface decides lifetimes); 12 bytes saved on every key.
        data.pop("_permanent", None)
        return self.encoder.encode(data)

    def decode(self, data: bytes) -> dict | None:
        try:
            return self.decoder.decode(data)
        except msgspec.DecodeError:
            return None


class StoreSessionInterface(RedisSessionInterface):
    def __init__(self, app: Flask, client: GuardedRedis):
        config = app.config
        super().__init__(
            app,
            client=client,
            key_prefix=config["SESSION_KEY_PREFIX"],
            use_signer=False,
            permanent=True,
            sid_length=config.get("SESSION_ID_LENGTH", 32),
        )
        self.serializer = StrictSerializer()
        self.cookie_name = config["SESSION_COOKIE_NAME"]
        self.idle_timeout = config["SESSION_IDLE_TIMEOUT"]
        self.absolute_timeout = config["SESSION_ABSOLUTE_TIMEOUT"]
        # Well inside the idle window: with a refresh interval as long as the idle timeout (any
        # idle timeout up to a minute) seen_at was never refreshed and activity did not count.
        self.refresh_after = min(REFRESH_AFTER, max(1, self.idle_timeout // 2))

    def store_id_for(self, environ: dict) -> str | None:
        """The Redis key of the session a request will read, or None if it reads none.

        It must be the key Flask-Session's open_session asks `_retrieve_session_data` for, or
        the read sent early goes unused and the session costs a second GET (which
        tests/test_accounts.py counts in Redis).
        """
        if environ.get("PATH_INFO", "").startswith(SESSIONLESS_PREFIXES):
            return None
        sid = parse_cookie(environ).get(self.cookie_name)
        return self.key_prefix + sid if sid else None

    def branch_named_by(self, store_id: str) -> int | None:
        """The branch a session id claims: ids issued at login are "<branch_id>.<random>".

        A hint to read the branch's data along with the session, never trusted: the client
        can change it.
        """
        head, dot, _ = store_id.removeprefix(self.key_prefix).partition(".")
        if dot and head.isascii() and head.isdigit() and len(head) <= 10:
            return int(head)
        return None

    def regenerate(self, session: ServerSideSession) -> None:
        """A new id for the session, naming its branch."""
        super().regenerate(session)
        branch_id = session.get("branch_id")
        if isinstance(branch_id, int):
            session.sid = f"{branch_id}.{session.sid}"

    def _retrieve_session_data(self, store_id: str) -> dict | None:
        data = pending.call(self.client, "GET", store_id)
        return None if data is None else self.serializer.decode(data)

    def open_session(self, app: Flask, request) -> ServerSideSession:
        if request.path.startswith(SESSIONLESS_PREFIXES):
            return self.session_class(sid="", permanent=self.permanent)
        session = super().open_session(app, request)
        if not session:
            return session
        now = int(time.time())
        created, seen = session.get(CREATED), session.get(SEEN)
        if (
            not isinstance(created, int)
            or not isinstance(seen, int)
            or now - created >= self.absolute_timeout
            or now - seen >= self.idle_timeout
        ):
            # Clearing marks the session modified, so saving deletes the key and the cookie.
            session.clear()
        elif now - seen >= self.refresh_after:
            session[SEEN] = now
        return session

    def save_session(self, app: Flask, session: ServerSideSession | None, response) -> None:
        # None when opening the session failed (Redis down); the error response has no session.
        if session is not None:
            super().save_session(app, session, response)

    def _upsert_session(self, session_lifetime: timedelta, session, store_id: str) -> None:
        # Written back only while it exists: a session ended during this request (its user
        # disabled, logged out everywhere) stays ended. A new one is made by UserSessions.create.
        data, ttl = self.stored_form(session)
        self.client.set(store_id, data, ex=ttl, xx=True)

    def stored_form(self, session) -> tuple[bytes, int]:
        """What is kept in Redis for the session, and for how many seconds."""
        now = int(time.time())
        session.setdefault(CREATED, now)
        session.setdefault(SEEN, now)
        remaining = session[CREATED] + self.absolute_timeout - now
        return self.serializer.encode(session), max(1, min(self.idle_timeout, remaining))

    def get_expiration_time(self, app: Flask, session: ServerSideSession):
        # The cookie lives as long as the absolute timeout; the server decides sooner.
        created = session.get(CREATED, int(time.time()))
        return datetime.fromtimestamp(created + self.absolute_timeout, UTC)
