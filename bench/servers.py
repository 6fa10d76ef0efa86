"""The processes and services a benchmark run starts, and what they cost in CPU.

- ``Services`` holds every process and database a run starts, so that all of them are stopped:
  its own redis-server on a free port (``--save "" --appendonly no``; never the shared one on
  6379), gunicorn serving one app at a time, and a PostgreSQL database ``bench_<random>`` on
  the server of ``BENCH_POSTGRES_URL`` (else ``TEST_POSTGRES_URL``, else the local one),
  dropped at the end.
- ``gunicorn_args`` gives every app the same gunicorn settings: the project's gunicorn.conf.py
  with the workers of the command line.
- ``CpuUse`` accounts the CPU that the app, PostgreSQL, Redis, the proxies (HAProxy and PgBouncer
  of the scaled-out topology), wrk and other work used between two moments, from /proc;
  ``Watch`` names those processes and the Redis a measured run counts the commands of;
  ``cpu_busy`` samples how busy the CPUs are.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import resource
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

import psycopg
import redis

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
BIN = Path(sys.executable).parent
POSTGRES_ADMIN_URL = os.environ.get(
    "BENCH_POSTGRES_URL",
    os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
)

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
GUNICORN_CONF = ROOT / "gunicorn.conf.py"


class BenchError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tail(path: Path | None, size: int = 3000) -> str:
    if path is None or not path.exists():
        return ""
    return path.read_bytes()[-size:].decode(errors="replace")


class Http:
    """A tiny HTTP/1.1 client for set-up requests."""

    def __init__(self, port: int, timeout: float = 10):
        self.port = port
        self.timeout = timeout

    def request(self, method: str, path: str, body=None, headers: dict | None = None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        try:
            sent = dict(headers or {})
            payload = None
            if body is not None:
                payload = json.dumps(body)
                sent["Content-Type"] = "application/json"
            conn.request(method, path, body=payload, headers=sent)
            response = conn.getresponse()
            data = response.read()
            parsed = json.loads(data) if data else None
            return response.status, parsed, response
        finally:
            conn.close()


def gunicorn_args(args: argparse.Namespace, absolute: bool = False) -> list[str]:
    """The same settings for every app: the project's gunicorn.conf.py (timeouts, keep-alive)
    if it has one, with the workers of the command line."""
    result = []
    if GUNICORN_CONF.exists():
        result += ["--config", str(GUNICORN_CONF if absolute else GUNICORN_CONF.relative_to(ROOT))]
    result += ["--workers", str(args.workers), "--worker-class", args.worker_class]
    if args.worker_class == "gthread":
        result += ["--threads", str(args.threads)]
    return result


class Services:
    """Every process and database the run starts, so that all of them are stopped."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.processes: list[tuple[str, subprocess.Popen, Path | None]] = []
        self.databases: list[str] = []
        # What else to stop (the scaled-out topology), before the databases are dropped.
        self.cleanups: list[Callable[[], None]] = []

    def start_redis(self) -> tuple[str, redis.Redis]:
        port = free_port()
        command = [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.workdir),
        ]
        log = self.workdir / "redis.log"
        process = self.spawn("redis-server", command, log)
        url = f"redis://127.0.0.1:{port}/0"
        client = redis.Redis.from_url(url, socket_timeout=5)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return url, client
            except redis.exceptions.ConnectionError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise BenchError(f"redis-server did not start: {tail(log)}") from None
                time.sleep(0.05)

    def serve(
        self, name: str, app_spec: str, chdir: Path, env: dict, ready_path: str, settings: list[str]
    ) -> tuple[int, subprocess.Popen, Path]:
        """Serve `app_spec` with gunicorn (`settings` from gunicorn_args) on a free port, once
        `ready_path` answers 200: its port, process and log."""
        port = free_port()
        command = [
            str(BIN / "gunicorn"),
            "--bind",
            f"127.0.0.1:{port}",
            *settings,
            "--chdir",
            str(chdir),
            "--log-level",
            "warning",
            "--graceful-timeout",
            "5",
            app_spec,
        ]
        log = self.workdir / f"gunicorn-{name}.log"
        process = self.spawn(f"gunicorn {name}", command, log, env={**os.environ, **env})
        deadline = time.monotonic() + 30
        while True:
            try:
                if Http(port, timeout=2).request("GET", ready_path)[0] == 200:
                    return port, process, log
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"gunicorn ({name}) did not start: {tail(log)}")
            time.sleep(0.1)

    def spawn(self, name: str, command: list[str], log: Path | None, **kwargs) -> subprocess.Popen:
        out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115 - closed with the process
        try:
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, **kwargs)
        except FileNotFoundError:
            raise BenchError(f"{command[0]} is not installed") from None
        finally:
            if log:
                out.close()
        self.processes.append((name, process, log))
        return process

    def stop(self, process: subprocess.Popen) -> None:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        self.processes = [entry for entry in self.processes if entry[1] is not process]

    def create_database(self) -> str:
        name = f"bench_{uuid.uuid4().hex[:12]}"
        try:
            with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
        except psycopg.OperationalError as exc:
            raise BenchError(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}: {exc}") from None
        self.databases.append(name)
        return POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + "/" + name

    @staticmethod
    def migrate(env: dict) -> None:
        """Migrate the store's database (named in `env`) with ``flask --app app db upgrade``."""
        migrate = subprocess.run(
            [str(BIN / "flask"), "--app", "app", "db", "upgrade"],
            cwd=ROOT,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=120,
        )
        if migrate.returncode != 0:
            raise BenchError(f"flask db upgrade failed: {migrate.stdout}{migrate.stderr}")

    def drop_database(self, name: str) -> None:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.databases = [known for known in self.databases if known != name]

    def cleanup(self, action: Callable[[], None]) -> None:
        """Run `action` now, if close() has not run it yet (it runs the rest, and this one again if
        it was interrupted)."""
        if action in self.cleanups:
            action()
            self.cleanups.remove(action)

    def close(self) -> None:
        for _, process, _ in reversed(list(self.processes)):
            self.stop(process)
        while self.cleanups:
            self.cleanups.pop()()
        for name in list(self.databases):
            self.drop_database(name)


