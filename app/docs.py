"""Swagger UI's scripts and styles, served by the app so /docs works offline, and the
OpenAPI document's answers common to every route that reads a JSON body."""

from pathlib import Path

import flask_swagger_ui
from flask import Blueprint, send_from_directory

ASSETS = Path(flask_swagger_ui.__file__).parent / "dist"
FILES = ("swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js")

bp = Blueprint("docs_assets", __name__)

# What every route with a JSON body may answer before its own validation runs (see
# schemas.require_json_body and MAX_CONTENT_LENGTH).
BODY_ERRORS = {
    "400": "Malformed JSON body",
    "413": "Body larger than 1 MiB",
    "415": "Body is not JSON (Content-Type: application/json)",
}
ERROR_SCHEMA_REF = "#/components/schemas/HTTPError"
# Rules of whole bodies that apispec cannot render from a marshmallow schema.
BODY_RULES = {
    # catalogue.ProductPatchIn.not_empty: a PATCH changes at least one field.
    "ProductPatchIn": {"minProperties": 1},
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
    app.spec_processor(document_json_bodies)


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
