"""Swagger UI's scripts and styles, served by the app so /docs works offline; the document
itself is completed by app.openapi."""

from pathlib import Path

import flask_swagger_ui
from flask import Blueprint, send_from_directory

from .. import openapi

ASSETS = Path(flask_swagger_ui.__file__).parent / "dist"
FILES = ("swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js")

bp = Blueprint("docs_assets", __name__)


@bp.get("/docs/assets/<any(" + ", ".join(f'"{name}"' for name in FILES) + "):filename>")
def asset(filename: str):
    return send_from_directory(ASSETS, filename, max_age=86400)


def configure(app) -> None:
    app.config.update(
        SWAGGER_UI_CSS="/docs/assets/swagger-ui.css",
        SWAGGER_UI_BUNDLE_JS="/docs/assets/swagger-ui-bundle.js",
        SWAGGER_UI_STANDALONE_PRESET_JS="/docs/assets/swagger-ui-standalone-preset.js",
        SECURITY_SCHEMES=openapi.SECURITY_SCHEMES,
    )
    app.register_blueprint(bp)
    app.spec_processor(lambda spec: openapi.complete(app, spec))
