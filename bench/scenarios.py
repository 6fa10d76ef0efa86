"""The scenarios of a benchmark run, and the ``Bench`` that drives them with wrk and measures.

- The ceilings (bench/ceiling.py): ``GET /json``, a small JSON body, and ``GET /session``, a
  read of a logged-in default Flask-Session session. The session ceiling's server is left
  running, to be measured again beside each of the store's runs.
- The store (``app:create_app()`` with APP_ENV=production), set up through its API (store.py):
  a tenant (its branch "main") registered with the admin token, a customer, the product that the
  purchase run buys (enough stock for every request), and one login whose session cookie wrk
  replays. The branch's catalogue is filled to each N with one
  ``INSERT ... SELECT generate_series`` (not one HTTP call per product), then
  ``VACUUM (ANALYZE) products``; the first N is measured, then the same branch is topped up to
  the next N and measured again, so that every N serves the same first page from a bigger
  catalogue. ``GET /products?limit=50`` is measured at each N (bench/get.lua), ``POST
  /purchase`` once, after the first N (bench/purchase.lua).
- Each scenario waits for idle CPUs first (up to --quiet-wait), then runs a warm-up (not
  recorded) and --repeat measured runs; a run that other work on the machine disturbed is run
  again (up to --retries), and the run with the median requests/s (of those not disturbed, if
  any) is reported. Each of the store's runs follows a run of the session ceiling, and its
  ratio to that run is kept, so that both see the machine alike.
- Before each measured run Redis's counters are reset (CONFIG RESETSTAT); once the server has
  finished what wrk left in flight, INFO commandstats gives the Redis commands per request,
  and GET and SET among them the session's. MEMORY USAGE gives the bytes of a session key of
  the store and of the default Flask-Session ceiling.
- After the purchase runs, zero oversell is checked in PostgreSQL: the stock removed from the
  product equals the sum of its purchases' quantities, and the stock is not negative.
- ``beside_first_catalogue`` is where more scenarios are measured while the store serves its
  first N: bench/topology_scenarios.py's Bench measures the scaled-out topology and the cost of
  metrics there.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import time
import uuid
from pathlib import Path

import psycopg
from servers import BENCH, ROOT, BenchError, CpuUse, Http, Services, Watch, cpu_busy, gunicorn_args, tail
from store import PAGE, StoreClient, load_catalogue, session_cookie

# Commands the harness itself sends to Redis; they are not the app's.
HARNESS_COMMANDS = ("info", "config|", "memory|", "strlen")
# What a session costs in Redis: Flask-Session's Redis interface reads a session with GET and
# writes it with SET (DEL at logout). The catalogue cache uses hash commands only (HGET,
# HSET, EXPIRE, DEL and WATCH on a miss), so string commands are the session's.
SESSION_COMMANDS = ("get", "set")
# What a scenario's result keeps of its median run.
MEDIAN_FIELDS = (
    "rps",
    "p50_us",
    "p90_us",
    "p99_us",
    "latency_mean_us",
    "latency_max_us",
    "requests",
    "sent",
    "ok",
    "status_errors",
    "connect_errors",
    "read_errors",
    "write_errors",
    "timeouts",
    "redis_calls",
    "redis_commands_per_request",
    "session_commands_per_request",
    "app_cpu_ms_per_request",
    "postgres_cpu_ms_per_request",
    "redis_cpu_ms_per_request",
    "wrk_cpu_ms_per_request",
    "other_cpu_share",
)

CEILINGS = {
    "ceiling_json": "ceiling: GET /json, small JSON body",
    "ceiling_session": "ceiling: GET /session, default Flask-Session read",
}


def product_key(n: int) -> str:
    return f"products_{n}"


def label_of(key: str) -> str:
    if key in CEILINGS:
        return CEILINGS[key]
    if key.startswith("products_"):
        return f"GET /products?limit={PAGE}, N={int(key.split('_')[1]):,}"
    if key == "purchase":
        return "POST /purchase"
    return key


class Bench:
    """One run's measurements: serves each app in turn, drives it with wrk and keeps the results."""

    def __init__(self, args: argparse.Namespace, services: Services):
        self.args = args
        self.services = services
        self.redis_url, self.redis = services.start_redis()
        self.results: dict[str, dict] = {}
        self.session_bytes: dict[str, dict] = {}
        self.checks: dict[str, dict] = {}
        self.loads: list[dict] = []
        self.server: subprocess.Popen | None = None
        self.server_log: Path | None = None
        # The session ceiling's server, kept running to be measured beside each store scenario.
        self.session_ceiling: dict | None = None
        self.redis_pid = int(self.redis.info("server")["process_id"])
        # The store's environment (run_store), for another server of the same store.
        self.store_env: dict = {}

    # gunicorn ----------------------------------------------------------------------------

    def gunicorn_args(self, absolute: bool = False) -> list[str]:
        return gunicorn_args(self.args, absolute)

    def serve(self, name: str, app_spec: str, chdir: Path, env: dict, ready_path: str):
        """Serve an app under the run's gunicorn settings; it is the server measured next."""
        port, process, log = self.services.serve(
            name, app_spec, chdir, env, ready_path, self.gunicorn_args(absolute=True)
        )
        self.server, self.server_log = process, log
        return port, process

    # wrk and Redis counters ---------------------------------------------------------------

    def wrk(
        self, script: str, url: str, seconds: int, env: dict, connections: int = 0, threads: int = 0
    ) -> dict:
        """One wrk run, at --connections and --wrk-threads unless given others."""
        return self.wrk_result(self.wrk_start(script, url, seconds, env, connections, threads), seconds)

    def wrk_start(
        self, script: str, url: str, seconds: int, env: dict, connections: int = 0, threads: int = 0
    ) -> subprocess.Popen:
        """A wrk run started, for wrk_result to wait for (two can run at the same time)."""
        a = self.args
        command = [
            "wrk",
            "-t",
            str(threads or a.wrk_threads),
            "-c",
            str(connections or a.connections),
            "-d",
            f"{seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(BENCH / script),
            url,
        ]
        run_env = {**os.environ, "BENCH_RUN_ID": uuid.uuid4().hex[:8], **env}
        pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
        return subprocess.Popen(command, env=run_env, text=True, **pipes)

    @staticmethod
    def wrk_result(process: subprocess.Popen, seconds: int) -> dict:
        try:
            stdout, stderr = process.communicate(timeout=seconds + 60)
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate()
        for line in stdout.splitlines():
            if line.startswith("BENCH_RESULT "):
                result = json.loads(line.removeprefix("BENCH_RESULT "))
                break
        else:
            raise BenchError(f"wrk printed no result (exit {process.returncode}): {stdout}{stderr}")
        result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
        result["ok"] = result["requests"] - result["status_errors"]
        return result

    def watch(self, server: subprocess.Popen) -> Watch:
        """A server of the bench's own Redis: what its runs account."""
        return Watch((server.pid,), self.redis, (self.redis_pid,))

    def command_calls(self, watch: Watch | None = None) -> dict[str, int]:
        client, ignore = (watch.redis, watch.ignore) if watch else (self.redis, ())
        calls = {}
        for name, stats in client.info("commandstats").items():
            command = name.removeprefix("cmdstat_")
            if command.startswith(HARNESS_COMMANDS + ignore) or not stats.get("calls"):
                continue
            calls[command] = int(stats["calls"])
        return calls

    def quiesce(self, interval: float = 0.2, timeout: float = 10, watch: Watch | None = None) -> None:
        """Wait until the server has finished what wrk left in flight: Redis stops counting."""
        last, stable = None, 0
        deadline = time.monotonic() + timeout
        while stable < 2 and time.monotonic() < deadline:
            time.sleep(interval)
            total = sum(self.command_calls(watch).values())
            stable = stable + 1 if total == last else 0
            last = total

    def wait_until_quiet(self) -> float:
        """Wait up to --quiet-wait seconds for other processes to leave the CPUs idle enough.

        Returns how busy the CPUs were (0..1) just before the scenario started; the report
        flags scenarios that started on a busy machine.
        """
        deadline = time.monotonic() + self.args.quiet_wait
        while True:
            busy = cpu_busy(1.0)
            if busy <= self.args.quiet_below or time.monotonic() >= deadline:
                return busy
            print(f"  waiting for a quiet machine: CPUs {busy:.0%} busy", flush=True)

    def one_run(
        self,
        server: subprocess.Popen | None,
        url: str,
        script: str,
        env: dict,
        watch: Watch | None = None,
        connections: int = 0,
        threads: int = 0,
    ) -> dict:
        """One measured wrk run, with the CPU and Redis commands it cost: of `server` on the
        bench's Redis, or of what `watch` names."""
        watch = watch or self.watch(server)
        self.quiesce(watch=watch)
        watch.redis.config_resetstat()
        cpu = CpuUse(watch.app, watch.redis_pids, watch.proxy)
        result = self.wrk(script, url, self.args.duration, env, connections, threads)
        self.quiesce(watch=watch)
        used = cpu.stop()
        handled = max(1, result["sent"])
        # Robust to other load on the machine, unlike req/s: CPU each part spent per request.
        for part in ("app", "postgres", "redis", "wrk") + (("proxy",) if watch.proxy else ()):
            result[f"{part}_cpu_ms_per_request"] = 1000 * used[part] / handled
        result["other_cpu_share"] = used["other_share"]
        calls = self.command_calls(watch)
        result["redis_calls"] = calls
        # Per request the server handled: those wrk completed and those still in flight.
        result["redis_commands_per_request"] = sum(calls.values()) / handled
        session_calls = sum(calls.get(command, 0) for command in SESSION_COMMANDS)
        result["session_commands_per_request"] = session_calls / handled
        return result

    def measure(
        self,
        key: str,
        port: int,
        path: str,
        script: str = "get.lua",
        env: dict | None = None,
        paired: bool = False,
    ):
        """Measure a scenario; `paired` runs the session ceiling just before each of its runs,
        so that both see the machine alike (its speed drifts by more than 10% over minutes)."""
        a = self.args
        url = f"http://127.0.0.1:{port}{path}"
        env = env or {}
        partner = self.session_ceiling if paired else None
        background = self.wait_until_quiet()
        beside = ", each after a run of the session ceiling" if partner else ""
        print(
            f"  {label_of(key)}: {a.warmup} s warm-up, {a.repeat} x {a.duration} s{beside} "
            f"(CPU busy before: {background:.0%})",
            flush=True,
        )
        warm = self.wrk(script, url, a.warmup, env)
        runs = []
        retries = a.retries
        while len(runs) < a.repeat:
            if partner:
                before = self.one_run(partner["process"], partner["url"], "get.lua", partner["env"])
            result = self.one_run(self.server, url, script, env)
            if partner:
                result["paired_ceiling_rps"] = before["rps"]
                result["other_cpu_share"] = max(result["other_cpu_share"], before["other_cpu_share"])
            print(
                f"    {result['rps']:9.1f} req/s  p50 {result['p50_us'] / 1000:7.2f} ms  "
                f"p99 {result['p99_us'] / 1000:7.2f} ms  non-2xx {result['status_errors']}  "
                f"Redis {result['redis_commands_per_request']:.2f}/req  "
                f"app CPU {result['app_cpu_ms_per_request']:.2f} ms/req  "
                f"other work {result['other_cpu_share']:.0%} of the CPUs"
                + (f"  (session ceiling just before: {before['rps']:.1f} req/s)" if partner else ""),
                flush=True,
            )
            if result["other_cpu_share"] > a.quiet_below and retries > 0:
                retries -= 1
                print("    other work disturbed that run: running it again", flush=True)
                self.wait_until_quiet()
                continue
            runs.append(result)
        # The median of the runs other work did not disturb, if any were not.
        clean = [r for r in runs if r["other_cpu_share"] <= a.quiet_below] or runs
        median = sorted(clean, key=lambda r: r["rps"])[len(clean) // 2]
        for result in runs:
            if result["ok"] <= 0:
                raise BenchError(
                    f"{label_of(key)}: no successful response in a run ({result['status_errors']} of "
                    f"{result['requests']} answered 4xx/5xx); one more request answers "
                    f"{self.probe(port, path, script, env)}\nThe end of gunicorn's log:\n"
                    f"{tail(self.server_log, 2500)}"
                )
        self.results[key] = {
            "label": label_of(key),
            "method": "POST" if script == "purchase.lua" else "GET",
            "path": path,
            **{k: median[k] for k in MEDIAN_FIELDS},
            "rps_runs": [r["rps"] for r in runs],
            **(
                {
                    # The run's own ceiling: the median run's, and each run's ratio to its own.
                    "paired_ceiling_rps": median["paired_ceiling_rps"],
                    "paired_ratio_runs": [r["rps"] / r["paired_ceiling_rps"] for r in runs],
                }
                if partner
                else {}
            ),
            "other_cpu_share_runs": [r["other_cpu_share"] for r in runs],
            "cpu_busy_before": background,
            "warmup_requests": warm["requests"],
            "all_ok": warm["ok"] + sum(r["ok"] for r in runs),
        }
        return self.results[key]

    @staticmethod
    def probe(port: int, path: str, script: str, env: dict) -> str:
        """What the scenario's request answers, once, for an error message."""
        headers = {"Cookie": env["BENCH_COOKIE"]} if env.get("BENCH_COOKIE") else {}
        body = None
        if script == "purchase.lua":
            body = {"product_id": int(env["BENCH_PRODUCT_ID"]), "quantity": 1}
            headers["Idempotency-Key"] = f"probe-{uuid.uuid4().hex}"
        try:
            status, data, _ = Http(port).request("POST" if body else "GET", path, body, headers)
        except (OSError, ValueError) as exc:
            return f"nothing: {exc!r}"
        return f"{status}: {json.dumps(data)[:500]}"

    def key_bytes(self, name: str, cookie: str) -> None:
        key = f"session:{cookie}"
        usage = self.redis.memory_usage(key, samples=0)
        if usage is None:
            raise BenchError(f"no Redis key {key} for the {name} session")
        self.session_bytes[name] = {
            "key": "session:<sid>",
            "memory_usage": int(usage),
            "key_length": len(key),
            "value_length": int(self.redis.strlen(key)),
            "ttl": int(self.redis.ttl(key)),
        }

    # The ceilings ----------------------------------------------------------------------------

    def run_ceilings(self) -> None:
        # gunicorn.conf.py refuses to serve with settings the store cannot start with; the
        # ceilings read none of them, and development needs none.
        needs_nothing = {"APP_ENV": "development"}
        print("ceiling: small JSON route", flush=True)
        port, process = self.serve("ceiling-json", "ceiling:create_json_app()", BENCH, needs_nothing, "/json")
        try:
            self.measure("ceiling_json", port, "/json")
        finally:
            self.services.stop(process)

        print("ceiling: default Flask-Session read", flush=True)
        env = {**needs_nothing, "REDIS_URL": self.redis_url}
        # Left running (Services.close stops it): it is measured again beside each store scenario.
        port, process = self.serve("ceiling-session", "ceiling:create_session_app()", BENCH, env, "/health")
        client = Http(port)
        status, _, response = client.request("POST", "/login")
        if status != 200:
            raise BenchError(f"ceiling login answered {status}")
        cookie = session_cookie(response)
        status, body, _ = client.request("GET", "/session", headers={"Cookie": f"session={cookie}"})
        if status != 200 or body != {"user_id": 1}:
            raise BenchError(f"the ceiling session is not logged in: {status} {body}")
        cookie_env = {"BENCH_COOKIE": f"session={cookie}"}
        self.measure("ceiling_session", port, "/session", env=cookie_env)
        self.key_bytes("ceiling_session", cookie)
        self.session_ceiling = {
            "process": process,
            "url": f"http://127.0.0.1:{port}/session",
            "env": cookie_env,
        }

    # The store ------------------------------------------------------------------------------

    def run_store(self) -> None:
        database_url = self.services.create_database()
        token = secrets.token_urlsafe(32)
        env = {
            "APP_ENV": "production",
            "SECRET_KEY": secrets.token_urlsafe(48),
            "DATABASE_URL": database_url.replace("postgresql://", "postgresql+psycopg://", 1),
            "REDIS_URL": self.redis_url,
            "ADMIN_TOKEN": token,
            # No proxy checks it here: stop at once (gunicorn.conf.py).
            "DRAIN_SECONDS": "0",
            # Request instrumentation and /metrics on, as unset means (whatever the caller's
            # environment says): the cost of metrics is measured beside, with "0".
            "METRICS_ENABLED": "1",
        }
        self.store_env = env
        self.services.migrate(env)

        print("store: app:create_app() on PostgreSQL and Redis", flush=True)
        port, process = self.serve("store", "app:create_app()", ROOT, env, "/health")
        try:
            with psycopg.connect(database_url, autocommit=True) as db:
                self.drive_store(port, token, db)
        finally:
            self.services.stop(process)

    def drive_store(self, port: int, token: str, db: psycopg.Connection) -> None:
        store = StoreClient(port, token)
        branch_id, product_id, cookie = store.set_up()
        cookie_env = {"BENCH_COOKIE": f"session={cookie}"}
        for index, n in enumerate(self.args.sizes):
            self.load_products(db, branch_id, n)
            store.check_page(cookie, n)
            self.measure(product_key(n), port, store.page_path, env=cookie_env, paired=True)
            if index == 0:
                self.run_purchases(port, db, product_id, cookie_env)
                self.beside_first_catalogue(port, {**cookie_env, "BENCH_PRODUCT_ID": str(product_id)})
        self.key_bytes("store", cookie)

    def beside_first_catalogue(self, port: int, env: dict) -> None:
        """More scenarios, while the store on `port` serves the first N (`env`: its cookie and
        the purchase's product): none here; topology_scenarios.Bench adds its own."""

    def load_products(self, db: psycopg.Connection, branch_id: int, n: int, into: str = "") -> None:
        """Top the branch's live catalogue up to n products (store.load_catalogue); `into` names
        a store other than the direct one."""
        self.loads.append({**load_catalogue(db, branch_id, n, into), **({"into": into} if into else {})})

    def run_purchases(self, port: int, db: psycopg.Connection, product_id: int, cookie_env: dict) -> None:
        def state():
            stock = db.execute("SELECT stock FROM products WHERE id = %s", (product_id,)).fetchone()[0]
            count, units = db.execute(
                "SELECT count(*), coalesce(sum(quantity), 0) FROM purchases WHERE product_id = %s",
                (product_id,),
            ).fetchone()
            return stock, count, int(units)

        stock_before, count_before, units_before = state()
        result = self.measure(
            "purchase",
            port,
            "/purchase",
            "purchase.lua",
            {**cookie_env, "BENCH_PRODUCT_ID": str(product_id)},
            paired=True,
        )
        stock_after, count_after, units_after = state()
        removed = stock_before - stock_after
        sold = units_after - units_before
        check = {
            "product_id": product_id,
            "stock_before": stock_before,
            "stock_after": stock_after,
            "stock_removed": removed,
            "purchases": count_after - count_before,
            "units_purchased": sold,
            "wrk_2xx": result["all_ok"],
            "ok": removed == sold and stock_after >= 0 and sold >= result["all_ok"],
        }
        self.checks["zero_oversell"] = check
        print(
            f"  zero oversell: stock removed {removed:,}, purchased {sold:,} in {check['purchases']:,} "
            f"purchases, wrk saw {result['all_ok']:,} 2xx: {'OK' if check['ok'] else 'FAILED'}",
            flush=True,
        )
        if not check["ok"]:
            raise BenchError(f"oversell check failed: {check}")
