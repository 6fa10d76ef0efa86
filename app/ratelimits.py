"""Login throttling with Flask-Limiter: per client address and per username, on failures only.

Counters live in Redis so every worker sees them. While Redis is unreachable they are
kept in this process's memory instead: limits weaken (each worker counts alone) but do
not vanish. Flask-Limiter's own in-memory fallback swaps every route's limits for one
global list, which would drop the per-username limit, so the fallback is done one level
down, in the storage.
"""

import logging

from flask import current_app, request
from limits.storage import MemoryStorage, RedisStorage, Storage
from redis import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)


class RedisWithMemoryFallback(Storage):
    """A limits storage on the app's Redis client that counts in memory while Redis is down.

    The app's client fails fast while Redis is unavailable, so falling back costs nothing
    after the first timeout.
    """

    STORAGE_SCHEME = ["redis+fallback"]

    def __init__(self, uri: str, *, client: Redis, **options):
        super().__init__(uri)
        self.redis = RedisStorage("redis://", connection_pool=client.connection_pool)
        self.redis.storage = client
        self.redis.initialize_storage(uri)
        self.memory = MemoryStorage()

    @property
    def base_exceptions(self):
        return RedisError

    def _call(self, method: str, *args):
        try:
            return getattr(self.redis, method)(*args)
        except RedisError as exc:
            log.warning("rate limit counters kept in memory while Redis is unavailable: %r", exc)
            return getattr(self.memory, method)(*args)

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        return self._call("incr", key, expiry, amount)

    def get(self, key: str) -> int:
        return self._call("get", key)

    def get_expiry(self, key: str) -> float:
        return self._call("get_expiry", key)

    def clear(self, key: str) -> None:
        self._call("clear", key)

    def check(self) -> bool:
        return True

    def reset(self) -> int | None:
        self.memory.reset()
        return self._call("reset")


def client_address() -> str:
    # ProxyFix (TRUSTED_PROXY_COUNT) puts the client's address here when behind a proxy.
    return request.remote_addr or "unknown"


def login_username() -> str:
    body = request.get_json(silent=True)
    name = body.get("username") if isinstance(body, dict) else None
    return f"username:{name.lower()}" if isinstance(name, str) else "username:"


def login_failed(response) -> bool:
    return response.status_code == 401


def per_address_limit() -> str:
    return current_app.config["LOGIN_LIMIT_PER_ADDRESS"]


def per_username_limit() -> str:
    return current_app.config["LOGIN_LIMIT_PER_USERNAME"]
