"""The benchmark harness works: `bench/run.py --smoke` serves every scenario and writes the table.

It starts gunicorn, its own redis-server and PostgreSQL database, and drives them with wrk;
wrk missing fails the test (`make test-deps` installs it).
"""

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = {
    "ceiling_json": "ceiling: GET /json",
    "ceiling_session": "ceiling: GET /session",
    "products_1000": "GET /products?limit=50, N=1,000",
    "purchase": "POST /purchase",
}


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
    for label in SCENARIOS.values():
        assert label in table, f"{label!r} missing from results.md:\n{table}"
    assert "Zero oversell" in table and "**OK**" in table
    assert (tmp_path / "chart.png").read_bytes().startswith(b"\x89PNG")

    report = json.loads((tmp_path / "results.json").read_text())
    results = report["results"]
    assert set(results) == set(SCENARIOS)
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
