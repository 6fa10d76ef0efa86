"""Settings for each environment, read from environment variables.

APP_ENV chooses the environment, and production is the default: a deployment that forgets it
refuses to start without its secrets rather than opening anything. Development is chosen by
the development entry points (`make run`, `run.py`) and runs with no other variable at all.
A `.env` file in the working directory fills in what the environment leaves unset.
"""

import os
import secrets
from collections.abc import Mapping
from typing import NamedTuple
from urllib.parse import unquote

from dotenv import dotenv_values


class ConfigError(RuntimeError):
    """Settings the app cannot start with; the message names every variable at fault, in one line."""


def _positive(environ: Mapping[str, str], name: str, default: int, problems: list[str]) -> int:
    raw = environ.get(name, "")
    if raw == "":
        return default
    if not raw.isdigit() or int(raw) == 0:
        problems.append(f"{name} must be a positive whole number, got {raw!r}")
        return default
    return int(raw)


def _count(environ: Mapping[str, str], name: str, problems: list[str]) -> int:
    raw = environ.get(name, "")
    if raw == "":
        return 0
    if not raw.isdigit():
        problems.append(f"{name} must be a whole number, got {raw!r}")
        return 0
    return int(raw)


THROTTLE_LIMITS = (
    "LOGIN_LIMIT_PER_ADDRESS",
    "LOGIN_LIMIT_PER_USERNAME_AND_ADDRESS",
    "LOGIN_LIMIT_PER_USERNAME",
    "REGISTER_LIMIT_PER_ADDRESS",
)


class SentinelURL(NamedTuple):
    """redis+sentinel://[:password@]host:port[,host:port...]/service_name[/db], taken apart once."""

    sentinels: list[tuple[str, int]]
    service_name: str
    db: int
    password: str | None  # the Redis servers'; the sentinels' is REDIS_SENTINEL_PASSWORD


SENTINEL_SCHEME = "redis+sentinel://"


def parse_sentinel_url(url: str) -> SentinelURL:
    """Read a Sentinel URL as the store documents it; ValueError naming what is wrong.

    Read here rather than by a library: `limits` would take "store/0" as one service name,
    "store0", and send the URL's password to the sentinels.
    """
    rest = url.removeprefix(SENTINEL_SCHEME)
    netloc, _, path = rest.partition("/")
    userinfo, _, hosts = netloc.rpartition("@")
    password = unquote(userinfo.partition(":")[2]) or None
    sentinels = []
    for host in hosts.split(","):
        name, colon, port = host.rpartition(":")
        if not colon or not name or not port.isdigit():
            raise ValueError(f"sentinel {host!r} is not host:port")
        sentinels.append((name.strip("[]"), int(port)))
    service, _, db = path.partition("/")
    if not service:
        raise ValueError("the service name is missing")
    if db and not db.isdigit():
        raise ValueError(f"db {db!r} is not a number")
    return SentinelURL(sentinels, unquote(service), int(db or 0), password)


# Made once per process: a server started with APP_ENV=testing accepts no secret from the source.
_TESTING_SECRETS = {"SECRET_KEY": secrets.token_urlsafe(32), "ADMIN_TOKEN": secrets.token_urlsafe(32)}


