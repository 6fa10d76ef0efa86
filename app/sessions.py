"""Server-side sessions in Redis: lean, strictly decoded, with idle and absolute timeouts.

Flask-Session's Redis interface does the storage and cookie work. This subclass adds
what a store login needs: a decoder that accepts only the msgpack we write (never
pickle), a key TTL that never exceeds the idle timeout, and idle/absolute expiry
that costs one Redis GET per request in the usual case, refreshing the key at most
once a minute instead of writing it back on every request.
"""

import time
from datetime import UTC, datetime, timedelta

import msgspec
from flask import Flask
from flask_session.base import ServerSideSession
from flask_session.redis import RedisSessionInterface
from redis import Redis

# Session values are ints and strings only; anything else is treated as no session.
SessionData = dict[str, int | str | bool]

CREATED = "created_at"
SEEN = "seen_at"

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
    def __init__(self, app: Flask, client: Redis, refresh_after: int = 60):
        config = app.config
        super().__init__(
            app,
            client=client,
            key_prefix=config["SESSION_KEY_PREFIX"],
            use_signer=False,
            permanent=config["SESSION_PERMANENT"],
            sid_length=config.get("SESSION_ID_LENGTH", 32),
        )
        self.serializer = StrictSerializer()
        self.idle_timeout = config["SESSION_IDLE_TIMEOUT"]
        self.absolute_timeout = config["SESSION_ABSOLUTE_TIMEOUT"]
        # Refresh well inside the idle window: with refresh_after == idle_timeout (any idle
        # timeout up to a minute) seen_at was never refreshed and activity did not count.
        self.refresh_after = min(refresh_after, max(1, self.idle_timeout // 2))

    def _retrieve_session_data(self, store_id: str) -> dict | None:
        data = self.client.get(store_id)
        return None if data is None else self.serializer.decode(data)

    def open_session(self, app: Flask, request) -> ServerSideSession:
        if request.path.startswith(SESSIONLESS_PREFIXES):
            return self.session_class(sid=self._generate_sid(self.sid_length), permanent=self.permanent)
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
        now = int(time.time())
        session.setdefault(CREATED, now)
        session.setdefault(SEEN, now)
        remaining = session[CREATED] + self.absolute_timeout - now
        ttl = max(1, min(self.idle_timeout, remaining))
        self.client.set(store_id, self.serializer.encode(session), ex=ttl)

    def get_expiration_time(self, app: Flask, session: ServerSideSession):
        # The cookie lives as long as the absolute timeout; the server decides sooner.
        created = session.get(CREATED, int(time.time()))
        return datetime.fromtimestamp(created + self.absolute_timeout, UTC)
