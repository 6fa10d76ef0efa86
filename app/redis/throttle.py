"""The throttle: failed logins and registrations, counted per client address and per username.

Counted with the `limits` library's fixed windows, in Redis so that every worker sees them.
While Redis is unreachable they are kept in this process's memory instead: limits weaken
(each worker counts alone) but do not vanish.
"""

import logging
import time
from functools import cache

from flask import current_app, request
from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage, Storage
from limits.strategies import FixedWindowRateLimiter
from redis.exceptions import RedisError

from ..names import name_key
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


# Windows, as (setting naming their limits, what they count by).
Windows = list[tuple[str, tuple[str, ...]]]


class Throttle:
    """Counted attempts in fixed windows; an attempt is refused while any of its windows is full.

    Refused attempts are not counted, so a client held back cannot keep a window full.
    """

    def __init__(self, client: GuardedRedis):
        self.limiter = FixedWindowRateLimiter(Counters(client))

    def _items(self, windows: Windows):
        config = current_app.config
        for setting, identifiers in windows:
            for item in _limits(config[setting]):
                yield item, identifiers

    def check(self, windows: Windows) -> None:
        """Raise TooManyAttempts while one of the windows is full."""
        for item, identifiers in self._items(windows):
            if not self.limiter.test(item, *identifiers):
                reset = self.limiter.get_window_stats(item, *identifiers).reset_time
                raise TooManyAttempts(max(1, int(reset - time.time())))

    def count(self, windows: Windows) -> None:
        for item, identifiers in self._items(windows):
            self.limiter.hit(item, *identifiers)


def login_windows(username: str) -> Windows:
    """Failed logins: per client address whatever the username, per username from that address,
    and per username from everywhere.

    The last is looser than twice the one before (fixed windows let one address fill two of
    them back to back), so failures from one address never lock the user out elsewhere; it still
    stops a guess spread over many addresses, by refusing the username everywhere while it holds.
    """
    address, username = client_address(), name_key(username)
    return [
        ("LOGIN_LIMIT_PER_ADDRESS", ("login-address", address)),
        ("LOGIN_LIMIT_PER_USERNAME_AND_ADDRESS", ("login-username-address", username, address)),
        ("LOGIN_LIMIT_PER_USERNAME", ("login-username", username)),
    ]


def registration_windows() -> Windows:
    """Registrations per client address: each costs a password hash, and makes an account."""
    return [("REGISTER_LIMIT_PER_ADDRESS", ("register-address", client_address()))]


def client_address() -> str:
    # ProxyFix (TRUSTED_PROXY_COUNT) puts the client's address here when behind a proxy.
    return request.remote_addr or "unknown"


def throttle() -> Throttle:
    return current_app.extensions["throttle"]
