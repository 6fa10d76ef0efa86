"""Rules that span several rows, each with one transaction boundary."""

import hashlib
import logging
from dataclasses import dataclass
from datetime import timedelta

from redis.exceptions import RedisError
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from . import cache
from .access import Identity, live_products
from .extensions import db, redis_client
from .models import IdempotencyKey, Product, Purchase, now_utc

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """What a purchase request answers: the receipt of the purchase, or an error."""

    status: int
    receipt: dict | None = None
    error: str | None = None
    replayed: bool = False


class KeyReused(Exception):
    """The idempotency key was first used with another request body."""


class KeyInFlight(Exception):
    """Another request with the same idempotency key is still running."""


# A sale retries this often when the product's name or price changes under it.
SNAPSHOT_ATTEMPTS = 3


def purchase(identity: Identity, product_id: int, quantity: int, key: str | None = None) -> Outcome:
    """Sell `quantity` units of a product of the buyer's branch, at most once per idempotency key.

    The outcome and the key are committed together with the purchase, so a retry after any
    fault either finds both or neither. Statements are Core, not the ORM's unit of work: this
    is the busiest write of the store.
    """
    remember = _KeyRecorder(identity.user_id, key, product_id, quantity)
    try:
        outcome = _sell_with_retries(identity, product_id, quantity, remember)
        if outcome.replayed:
            return outcome
        db.session.commit()
    except IntegrityError:
        # The same key was written first by a concurrent request (SQLite has no advisory lock).
        db.session.rollback()
        replay = _replay(identity.user_id, key, remember.fingerprint) if key is not None else None
        if replay is None:
            raise
        return replay
    if outcome.receipt is not None:
        record_sale(identity.branch_id, product_id, quantity)
    return outcome


def _sell_with_retries(identity: Identity, product_id: int, quantity: int, remember) -> Outcome:
    for _ in range(SNAPSHOT_ATTEMPTS):
        if remember.key is not None:
            replay = _replay(identity.user_id, remember.key, remember.fingerprint)
            if replay is not None:
                return replay
        outcome = _sell(identity, product_id, quantity, remember)
        if outcome is not None:
            return outcome
        db.session.rollback()  # the product changed between its snapshot and the sale
    return remember(Outcome(409, error="The product changed during the purchase; retry"))


class _KeyRecorder:
    """Writes the outcome under the idempotency key in the current transaction (if there is a key)."""

    def __init__(self, user_id: int, key: str | None, product_id: int, quantity: int):
        self.user_id, self.key = user_id, key
        self.fingerprint = hashlib.sha256(f"{product_id}:{quantity}".encode()).hexdigest()

    def __call__(self, outcome: Outcome) -> Outcome:
        if self.key is not None:
            db.session.execute(
                insert(IdempotencyKey).values(
                    user_id=self.user_id,
                    key=self.key,
                    request_hash=self.fingerprint,
                    status_code=outcome.status,
                    purchase_id=outcome.receipt["purchase_id"] if outcome.receipt else None,
                    error=outcome.error,
                    created_at=now_utc(),
                )
            )
        return outcome


def _replay(user_id: int, key: str, fingerprint: str) -> Outcome | None:
    """The stored outcome of this key, or None when the key is new (and now held by us)."""
    stored_key = select(IdempotencyKey).where(IdempotencyKey.user_id == user_id, IdempotencyKey.key == key)
    if db.session.get_bind().dialect.name == "postgresql":
        # Held until this transaction ends: a concurrent request with the key gets 409, not a
        # wait. Taken in the same round trip as the look-up; a key committed between the two is
        # caught by the unique constraint at commit and replayed then.
        lock_id = int.from_bytes(
            hashlib.blake2b(f"{user_id}:{key}".encode(), digest_size=8).digest(), "big", signed=True
        )
        held, stored_id = db.session.execute(
            select(
                func.pg_try_advisory_xact_lock(lock_id),
                stored_key.with_only_columns(IdempotencyKey.id).scalar_subquery(),
            )
        ).one()
        if not held:
            db.session.rollback()
            raise KeyInFlight
        stored = db.session.get(IdempotencyKey, stored_id) if stored_id else None
    else:
        stored = db.session.scalar(stored_key)
    if stored is None:
        return None
    receipt = _receipt(stored.purchase_id) if stored.purchase_id else None
    db.session.rollback()
    if stored.request_hash != fingerprint:
        raise KeyReused
    return Outcome(stored.status_code, receipt, stored.error, replayed=True)


