"""Logs: one JSON object a line in production, readable text elsewhere, each with its request id.

A request's id is the client's X-Request-ID when it sent a printable one of up to 128
characters, otherwise a new one. It is answered in the X-Request-ID header, and every line
logged while the request is served carries it, gunicorn's access line included (GunicornLogger,
gunicorn.conf.py's logger_class). A 503 in a client's log is then one search away from the
server's line saying which dependency was down.
"""

import logging
import os
import re
import secrets
import sys
import time

from flask import Flask, has_request_context, request
from flask.logging import default_handler
from gunicorn.glogging import Logger
from pythonjsonlogger.json import JsonFormatter

HEADER = "X-Request-ID"
ENVIRON_ID = "store.request_id"
# When the request reached the app, for app.metrics' latencies.
ENVIRON_ARRIVED = "store.arrived"
GIVEN = re.compile(r"[\x20-\x7e]{1,128}\Z")

JSON_FIELDS = "{asctime}{levelname}{name}{message}{request_id}"
RENAMED = {"asctime": "time", "levelname": "level", "name": "logger"}
TEXT_FORMAT = "%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s"


class RequestIdentity:
    """WSGI middleware: gives each request its id and notes when it arrived."""

    def __init__(self, wsgi_app):
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        given = environ.get("HTTP_X_REQUEST_ID", "")
        request_id = given if GIVEN.match(given) else secrets.token_hex(8)
        environ[ENVIRON_ID] = request_id
        environ[ENVIRON_ARRIVED] = time.perf_counter()

        def start_with_id(status, headers, exc_info=None):
            headers.append((HEADER, request_id))
            return start_response(status, headers, exc_info)

        return self.wsgi_app(environ, start_with_id)


class WithRequestId(logging.Filter):
    """Adds the id of the request being served (or "-") to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request.environ.get(ENVIRON_ID, "-") if has_request_context() else "-"
        return True


def formatter(as_json: bool) -> logging.Formatter:
    if as_json:
        return JsonFormatter(JSON_FIELDS, style="{", rename_fields=RENAMED)
    return logging.Formatter(TEXT_FORMAT)


def as_json(app_env: str | None) -> bool:
    """JSON in production (the default environment), text for people elsewhere."""
    return (app_env or "production") == "production"


def configure(app: Flask) -> None:
    """The app's log lines, through one handler of the app's logger (replacing Flask's)."""
    logger = app.logger
    logger.removeHandler(default_handler)
    for handler in [h for h in logger.handlers if getattr(h, "_store", False)]:
        logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._store = True
    handler.setFormatter(formatter(as_json(app.config["APP_ENV"])))
    handler.addFilter(WithRequestId())
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


class GunicornLogger(Logger):
    """gunicorn's logs in the app's format; the access line as a record of its own fields."""

    def setup(self, cfg):
        super().setup(cfg)
        shared = formatter(as_json(os.environ.get("APP_ENV")))
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.setFormatter(shared)
                handler.addFilter(WithRequestId())

    def access(self, resp, req, environ, request_time):
        if not self.access_log_enabled:
            return
        self.access_log.info(
            "%s %s %s",
            environ.get("REQUEST_METHOD"),
            environ.get("RAW_URI") or environ.get("PATH_INFO"),
            resp.status_code,
            extra={
                "request_id": environ.get(ENVIRON_ID, "-"),
                "method": environ.get("REQUEST_METHOD"),
                "path": environ.get("PATH_INFO"),
                "status": resp.status_code,
                "duration_ms": round(request_time.total_seconds() * 1000, 2),
                "remote_addr": environ.get("REMOTE_ADDR"),
                "bytes": getattr(resp, "sent", None),
            },
        )
