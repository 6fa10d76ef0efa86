"""Catalogue pages cached in Redis, one hash per branch, dropped by every write to the branch.

A hit costs one HGET, read along with the session when the route asks for it
(app.redis.pending). A miss WATCHes the branch's hash before querying the database and
stores the page only if nothing touched the hash meanwhile; every write replaces the hash
(never a no-op, so the WATCH always notices), so a page read before a write is never cached
after it.
"""

import logging
from collections.abc import Callable
from contextlib import suppress

from redis.commands.core import Script
from redis.exceptions import RedisError, WatchError

from ..extensions import redis_client
from . import pending

log = logging.getLogger(__name__)

# Bounds what a missed invalidation (Redis unreachable right after a write) can leave stale.
TTL_SECONDS = 60
WRITTEN = "written"
# Pages kept per branch: each distinct limit and cursor a client asks for is a field, so a
# client could otherwise grow the hash without end. Reads past the bound go to the database.
PAGES_PER_BRANCH = 256


# The one way a branch's pages are dropped: the hash is emptied and marked written, never
# left as it was, so that a WATCH in progress always notices. In Lua, so that a write can
# add its own bookkeeping to the same single command. KEYS[1] is the branch's hash.
DROP_PAGES_LUA = f"""
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], '{WRITTEN}', 1)
redis.call('EXPIRE', KEYS[1], {TTL_SECONDS})
"""
_DROP_PAGES = Script(None, DROP_PAGES_LUA.encode())


def pages_key(branch_id: int) -> str:
    """The Redis hash holding a branch's cached pages."""
    return f"catalogue:{branch_id}"


def page_read(branch_id: int, limit: int, after: int | None) -> tuple[str, str, str]:
    """The command that reads a page from the cache."""
    return "HGET", pages_key(branch_id), f"{limit}:{after or 0}"


def cached_page(branch_id: int, limit: int, after: int | None, build: Callable[[], bytes]) -> bytes:
    """The page from the cache, or built by `build` (which queries the database) and cached."""
    command = page_read(branch_id, limit, after)
    client = redis_client()
    page = pending.call(client, *command)
    if page is not None:
        return page
    _, key, field = command
    with client.pipeline(transaction=True) as pipe:
        pipe.watch(key)
        page = build()
        # WatchError: the hash changed meanwhile, or (as redis-py reports it) the connection was
        # lost while watching. Either way the page is answered, and not kept.
        with suppress(WatchError):
            if pipe.hlen(key) <= PAGES_PER_BRANCH:
                pipe.multi()
                pipe.hset(key, field, page)
                pipe.expire(key, TTL_SECONDS)
                pipe.execute()
    return page


def invalidate(branch_id: int) -> None:
    """Drop the branch's cached pages."""
    try:
        _DROP_PAGES(keys=[pages_key(branch_id)], client=redis_client())
    except RedisError as exc:
        log.warning("catalogue of branch %s may be stale for %ss: %r", branch_id, TTL_SECONDS, exc)
