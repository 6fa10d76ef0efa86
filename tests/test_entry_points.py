"""Every entry point on the settings it is given: a one-line refusal, or `.env` filling the gaps."""

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
REQUIRED = ("SECRET_KEY", "DATABASE_URL", "REDIS_URL", "ADMIN_TOKEN")


def clean_env(**extra) -> dict:
    """The environment without any of the store's settings."""
    env = {k: v for k, v in os.environ.items() if k not in (*REQUIRED, "APP_ENV")}
    return {**env, **extra}


@pytest.mark.parametrize(
    "command",
    [
        [str(BIN / "flask"), "--app", "app", "db", "upgrade"],
        [str(BIN / "flask"), "--app", "app", "seed-demo"],
        [str(BIN / "gunicorn"), "--bind", "127.0.0.1:0", "app:create_app()"],
        [sys.executable, "-c", "from app import create_app; create_app()"],
    ],
    ids=["flask db upgrade", "flask seed-demo", "gunicorn", "create_app"],
)
def test_a_forgotten_setting_stops_every_entry_point_in_one_line(tmp_path, command):
    result = subprocess.run(command, cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "Traceback" not in lines[0] and "APP_ENV=production" in lines[0]
    for name in REQUIRED:
        assert name in lines[0]


def test_env_file_made_as_env_example_says_is_read_and_never_overrides(tmp_path):
    filled = {
        "SECRET_KEY": secrets.token_urlsafe(40),
        "ADMIN_TOKEN": secrets.token_urlsafe(40),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'store.db'}",
    }
    lines = []
    for line in (ROOT / ".env.example").read_text().splitlines():
        name = line.split("=", 1)[0]
        lines.append(f"{name}={filled[name]}" if name in filled else line)
    (tmp_path / ".env").write_text("\n".join(lines) + "\n")
    code = (
        "from config import load_config; c = load_config(); "
        "print(c.APP_ENV, c.SECRET_KEY, c.ADMIN_TOKEN, c.SQLALCHEMY_DATABASE_URI, c.REDIS_URL)"
    )
    env = clean_env(PYTHONPATH=str(ROOT))
    read = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert read.returncode == 0, read.stderr
    assert read.stdout.split()[:4] == [
        "production",
        filled["SECRET_KEY"],
        filled["ADMIN_TOKEN"],
        filled["DATABASE_URL"],
    ]
    assert re.match(r"redis://", read.stdout.split()[4])
    own = secrets.token_urlsafe(40)
    env["SECRET_KEY"] = own
    kept = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert kept.stdout.split()[1] == own
