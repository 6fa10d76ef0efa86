"""A client generated from the served document (openapi-python-client), installed in a virtualenv
of its own, drives the walkthrough on PostgreSQL and Redis through its generated code only."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from . import servers
from .http import HttpClient

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

BIN = Path(sys.executable).parent


def run(command: list, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, **kwargs)
    assert result.returncode == 0, (command, result.stdout[-3000:], result.stderr[-3000:])
    return result


def test_a_generated_client_drives_the_walkthrough(live_app, postgres_url, redis_server, tmp_path):
    server = servers.Gunicorn(postgres_url, redis_server.url).start()
    try:
        document = HttpClient(server.port).request_text("GET", "/openapi.json")
        (tmp_path / "openapi.json").write_text(document)
        assert json.loads(document)["openapi"].startswith("3.1")
        # Its post-generation hook formats the code with ruff, from this virtualenv.
        env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
        generated = run(
            [BIN / "openapi-python-client", "generate", "--path", "openapi.json", "--output-path", "client"],
            cwd=tmp_path, env=env,
        )  # fmt: skip
        assert "Warning" not in generated.stdout + generated.stderr, generated.stdout + generated.stderr
        run([sys.executable, "-m", "venv", tmp_path / "venv"])
        run([tmp_path / "venv" / "bin" / "pip", "install", "--quiet", tmp_path / "client"])
        # Run from a copy: beside this file, tests/http.py would stand in for the standard library's.
        walkthrough = tmp_path / "client_walkthrough.py"
        walkthrough.write_text(Path(__file__).with_name("client_walkthrough.py").read_text())
        base = f"http://127.0.0.1:{server.port}"
        done = run([tmp_path / "venv" / "bin" / "python", walkthrough, base, server.admin_token])
        assert "walkthrough done" in done.stdout
    finally:
        server.stop()
