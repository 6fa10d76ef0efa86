"""The benchmark harness works: `bench/run.py --smoke` serves every scenario and writes the table.

It starts gunicorn, its own redis-server and PostgreSQL database, and drives them with wrk;
wrk missing fails the test (`make test-deps` installs it). Beside the store it measures the
store with METRICS_ENABLED=0 and the scaled-out topology of deploy/ (HAProxy and PgBouncer
too), whose database it drops at the end.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

ROOT = Path(__file__).resolve().parent.parent
# Where bench/run.py creates its databases (bench/servers.py).
POSTGRES_URL = os.environ.get(
    "BENCH_POSTGRES_URL", os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
)
SCENARIOS = {
    "ceiling_json": "ceiling: GET /json",
    "ceiling_session": "ceiling: GET /session",
    "products_1000": "GET /products?limit=50, N=1,000",
    "purchase": "POST /purchase",
}
# Measured in pairs of servers, alternating: the second of each pair against the first.
PAIRS = {
    ("metrics_off_products", "metrics_on_products"): (
        "metrics off: GET /products?limit=50, N=1,000",
        "metrics on: GET /products?limit=50, N=1,000",
    ),
    **{
        (f"scale_direct_{route}_c{c}", f"scale_topology_{route}_c{c}"): (
            f"direct store: {what}, -c {c}",
            f"scaled out: {what}, -c {c}",
        )
        for route, what in (("products", "GET /products?limit=50, N=1,000"), ("purchase", "POST /purchase"))
        for c in (16, 256)
    },
}
PAIRED = {key: label for keys, labels in PAIRS.items() for key, label in zip(keys, labels, strict=True)}


def test_smoke_run_writes_every_scenario_with_sane_numbers(tmp_path):
    if shutil.which("wrk") is None:
        pytest.fail("wrk is not installed: run `make test-deps` (apt-get install -y wrk)")
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--smoke", "--out", str(tmp_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output, _ = process.communicate(timeout=150)
    except subprocess.TimeoutExpired:
        # SIGTERM lets the harness stop the servers and drop the database it started.
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
        pytest.fail(f"bench/run.py --smoke took too long:\n{output[-4000:]}")
    assert process.returncode == 0, output[-4000:]

    table = (tmp_path / "results.md").read_text()
    for label in [*SCENARIOS.values(), *PAIRED.values()]:
        assert label in table, f"{label!r} missing from results.md:\n{table}"
    assert "## Scaled out" in table and "## The cost of metrics" in table
    assert "Zero oversell" in table and "**OK**" in table
    assert (tmp_path / "chart.png").read_bytes().startswith(b"\x89PNG")

    report = json.loads((tmp_path / "results.json").read_text())
    results = report["results"]
    assert set(results) == set(SCENARIOS) | set(PAIRED)
    for key, result in results.items():
        assert result["rps"] > 0, key
        assert result["ok"] > 0, key
        assert 0 < result["p50_us"] <= result["p99_us"], key
        assert result["status_errors"] == 0, (key, result)
    # The ceiling's JSON route touches no Redis; every session read touches it.
    assert results["ceiling_json"]["redis_commands_per_request"] == 0
    for key in ("ceiling_session", "products_1000", "purchase"):
        commands = results[key]["redis_commands_per_request"]
        assert 0 < results[key]["session_commands_per_request"] <= commands, key
    # Each store scenario's runs follow runs of the session ceiling, and its ratio is theirs.
    for key in ("products_1000", "purchase"):
        assert results[key]["paired_ceiling_rps"] > 0, key
        assert len(results[key]["paired_ratio_runs"]) == 1, key
    # The default session is read and written back; the store's is only read.
    assert results["ceiling_session"]["session_commands_per_request"] > 1.5
    assert results["products_1000"]["session_commands_per_request"] < 1.1
    for name in ("store", "ceiling_session"):
        assert report["session_bytes"][name]["memory_usage"] > 0, name
    check = report["checks"]["zero_oversell"]
    assert check["ok"] and check["stock_removed"] == check["units_purchased"] > 0
    # The paired scenarios: one run of each server at -c 16 or -c 256, with no socket errors
    # either, and the second's ratio to the first's run beside it.
    assert report["environment"]["pair_repeat"] == 1
    for base, other in PAIRS:
        for key in (base, other):
            assert len(results[key]["rps_runs"]) == 1, key
            assert results[key]["socket_errors_runs"] == [0], (key, results[key])
        assert results[other]["connections"] == results[base]["connections"] in (16, 256)
        assert results[other]["baseline"] == base
        (ratio,) = results[other]["baseline_ratio_runs"]
        assert ratio == pytest.approx(results[other]["rps"] / results[base]["rps"])
    # Both instances of the topology served, through HAProxy, and so did PgBouncer.
    assert results["scale_topology_products_c16"]["proxy_cpu_ms_per_request"] > 0
    targets = [t["target"] for t in report["targets"]]
    assert len(targets) == len(set(targets)) == 5 + 2 + 2 * 4 + 1
    # What /metrics answered each: whether the app honours METRICS_ENABLED=0 shows in the report.
    assert set(report["checks"]["metrics"]["metrics_status"]) == {"metrics on", "metrics off"}
    # The topology's database was dropped at the end.
    database = report["checks"]["scaled_out"]["database"]
    with psycopg.connect(POSTGRES_URL) as conn:
        assert conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone() is None