class Config:
    """Settings shared by every environment; an instance reads the environment once."""

    APP_ENV = "production"
    # On PostgreSQL, app.database checks each connection taken from the pool without a query.
    SQLALCHEMY_ENGINE_OPTIONS: dict = {}

    SESSION_KEY_PREFIX = "session:"
    # A session is written when it changes; the idle timer is refreshed by the
    # session interface at most once a minute rather than on every request.
    SESSION_REFRESH_EACH_REQUEST = False
    SESSION_COOKIE_NAME = "session"
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    SESSION_COOKIE_SECURE = False

    MAX_CONTENT_LENGTH = 1024 * 1024
    # Flask's automatic OPTIONS answers are empty text/html; undocumented methods get a JSON 405.
    PROVIDE_AUTOMATIC_OPTIONS = False
    # Fail fast while Redis is stalled instead of holding a worker.
    REDIS_SOCKET_TIMEOUT = 0.2
    # OWASP's scrypt minimum: N=2^15, r=8, p=3. Older hashes are upgraded at the next login.
    PASSWORD_HASH_METHOD = "scrypt:32768:8:3"
    # Failed logins allowed before 429 (app.redis.throttle.login_windows). Per username from
    # everywhere stays above twice per username and address, so one address cannot reach it.
    LOGIN_LIMIT_PER_ADDRESS = "20 per minute; 60 per hour"
    LOGIN_LIMIT_PER_USERNAME_AND_ADDRESS = "5 per minute; 9 per hour"
    LOGIN_LIMIT_PER_USERNAME = "20 per hour"
    # Registrations from one client address (the administrator's are not counted).
    REGISTER_LIMIT_PER_ADDRESS = "10 per minute; 50 per hour"

    # Error bodies as documented in the OpenAPI document.
    HTTP_ERROR_SCHEMA = {
        "type": "object",
        "properties": {"error": {"type": "string"}},
        "required": ["error"],
    }
    VALIDATION_ERROR_SCHEMA = {
        "type": "object",
        "properties": {
            "error": {"type": "string"},
            "details": {
                "type": "object",
                "additionalProperties": {"type": "array", "items": {"type": "string"}},
            },
        },
        "required": ["error"],
    }

    TITLE = "Store API"
    VERSION = "1.0.0"
    OPENAPI_VERSION = "3.1.0"
    # An empty inline icon: None rendered as href="None" (a 404 for /None), and APIFlask's
    # default is on another host.
    DOCS_FAVICON = "data:,"
    AUTO_404_RESPONSE = False
    # The document's servers come from PUBLIC_URL, never from a request's Host header (which
    # APIFlask would take, and a client could choose: "Try it out" would send passwords there).
    AUTO_SERVERS = False

    def __init__(self, environ: Mapping[str, str] | None = None):
        env = os.environ if environ is None else environ
        problems: list[str] = []
        self.SECRET_KEY = env.get("SECRET_KEY") or None
        self.SQLALCHEMY_DATABASE_URI = env.get("DATABASE_URL") or None
        self.REDIS_URL = env.get("REDIS_URL") or None
        # With a redis+sentinel:// URL, Sentinel finds the primary; the sentinels' own password.
        self.REDIS_SENTINEL = None
        self.REDIS_SENTINEL_PASSWORD = env.get("REDIS_SENTINEL_PASSWORD") or None
        if self.REDIS_URL and self.REDIS_URL.startswith(SENTINEL_SCHEME):
            try:
                self.REDIS_SENTINEL = parse_sentinel_url(self.REDIS_URL)
            except ValueError as error:
                problems.append(f"REDIS_URL is not a Sentinel URL as documented: {error}")
        self.ADMIN_TOKEN = env.get("ADMIN_TOKEN") or None
        # The throttle's limits (limits' notation, "5 per minute; 9 per hour"), for operators to tune.
        for name in THROTTLE_LIMITS:
            if env.get(name):
                setattr(self, name, env[name])
        # /metrics for others than loopback clients (app.metrics); METRICS_ENABLED=0 turns it off.
        self.METRICS_TOKEN = env.get("METRICS_TOKEN") or None
        self.METRICS_ENABLED = env.get("METRICS_ENABLED", "1") != "0"
        # Where clients reach the API, for the OpenAPI document; relative by default.
        self.SERVERS = [{"url": env.get("PUBLIC_URL") or "/"}]
        # Behind N reverse proxies, trust N X-Forwarded-* hops for the client's address.
        self.TRUSTED_PROXY_COUNT = _count(env, "TRUSTED_PROXY_COUNT", problems)
        # What one statement of a request may take, and wait for a lock, on PostgreSQL: a
        # request that needs a stalled database answers 503 within a second.
        self.DATABASE_STATEMENT_TIMEOUT_MS = _positive(env, "DATABASE_STATEMENT_TIMEOUT_MS", 800, problems)
        self.DATABASE_LOCK_TIMEOUT_MS = _positive(env, "DATABASE_LOCK_TIMEOUT_MS", 500, problems)
        self.SESSION_IDLE_TIMEOUT = _positive(env, "SESSION_IDLE_TIMEOUT", 1800, problems)
        self.SESSION_ABSOLUTE_TIMEOUT = _positive(env, "SESSION_ABSOLUTE_TIMEOUT", 43200, problems)
        # Flask's default is 31 days; a session key never outlives the idle timeout.
        self.PERMANENT_SESSION_LIFETIME = self.SESSION_IDLE_TIMEOUT
        self.defaults()
        problems += self.problems()
        if problems:
            raise ConfigError(f"APP_ENV={self.APP_ENV} cannot start: {'; '.join(problems)}")

    def defaults(self) -> None:
        """Fill in what this environment may do without."""

    def problems(self) -> list[str]:
        """What is unsafe or missing in this environment, a message each."""
        return []


class DevelopmentConfig(Config):
    APP_ENV = "development"

    def defaults(self) -> None:
        self.SECRET_KEY = self.SECRET_KEY or "development-only-secret-key-never-used-in-production"


class TestingConfig(Config):
    __test__ = False  # a settings class, not a pytest test class
    APP_ENV = "testing"
    TESTING = True
    # Unit tests log in often; integration tests use the production parameters.
    PASSWORD_HASH_METHOD = "scrypt:1024:8:1"

    def __init__(self, environ: Mapping[str, str] | None = None):
        super().__init__({} if environ is None else environ)

    def defaults(self) -> None:
        self.SECRET_KEY = self.SECRET_KEY or _TESTING_SECRETS["SECRET_KEY"]
        self.ADMIN_TOKEN = self.ADMIN_TOKEN or _TESTING_SECRETS["ADMIN_TOKEN"]
        self.SQLALCHEMY_DATABASE_URI = self.SQLALCHEMY_DATABASE_URI or "sqlite://"


class ProductionConfig(Config):
    SESSION_COOKIE_SECURE = True

    def problems(self) -> list[str]:
        found = []
        required = {
            "SECRET_KEY": self.SECRET_KEY,
            "DATABASE_URL": self.SQLALCHEMY_DATABASE_URI,
            "REDIS_URL": self.REDIS_URL,
            "ADMIN_TOKEN": self.ADMIN_TOKEN,
        }
        for name, value in required.items():
            if not value:
                found.append(f"{name} must be set")
            elif name in ("SECRET_KEY", "ADMIN_TOKEN") and len(value) < 32:
                found.append(f"{name} must be at least 32 characters")
        return found


CONFIGS = {
    "development": DevelopmentConfig,
    "testing": TestingConfig,
    "production": ProductionConfig,
}


def load_config(environ: Mapping[str, str] | None = None) -> Config:
    """The settings of the environment APP_ENV names (production when unset).

    Without an explicit mapping, the process's environment, with what `.env` in the working
    directory sets for variables it leaves unset (never overriding one that is set).
    """
    if environ is None:
        environ = {**{k: v for k, v in dotenv_values(".env").items() if v is not None}, **os.environ}
    name = environ.get("APP_ENV") or "production"
    if name not in CONFIGS:
        raise ConfigError(f"APP_ENV must be one of {', '.join(CONFIGS)}, got {name!r}")
    return CONFIGS[name](environ)