RECEIPT = (Purchase.product_id, Purchase.quantity, Purchase.unit_price, Purchase.total)


def _receipt(purchase_id: int) -> dict:
    row = db.session.execute(select(*RECEIPT).where(Purchase.id == purchase_id)).one()
    return {"purchase_id": purchase_id, **row._asdict()}


def _sell(identity: Identity, product_id: int, quantity: int, remember) -> Outcome | None:
    """Write the sale; None when the product changed after its snapshot was read.

    Everything but the decrement is written first, so the product's row is locked only from
    the UPDATE to the commit: concurrent buyers of one product queue for as short as possible.
    The UPDATE checks the stock and the snapshot in one statement, so nobody oversells and no
    purchase records a name or price the product no longer had (on PostgreSQL and SQLite).
    """
    snapshot = db.session.execute(
        live_products(identity.branch_id)
        .with_only_columns(Product.name, Product.price, Product.stock)
        .where(Product.id == product_id)
    ).one_or_none()
    if snapshot is None:
        return remember(Outcome(404, error="Product not found"))
    if snapshot.stock < quantity:
        return remember(Outcome(409, error="Insufficient stock"))
    total = snapshot.price * quantity
    purchase_id = db.session.execute(
        insert(Purchase)
        .values(
            tenant_id=identity.tenant_id,
            branch_id=identity.branch_id,
            user_id=identity.user_id,
            product_id=product_id,
            product_name=snapshot.name,
            unit_price=snapshot.price,
            quantity=quantity,
            total=total,
            created_at=now_utc(),
        )
        .returning(Purchase.id)
    ).scalar_one()
    receipt = {
        "purchase_id": purchase_id,
        "product_id": product_id,
        "quantity": quantity,
        "unit_price": snapshot.price,
        "total": total,
    }
    outcome = remember(Outcome(201, receipt))
    decremented = db.session.execute(
        update(Product)
        .where(
            Product.id == product_id,
            Product.branch_id == identity.branch_id,
            Product.deleted_at.is_(None),
            Product.stock >= quantity,
            Product.name == snapshot.name,
            Product.price == snapshot.price,
        )
        .values(stock=Product.stock - quantity)
        .execution_options(synchronize_session=False)
    ).rowcount
    return outcome if decremented == 1 else None


def top_products_key(branch_id: int) -> str:
    return f"top-products:{branch_id}"


def record_sale(branch_id: int, product_id: int, quantity: int) -> None:
    """After a committed sale: count it in the branch's ranking and drop its cached catalogue.

    One round trip. If Redis misses it, `rebuild-top-products` repairs the ranking and the
    catalogue cache expires by itself.
    """
    try:
        with redis_client().pipeline(transaction=False) as pipe:
            pipe.zincrby(top_products_key(branch_id), quantity, product_id)
            cache.invalidate(branch_id, pipe=pipe)
            pipe.execute()
    except RedisError as exc:
        log.warning("sale in branch %s not counted in Redis (%r); run rebuild-top-products", branch_id, exc)


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
        select(Purchase.branch_id, Purchase.product_id, func.sum(Purchase.quantity)).group_by(
            Purchase.branch_id, Purchase.product_id
        )
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


def purge_idempotency_keys(older_than: timedelta) -> int:
    """Forget idempotency keys older than `older_than`; returns how many were deleted."""
    result = db.session.execute(
        delete(IdempotencyKey).where(IdempotencyKey.created_at < now_utc() - older_than)
    )
    db.session.commit()
    return result.rowcount
