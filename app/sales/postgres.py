"""The sale on PostgreSQL: one call of store_purchase(), its own transaction (one round trip).

The function (migrations a41c7e93d0b5) runs the same steps as app/sales/steps.py; the
purchase tests run against both.
"""

from flask import current_app

from ..database import call
from ..money import from_cents
from .sale import Outcome, Receipt, Sale, SaleResult

STORE_PURCHASE = (
    "SELECT * FROM store_purchase(%(user_id)s, %(tenant_id)s, %(branch_id)s, %(product_id)s, "
    "%(quantity)s, %(key)s, %(hash)s, %(lock_timeout_ms)s)"
)


def sell_in_one_call(sale: Sale) -> SaleResult:
    identity = sale.identity
    params = {
        "user_id": identity.user_id,
        "tenant_id": identity.tenant_id,
        "branch_id": identity.branch_id,
        "product_id": sale.product_id,
        "quantity": sale.quantity,
        "key": sale.key,
        "hash": sale.fingerprint,
        "lock_timeout_ms": current_app.config["DATABASE_LOCK_TIMEOUT_MS"],
    }
    row = call(STORE_PURCHASE, params)
    outcome, replayed, purchase_id, product_id, quantity, unit_cents, total_cents = row
    receipt = None
    if purchase_id is not None:
        receipt = Receipt(purchase_id, product_id, quantity, from_cents(unit_cents), from_cents(total_cents))
    return SaleResult(Outcome(outcome), receipt, replayed)
