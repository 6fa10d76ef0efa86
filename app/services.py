"""Rules that span several rows, each with one transaction boundary."""

import logging

from redis.exceptions import RedisError
from sqlalchemy import func, select, update

from .access import Identity, live_products
from .extensions import db, redis_client
from .models import Product, Purchase

log = logging.getLogger(__name__)


class ProductNotFound(Exception):
    pass


class InsufficientStock(Exception):
    pass


def buy(identity: Identity, product_id: int, quantity: int) -> Purchase:
    """Sell `quantity` units of a product of the buyer's branch, or raise.

    The stock check and the decrement are one UPDATE, so concurrent buyers can never
    take more than there is, on PostgreSQL and SQLite alike; the purchase row is
    written in the same transaction with a snapshot of the name and price.
    """
    sold = db.session.execute(
        update(Product)
        .where(
            Product.id == product_id,
            Product.branch_id == identity.branch_id,
            Product.deleted_at.is_(None),
            Product.stock >= quantity,
        )
        .values(stock=Product.stock - quantity)
        .returning(Product.name, Product.price)
        .execution_options(synchronize_session=False)
    ).one_or_none()
    if sold is None:
        db.session.rollback()
        exists = db.session.scalar(
            live_products(identity.branch_id).with_only_columns(Product.id).where(Product.id == product_id)
        )
        raise InsufficientStock if exists else ProductNotFound
    purchase = Purchase(
        tenant_id=identity.tenant_id,
        branch_id=identity.branch_id,
        user_id=identity.user_id,
        product_id=product_id,
        product_name=sold.name,
        unit_price=sold.price,
        quantity=quantity,
        total=sold.price * quantity,
    )
    db.session.add(purchase)
    db.session.commit()
    record_sale(identity.branch_id, product_id, quantity)
    return purchase


def top_products_key(branch_id: int) -> str:
    return f"top-products:{branch_id}"


def record_sale(branch_id: int, product_id: int, quantity: int) -> None:
    """Count committed units in the branch's ranking; `rebuild-top-products` repairs a miss."""
    try:
        redis_client().zincrby(top_products_key(branch_id), quantity, product_id)
    except RedisError:
        log.warning("top products of branch %s missed a sale; rebuild them", branch_id, exc_info=True)


def top_products(branch_id: int, limit: int) -> list[dict]:
    ranked = redis_client().zrevrange(top_products_key(branch_id), 0, limit - 1, withscores=True)
    ids = [int(member) for member, _ in ranked]
    names = dict(
        db.session.execute(
            select(Product.id, Product.name).where(Product.id.in_(ids), Product.branch_id == branch_id)
        ).all()
    )
    return [
        {"product_id": int(member), "name": names[int(member)], "units_sold": int(score)}
        for member, score in ranked
        if int(member) in names
    ]


def rebuild_top_products() -> int:
    """Recount every branch's ranking from the purchases table; returns the branches written."""
    totals = db.session.execute(
        select(Purchase.branch_id, Purchase.product_id, func.sum(Purchase.quantity))
        .group_by(Purchase.branch_id, Purchase.product_id)
    ).all()
    by_branch: dict[int, dict[str, int]] = {}
    for branch_id, product_id, units in totals:
        by_branch.setdefault(branch_id, {})[str(product_id)] = int(units)
    client = redis_client()
    pipe = client.pipeline(transaction=True)
    for key in client.scan_iter(match=top_products_key("*")):
        pipe.delete(key)
    for branch_id, scores in by_branch.items():
        pipe.zadd(top_products_key(branch_id), scores)
    pipe.execute()
    return len(by_branch)
