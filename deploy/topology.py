#!/usr/bin/env python3
"""The store scaled out on one machine: HAProxy, two app instances, PgBouncer, two Redis
servers watched by three Sentinels, and the machine's PostgreSQL.

    make scale-demo            # starts everything, prints the URL, stops it all on Ctrl-C

Every part runs from this folder's files (haproxy.cfg, pgbouncer.ini, sentinel.conf) and the
project's gunicorn.conf.py, with the Debian packages' binaries. The tests start the same
topology on free ports (Topology(ports=...)); only the files' port numbers and sockets' directory
change.

      clients ──> HAProxy :8080 ──> gunicorn app1.sock ─┐                    ┌─> Redis :6380 (primary)
                  (checks          gunicorn app2.sock ─┼─> Sentinels         │      │ replicates
                   /health/ready)                      │   :26380-26382 ─────┴─> Redis :6381
                                                       └─> PgBouncer :6432 ──> PostgreSQL :5432

The instances listen on Unix sockets (haproxy.cfg says why) in a directory of their own, which
only the user running this can enter.
"""

from __future__ import annotations

import http.client
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

DEPLOY = Path(__file__).resolve().parent
ROOT = DEPLOY.parent
BIN = ROOT / ".venv" / "bin"

# The ports the files name, and what each is.
DEFAULT_PORTS = {
    "haproxy": 8080,
    "pgbouncer": 6432,
    "postgres": 5432,
    "redis1": 6380,
    "redis2": 6381,
    "sentinel1": 26380,
    "sentinel2": 26381,
    "sentinel3": 26382,
}
SERVICE = "store"
# Where haproxy.cfg's server lines look for the instances' sockets.
SOCKETS = "/run/store"
WORKERS = 2  # per instance; haproxy.cfg's maxconn per server is twice this


class Topology:
    def __init__(self, ports: dict | None = None, database: str = "store_demo", workdir: Path | None = None):
        self.ports = {**DEFAULT_PORTS, **(ports or {})}
        self.database = database
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="store-scale-"))
        self.processes: dict[str, subprocess.Popen] = {}
        # Short, as a socket's path must be (108 bytes); mkdtemp makes it 0700.
        self.sockets = Path(tempfile.mkdtemp(prefix="store-sockets-"))
        self.admin_token = secrets.token_urlsafe(32)
        self.secret_key = secrets.token_urlsafe(48)

    # The files, with this topology's ports -------------------------------------------------

    def render(self, name: str) -> str:
        """A file of this folder with each default port, and the sockets' directory, replaced by
        this topology's."""
        renumber = {str(DEFAULT_PORTS[part]): str(port) for part, port in self.ports.items()}
        text = (DEPLOY / name).read_text().replace(f"{SOCKETS}/", f"{self.sockets}/")
        return re.sub(r"\b(" + "|".join(renumber) + r")\b", lambda m: renumber[m.group(1)], text)

    def socket_path(self, n: int) -> Path:
        return self.sockets / f"app{n}.sock"

    def write(self, name: str, text: str) -> Path:
        path = self.workdir / name
        path.write_text(text)
        return path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports['haproxy']}"

    @property
    def redis_url(self) -> str:
        sentinels = ",".join(f"127.0.0.1:{self.ports[f'sentinel{n}']}" for n in (1, 2, 3))
        return f"redis+sentinel://{sentinels}/{SERVICE}/0"

    @property
    def database_url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.ports['pgbouncer']}/{SERVICE}"

    def app_env(self) -> dict:
        return {
            **os.environ,
            "APP_ENV": "production",
            "SECRET_KEY": self.secret_key,
            "ADMIN_TOKEN": self.admin_token,
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "TRUSTED_PROXY_COUNT": "1",
            "WEB_CONCURRENCY": str(WORKERS),
        }

    # Starting and stopping -----------------------------------------------------------------

    def spawn(self, name: str, command: list[str], cwd: Path | None = None, env: dict | None = None):
        # The process writes its own copy of the file descriptor; this one can close at once.
        with open(self.workdir / f"{name}.log", "w") as log:
            self.processes[name] = subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=log)
        return self.processes[name]

    def log(self, name: str) -> str:
        return (self.workdir / f"{name}.log").read_text(errors="replace")

    def start(self) -> Topology:
        try:
            self.start_redis()
            self.start_pgbouncer()
            self.create_database()
            for n in (1, 2):
                self.start_app(n)
            self.start_haproxy()
        except BaseException:
            self.stop()
            raise
        return self

    def start_redis(self) -> None:
        common = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(self.workdir)]
        self.spawn("redis1", ["redis-server", "--port", str(self.ports["redis1"]), *common])
        wait_for(lambda: redis_ping(self.ports["redis1"]), "Redis primary")
        replica = ["--replicaof", "127.0.0.1", str(self.ports["redis1"])]
        self.spawn("redis2", ["redis-server", "--port", str(self.ports["redis2"]), *common, *replica])
        wait_for(lambda: redis_ping(self.ports["redis2"]), "Redis replica")
        conf = self.render("sentinel.conf")
        for n in (1, 2, 3):
            port = self.ports[f"sentinel{n}"]
            path = self.write(f"sentinel{n}.conf", re.sub(r"^port \d+", f"port {port}", conf, flags=re.M))
            self.spawn(f"sentinel{n}", ["redis-server", str(path), "--sentinel", "--dir", str(self.workdir)])
        for n in (1, 2, 3):
            wait_for(lambda n=n: sentinel_knows_primary(self.ports[f"sentinel{n}"]), f"sentinel {n}")

    def start_pgbouncer(self) -> None:
        ini = self.render("pgbouncer.ini").replace("dbname=store", f"dbname={self.database}")
        ini = ini.replace("auth_file = userlist.txt", f"auth_file = {self.workdir / 'userlist.txt'}")
        shutil.copy(DEPLOY / "userlist.txt", self.workdir / "userlist.txt")
        path = self.write("pgbouncer.ini", ini)
        os.chmod(self.workdir, 0o755)
        # PgBouncer refuses to run as root; Debian's PostgreSQL gives it a user to run as.
        run_as = ["-u", "postgres"] if os.geteuid() == 0 else []
        self.spawn("pgbouncer", [binary("pgbouncer"), *run_as, str(path)])
        wait_for(lambda: port_open(self.ports["pgbouncer"]), "PgBouncer")

    def create_database(self) -> None:
        admin = f"postgresql://postgres@127.0.0.1:{self.ports['postgres']}/postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{self.database}"')
        # Through PgBouncer, as the instances will reach it.
        migrate = subprocess.run(
            [str(BIN / "flask"), "--app", "app", "db", "upgrade"],
            cwd=ROOT, env=self.app_env(), capture_output=True, text=True,
        )  # fmt: skip
        if migrate.returncode != 0:
            raise RuntimeError(f"migration failed: {migrate.stderr[-2000:]}")

    def start_app(self, n: int) -> None:
        env = {**self.app_env(), "BIND": f"unix:{self.socket_path(n)}"}
        command = [str(BIN / "gunicorn"), "--config", str(ROOT / "gunicorn.conf.py"), "app:create_app()"]
        self.spawn(f"app{n}", command, cwd=ROOT, env=env)
        wait_for(lambda: ready(UnixHTTPConnection(self.socket_path(n))), f"app {n}")

    def start_haproxy(self) -> None:
        path = self.write("haproxy.cfg", self.render("haproxy.cfg"))
        # errorfile paths are relative to this folder.
        self.spawn("haproxy", [binary("haproxy"), "-db", "-f", str(path)], cwd=DEPLOY)
        port = self.ports["haproxy"]
        wait_for(lambda: ready(http.client.HTTPConnection("127.0.0.1", port, timeout=1)), "HAProxy")

    def stop_part(self, name: str, sig: int = signal.SIGTERM, wait: float = 15) -> None:
        process = self.processes.get(name)
        if process is None or process.poll() is not None:
            return
        process.send_signal(sig)
        try:
            process.wait(wait)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)

    def stop(self) -> None:
        """Stop everything, the app instances at once (SIGINT: gunicorn's quick shutdown)."""
        for name in reversed(list(self.processes)):
            self.stop_part(name, signal.SIGINT if name.startswith("app") else signal.SIGTERM)
        shutil.rmtree(self.sockets, ignore_errors=True)


