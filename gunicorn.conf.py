"""gunicorn settings, read from the working directory by `gunicorn 'app:create_app()'`.

Sync workers, one request per process: a login's scrypt hash holds the interpreter lock
for a fifth of a second, which in a threaded worker would stall every other request of
that worker past Redis's timeouts. Requests are short, so processes are cheap to keep busy.
"""

import multiprocessing
import os

bind = os.environ.get("BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2))
worker_class = "sync"
# Answers take milliseconds; a worker silent this long is stuck and gets replaced.
timeout = 30
graceful_timeout = 10
keepalive = 2
