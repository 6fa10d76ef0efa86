"""Settings for each environment, read from environment variables.

Development runs with no variables at all; production refuses to start
while a required variable is missing or weak.
"""

import os
from collections.abc import Mapping


def _seconds(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name, "")
    if raw == "":
        return default
    if not raw.isdigit() or int(raw) == 0:
        raise RuntimeError(f"{name} must be a positive whole number of seconds, got {raw!r}")
    return int(raw)


def _count(environ: Mapping[str, str], name: str) -> int:
    raw = environ.get(name, "")
    if raw == "":
        return 0
    if not raw.isdigit():
        raise RuntimeError(f"{name} must be a whole number, got {raw!r}")
    return int(raw)


class Config:
    """Settings shared by every environment; an instance reads the environment once."""

    APP_ENV = "development"
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
    # Failed logins allowed before 429, per client address and per username.
    LOGIN_LIMIT_PER_ADDRESS = "20 per minute; 200 per hour"
    LOGIN_LIMIT_PER_USERNAME = "5 per minute; 30 per hour"

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

    def __init__(self, environ: Mapping[str, str] | None = None):
        env = os.environ if environ is None else environ
        self.SECRET_KEY = env.get("SECRET_KEY") or None
        self.SQLALCHEMY_DATABASE_URI = env.get("DATABASE_URL") or None
        self.REDIS_URL = env.get("REDIS_URL") or None
        self.ADMIN_TOKEN = env.get("ADMIN_TOKEN") or None
        # Behind N reverse proxies, trust N X-Forwarded-* hops for the client's address.
        self.TRUSTED_PROXY_COUNT = _count(env, "TRUSTED_PROXY_COUNT")
        self.SESSION_IDLE_TIMEOUT = _seconds(env, "SESSION_IDLE_TIMEOUT", 1800)
        self.SESSION_ABSOLUTE_TIMEOUT = _seconds(env, "SESSION_ABSOLUTE_TIMEOUT", 43200)
        # Flask's default is 31 days; a session key never outlives the idle timeout.
        self.PERMANENT_SESSION_LIFETIME = self.SESSION_IDLE_TIMEOUT
        self.check()

    def check(self) -> None:
        """Refuse settings that are unsafe in this environment."""


class DevelopmentConfig(Config):
    def __init__(self, environ: Mapping[str, str] | None = None):
        super().__init__(environ)
        self.SECRET_KEY = self.SECRET_KEY or "development-only-secret-key-never-used-in-production"


class TestingConfig(Config):
    __test__ = False  # a settings class, not a pytest test class
    APP_ENV = "testing"
    TESTING = True
    # Unit tests log in often; integration tests use the production parameters.
    PASSWORD_HASH_METHOD = "scrypt:1024:8:1"

    def __init__(self, environ: Mapping[str, str] | None = None):
        super().__init__({} if environ is None else environ)
        self.SECRET_KEY = self.SECRET_KEY or "testing-secret-key-long-enough-for-checks"
        self.SQLALCHEMY_DATABASE_URI = self.SQLALCHEMY_DATABASE_URI or "sqlite://"
        self.ADMIN_TOKEN = self.ADMIN_TOKEN or "testing-admin-token-long-enough-for-checks"


class ProductionConfig(Config):
    APP_ENV = "production"
    SESSION_COOKIE_SECURE = True

    def check(self) -> None:
        required = {
            "SECRET_KEY": self.SECRET_KEY,
            "DATABASE_URL": self.SQLALCHEMY_DATABASE_URI,
            "REDIS_URL": self.REDIS_URL,
            "ADMIN_TOKEN": self.ADMIN_TOKEN,
        }
        for name, value in required.items():
            if not value:
                raise RuntimeError(f"{name} must be set when APP_ENV=production")
        for name in ("SECRET_KEY", "ADMIN_TOKEN"):
            if len(required[name]) < 32:
                raise RuntimeError(f"{name} must be at least 32 characters when APP_ENV=production")


CONFIGS = {
    "development": DevelopmentConfig,
    "testing": TestingConfig,
    "production": ProductionConfig,
}


def load_config(environ: Mapping[str, str] | None = None) -> Config:
    """Build the settings of the environment that APP_ENV names."""
    env = os.environ if environ is None else environ
    name = env.get("APP_ENV") or "development"
    if name not in CONFIGS:
        raise RuntimeError(f"APP_ENV must be one of {', '.join(CONFIGS)}, got {name!r}")
    return CONFIGS[name](env)
