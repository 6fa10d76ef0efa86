"""Selling: a purchase request settled in one transaction, and the branch's best sellers.

`sell` is the one entry point. PostgreSQL settles a sale with one call of its
store_purchase() function (app/sales/postgres.py); other databases run the same steps as
statements (app/sales/steps.py). Both return the same SaleResult, and only that call differs.
"""

from ..access import Identity
from ..extensions import db
from ..metrics import count_sale
from .postgres import sell_in_one_call
from .ranking import record_sale
from .sale import Outcome, Receipt, Sale, SaleResult
from .steps import sell_step_by_step

__all__ = ["Outcome", "Receipt", "SaleResult", "sell"]


def sell(identity: Identity, product_id: int, quantity: int, key: str | None = None) -> SaleResult:
    """Sell units of a product of the buyer's branch, at most once per idempotency key.

    The outcome and the key are committed together with the purchase, so a retry after any
    fault either finds both or neither.
    """
    sale = Sale(identity, product_id, quantity, key)
    on_postgres = db.engine.dialect.name == "postgresql"
    result = sell_in_one_call(sale) if on_postgres else sell_step_by_step(sale)
    if result.outcome is Outcome.SOLD and not result.replayed:
        record_sale(identity.branch_id, product_id, quantity)
    count_sale(result.outcome, result.replayed)
    return result
