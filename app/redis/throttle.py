"""The login throttle: failed logins counted per client address and per username.

Counted with the `limits` library's fixed windows, in Redis so that every worker sees them.
While Redis is unreachable they are kept in this process's memory instead: limits weaken
(each worker counts alone) but do not vanish. Only failures count, and a request is refused
while any of its windows is full.
"""

import logging
import time
from functools import cache

from flask import current_app, request
from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage, Storage
from limits.strategies import FixedWindowRateLimiter
from redis.exceptions import RedisError

from .client import GuardedRedis

log = logging.getLogger(__name__)

KEY_PREFIX = "throttle:"


class TooManyAttempts(Exception):
    """A window of the throttle is full: answered 429, to be retried after `retry_after` seconds."""

    def __init__(self, retry_after: int):
        super().__init__(retry_after)
        self.retry_after = retry_after


class Counters(Storage):
    """A `limits` storage on the app's Redis client, counting in memory while Redis is down.

    The app's client fails fast while Redis is unavailable, so falling back costs nothing
    after the first timeout.
    """

    STORAGE_SCHEME = None

    def __init__(self, client: GuardedRedis):
        super().__init__()
        self.client = client
        self.memory = MemoryStorage()

    @property
    def base_exceptions(self):
        return RedisError

    def _in_redis(self, method: str, *args):
        try:
            return getattr(self, f"_redis_{method}")(*args)
        except RedisError as exc:
            # A Redis that hangs rather than refuses would hold the login's session write too:
            # a 503 now, rather than after the password hash.
            self.client.breaker.check_not_stalled()
            log.warning("login attempts counted in memory while Redis is unavailable: %r", exc)
            return getattr(self.memory, method)(*args)

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        return self._in_redis("incr", key, expiry, amount)

    def get(self, key: str) -> int:
        return self._in_redis("get", key)

    def get_expiry(self, key: str) -> float:
        return self._in_redis("get_expiry", key)

    def clear(self, key: str) -> None:
        self._in_redis("clear", key)

    def check(self) -> bool:
        return True

    def reset(self) -> int | None:
        self.memory.reset()
        return None

    def _redis_incr(self, key: str, expiry: int, amount: int) -> int:
        # The window starts with its first count and ends with the key.
        with self.client.pipeline(transaction=True) as pipe:
            pipe.set(KEY_PREFIX + key, 0, ex=expiry, nx=True).incrby(KEY_PREFIX + key, amount)
            return pipe.execute()[1]

    def _redis_get(self, key: str) -> int:
        return int(self.client.get(KEY_PREFIX + key) or 0)

    def _redis_get_expiry(self, key: str) -> float:
        return max(self.client.ttl(KEY_PREFIX + key), 0) + time.time()

    def _redis_clear(self, key: str) -> None:
        self.client.delete(KEY_PREFIX + key)


@cache
def _limits(setting: str) -> list[RateLimitItem]:
    return parse_many(setting)


class LoginThrottle:
    """Failed logins per client address (LOGIN_LIMIT_PER_ADDRESS) and per username
    (LOGIN_LIMIT_PER_USERNAME), whatever its case."""

    def __init__(self, client: GuardedRedis):
        self.limiter = FixedWindowRateLimiter(Counters(client))

    def _windows(self, username: str):
        config = current_app.config
        address = client_address()
        for item in _limits(config["LOGIN_LIMIT_PER_ADDRESS"]):
            yield item, ("login-address", address)
        for item in _limits(config["LOGIN_LIMIT_PER_USERNAME"]):
            yield item, ("login-username", username.lower())

    def check(self, username: str) -> None:
        """Raise TooManyAttempts while a window of this caller or username is full."""
        for item, identifiers in self._windows(username):
            if not self.limiter.test(item, *identifiers):
                reset = self.limiter.get_window_stats(item, *identifiers).reset_time
                raise TooManyAttempts(max(1, int(reset - time.time())))

    def failed(self, username: str) -> None:
        """Count a failed login in every window."""
        for item, identifiers in self._windows(username):
            self.limiter.hit(item, *identifiers)


def client_address() -> str:
    # ProxyFix (TRUSTED_PROXY_COUNT) puts the client's address here when behind a proxy.
    return request.remote_addr or "unknown"


def login_throttle() -> LoginThrottle:
    return current_app.extensions["login_throttle"]
