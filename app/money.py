"""Exact amounts: two decimals in the API, whole cents in the database."""

import math
from decimal import Decimal, InvalidOperation

CENT = Decimal("0.01")
MIN_PRICE = CENT
MAX_PRICE = Decimal("1000000")


def from_cents(cents: int) -> Decimal:
    return (Decimal(cents) / 100).quantize(CENT)


def to_cents(amount: Decimal) -> int:
    return int(Decimal(amount).quantize(CENT) * 100)


def parse_amount(value) -> Decimal:
    """The amount a JSON number stands for; ValueError unless it has at most two decimals."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise ValueError("Must be a number.")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("Must be a finite number.")
    # repr gives the shortest decimal that reads back as this float: what the client wrote.
    amount = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    try:
        cents = amount.quantize(CENT)
    except InvalidOperation:
        raise ValueError(f"Must be at most {MAX_PRICE}.") from None
    if cents != amount:
        raise ValueError("Must have at most two decimals.")
    return cents