# --------------------------------------------------------------------------------------------
# CPU accounting from /proc


def cpu_busy(seconds: float = 1.0) -> float:
    """The fraction of all CPUs busy over the next `seconds` (from /proc/stat; 0 where unknown)."""
    busy0, total0 = machine_cpu()
    time.sleep(seconds)
    busy1, total1 = machine_cpu()
    if total1 <= total0:
        return 0.0
    return (busy1 - busy0) / (total1 - total0)


def processes() -> dict[int, tuple[str, int, float]]:
    """Every process: pid -> (command name, parent pid, CPU seconds used so far)."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                head, _, rest = stat.read().rpartition(")")
            fields = rest.split()
            found[int(entry)] = (
                head.split("(", 1)[1],
                int(fields[1]),
                (int(fields[11]) + int(fields[12])) / CLOCK_TICKS,
            )
        except (OSError, IndexError, ValueError):
            continue
    return found


def machine_cpu() -> tuple[float, float]:
    """CPU seconds that all CPUs together have been busy, and have existed, so far."""
    try:
        with open("/proc/stat") as stat:
            ticks = [int(x) for x in stat.readline().split()[1:9]]
    except (OSError, ValueError):
        return 0.0, 0.0
    return (sum(ticks) - ticks[3] - ticks[4]) / CLOCK_TICKS, sum(ticks) / CLOCK_TICKS


def pid_set(pids: int | Collection[int]) -> frozenset[int]:
    return frozenset([pids] if isinstance(pids, int) else pids)


@dataclass(frozen=True)
class Watch:
    """What a measured run accounts: the processes that serve it (their children too), the Redis
    whose commands count and its processes, and the proxies in front (HAProxy, PgBouncer)."""

    app: tuple[int, ...]
    redis: redis.Redis
    redis_pids: tuple[int, ...]
    proxy: tuple[int, ...] = ()
    # Commands that Redis's own machinery sends (Sentinel's checks, the replica's acks, the
    # proxy's health checks' PING): not the requests'.
    ignore: tuple[str, ...] = ()


class CpuUse:
    """CPU used between two moments by the app under test, PostgreSQL, Redis, the proxies, wrk and
    the rest.

    The app, Redis and the proxies are the processes given and their children. A process that
    existed at both moments counts its difference, one started in between its whole use.
    PostgreSQL is every `postgres` process (the server is shared), so its number includes other
    databases' work. "Other" is everything the machine did besides these: the noise a run
    suffered from other work on the machine.
    """

    def __init__(
        self,
        server_pid: int | Collection[int],
        redis_pid: int | Collection[int],
        proxy_pids: Collection[int] = (),
        more: Mapping[str, Collection[int]] | None = None,
    ):
        self.parts = {"app": pid_set(server_pid), "redis": pid_set(redis_pid), "proxy": pid_set(proxy_pids)}
        # Other parts, named: a second app measured at the same time as the first.
        self.parts.update({name: pid_set(pids) for name, pids in (more or {}).items()})
        self.before = self.snapshot()

    @staticmethod
    def snapshot():
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return processes(), machine_cpu(), children.ru_utime + children.ru_stime

    def stop(self) -> dict[str, float]:
        (procs0, (busy0, total0), children0) = self.before
        procs1, (busy1, total1), children1 = self.snapshot()
        used = dict.fromkeys([*self.parts, "postgres"], 0.0)
        for pid, (name, ppid, cpu) in procs1.items():
            part = next((part for part, pids in self.parts.items() if pid in pids or ppid in pids), None)
            if part is None:
                if name != "postgres":
                    continue
                part = "postgres"
            earlier = procs0.get(pid)
            used[part] += cpu - earlier[2] if earlier and earlier[0] == name else cpu
        # wrk has exited and been waited for: it is in this process's children's usage.
        used["wrk"] = children1 - children0
        busy, capacity = busy1 - busy0, max(1e-9, total1 - total0)
        used["other"] = max(0.0, busy - sum(used.values()))
        used["other_share"] = used["other"] / capacity
        return used
