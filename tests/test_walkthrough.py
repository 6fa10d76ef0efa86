"""The README's walkthrough, run as written against `make run`'s server: development, SQLite,
the in-process Redis stand-in, the demo data, administration open to this machine."""

import json
import os
import re
import subprocess
import time

from . import servers
from .http import HttpClient


def walkthrough() -> list[str]:
    readme = (servers.ROOT / "README.md").read_text()
    section = readme.split("## The tutorial's walkthrough", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL).group(1).replace("\\\n", " ")
    return [line.strip() for line in block.splitlines() if line.strip() and not line.startswith("#")]


EXPECTED = [
    lambda a: a["message"] == "Tenants registered",
    lambda a: a["message"] == "User registered",
    lambda a: a["message"] == "Login successful",
    lambda a: len(a["products"]) == 4,
    lambda a: a["message"] == "Purchase created" and a["total"] == 49.8,
    lambda a: [p["quantity"] for p in a["purchases"]] == [2],
    lambda a: a["products"][0]["units_sold"] == 2,
    lambda a: [s["current"] for s in a["sessions"]] == [True],
    lambda a: a == {"message": "Password changed"},
    lambda a: a["message"] == "Login successful",
    lambda a: [u["username"] for u in a["users"]][:2] == ["demo_manager", "demo_customer"],
    lambda a: a["username"] == "demo_customer" and a["active"] is False,
    lambda a: a == {"message": "Logged out"},
    lambda a: a == {"message": "Logged out everywhere"},
]


def test_the_readme_walkthrough_runs_as_written(checkout):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_", "ADMIN_"))}
    env |= {"APP_ENV": "development", "PORT": str(servers.free_port())}
    for command in (["db", "upgrade"], ["seed-demo"]):
        subprocess.run(
            [".venv/bin/flask", "--app", "app", *command],
            cwd=checkout,
            env=env,
            check=True,
            capture_output=True,
        )
    log = open(checkout / "run.log", "w")  # closed with the server
    server = subprocess.Popen([".venv/bin/python", "run.py"], cwd=checkout, env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if HttpClient(int(env["PORT"]), timeout=1).request("GET", "/health")[0] == 200:
                    break
            except OSError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, (checkout / "run.log").read_text()
            time.sleep(0.1)
        header, *calls = walkthrough()
        assert header.startswith("ADMIN=") and len(calls) == len(EXPECTED), calls
        for step, expected in zip(calls, EXPECTED, strict=True):
            command = f"{header}; {step.replace('5000', env['PORT'])}"
            result = subprocess.run(
                ["bash", "-c", command], cwd=checkout, capture_output=True, text=True, timeout=30
            )
            answer = json.loads(result.stdout)
            assert expected(answer), (step, answer)
    finally:
        server.terminate()
        server.wait(10)
        log.close()
