"""Password hashing with Werkzeug's scrypt, and a check that costs the same for unknown users."""

from functools import cache

from flask import current_app
from werkzeug.security import check_password_hash, generate_password_hash


def hash_password(password: str) -> str:
    return generate_password_hash(password, method=current_app.config["PASSWORD_HASH_METHOD"])


@cache
def _dummy_hash(method: str) -> str:
    return generate_password_hash("not-a-real-password", method=method)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Check a password; with no user, check against a dummy hash so both paths take as long."""
    if password_hash is None:
        check_password_hash(_dummy_hash(current_app.config["PASSWORD_HASH_METHOD"]), password)
        return False
    return check_password_hash(password_hash, password)


def needs_rehash(password_hash: str) -> bool:
    """True when the stored hash was made with other parameters than the configured ones."""
    method = password_hash.split("$", 1)[0]
    return method != current_app.config["PASSWORD_HASH_METHOD"]
