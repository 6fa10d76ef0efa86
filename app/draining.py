"""An instance told to stop leaves its load balancer's rotation before it stops serving.

gunicorn closes its listening socket as soon as it is told to stop (SIGTERM), and the requests a
proxy had already sent to it are reset. gunicorn.conf.py makes SIGTERM drain first: this flag,
shared by the master with every worker it forks, turns /health/ready to 503 so the proxy stops
sending new requests, and the master stops as usual once the proxy has noticed.
"""

import multiprocessing

# Shared memory, made before gunicorn forks its workers; a plain flag elsewhere.
_draining = multiprocessing.Value("b", 0, lock=False)


def start() -> None:
    _draining.value = 1


def is_draining() -> bool:
    return bool(_draining.value)
