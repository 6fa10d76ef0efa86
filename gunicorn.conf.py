"""gunicorn settings, read from the working directory by `gunicorn 'app:create_app()'`.

Sync workers, one request per process, two per CPU: measured against threaded workers
(bench/README.md, "gunicorn settings"), threads served the catalogue and both ceilings slower
and far less steadily. Requests are short, so processes are cheap to keep busy.
"""

import multiprocessing
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from config import ConfigError, load_config  # noqa: E402  (the project's, beside this file)

# Settings the app cannot start with stop the master at once, in one line, before any worker
# boots and fails with a traceback of its own.
try:
    load_config()
except ConfigError as error:
    sys.exit(f"error: {error}")

bind = os.environ.get("BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2))
# The sync worker, with gunicorn's own refusals (400, 414, 431) in JSON like every other answer.
worker_class = "app.gunicorn_worker.JsonErrorsWorker"
# Answers take milliseconds; a worker silent this long is stuck and gets replaced.
timeout = 30
graceful_timeout = 10
keepalive = 2
