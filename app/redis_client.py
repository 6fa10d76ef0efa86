"""The app's Redis client: short timeouts, and fail-fast for a moment once Redis stops answering."""

import logging
import threading
import time

from redis import Redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

log = logging.getLogger(__name__)


class GuardedRedis(Redis):
    """A Redis client that, after a timeout or refused connection, fails at once for a moment.

    Without this every request of a stalled period waits out the socket timeout, workers
    pile up and answers stop coming within a second. The first call after the pause tries
    Redis again, so the service recovers by itself.
    """

    def __init__(self, *args, cooldown: float = 1.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.cooldown = cooldown
        self._unavailable_until = 0.0
        self._lock = threading.Lock()

    def execute_command(self, *args, **options):
        if time.monotonic() < self._unavailable_until:
            raise RedisConnectionError("Redis unavailable; not retrying for a moment")
        try:
            return super().execute_command(*args, **options)
        except (RedisConnectionError, RedisTimeoutError):
            with self._lock:
                self._unavailable_until = time.monotonic() + self.cooldown
            raise


def connect(url: str, timeout: float) -> GuardedRedis:
    return GuardedRedis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        # One quick retry for a dropped connection; a timeout is not retried, so a stalled
        # Redis costs a single timeout.
        retry=Retry(
            ExponentialBackoff(cap=0.05, base=0.01), retries=1, supported_errors=(RedisConnectionError,)
        ),
    )
