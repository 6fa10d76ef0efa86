#!/usr/bin/env python3
"""Benchmark the store API under gunicorn against its ceilings, in one run.

    make bench          # full run: N = 1,000 and 1,000,000; results in bench/results/
    make bench-smoke    # --smoke: N = 1,000 only, 2-second runs; checks the harness, not speed

What one run does, on this machine only (every server it talks to is on 127.0.0.1):

1. Starts its own redis-server on a free port (never the shared one on 6379) and creates its
   own PostgreSQL database (dropped at the end), migrated with ``flask --app app db upgrade``
   (servers.py).
2. Serves the two ceilings of bench/ceiling.py, then the store (``app:create_app()`` with
   APP_ENV=production), one at a time, all under the same gunicorn settings.
3. Sets the store up through its API, bulk-loads its catalogue to each N, and drives each
   scenario with wrk at a fixed concurrency: a warm-up, then ``--repeat`` measured runs, each
   store run paired with a run of the session ceiling, the median run reported, with the
   Redis commands and CPU each request cost (scenarios.py).
4. After the purchase runs, checks zero oversell in PostgreSQL.
5. While the store serves the first N, measures beside it (topology_scenarios.py), each pair
   of servers: the store with metrics on and off (two new gunicorns, driven at the same time), and
   deploy/topology.py's scaled-out topology (HAProxy, two instances, PgBouncer, Redis under
   Sentinel) at -c 16 and -c 256, its database dropped at the end.
6. Prints the table and writes results.md, results.json and chart.png to --out, with the
   performance targets judged (report.py).

Everything it starts it stops, also on Ctrl-C or SIGTERM. The method, and how to read the
results: bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from report import environment, judge_again, print_table, save, targets
from scenarios import PAGE
from servers import BENCH, BenchError, Services
from topology_scenarios import Bench


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="quick check of the harness: N=1,000 only, 2 s runs, 1 s warm-up, 1 repeat",
    )
    parser.add_argument(
        "--sizes",
        type=lambda s: [int(x) for x in s.split(",")],
        help="catalogue sizes, ascending (default 1000,1000000; 1000 with --smoke)",
    )
    parser.add_argument("--duration", type=int, help="seconds per measured run (default 10; 2 with --smoke)")
    parser.add_argument(
        "--warmup", type=int, help="seconds of warm-up per scenario (default 3; 1 with --smoke)"
    )
    parser.add_argument("--repeat", type=int, help="measured runs per scenario (default 5; 1 with --smoke)")
    parser.add_argument(
        "--pair-repeat",
        type=int,
        help="measured runs of each server per paired scenario: metrics off/on, direct/scaled out "
        "(default 3; 1 with --smoke)",
    )
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (default 16)")
    parser.add_argument("--wrk-threads", type=int, default=1, help="wrk threads (default 1)")
    # The defaults are what gunicorn.conf.py serves production with, and measured best here:
    # see "gunicorn settings" in bench/README.md.
    parser.add_argument(
        "--workers",
        type=int,
        default=2 * (os.cpu_count() or 1),
        help="gunicorn workers (default 2 per CPU, as gunicorn.conf.py)",
    )
    parser.add_argument(
        "--worker-class",
        default="sync",
        choices=["sync", "gthread"],
        help="gunicorn worker class (default sync, as gunicorn.conf.py)",
    )
    parser.add_argument(
        "--threads", type=int, default=4, help="gunicorn threads per gthread worker (default 4)"
    )
    parser.add_argument(
        "--quiet-wait",
        type=int,
        help="seconds to wait before each scenario for the CPUs to be idle (default 120; 0 with --smoke)",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="measure nothing: rewrite results.md and chart.png from the results.json in --out",
    )
    parser.add_argument(
        "--retries",
        type=int,
        help="measured runs per scenario run again when other work used more than --quiet-below "
        "of the CPUs during them (default 3; 0 with --smoke)",
    )
    parser.add_argument(
        "--quiet-below",
        type=float,
        default=0.15,
        help="CPU share (0..1) busy with other work that counts as idle (default 0.15)",
    )
    parser.add_argument(
        "--out", type=Path, help="output folder (default bench/results; bench/results/smoke with --smoke)"
    )
    args = parser.parse_args(argv)
    smoke = args.smoke
    args.sizes = args.sizes or ([1000] if smoke else [1000, 1_000_000])
    args.duration = args.duration or (2 if smoke else 10)
    args.warmup = args.warmup or (1 if smoke else 3)
    args.repeat = args.repeat or (1 if smoke else 5)
    args.pair_repeat = args.pair_repeat or (1 if smoke else 3)
    if args.retries is None:
        args.retries = 0 if smoke else 3
    if args.quiet_wait is None:
        args.quiet_wait = 0 if smoke else 120
    args.out = args.out or (BENCH / "results" / ("smoke" if smoke else ""))
    if args.sizes != sorted(args.sizes) or min(args.sizes) < PAGE:
        parser.error(f"--sizes must be ascending and at least {PAGE}")
    return args


def stop_on_signal(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report_only:
        report = json.loads((args.out / "results.json").read_text())
        judge_again(report)
        save(report, args.out)
        print_table(report)
        return 0
    if shutil.which("wrk") is None:
        print("bench: wrk is not installed (apt-get install -y wrk, or `make test-deps`)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, stop_on_signal)
    signal.signal(signal.SIGHUP, stop_on_signal)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="store-bench-") as workdir:
        services = Services(Path(workdir))
        try:
            bench = Bench(args, services)
            bench.run_ceilings()
            bench.run_store()
            report = {
                "environment": environment(args, bench),
                "results": bench.results,
                "session_bytes": bench.session_bytes,
                "checks": bench.checks,
                "loads": bench.loads,
            }
            report["targets"] = targets(bench.results, bench.session_bytes, args.sizes)
        except BenchError as exc:
            print(f"bench: {exc}", file=sys.stderr)
            return 1
        finally:
            services.close()
    save(report, args.out)
    print_table(report)
    print(f"\nwrote {args.out / 'results.md'}, results.json and chart.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
