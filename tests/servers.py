"""Real PostgreSQL databases and redis-server processes that a test run owns."""

import contextlib
import os
import secrets
import shlex
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import psycopg
import pytest
import redis

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """A redis-server on a free port, started and stopped by the test that owns it."""

    def __init__(self, tmp_path, args: list[str] | None = None, password: str | None = None):
        self.port = free_port()
        self.password = password
        self.dir = tmp_path
        self.args = args or ["redis-server", "--save", "", "--appendonly", "no"]
        self.process = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        command = [*self.args, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir)]
        try:
            self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        except FileNotFoundError:
            pytest.fail(f"redis-server is not installed: {shlex.join(command)}")
        client = redis.Redis.from_url(self.url, socket_timeout=1)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return self
            except redis.exceptions.AuthenticationError:
                return self
            except redis.exceptions.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    pytest.fail(f"redis-server did not start: {self.process.stderr.read()!r}")
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process.stderr.close()


def create_database() -> str:
    """A new, empty PostgreSQL database; returns its SQLAlchemy URL."""
    name = f"store_test_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}: {exc}")
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}/{name}"


def drop_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Gunicorn:
    """gunicorn 'app:create_app()' in production mode, configured only by environment variables."""

    def __init__(self, database_url: str, redis_url: str):
        self.port = free_port()
        self.admin_token = secrets.token_urlsafe(32)
        self.env = {
            **os.environ,
            "APP_ENV": "production",
            "SECRET_KEY": secrets.token_urlsafe(48),
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "ADMIN_TOKEN": self.admin_token,
            # No proxy checks it: stop at once.
            "DRAIN_SECONDS": "0",
        }
        self.command = [
            os.path.join(os.path.dirname(sys.executable), "gunicorn"),
            "--config", str(ROOT / "gunicorn.conf.py"),
            "--chdir", str(ROOT),
            "--bind", f"127.0.0.1:{self.port}",
            "app:create_app()",
        ]  # fmt: skip
        self.process = None

    @property
    def admin_headers(self) -> dict:
        return {"Authorization": f"Bearer {self.admin_token}"}

    def start(self) -> "Gunicorn":
        from .http import HttpClient

        # A file, not a pipe: a pipe nobody drains fills up and blocks the workers' logging.
        self.log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            self.command, env=self.env, stdout=subprocess.DEVNULL, stderr=self.log
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                if HttpClient(self.port, timeout=1).request("GET", "/health")[0] == 200:
                    return self
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.process.kill()
                pytest.fail(f"gunicorn did not start: {self.output()[-2000:]}")
            time.sleep(0.1)

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def stop(self) -> None:
        self.process.terminate()
        try:
            # gunicorn gives a busy worker graceful_timeout (10 s) before it kills it.
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            # Reaped here, or the next test fails on the ResourceWarning of a live Popen.
            self.process.wait(10)
            raise
        finally:
            self.log.close()


class CuttingProxy:
    """A TCP proxy in front of a server that can drop a connection as a chosen command passes.

    For faults a real network makes: the command reaches the server, its reply never comes back.
    """

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.cut_after: bytes | None = None
        self.cuts = 0
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self._pipe, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, False), daemon=True).start()

    def _pipe(self, source, sink, from_client: bool) -> None:
        try:
            while data := source.recv(65536):
                if from_client and self.cut_after and self.cut_after in data:
                    self.cut_after = None
                    self.cuts += 1
                    # The client's end goes first, so no reply can reach it; the server runs it.
                    source.shutdown(socket.SHUT_RDWR)
                    sink.sendall(data)
                    break
                sink.sendall(data)
        except OSError:
            pass
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()

    def close(self) -> None:
        self.listener.close()


def wait_for_lock_wait(database_url: str, query_like: str, timeout: float = 10) -> None:
    """Return once a statement matching `query_like` waits for a lock in that database."""
    url = database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(url, autocommit=True) as watcher:
        deadline = time.monotonic() + timeout
        query = "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE %s"
        while not watcher.execute(query, (query_like,)).fetchall():
            assert time.monotonic() < deadline, f"no statement like {query_like!r} waited for a lock"
            time.sleep(0.02)
