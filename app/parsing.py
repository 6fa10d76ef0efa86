"""Request parsers: a marshmallow schema loaded from one part of the request, for a view.

APIFlask's `input` parses with webargs, which was about a seventh of a catalogue read's CPU
and a tenth of a purchase's, and read each JSON body twice. These load the schema directly,
answering as APIFlask does: data that does not validate is a 422 with each field's messages.

The OpenAPI document still comes from APIFlask: `input(..., validation=False)` records the
schema on the view function it is given (its `_spec`), which is the function served here;
the wrapper it returns, which would load the data a second time, is not used.
tests/test_openapi.py fails if APIFlask stops documenting bodies and parameters that way.
"""

import json
import re
from functools import wraps

from apiflask import Schema, abort
from flask import request
from marshmallow import EXCLUDE, ValidationError

# Distinct query strings remembered per schema and process; a bound on what a client can fill.
QUERY_CACHE_SIZE = 1024

# Text the database cannot store (NUL), or that is not Unicode text at all: lone surrogates,
# which JSON's \ud800 escapes can spell.
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
UNSTORABLE_MESSAGE = "Must not contain NUL characters or unpaired surrogates."


def unstorable_text(body) -> dict[str, list[str]]:
    """Each top-level field of a JSON body holding text that cannot be stored, anywhere inside it."""
    found: dict[str, list[str]] = {}

    def visit(field: str, value) -> None:
        if isinstance(value, str):
            if UNSTORABLE.search(value):
                found[field] = [UNSTORABLE_MESSAGE]
        elif isinstance(value, list):
            for item in value:
                visit(field, item)
        elif isinstance(value, dict):
            for key, item in value.items():
                visit(field, key)
                visit(field, item)

    if isinstance(body, dict):
        for key, value in body.items():
            visit(key, key)
            visit(key, value)
    else:
        visit("_schema", body)
    return found


class Parser:
    """A schema for one request location; the decorated view gets the loaded data as `arg_name`."""

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

            blueprint.input(self.schema, location=self.location, validation=False)(wrapper)
            return wrapper

        return decorator


class JsonParser(Parser):
    """A JSON body: 415 when it is not JSON, 400 when it does not parse, 413 when over the limit."""

    location = "json"
    arg_name = "json_data"

    def parse(self) -> dict:
        if not request.is_json:
            abort(415, "Request body must be JSON (Content-Type: application/json)")
        # Werkzeug refuses a body over MAX_CONTENT_LENGTH here, with a 413, when its length is
        # declared. A chunked one it cuts at the limit instead; one more byte means it was over.
        data = request.get_data(cache=True)
        if request.content_length is None and len(data) >= request.max_content_length:
            if request.environ["wsgi.input"].read(1):
                abort(413)
        if not data:
            return self.loader.load({})
        try:
            # UTF-8 only, as RFC 8259 asks of JSON between systems.
            body = json.loads(data.decode())
            unstorable = unstorable_text(body)
        except (ValueError, RecursionError):
            # A document nested too deeply, or an integer literal too long to convert, is as
            # malformed as one that does not parse, and must not escape as a 500.
            abort(400, "Malformed JSON body")
        if unstorable:
            raise ValidationError(unstorable)
        return self.loader.load(body)


class QueryParser(Parser):
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

    def known(self, query_string: bytes) -> dict | None:
        """The loaded data of a query string this process has already parsed, or None."""
        return self.parsed.get(query_string)

    def parse(self) -> dict:
        raw = request.query_string
        query = self.parsed.get(raw)
        if query is None:
            # First value of a repeated name, and unknown names ignored.
            query = self.loader.load(request.args.to_dict())
            if len(self.parsed) < QUERY_CACHE_SIZE:
                self.parsed[raw] = query
        return query


class HeaderParser(Parser):
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
