"""gunicorn settings, read from the working directory by `gunicorn 'app:create_app()'`.

Sync workers, one request per process, two per CPU: measured against threaded workers
(bench/README.md, "gunicorn settings"), threads served the catalogue and both ceilings slower
and far less steadily. Requests are short, so processes are cheap to keep busy.
"""

import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from config import ConfigError, load_config  # noqa: E402  (the project's, beside this file)

# Settings the app cannot start with stop the master at once, in one line, before any worker
# boots and fails with a traceback of its own.
try:
    load_config()
except ConfigError as error:
    sys.exit(f"error: {error}")

# Metrics in prometheus-client's multiprocess mode: every worker writes its values to files in
# this directory and /metrics sums them (app.metrics). Set before anything imports
# prometheus_client; one fresh directory per instance, as the library asks.
if os.environ.get("METRICS_ENABLED", "1") != "0":
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="store-metrics-")

# gunicorn's own log and its access line in the app's format, each with the request's id.
logger_class = "app.logs.GunicornLogger"
accesslog = os.environ.get("ACCESS_LOG", "-")

bind = os.environ.get("BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2))
# The sync worker, with gunicorn's own refusals (400, 414, 431) in JSON like every other answer.
worker_class = "app.gunicorn_worker.JsonErrorsWorker"
# Answers take milliseconds; a worker silent this long is stuck and gets replaced.
timeout = 30
graceful_timeout = 10
keepalive = 2
# The control socket is one path per host, which several instances on one host would share;
# nothing of the store uses it.
control_socket_disable = True

# Told to stop (SIGTERM), an instance first answers /health/ready with 503 for this long, so that
# the proxy in front (deploy/haproxy.cfg: two failed checks a second apart) stops sending it
# requests; only then does gunicorn close its socket and finish the requests it has. 0 stops at
# once, as gunicorn does, for an instance no proxy checks.
drain_seconds = float(os.environ.get("DRAIN_SECONDS", "3"))


def when_ready(server):
    """Drain before stopping: gunicorn has no setting for it, so the arbiter's SIGTERM handler is
    wrapped. tests/test_scaling.py fails if an instance told to stop drops a request."""
    from app import draining

    stop = server.handle_term

    def leave_rotation_then_stop():
        if drain_seconds <= 0 or draining.is_draining():
            return stop()
        draining.start()
        server.log.info("stopping in %s s; /health/ready answers 503 meanwhile", drain_seconds)
        threading.Timer(drain_seconds, os.kill, (os.getpid(), signal.SIGTERM)).start()

    server.handle_term = leave_rotation_then_stop


def child_exit(server, worker):
    """A worker gone: its live gauges leave the sums (prometheus-client's multiprocess mode)."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    shutil.rmtree(os.environ.get("PROMETHEUS_MULTIPROC_DIR", ""), ignore_errors=True)