def binary(name: str) -> str:
    """A Debian package's program, also where PATH lacks /usr/sbin."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if found is None:
        raise RuntimeError(f"{name} is not installed (make test-deps installs it)")
    return found


def wait_for(ready, what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start")
        time.sleep(0.1)


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def redis_ping(port: int) -> bool:
    return (
        subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True).stdout.strip()
        == "PONG"
    )


def sentinel_knows_primary(port: int) -> bool:
    command = ["redis-cli", "-p", str(port), "sentinel", "get-master-addr-by-name", SERVICE]
    return bool(subprocess.run(command, capture_output=True, text=True).stdout.strip())


def ready(connection: http.client.HTTPConnection) -> bool:
    """Whether /health/ready answers 200 through `connection`, which is closed after."""
    try:
        connection.request("GET", "/health/ready")
        return connection.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP to an instance's Unix socket."""

    def __init__(self, path: Path):
        super().__init__("localhost", timeout=1)
        self.socket_path = str(path)

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.socket_path)


def main() -> int:
    topology = Topology()
    print("starting Redis + 3 Sentinels, PgBouncer, 2 app instances and HAProxy ...", flush=True)
    try:
        topology.start()
    except RuntimeError as error:
        print(f"error: {error}; logs in {topology.workdir}", file=sys.stderr)
        return 1
    print(f"The store: {topology.url}   (Swagger UI: {topology.url}/docs)")
    print(f"Administrator: Authorization: Bearer {topology.admin_token}")
    print(f"Logs: {topology.workdir}   Ctrl-C stops everything.", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt))
    try:
        while all(process.poll() is None for process in topology.processes.values()):
            time.sleep(0.5)
        print("a part stopped; stopping the rest", file=sys.stderr)
    except KeyboardInterrupt:
        pass
    finally:
        topology.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
