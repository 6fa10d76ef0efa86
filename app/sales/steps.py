"""The sale on other databases (SQLite in development and tests): store_purchase()'s steps
as statements, in one transaction. The purchase tests run against both."""

from sqlalchemy import insert, update
from sqlalchemy.exc import IntegrityError

from ..access import InBranch, live_products
from ..extensions import db
from ..models import IdempotencyKey, Product, Purchase, now_utc
from .idempotency import kept_answer
from .sale import Outcome, Receipt, Sale, SaleResult


def sell_step_by_step(sale: Sale) -> SaleResult:
    try:
        return _sell(sale)
    except IntegrityError:
        # The same key was committed first by a concurrent request: its answer is the answer.
        db.session.rollback()
        kept = kept_answer(sale) if sale.key is not None else None
        if kept is None:
            raise
        return kept
    finally:
        # Ends the transaction, replays and refusals included, releasing SQLite's lock at once.
        db.session.rollback()


def _sell(sale: Sale) -> SaleResult:
    if sale.key is not None:
        kept = kept_answer(sale)
        if kept is not None:
            return kept
    identity = sale.identity
    # Checks the stock and reads the name and price under the write lock, in one statement:
    # nobody oversells, and the purchase records what the product was when it was sold.
    sold = db.session.execute(
        update(Product)
        .where(
            Product.id == sale.product_id,
            Product.branch_id == identity.branch_id,
            Product.deleted_at.is_(None),
            Product.stock >= sale.quantity,
        )
        .values(stock=Product.stock - sale.quantity)
        .returning(Product.name, Product.price)
        .execution_options(synchronize_session=False)
    ).one_or_none()
    receipt = None
    if sold is not None:
        total = sold.price * sale.quantity
        purchase_id = db.session.execute(
            insert(Purchase)
            .values(
                tenant_id=identity.tenant_id,
                branch_id=identity.branch_id,
                user_id=identity.user_id,
                product_id=sale.product_id,
                product_name=sold.name,
                unit_price=sold.price,
                quantity=sale.quantity,
                total=total,
                created_at=now_utc(),
            )
            .returning(Purchase.id)
        ).scalar_one()
        outcome = Outcome.SOLD
        receipt = Receipt(purchase_id, sale.product_id, sale.quantity, sold.price, total)
    elif db.session.scalar(live_products(InBranch(identity.branch_id)).where(Product.id == sale.product_id)):
        outcome = Outcome.OUT_OF_STOCK
    else:
        outcome = Outcome.NOT_FOUND
    if sale.key is not None:
        db.session.execute(
            insert(IdempotencyKey).values(
                user_id=identity.user_id,
                key=sale.key,
                request_hash=sale.fingerprint,
                outcome=outcome,
                purchase_id=receipt.purchase_id if receipt else None,
                created_at=now_utc(),
            )
        )
    db.session.commit()
    return SaleResult(outcome, receipt)
