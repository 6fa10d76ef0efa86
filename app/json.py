"""JSON responses that write exact amounts as numbers."""

from decimal import Decimal

from flask.json.provider import DefaultJSONProvider


class StoreJSONProvider(DefaultJSONProvider):
    sort_keys = False

    @staticmethod
    def default(o):
        if isinstance(o, Decimal):
            # Amounts have two decimals and stay far below 2**53 cents, so the float
            # prints back as exactly the stored decimal.
            return float(o)
        return DefaultJSONProvider.default(o)
