"""The app's Redis client: short timeouts, and fail-fast for a moment once Redis stops answering."""

import time
from contextlib import contextmanager

from redis import ConnectionPool, Redis
from redis.backoff import ExponentialBackoff
from redis.client import Pipeline
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry
from redis.sentinel import Sentinel


class Breaker:
    """After a timeout or refused connection, refuse every call at once for `cooldown` seconds.

    Without this every request of a stalled period waits out the socket timeout, workers
    pile up and answers stop coming within a second. The first call after the pause tries
    Redis again, so the service recovers by itself.
    """

    def __init__(self, cooldown: float):
        self.cooldown = cooldown
        # Set while Redis is taken as down (a time, once past, tried again); 0 once it answers.
        self.open_until = 0.0
        # Whether the failure that opened the breaker was a timeout rather than a refusal.
        self.stalled = False
        # Told True when Redis is taken as down, False when it answers again (app.metrics).
        self.on_change = None

    @contextmanager
    def guard(self):
        if time.monotonic() < self.open_until:
            raise RedisConnectionError("Redis unavailable; not retrying for a moment")
        try:
            yield
        except (RedisConnectionError, RedisTimeoutError) as error:
            self._open(error)
            raise
        if self.open_until:
            self._close()

    def _open(self, error: Exception) -> None:
        was_closed = not self.open_until
        self.open_until = time.monotonic() + self.cooldown
        self.stalled = isinstance(error, RedisTimeoutError)
        if was_closed and self.on_change is not None:
            self.on_change(True)

    def _close(self) -> None:
        self.open_until = 0.0
        self.stalled = False
        if self.on_change is not None:
            self.on_change(False)

    @contextmanager
    def trial(self):
        """Try Redis even while the breaker is open, and close it if Redis answers.

        For readiness, which reports Redis as it is now: a probe must not be told "down" for
        the rest of a pause that Redis has already ended, and its success lets every other
        call through again at once.
        """
        try:
            yield
        except (RedisConnectionError, RedisTimeoutError) as error:
            self._open(error)
            raise
        if self.open_until:
            self._close()

    def check_not_stalled(self) -> None:
        """Raise at once while Redis is known to be stalled: its last call timed out."""
        if self.stalled and time.monotonic() < self.open_until:
            raise RedisConnectionError("Redis not answering; not retrying for a moment")


class GuardedPipeline(Pipeline):
    breaker: Breaker

    def immediate_execute_command(self, *args, **options):
        with self.breaker.guard():
            return super().immediate_execute_command(*args, **options)

    def execute(self, raise_on_error: bool = True):
        with self.breaker.guard():
            return super().execute(raise_on_error)


class GuardedRedis(Redis):
    """A Redis client whose commands and pipelines share one breaker."""

    def __init__(self, *args, cooldown: float = 1.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.breaker = Breaker(cooldown)

    def execute_command(self, *args, **options):
        with self.breaker.guard():
            return super().execute_command(*args, **options)

    def ping_now(self) -> bool:
        """PING past an open breaker (see Breaker.trial)."""
        with self.breaker.trial():
            return super().execute_command("PING")

    def pipeline(self, transaction: bool = True, shard_hint=None) -> GuardedPipeline:
        pipe = GuardedPipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint)
        pipe.breaker = self.breaker
        return pipe


def connect(config) -> GuardedRedis:
    """The client REDIS_URL names: one server, or the primary Redis Sentinel knows of.

    Behind Sentinel, every connection asks the sentinels where the primary is, so after a
    failover the same client (sessions, pages, sales, the throttle: everything) follows it.
    """
    timeout = config["REDIS_SOCKET_TIMEOUT"]
    options = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        # One quick retry for a dropped connection; a timeout is not retried, so a stalled
        # Redis costs a single timeout.
        "retry": Retry(
            ExponentialBackoff(cap=0.05, base=0.01), retries=1, supported_errors=(RedisConnectionError,)
        ),
    }
    target = config["REDIS_SENTINEL"]
    if target is None:
        return GuardedRedis.from_url(config["REDIS_URL"], **options)
    sentinel_options = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    if config["REDIS_SENTINEL_PASSWORD"]:
        sentinel_options["password"] = config["REDIS_SENTINEL_PASSWORD"]
    sentinel = Sentinel(target.sentinels, sentinel_kwargs=sentinel_options)
    return sentinel.master_for(
        target.service_name, redis_class=GuardedRedis, db=target.db, password=target.password, **options
    )


def stand_in() -> GuardedRedis:
    """The same client on an in-process Redis of its own (fakeredis), for development and tests."""
    import fakeredis  # only where REDIS_URL is unset

    pool = ConnectionPool(connection_class=fakeredis.FakeRedisConnection, server=fakeredis.FakeServer())
    return GuardedRedis(connection_pool=pool)
