"""Fields and schemas shared by several routes: money, cursors and pages."""

import base64
import binascii
import json
import math
from decimal import Decimal, InvalidOperation
from functools import wraps

from apiflask import Schema, abort, fields, validators
from flask import current_app, g, request
from marshmallow import EXCLUDE, ValidationError

MAX_PRICE = Decimal("1000000")
CENT = Decimal("0.01")
# Ids are positive and fit the database's integer column.
MAX_ID = 2**31 - 1


def id_field(**kwargs) -> fields.Integer:
    return fields.Integer(strict=True, validate=validators.Range(min=1, max=MAX_ID), **kwargs)


# A character that is not whitespace, spelled out because the document's ECMA-262 regexes and
# Python's disagree on \s: Python also counts \x1c-\x1f and \x85, ECMA-262 also \ufeff.
NOT_BLANK = r"[^\t\n\v\f\r \x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]"


def name_field(**kwargs) -> fields.String:
    return fields.String(
        validate=[
            validators.Length(min=1, max=100),
            validators.Regexp(NOT_BLANK, error="Must not be blank."),
        ],
        **kwargs,
    )


class Money(fields.Decimal):
    """A JSON number with at most two decimals, kept exact."""

    def __init__(self, **kwargs):
        super().__init__(places=2, as_string=False, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
            raise ValidationError("Must be a number.")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValidationError("Must be a finite number.")
        # repr gives the shortest decimal that reads back as this float: what the client wrote.
        amount = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
        try:
            cents = amount.quantize(CENT)
        except InvalidOperation:
            raise ValidationError(f"Must be at most {MAX_PRICE}.") from None
        if cents != amount:
            raise ValidationError("Must have at most two decimals.")
        return cents


def price_field(**kwargs) -> Money:
    return Money(
        validate=validators.Range(min=Decimal("0"), max=MAX_PRICE, min_inclusive=False),
        # apispec leaves out that the Range's minimum is exclusive, and the two decimals.
        metadata={
            "description": "Greater than 0, at most 1000000, two decimals.",
            "exclusiveMinimum": 0,
            "multipleOf": 0.01,
        },
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


# Where require_json_body keeps the body it parsed.
JSON_BODY = "json_body"

# Distinct query strings remembered per schema and process; a bound on what a client can fill.
QUERY_CACHE_SIZE = 1024


class LeanParser:
    """A schema for one request location, loaded without webargs.

    webargs' parsing was about a seventh of a catalogue read's CPU and a tenth of a
    purchase's, and it parsed each JSON body a second time. The decorated view gets the
    loaded data as `arg_name`; data that does not validate is a 422 with each field's
    messages, as webargs gives.
    """

    location = ""
    arg_name = ""
    # Fields the schema does not declare: rejected (a body) or ignored (a query, headers).
    unknown = None

    def __init__(self, schema: type[Schema]):
        self.schema = schema
        self.loader = schema(unknown=self.unknown) if self.unknown else schema()

    def parse(self) -> dict:
        """The current request's data; ValidationError when it does not validate."""
        raise NotImplementedError

    def input(self, blueprint):
        def decorator(view):
            @wraps(view)
            def wrapper(*args, **kwargs):
                try:
                    data = self.parse()
                except ValidationError as error:
                    abort(422, "Validation error", {self.location: error.messages})
                return view(*args, **{self.arg_name: data}, **kwargs)

            # For the OpenAPI document only: APIFlask records the input on the function it
            # decorates; the parsing wrapper it returns is not used.
            blueprint.input(self.schema, location=self.location, validation=False)(wrapper)
            return wrapper

        return decorator


class QueryParser(LeanParser):
    """A query-string schema whose results are remembered for each distinct query string.

    Reads repeat a handful of query strings. Results are shared between requests: read
    them, do not change them.
    """

    location = "query"
    arg_name = "query_data"
    unknown = EXCLUDE

    def __init__(self, schema: type[Schema]):
        super().__init__(schema)
        self.parsed: dict[bytes, dict] = {}

    def parse(self) -> dict:
        raw = request.query_string
        query = self.parsed.get(raw)
        if query is None:
            # First value of a repeated name, and unknown names ignored, as webargs does.
            query = self.loader.load(request.args.to_dict())
            if len(self.parsed) < QUERY_CACHE_SIZE:
                self.parsed[raw] = query
        return query


class HeaderParser(LeanParser):
    """A headers schema: only the headers it declares are read, by their names."""

    location = "headers"
    arg_name = "headers"
    unknown = EXCLUDE

    def __init__(self, schema: type[Schema]):
        super().__init__(schema)
        self.names = [field.data_key or name for name, field in self.loader.load_fields.items()]

    def parse(self) -> dict:
        headers = request.headers
        return self.loader.load({name: headers[name] for name in self.names if name in headers})


class JsonParser(LeanParser):
    """A JSON body schema, loaded from the body that require_json_body parsed."""

    location = "json"
    arg_name = "json_data"

    def parse(self) -> dict:
        # An empty body loads as an empty object, as webargs does.
        return self.loader.load(g.get(JSON_BODY, {}))


def page_of(rows: list, limit: int) -> tuple[list, str | None]:
    """Split a query result fetched with limit + 1 rows into the page and the next cursor."""
    if len(rows) > limit:
        rows = rows[:limit]
        return rows, Cursor.encode(rows[-1].id)
    return rows, None


class MessageOut(Schema):
    message = fields.String()


def require_json_body() -> None:
    """Answer 415 when a route that reads a JSON body is sent anything else, 400 when it does not parse.

    The parsed body is kept for the route's JsonParser.
    """
    view = current_app.view_functions.get(request.endpoint)
    if "body" not in getattr(view, "_spec", {}):
        return
    if not request.is_json:
        abort(415, "Request body must be JSON (Content-Type: application/json)")
    data = request.get_data(cache=True)
    if data:
        try:
            # UTF-8 only, as RFC 8259 asks of JSON between systems.
            setattr(g, JSON_BODY, json.loads(data.decode()))
        except (ValueError, RecursionError):
            # A document nested too deeply, or an integer literal too long to convert, is as
            # malformed as one that does not parse, and must not escape as a 500.
            abort(400, "Malformed JSON body")
