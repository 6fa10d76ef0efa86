"""gunicorn settings, read from the working directory by `gunicorn 'app:create_app()'`.

Sync workers, one request per process, two per CPU: measured against threaded workers
(bench/README.md, "gunicorn settings"), threads served the catalogue and both ceilings slower
and far less steadily. Requests are short, so processes are cheap to keep busy.
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
