"""Fields and schemas shared by several routes: ids, names, money, cursors and pages."""

import base64
import binascii

from apiflask import Schema, fields, validators
from marshmallow import ValidationError

from .money import MAX_PRICE, MIN_PRICE, parse_amount
from .names import name_key

# Ids are positive and fit the database's integer column.
MAX_ID = 2**31 - 1


def id_field(**kwargs) -> fields.Integer:
    return fields.Integer(strict=True, validate=validators.Range(min=1, max=MAX_ID), **kwargs)


# Patterns read the same by Python and by the document's ECMA-262 regexes: spelled-out classes
# (the two disagree on \s), and (?!\n) because Python's $ also matches before a final newline.
CONTROL = r"\x00-\x1f\x7f-\x9f"
BLANK = r" \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
# A name: no control characters, and not only blanks.
NAME = rf"^[^{CONTROL}]*[^{CONTROL}{BLANK}][^{CONTROL}]*(?!\n)$"
# Free text (passwords, a username to look up): anything the database can store. Lone
# surrogates cannot be written in UTF-8 at all; app.parsing refuses them with NUL in any field.
TEXT = r"^[^\x00]*$"

# Names keep their key in a column of this length (app.names); compatibility forms can expand.
MAX_NAME_KEY = 400


def _fits_its_key(name: str) -> None:
    if len(name_key(name)) > MAX_NAME_KEY:
        raise ValidationError("Too long once normalized.")


def name_field(**kwargs) -> fields.String:
    return fields.String(
        validate=[
            validators.Length(min=1, max=100),
            validators.Regexp(NAME, error="Must not be blank or hold control characters."),
            _fits_its_key,
        ],
        **kwargs,
    )


def text_field(min_length: int, max_length: int, **kwargs) -> fields.String:
    return fields.String(
        validate=[
            validators.Length(min=min_length, max=max_length),
            validators.Regexp(TEXT, error="Must not contain NUL characters."),
        ],
        **kwargs,
    )


class StrictBoolean(fields.Boolean):
    """true or false, and nothing that merely reads as one ("true", 1)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise ValidationError("Must be true or false.")
        return value


class MoneyField(fields.Decimal):
    """A JSON number with at most two decimals, kept exact (app.money)."""

    def __init__(self, **kwargs):
        super().__init__(places=2, as_string=False, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        try:
            return parse_amount(value)
        except ValueError as error:
            raise ValidationError(str(error)) from None


def price_field(**kwargs) -> MoneyField:
    # Two decimals are said in the description, not as multipleOf: 0.01, which standard
    # validators reject for 19.99 in floating point. With two decimals, > 0 is >= 0.01.
    return MoneyField(
        validate=validators.Range(min=MIN_PRICE, max=MAX_PRICE),
        metadata={"description": "From 0.01 to 1000000, with at most two decimals."},
        **kwargs,
    )


def stock_field(**kwargs) -> fields.Integer:
    return fields.Integer(strict=True, validate=validators.Range(min=0, max=MAX_ID), **kwargs)


class Cursor(fields.String):
    """An opaque position in an id-ordered list."""

    @staticmethod
    def encode(last_id: int) -> str:
        return base64.urlsafe_b64encode(f"id:{last_id}".encode()).decode().rstrip("=")

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
            prefix, _, number = raw.partition(":")
            # ASCII digits of an id the database can hold; a larger one would overflow the query.
            if prefix != "id" or not (number.isascii() and number.isdigit()) or int(number) > MAX_ID:
                raise ValueError
            return int(number)
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise ValidationError("Not a valid cursor.") from None


class PageQuery(Schema):
    limit = fields.Integer(load_default=50, validate=validators.Range(min=1, max=100))
    # An opaque value of a format of its own: only the next_cursor of a previous page is valid.
    cursor = Cursor(
        load_default=None, metadata={"description": "next_cursor of the previous page", "format": "cursor"}
    )


def page_of(rows: list, limit: int) -> tuple[list, str | None]:
    """Split a query result fetched with limit + 1 rows into the page and the next cursor."""
    if len(rows) > limit:
        rows = rows[:limit]
        return rows, Cursor.encode(rows[-1].id)
    return rows, None


class MessageOut(Schema):
    message = fields.String()
