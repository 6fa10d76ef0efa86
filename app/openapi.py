"""The OpenAPI document, completed for clients that generate code from it.

APIFlask writes the document from the routes' schemas. This adds what it cannot know: who may
call each operation (read from the access decorators each view carries), every answer an
operation can give with its body and Retry-After, that every field of an answer is present,
and OpenAPI 3.1's spelling of null.
"""

import re

from flask import Flask

SCHEMAS = "#/components/schemas/"
ERROR = {"$ref": f"{SCHEMAS}HTTPError"}
VALIDATION_ERROR = {"$ref": f"{SCHEMAS}ValidationError"}

SECURITY_SCHEMES = {
    "session": {
        "type": "apiKey",
        "in": "cookie",
        "name": "session",
        "description": "The session cookie that POST /login sets.",
    },
    "administrator": {
        "type": "http",
        "scheme": "bearer",
        "description": "The platform administrator's ADMIN_TOKEN.",
    },
}

# What every route with a JSON body may answer before its own validation runs (see
# app.parsing.JsonParser and MAX_CONTENT_LENGTH).
BODY_ERRORS = {
    "400": "Malformed JSON body",
    "413": "Body larger than 1 MiB",
    "415": "Body is not JSON (Content-Type: application/json)",
}
# Rules of whole bodies that apispec cannot render from a marshmallow schema.
BODY_RULES = {
    # ProductPatchIn.not_empty and UserPatchIn.not_empty: a PATCH changes at least one field.
    "ProductPatchIn": {"minProperties": 1},
    "UserPatchIn": {"minProperties": 1},
}
# Operations that touch no dependency, so never answer 503.
NO_DEPENDENCY = {("/health", "get")}
RETRY_AFTER = {
    "Retry-After": {"description": "Seconds to wait before trying again.", "schema": {"type": "integer"}}
}
METHODS = {"get", "put", "post", "delete", "patch"}


def complete(app: Flask, spec: dict) -> dict:
    spec = merge_duplicate_schemas(spec)
    for name, rules in BODY_RULES.items():
        spec["components"]["schemas"][name].update(rules)
    spec["components"]["schemas"]["Readiness"] = readiness_schema()
    security = security_by_operation(app)
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                document_operation(path, method, operation, security.get((path, method), []))
    require_every_answer_field(spec)
    spec = null_as_a_type(spec)
    for item in spec["paths"].values():
        for method, operation in item.items():
            for parameter in operation.get("parameters", []) if method in METHODS else ():
                # A query string has no null: a parameter left out is its default.
                kind = parameter["schema"].get("type")
                if isinstance(kind, list):
                    parameter["schema"]["type"] = [t for t in kind if t != "null"][0]
    return spec


def security_by_operation(app: Flask) -> dict:
    """(path, method) -> the security alternatives its view's access decorator declares."""
    found = {}
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        alternatives = getattr(view, "openapi_security", None)
        if alternatives is None:
            continue
        path = re.sub(r"<(?:[^<>:]+:)?([^<>]+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            found[(path, method.lower())] = alternatives
    return found


def answer(description: str, schema: dict = ERROR, retry: bool = False) -> dict:
    documented = {"description": description, "content": {"application/json": {"schema": schema}}}
    if retry:
        documented["headers"] = RETRY_AFTER
    return documented


def document_operation(path: str, method: str, operation: dict, security: list[dict]) -> None:
    responses = operation["responses"]
    operation["security"] = security
    if "requestBody" in operation:
        operation["requestBody"]["required"] = True
        for status, description in BODY_ERRORS.items():
            responses.setdefault(status, answer(description))
    if "parameters" in operation or "requestBody" in operation:
        responses.setdefault("422", answer("Validation error", VALIDATION_ERROR))
    needs = {name for alternative in security for name in alternative}
    if "session" in needs:
        responses.setdefault("401", answer("User not logged in"))
    if "administrator" in needs and {} not in security:
        responses.setdefault("403", answer("Not allowed to the caller"))
    if "{" in path:
        responses.setdefault("404", answer("Not found"))
    for status in ("429", "503"):
        if status in responses:
            responses[status]["headers"] = RETRY_AFTER
    if (path, method) not in NO_DEPENDENCY:
        responses.setdefault("503", answer("Redis or the database is unavailable; retry later", retry=True))
    responses.setdefault("500", answer("Internal server error"))
    if "422" in responses:
        responses["422"]["content"] = {"application/json": {"schema": VALIDATION_ERROR}}
    if path == "/health/ready":
        responses["503"] = answer("A part is down, or the instance is stopping", READINESS, retry=True)


READINESS = {"$ref": f"{SCHEMAS}Readiness"}


def readiness_schema() -> dict:
    """/health/ready's answer while a part is down or the instance stops: the parts, and why."""
    parts = {name: {"type": "string", "enum": ["ok", "down"]} for name in ("redis", "database")}
    return {
        "type": "object",
        "properties": {"status": {"type": "string"}, "error": {"type": "string"}, **parts},
        "required": ["status", "error", "redis", "database"],
    }


def require_every_answer_field(spec: dict) -> None:
    """Every field of an answer is always there (a null where it has no value), so generated
    clients need not treat each as optional. Request bodies keep their own `required`."""
    schemas = spec["components"]["schemas"]
    answered = set()
    for item in spec["paths"].values():
        for method, operation in item.items():
            if method in METHODS:
                for documented in operation["responses"].values():
                    answered |= set(_refs(documented.get("content", {})))
    seen = set()
    while answered:
        name = answered.pop()
        if name in seen or name not in schemas:
            continue
        seen.add(name)
        schema = schemas[name]
        if name not in ("HTTPError", "ValidationError") and "properties" in schema:
            schema["required"] = list(schema["properties"])
        answered |= set(_refs(schema))


def _refs(node):
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(SCHEMAS):
            yield ref.removeprefix(SCHEMAS)
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def null_as_a_type(node):
    """OpenAPI 3.0's `nullable: true` is 3.1's `"null"` among the types."""
    if isinstance(node, dict):
        node = {key: null_as_a_type(value) for key, value in node.items()}
        if node.pop("nullable", False):
            kind = node.get("type")
            if isinstance(kind, str):
                node["type"] = [kind, "null"]
            if node.get("default", "absent") is None:
                del node["default"]
        return node
    if isinstance(node, list):
        return [null_as_a_type(value) for value in node]
    return node


def merge_duplicate_schemas(spec: dict) -> dict:
    """Refer to each schema by one name.

    APIFlask names a schema again ("ProductOut1") when apispec has already registered it as
    a nested field of another; the copy is dropped and its references renamed.
    """
    schemas = spec["components"]["schemas"]
    renamed: dict[str, str] = {}
    for name in list(schemas):
        first = name.rstrip("0123456789")
        if first != name and schemas.get(first) == schemas[name]:
            renamed[f"{SCHEMAS}{name}"] = f"{SCHEMAS}{first}"
            del schemas[name]
    return _renamed_refs(spec, renamed) if renamed else spec


def _renamed_refs(node, renamed: dict[str, str]):
    if isinstance(node, dict):
        return {
            key: renamed.get(value, value) if key == "$ref" else _renamed_refs(value, renamed)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_renamed_refs(item, renamed) for item in node]
    return node
