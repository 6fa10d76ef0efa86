"""The scenarios measured beside the direct store while it serves its first N: the cost of
metrics, and the scaled-out topology.

- **The cost of metrics**: two gunicorns of the store, on the same database and Redis, one with
  ``METRICS_ENABLED=0`` (request instrumentation and /metrics off) and one with metrics on, on
  ports of their own and only while this scenario runs. ``GET /products?limit=50`` at
  the first N, a wrk at --connections (16) on each, both at the same time
  (``measure_pair`` with ``together``).
- **Scaled out**: deploy/topology.py's ``Topology`` on free ports: HAProxy in front of two
  gunicorn instances of two workers each on Unix sockets (four workers, as the direct store's
  four), PgBouncer in transaction pooling before the same PostgreSQL server (a database of its
  own, ``Topology.database``), Redis with a replica under three Sentinels. Set up through HAProxy as
  the direct store is (store.py), its catalogue loaded to the same N. ``GET /products?limit=50``
  and ``POST /purchase`` are measured on it and on the direct store at ``-c 16`` and ``-c 256``.
  It is stopped at the end and its database dropped, also on Ctrl-C or SIGTERM.
- Each scenario **pairs two servers' runs**. The scaled-out ones alternate: a warm-up of each,
  then --pair-repeat runs of each (the one first of a pair alternates too), so that both see the
  machine alike. The cost of metrics runs both at the same time, --pair-repeat times: two stores
  on one machine and one Redis, which alternating runs would compare across minutes. Each side
  reports its median run; the compared one (metrics on, scaled out) also the median of its runs'
  ratios to the baseline's run of the same pair (metrics off, the direct store).
"""

from __future__ import annotations

import http.client
import importlib.util
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import psycopg
import redis
import scenarios
from scenarios import MEDIAN_FIELDS, SESSION_COMMANDS
from servers import POSTGRES_ADMIN_URL, ROOT, BenchError, CpuUse, Watch, free_port, tail
from store import PAGE, StoreClient

# wrk's connections of the scale-out scenarios, and its threads for each.
CONCURRENCY = {16: 1, 256: 2}
ROUTES = {"products": ("get.lua", f"/products?limit={PAGE}"), "purchase": ("purchase.lua", "/purchase")}
# Redis commands of the topology's own machinery, not the requests': Sentinel's PING, PUBLISH
# (hello messages) and INFO, the replica's REPLCONF ACK, the PING of HAProxy's health checks
# (/health/ready), and CLIENT SETNAME/SETINFO of new connections.
TOPOLOGY_MACHINERY = ("ping", "publish", "replconf", "psync", "sync", "subscribe", "client|", "role")
METRICS_KEYS = ("metrics_off_products", "metrics_on_products")
# What the stores are called in labels, by their name in keys.
STORES = {"direct": "direct store", "topology": "scaled out"}


def scale_key(store: str, route: str, connections: int) -> str:
    return f"scale_{store}_{route}_c{connections}"


def scale_label(store: str, route: str, connections: int, n: int) -> str:
    what = f"GET /products?limit={PAGE}, N={n:,}" if route == "products" else "POST /purchase"
    return f"{STORES[store]}: {what}, -c {connections}"


def metrics_label(key: str, n: int) -> str:
    return f"metrics {'off' if key == METRICS_KEYS[0] else 'on'}: GET /products?limit={PAGE}, N={n:,}"


