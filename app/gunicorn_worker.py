"""gunicorn's sync worker, answering the requests it refuses itself (400, 414, 431, ...) in JSON.

gunicorn writes those answers as HTML, from Worker.handle_error through gunicorn.util's
write_error, and offers no setting or hook for their body. This worker lets gunicorn decide
and log as usual, catches the answer it writes, and sends the same status as the store's
error JSON instead. It relies on handle_error writing the answer through the socket it is
given (gettimeout, setblocking, sendall); tests/test_served.py fails if that changes.
"""

import json

from gunicorn.workers.sync import SyncWorker


class _Answer:
    """Stands in for the client's socket while gunicorn writes its answer."""

    def __init__(self):
        self.data = b""

    def gettimeout(self):
        return None

    def setblocking(self, flag) -> None:
        pass

    def sendall(self, data: bytes) -> None:
        self.data += data


class JsonErrorsWorker(SyncWorker):
    def handle_error(self, req, client, addr, exc):
        answer = _Answer()
        super().handle_error(req, answer, addr, exc)
        status_line = answer.data.split(b"\r\n", 1)[0].decode("latin-1")
        _, status, reason = (status_line.split(" ", 2) + ["", ""])[:3]
        if not status.isdigit():
            status, reason = "500", "Internal Server Error"
        body = json.dumps({"error": reason}).encode()
        head = (
            f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Cache-Control: no-store\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        try:
            client.sendall(head.encode("latin-1") + body)
        except OSError:
            self.log.debug("Failed to send error message.")
