"""Schemathesis against gunicorn on PostgreSQL and real Redis, every route, every phase: no 5xx.

The in-process fuzzing (test_schemathesis.py) checks answers against the document on SQLite;
this run is about what only production's stack refuses, and what gunicorn itself answers.
"""

import subprocess
import sys
from pathlib import Path

import pytest

from config import THROTTLE_LIMITS

from . import servers
from .http import HttpClient

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

SCHEMATHESIS = str(Path(sys.executable).parent / "schemathesis")
PHASES = "examples,coverage,fuzzing,stateful"


@pytest.fixture
def served_shop(live_app, postgres_url, redis_server):
    server = servers.Gunicorn(postgres_url, redis_server.url)
    # The throttle would answer most of the fuzzer's logins 429 before they reach the database.
    server.env.update(dict.fromkeys(THROTTLE_LIMITS, "100000 per minute"))
    server.start()
    admin = HttpClient(server.port, server.admin_headers)
    tenant = admin.request("POST", "/register_tenants", {"tenant_names": ["fuzz"]})[1]["tenants"][0]
    branch_id = tenant["branches"][0]["id"]
    manager = {"username": "boss", "password": "password123", "branch_id": branch_id, "role": "manager"}
    assert admin.request("POST", "/register_user", manager)[0] == 201
    for n in range(3):
        product = {"name": f"Product {n}", "price": 2.5, "stock": 1000, "branch_id": branch_id}
        assert admin.request("POST", "/products", product)[0] == 201
    yield server
    server.stop()


def fuzz(server, cookie: str, workdir, *selection: str) -> subprocess.CompletedProcess:
    # Its own working directory: Schemathesis keeps a cache there.
    return subprocess.run(
        [
            SCHEMATHESIS, "run", f"http://127.0.0.1:{server.port}/openapi.json",
            "--phases", PHASES, "--checks", "not_a_server_error",
            "--max-examples", "25", "--seed", "1", "--no-color",
            # The calls carry real credentials (below); generated ones would replace them.
            "--generation-with-security-parameters", "false",
            "-H", f"Authorization: Bearer {server.admin_token}", "-H", f"Cookie: session={cookie}",
            *selection,
        ],
        capture_output=True, text=True, timeout=600, cwd=workdir,
    )  # fmt: skip


def test_fuzzing_every_route_on_postgresql_finds_no_server_error(served_shop, tmp_path):
    def session() -> str:
        manager = HttpClient(served_shop.port)
        assert manager.request("POST", "/login", {"username": "boss", "password": "password123"})[0] == 200
        return manager.cookie

    # Logging out ends the session the others are fuzzed with (so may ending one's sessions, which
    # the stateful phase finds): those go last, each alone and with a session of its own.
    runs = [fuzz(served_shop, session(), tmp_path, "--exclude-path-regex", "^/logout")]
    runs.append(fuzz(served_shop, session(), tmp_path, "--include-path", "/logout/all"))
    runs.append(fuzz(served_shop, session(), tmp_path, "--include-path", "/logout"))
    for run in runs:
        assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
        assert "Authentication failed" not in run.stdout, run.stdout[-3000:]
    assert "Traceback" not in served_shop.output(), served_shop.output()[-4000:]
