"""The best-seller ranking of each branch: a sorted set in Redis, counted as sales commit."""

import logging

from redis.exceptions import RedisError
from sqlalchemy import func, select

from ..access import InBranch, scoped
from ..extensions import db, redis_client
from ..models import Product, Purchase
from ..redis import pages, pending

log = logging.getLogger(__name__)


def ranking_key(branch_id: int) -> str:
    return f"top-products:{branch_id}"


# After a committed sale, in one command: the branch's pages dropped as pages.invalidate drops
# them, and the sale counted in the branch's ranking. As a pipeline of four commands, this was
# the purchase's costliest Redis call. Sent whole with EVAL, never by its SHA: a script missing
# from a restarted Redis could only be found out once its reply is read, too late for the
# drop. KEYS[2]: the ranking; ARGV: quantity, product.
RECORD_SALE_LUA = pages.DROP_PAGES_LUA + "redis.call('ZINCRBY', KEYS[2], ARGV[1], ARGV[2])\n"


def record_sale(branch_id: int, product_id: int, quantity: int) -> None:
    """After a committed sale: count it in the branch's ranking and drop its cached catalogue.

    Sent without waiting; its reply is read before the response leaves (app.redis.pending), so
    the buyer's next read sees the sale. If Redis misses it, `rebuild-top-products` repairs the
    ranking and the cached pages expire by themselves.
    """
    keys = (pages.pages_key(branch_id), ranking_key(branch_id))

    def not_counted(exc: RedisError) -> None:
        log.warning("sale in branch %s not counted in Redis (%r); run rebuild-top-products", branch_id, exc)

    pending.send_late(redis_client(), ("EVAL", RECORD_SALE_LUA, 2, *keys, quantity, product_id), not_counted)


def top_products(scope: InBranch, limit: int) -> list[dict]:
    """The branch's best sellers, best first, with their names (deleted products included)."""
    ranked = redis_client().zrevrange(ranking_key(scope.branch_id), 0, limit - 1, withscores=True)
    ids = [int(member) for member, _ in ranked]
    query = scoped(select(Product.id, Product.name).where(Product.id.in_(ids)), Product.branch_id, scope)
    names = dict(db.session.execute(query).all())
    return [
        {"product_id": int(member), "name": names[int(member)], "units_sold": int(score)}
        for member, score in ranked
        if int(member) in names
    ]


def rebuild_top_products() -> int:
    """Recount every branch's ranking from the purchases table; returns the branches written."""
    totals = db.session.execute(
        select(Purchase.branch_id, Purchase.product_id, func.sum(Purchase.quantity)).group_by(
            Purchase.branch_id, Purchase.product_id
        )
    ).all()
    by_branch: dict[int, dict[str, int]] = {}
    for branch_id, product_id, units in totals:
        by_branch.setdefault(branch_id, {})[str(product_id)] = int(units)
    client = redis_client()
    pipe = client.pipeline(transaction=True)
    for key in client.scan_iter(match=ranking_key("*")):
        pipe.delete(key)
    for branch_id, scores in by_branch.items():
        pipe.zadd(ranking_key(branch_id), scores)
    pipe.execute()
    return len(by_branch)