def status_of(port: int, path: str) -> int:
    """The status a GET answers (its body may be anything)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    finally:
        conn.close()


def socket_errors(result: dict) -> int:
    return sum(result[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts"))


@dataclass
class Target:
    """One of a pair's servers: where wrk sends its requests, with which cookie and product, and
    what its runs account."""

    key: str
    label: str
    port: int
    watch: Watch
    env: dict
    log: Callable[[], str]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    @property
    def name(self) -> str:
        return self.label.split(":")[0]


def load_topology():
    """deploy/topology.py, which is no package."""
    spec = importlib.util.spec_from_file_location("topology", ROOT / "deploy" / "topology.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Bench(scenarios.Bench):
    """The benchmark with the cost of metrics and the scaled-out topology measured beside the
    direct store's first N."""

    def beside_first_catalogue(self, port: int, env: dict) -> None:
        direct = Target("", "", port, self.watch(self.server), env, lambda: tail(self.server_log, 2500))
        self.run_metrics_cost(direct)
        self.run_scale_out(direct)

    # Pairs of servers -----------------------------------------------------------------------

    def measure_pair(
        self,
        base: Target,
        other: Target,
        script: str,
        path: str,
        connections: int = 0,
        together: bool = False,
    ) -> None:
        """--pair-repeat runs of `base` and `other`; both results kept, `other`'s with its ratios.

        Alternating by default, one server's run right after the other's (which goes first
        alternates too). `together` drives both at the same time, a wrk each (together_run): they
        share the machine's every moment, its drift included, so their ratio is steadier (an A/A
        pair of one store: 0.97x to 1.08x at the same time, 0.82x to 1.23x alternating); both
        must then serve the bench's Redis."""
        a = self.args
        connections = connections or a.connections
        threads = CONCURRENCY.get(connections, a.wrk_threads)
        # A smoke run checks the harness: no warm-up.
        warmup = 0 if a.smoke else a.warmup
        background = self.wait_until_quiet()
        print(
            f"  {other.label}, paired with {base.name}, {'at the same time' if together else 'alternating'}: "
            f"{warmup} s warm-up each, then {a.pair_repeat} x {a.duration} s of each "
            f"(CPU busy before: {background:.0%})",
            flush=True,
        )
        pair = (base, other)
        warm = [None, None]
        if warmup and together:
            started = [self.wrk_start(script, t.url(path), warmup, t.env, connections, threads) for t in pair]
            warm = [self.wrk_result(process, warmup) for process in started]
        elif warmup:
            warm = [self.wrk(script, t.url(path), warmup, t.env, connections, threads) for t in pair]
        runs: tuple[list, list] = ([], [])
        retries = a.retries
        while len(runs[0]) < a.pair_repeat:
            if together:
                done = self.together_run(pair, script, path, connections, threads)
            else:
                first = len(runs[0]) % 2
                done = [{}, {}]
                for side in (first, 1 - first):
                    t = pair[side]
                    done[side] = self.one_run(None, t.url(path), script, t.env, t.watch, connections, threads)
            share = max(r["other_cpu_share"] for r in done)
            for t, r in zip(pair, done, strict=True):
                r["other_cpu_share"] = share
                print(
                    f"    {t.name:<12} {r['rps']:9.1f} req/s  p50 {r['p50_us'] / 1000:7.2f} ms  "
                    f"p99 {r['p99_us'] / 1000:7.2f} ms  non-2xx {r['status_errors']}  "
                    f"socket errors {socket_errors(r)}  app CPU {r['app_cpu_ms_per_request']:.2f} ms/req",
                    flush=True,
                )
            print(f"    ratio {done[1]['rps'] / done[0]['rps']:.3f}x", flush=True)
            if share > a.quiet_below and retries > 0:
                retries -= 1
                print(f"    other work used {share:.0%} of the CPUs: running the pair again", flush=True)
                self.wait_until_quiet()
                continue
            for side in (0, 1):
                runs[side].append(done[side])
        for t, side_runs, warm_run in zip(pair, runs, warm, strict=True):
            self.results[t.key] = self.pair_result(t, side_runs, warm_run, script, path, background)
            self.results[t.key].update(connections=connections, wrk_threads=threads, together=together)
        self.results[other.key].update(
            baseline=base.key,
            baseline_rps_runs=[r["rps"] for r in runs[0]],
            baseline_ratio_runs=[o["rps"] / b["rps"] for b, o in zip(runs[0], runs[1], strict=True)],
        )

    def together_run(
        self, pair: tuple[Target, Target], script: str, path: str, connections: int, threads: int
    ) -> list[dict]:
        """One run of both at once: each its own wrk and app CPU; PostgreSQL's, Redis's and wrk's
        CPU, and the Redis commands (one Redis serves both), per request of the two together."""
        base, other = pair
        self.quiesce()
        self.redis.config_resetstat()
        cpu = CpuUse(base.watch.app, base.watch.redis_pids, more={"other_app": other.watch.app})
        started = [
            self.wrk_start(script, t.url(path), self.args.duration, t.env, connections, threads) for t in pair
        ]
        done = [self.wrk_result(process, self.args.duration) for process in started]
        self.quiesce()
        used = cpu.stop()
        handled = max(1, sum(r["sent"] for r in done))
        calls = self.command_calls()
        shared = {
            **{f"{p}_cpu_ms_per_request": 1000 * used[p] / handled for p in ("postgres", "redis", "wrk")},
            "other_cpu_share": used["other_share"],
            "redis_calls": calls,
            "redis_commands_per_request": sum(calls.values()) / handled,
            "session_commands_per_request": sum(calls.get(c, 0) for c in SESSION_COMMANDS) / handled,
        }
        for result, part in zip(done, ("app", "other_app"), strict=True):
            result.update(shared, app_cpu_ms_per_request=1000 * used[part] / max(1, result["sent"]))
        return done

    def pair_result(
        self, t: Target, runs: list, warm: dict | None, script: str, path: str, background: float
    ):
        for result in runs:
            if result["ok"] <= 0:
                raise BenchError(
                    f"{t.label}: no successful response in a run ({result['status_errors']} of "
                    f"{result['requests']} answered 4xx/5xx); one more request answers "
                    f"{self.probe(t.port, path, script, t.env)}\nThe end of its log:\n{t.log()}"
                )
        clean = [r for r in runs if r["other_cpu_share"] <= self.args.quiet_below] or runs
        median = sorted(clean, key=lambda r: r["rps"])[len(clean) // 2]
        proxy = {"proxy_cpu_ms_per_request": median["proxy_cpu_ms_per_request"]} if t.watch.proxy else {}
        return {
            "label": t.label,
            "method": "POST" if script == "purchase.lua" else "GET",
            "path": path,
            **{k: median[k] for k in MEDIAN_FIELDS},
            **proxy,
            "rps_runs": [r["rps"] for r in runs],
            "p99_us_runs": [r["p99_us"] for r in runs],
            "status_errors_runs": [r["status_errors"] for r in runs],
            "socket_errors_runs": [socket_errors(r) for r in runs],
            "other_cpu_share_runs": [r["other_cpu_share"] for r in runs],
            "cpu_busy_before": background,
            "warmup_requests": warm["requests"] if warm else 0,
            "warmup_errors": warm["status_errors"] + socket_errors(warm) if warm else 0,
            "all_ok": (warm["ok"] if warm else 0) + sum(r["ok"] for r in runs),
        }

    # The cost of metrics ----------------------------------------------------------------------

    def run_metrics_cost(self, direct: Target) -> None:
        """Two gunicorns of the store started for this scenario alone, alike but for
        METRICS_ENABLED: the direct store has served for minutes, and a server that old against
        a new one is not an A/A pair."""
        n = self.args.sizes[0]
        print(
            "metrics on and off: two new gunicorns of the store, METRICS_ENABLED=1 and 0, same "
            "database and Redis",
            flush=True,
        )
        targets = {}
        try:
            for key, flag in zip(METRICS_KEYS, ("0", "1"), strict=True):
                side = "off" if flag == "0" else "on"
                port, process, log = self.services.serve(
                    f"store-metrics-{side}",
                    "app:create_app()",
                    ROOT,
                    {**self.store_env, "METRICS_ENABLED": flag},
                    "/health",
                    self.gunicorn_args(absolute=True),
                )
                watch = self.watch(process)
                target = Target(
                    key, metrics_label(key, n), port, watch, direct.env, lambda log=log: tail(log, 2500)
                )
                targets[side] = (process, target)
            # Whether the app honours METRICS_ENABLED: /metrics answers loopback clients when on.
            statuses = {f"metrics {side}": status_of(t.port, "/metrics") for side, (_, t) in targets.items()}
            self.checks["metrics"] = {"metrics_status": statuses}
            print(
                "  GET /metrics answers " + ", ".join(f"{s} with {w}" for w, s in statuses.items()),
                flush=True,
            )
            self.measure_pair(targets["off"][1], targets["on"][1], *ROUTES["products"], together=True)
        finally:
            for process, _ in targets.values():
                self.services.stop(process)

    # The scaled-out topology ------------------------------------------------------------------

    def run_scale_out(self, direct: Target) -> None:
        n = self.args.sizes[0]
        module = load_topology()
        ports = {part: free_port() for part in module.DEFAULT_PORTS if part != "postgres"}
        ports["postgres"] = urlsplit(POSTGRES_ADMIN_URL).port or 5432
        database = f"bench_topology_{uuid.uuid4().hex[:8]}"
        workdir = self.services.workdir / "topology"
        workdir.mkdir(exist_ok=True)
        topology = module.Topology(ports, database=database, workdir=workdir)

        def stop() -> None:
            topology.stop()
            self.services.drop_database(database)

        # Services.close stops it and drops its database if the run ends before the finally below.
        self.services.databases.append(database)
        self.services.cleanups.append(stop)
        try:
            print(
                "scaled out: HAProxy -> (Unix sockets) 2 x gunicorn (2 workers each) -> PgBouncer -> "
                "PostgreSQL, Redis and a replica under 3 Sentinels",
                flush=True,
            )
            started = time.monotonic()
            try:
                topology.start()
            except RuntimeError as exc:
                logs = "\n".join(f"--- {p}\n{tail(workdir / f'{p}.log', 1500)}" for p in topology.processes)
                raise BenchError(f"the scaled-out topology did not start: {exc}\n{logs}") from None
            started = time.monotonic() - started
            print(f"  started in {started:.1f} s, HAProxy at {topology.url}", flush=True)
            self.checks["scaled_out"] = {"database": database, "ports": ports, "start_s": started}
            store = StoreClient(ports["haproxy"], topology.admin_token)
            branch_id, product_id, cookie = store.set_up()
            with psycopg.connect(
                POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + "/" + database, autocommit=True
            ) as db:
                self.load_products(db, branch_id, n, into="the scaled-out topology")
            store.check_page(cookie, n)
            env = {"BENCH_COOKIE": f"session={cookie}", "BENCH_PRODUCT_ID": str(product_id)}
            watch = self.topology_watch(topology)

            def log() -> str:
                return "\n".join(f"--- {p}\n{tail(workdir / f'{p}.log', 1200)}" for p in ("haproxy", "app1"))

            for route, (script, path) in ROUTES.items():
                for connections in CONCURRENCY:
                    keys = {s: scale_key(s, route, connections) for s in STORES}
                    labels = {s: scale_label(s, route, connections, n) for s in STORES}
                    base = Target(
                        keys["direct"], labels["direct"], direct.port, direct.watch, direct.env, direct.log
                    )
                    other = Target(keys["topology"], labels["topology"], ports["haproxy"], watch, env, log)
                    self.measure_pair(base, other, script, path, connections)
        finally:
            self.services.cleanup(stop)

    @staticmethod
    def topology_watch(topology) -> Watch:
        """The topology's runs account both instances as the app, its Redis servers and Sentinels as
        Redis, HAProxy and PgBouncer as the proxies; Redis commands are the primary's."""
        pid = {name: process.pid for name, process in topology.processes.items()}
        return Watch(
            app=(pid["app1"], pid["app2"]),
            redis=redis.Redis(host="127.0.0.1", port=topology.ports["redis1"], socket_timeout=5),
            redis_pids=tuple(pid[p] for p in ("redis1", "redis2", "sentinel1", "sentinel2", "sentinel3")),
            proxy=(pid["haproxy"], pid["pgbouncer"]),
            ignore=TOPOLOGY_MACHINERY,
        )
