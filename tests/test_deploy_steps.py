"""The README's deploy steps, run as written in a copy of the checkout: role and database,
.env from .env.example, migrate, gunicorn behind a proxy, the administrator's first calls.

Only the install line is left out (the tests run in the virtualenv it makes), and the names a
reader chooses (role, database, password, port) are made unique to this run.
"""

import json
import re
import secrets
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from . import servers
from .http import HttpClient

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

ROOT = Path(__file__).resolve().parent.parent


def deploy_blocks() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Deploying", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, re.DOTALL)


def commands(block: str) -> list[str]:
    """The block's commands, a line each, with backslash continuations joined."""
    joined = block.replace("\\\n", " ")
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]


def test_the_readme_deploy_steps_work_as_written(checkout, own_redis):
    setup, first_calls = deploy_blocks()
    role, password, port = f"store_{uuid.uuid4().hex[:8]}", secrets.token_hex(8), servers.free_port()

    def chosen(command: str) -> str:
        command = command.replace("'store-password'", f"'{password}'").replace(
            "store:store-password", f"{role}:{password}"
        )
        command = re.sub(r"\bstore\b(?=[ \"'/\n]|$)", role, command)
        return command.replace("8000", str(port))

    def run(command: str) -> subprocess.CompletedProcess:
        result = subprocess.run(
            ["bash", "-c", chosen(command)], cwd=checkout, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, (command, result.stdout, result.stderr)
        return result

    steps = commands(setup)
    assert steps[0].startswith("python3 -m venv .venv")
    server, secrets_made = None, []
    try:
        for step in steps[1:]:
            if "gunicorn" in step:
                log = open(checkout / "gunicorn.log", "w")  # closed with the server
                server = subprocess.Popen(
                    ["bash", "-c", f"exec env {chosen(step)}"], cwd=checkout, stdout=log, stderr=log
                )
                continue
            result = run(step)
            if "token_urlsafe" in step:
                # "Fill it in": secrets made the way the step makes them, the role and database
                # of step 2, and this run's Redis.
                secrets_made = [result.stdout.strip(), run(step).stdout.strip()]
                env = (checkout / ".env").read_text()
                env = env.replace("SECRET_KEY=\n", f"SECRET_KEY={secrets_made[0]}\n")
                env = env.replace("ADMIN_TOKEN=\n", f"ADMIN_TOKEN={secrets_made[1]}\n")
                env = re.sub(r"REDIS_URL=.*", f"REDIS_URL={own_redis.url}", chosen(env))
                (checkout / ".env").write_text(env)
        assert server is not None and all(len(made) >= 48 for made in secrets_made)
        client = HttpClient(port, timeout=2)
        deadline = time.monotonic() + 20
        while True:
            try:
                if client.request("GET", "/health")[0] == 200:
                    break
            except OSError:
                pass
            running = server.poll() is None and time.monotonic() < deadline
            assert running, (checkout / "gunicorn.log").read_text()[-3000:]
            time.sleep(0.1)
        answers = []
        for call in commands(first_calls):
            result = subprocess.run(
                ["bash", "-c", chosen(call)],
                cwd=checkout,
                capture_output=True,
                text=True,
                env={"PATH": "/usr/bin:/bin", "ADMIN_TOKEN": secrets_made[1]},
                timeout=30,
            )
            answers.append(json.loads(result.stdout))
        assert answers[0]["tenants"][0]["branches"][0]["id"] == 1
        assert answers[1]["message"] == "User registered"
        manager = HttpClient(port)
        login = manager.request("POST", "/login", {"username": "acme_manager", "password": "a-long-password"})
        assert login[0] == 200
        assert manager.request("GET", "/me")[1]["role"] == "manager"
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
            log.close()
        for statement in (f'DROP DATABASE IF EXISTS "{role}" WITH (FORCE)', f'DROP ROLE IF EXISTS "{role}"'):
            subprocess.run(
                ["psql", "-U", "postgres", "-h", "127.0.0.1", "-c", statement], capture_output=True
            )
