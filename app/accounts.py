"""Users: found by username whatever its case, registered, and checked at login."""

from sqlalchemy import select
from sqlalchemy.orm import joinedload

from .extensions import db
from .models import Branch, User
from .names import name_key
from .passwords import hash_password, needs_rehash, verify_password


def find_user(username: str) -> User | None:
    """The user of this username in any case or compatibility form, with their branch."""
    return db.session.scalar(
        select(User).options(joinedload(User.branch)).where(User.username_key == name_key(username))
    )


def new_user(username: str, password: str, branch: Branch, role: str = "customer") -> User:
    """A user to add to the session, their password hashed."""
    return User(username=username, password_hash=hash_password(password), role=role, branch=branch)


def check_password(user: User | None, password: str) -> bool:
    """Whether the password is the user's, in the same time for a user that does not exist.

    A hash made with older parameters is replaced at the first login that proves it.
    """
    if not verify_password(user.password_hash if user else None, password):
        return False
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
        db.session.commit()
    return True
