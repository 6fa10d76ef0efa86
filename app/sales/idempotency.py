"""Idempotency keys of purchases: the answer kept under a key, and forgetting old ones."""

from datetime import timedelta

from sqlalchemy import delete, select

from ..extensions import db
from ..models import IdempotencyKey, Purchase, now_utc
from .sale import Outcome, Receipt, Sale, SaleResult


def kept_answer(sale: Sale) -> SaleResult | None:
    """What the sale's key was first answered, or None when the key is new."""
    kept = db.session.scalar(
        select(IdempotencyKey).where(
            IdempotencyKey.user_id == sale.identity.user_id, IdempotencyKey.key == sale.key
        )
    )
    if kept is None:
        return None
    if kept.request_hash != sale.fingerprint:
        return SaleResult(Outcome.KEY_REUSED)
    receipt = None
    if kept.purchase_id is not None:
        row = db.session.execute(
            select(Purchase.product_id, Purchase.quantity, Purchase.unit_price, Purchase.total).where(
                Purchase.id == kept.purchase_id
            )
        ).one()
        receipt = Receipt(kept.purchase_id, *row)
    return SaleResult(Outcome(kept.outcome), receipt, replayed=True)


def purge_idempotency_keys(older_than: timedelta) -> int:
    """Forget idempotency keys older than `older_than`; returns how many were deleted."""
    result = db.session.execute(
        delete(IdempotencyKey).where(IdempotencyKey.created_at < now_utc() - older_than)
    )
    db.session.commit()
    return result.rowcount
