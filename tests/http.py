"""A tiny HTTP client for tests against a served app (gunicorn), keeping the session cookie."""

import http.client
import json
from http.cookies import SimpleCookie


class HttpClient:
    def __init__(self, port: int, headers: dict | None = None, timeout: float = 10):
        self.port = port
        self.headers = headers or {}
        self.timeout = timeout
        self.cookie: str | None = None

    def request_text(self, method: str, path: str) -> str:
        """The body of an answer that is not JSON (a Prometheus page)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        try:
            conn.request(method, path)
            return conn.getresponse().read().decode()
        finally:
            conn.close()

    def request(self, method: str, path: str, body=None, headers: dict | None = None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        try:
            sent = {**self.headers, **(headers or {})}
            payload = None
            if body is not None:
                payload = json.dumps(body)
                sent["Content-Type"] = "application/json"
            if self.cookie:
                sent["Cookie"] = f"session={self.cookie}"
            conn.request(method, path, body=payload, headers=sent)
            response = conn.getresponse()
            data = response.read()
            set_cookie = response.getheader("Set-Cookie")
            if set_cookie:
                morsel = SimpleCookie(set_cookie).get("session")
                self.cookie = morsel.value if morsel and morsel.value else None
            try:
                parsed = json.loads(data) if data else None
            except ValueError:
                raise AssertionError(f"{method} {path}: {response.status} not JSON: {data[:300]!r}") from None
            return response.status, parsed, response
        finally:
            conn.close()
