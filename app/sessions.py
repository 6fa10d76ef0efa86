"""Server-side sessions in Redis: lean, strictly decoded, with idle and absolute timeouts.

Flask-Session's Redis interface does the storage and cookie work. This subclass adds
what a store login needs: a decoder that accepts only the msgpack we write (never
pickle), a key TTL that never exceeds the idle timeout, and idle/absolute expiry
that costs one Redis GET per request in the usual case, refreshing the key at most
once a minute instead of writing it back on every request.
"""

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import msgspec
from flask import Flask, g
from flask_session.base import ServerSideSession
from flask_session.redis import RedisSessionInterface
from redis import Redis

# Session values are ints and strings only; anything else is treated as no session.
SessionData = dict[str, int | str | bool]

CREATED = "created_at"
SEEN = "seen_at"

# Probes and documentation never read the session, so they must not wait on Redis.
SESSIONLESS_PREFIXES = ("/health", "/docs", "/openapi.json")

# Given the branch a session id names, the (hash, field) in Redis that this request will read,
# or None; see StoreSessionInterface.prefetchers.
Prefetcher = Callable[[int], tuple[str, str] | None]


def branch_hint(sid: str) -> int | None:
    """The branch a session id names: ids issued at login are "<branch_id>.<random>"."""
    head, dot, _ = sid.partition(".")
    if dot and head.isascii() and head.isdigit() and len(head) <= 10:
        return int(head)
    return None


def prefetched(key: str, field: str) -> tuple[bool, bytes | None]:
    """Whether this field was read along with the session, and its value if so."""
    found = g.get("prefetched", {})
    return ((key, field) in found), found.get((key, field))


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
        # A read that knows what it will need from Redis fetches it in the session's round
        # trip. The branch comes from the session id, which the client could change: whoever
        # uses a prefetched value checks it against the session's own branch.
        self.prefetchers: list[Prefetcher] = []

    def regenerate(self, session: ServerSideSession) -> None:
        if session:
            self._delete_session(self._get_store_id(session.sid))
            sid = self._generate_sid(self.sid_length)
            branch_id = session.get("branch_id")
            session.sid = f"{branch_id}.{sid}" if isinstance(branch_id, int) else sid
            session.modified = True

    def _retrieve_session_data(self, store_id: str) -> dict | None:
        target = self._prefetch_target(store_id)
        if target is None:
            data = self.client.get(store_id)
        else:
            with self.client.pipeline(transaction=False) as pipe:
                data, value = pipe.get(store_id).hget(*target).execute()
            g.prefetched = {target: value}
        return None if data is None else self.serializer.decode(data)

    def _prefetch_target(self, store_id: str) -> tuple[str, str] | None:
        branch_id = branch_hint(store_id.removeprefix(self.key_prefix))
        if branch_id is None:
            return None
        for prefetcher in self.prefetchers:
            target = prefetcher(branch_id)
            if target is not None:
                return target
        return None

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
