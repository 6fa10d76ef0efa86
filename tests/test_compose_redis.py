"""docker-compose-redis.yml's redis-server command line, run here with a password."""

import re
import secrets
import shlex
from pathlib import Path

import pytest
import redis

from . import servers
from .conftest import Store

pytestmark = pytest.mark.redis

COMPOSE = Path(__file__).parent.parent / "docker-compose-redis.yml"


def compose_command(password: str) -> list[str]:
    """The service's command with ${REDIS_PASSWORD...} filled in, as compose would."""
    text = COMPOSE.read_text()
    line = re.search(r"^\s+command:\s*(.+)$", text, re.MULTILINE).group(1)
    line = re.sub(r"\$\{REDIS_PASSWORD[^}]*\}", password, line)
    return shlex.split(line)


def test_compose_publishes_redis_on_loopback_only_and_commits_no_password():
    text = COMPOSE.read_text()
    assert re.search(r'"127\.0\.0\.1:6379:6379"', text)
    assert "--requirepass" in text and "${REDIS_PASSWORD" in text
    assert "--save 20 1" in text


def test_app_logs_in_through_the_compose_redis_with_password(tmp_path, make_app):
    password = secrets.token_urlsafe(24)
    server = servers.RedisServer(tmp_path, args=compose_command(password), password=password).start()
    try:
        with pytest.raises(redis.exceptions.AuthenticationError):
            redis.Redis(port=server.port).ping()
        app = make_app(REDIS_URL=server.url)
        store = Store(app, {"Authorization": f"Bearer {app.config['ADMIN_TOKEN']}"})
        branch_id = store.tenant("acme")["branches"][0]["id"]
        store.user("alice", branch_id)
        client = store.login("alice")
        assert client.get("/me").json["username"] == "alice"
        sid = client.get_cookie("session").value
        assert redis.Redis.from_url(server.url).exists(f"session:{sid}")
        app.extensions["redis"].close()
    finally:
        server.stop()
