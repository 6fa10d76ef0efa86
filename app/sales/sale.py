"""What a sale is asked to do, and what it comes to, in the store's words."""

import hashlib
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import NamedTuple

from ..access import Identity


class Outcome(StrEnum):
    """What a purchase request came to. The first three are kept under its idempotency key."""

    SOLD = "sold"
    OUT_OF_STOCK = "out_of_stock"
    NOT_FOUND = "not_found"
    # The key was first used with another body, or another request with it is still running.
    KEY_REUSED = "key_reused"
    IN_FLIGHT = "in_flight"


class Receipt(NamedTuple):
    """What was sold, at the price it had when its stock was taken."""

    purchase_id: int
    product_id: int
    quantity: int
    unit_price: Decimal
    total: Decimal


@dataclass(frozen=True)
class SaleResult:
    outcome: Outcome
    receipt: Receipt | None = None
    # The kept answer of an earlier request with the same idempotency key.
    replayed: bool = False


@dataclass(frozen=True)
class Sale:
    """One purchase request: who buys what, and under which idempotency key (if any)."""

    identity: Identity
    product_id: int
    quantity: int
    key: str | None

    @property
    def fingerprint(self) -> str:
        """What a retry must repeat for the key's kept answer to be its answer."""
        return hashlib.sha256(f"{self.product_id}:{self.quantity}".encode()).hexdigest()
