"""Swagger UI's scripts and styles, served by the app so /docs works offline, and the
OpenAPI document's answers common to every route that reads a JSON body."""

from pathlib import Path

import flask_swagger_ui
from flask import Blueprint, send_from_directory

ASSETS = Path(flask_swagger_ui.__file__).parent / "dist"
FILES = ("swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js")

bp = Blueprint("docs_assets", __name__)

# What every route with a JSON body may answer before its own validation runs (see
# app.parsing.JsonParser and MAX_CONTENT_LENGTH).
BODY_ERRORS = {
    "400": "Malformed JSON body",
    "413": "Body larger than 1 MiB",
    "415": "Body is not JSON (Content-Type: application/json)",
}
SCHEMAS = "#/components/schemas/"
ERROR_SCHEMA_REF = f"{SCHEMAS}HTTPError"
# Rules of whole bodies that apispec cannot render from a marshmallow schema.
BODY_RULES = {
    # ProductPatchIn.not_empty and UserPatchIn.not_empty: a PATCH changes at least one field.
    "ProductPatchIn": {"minProperties": 1},
    "UserPatchIn": {"minProperties": 1},
}


@bp.get("/docs/assets/<any(" + ", ".join(f'"{name}"' for name in FILES) + "):filename>")
def asset(filename: str):
    return send_from_directory(ASSETS, filename, max_age=86400)


def configure(app) -> None:
    app.config.update(
        SWAGGER_UI_CSS="/docs/assets/swagger-ui.css",
        SWAGGER_UI_BUNDLE_JS="/docs/assets/swagger-ui-bundle.js",
        SWAGGER_UI_STANDALONE_PRESET_JS="/docs/assets/swagger-ui-standalone-preset.js",
    )
    app.register_blueprint(bp)
    app.spec_processor(lambda spec: merge_duplicate_schemas(document_json_bodies(spec)))


def document_json_bodies(spec: dict) -> dict:
    """Mark JSON bodies required and document the errors a body that is not JSON gets."""
    for name, rules in BODY_RULES.items():
        spec["components"]["schemas"][name].update(rules)
    for item in spec["paths"].values():
        for operation in item.values():
            if not isinstance(operation, dict) or "requestBody" not in operation:
                continue
            operation["requestBody"]["required"] = True
            for status, description in BODY_ERRORS.items():
                content = {"application/json": {"schema": {"$ref": ERROR_SCHEMA_REF}}}
                operation["responses"].setdefault(status, {"description": description, "content": content})
    return spec


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
