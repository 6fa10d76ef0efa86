"""Users: found by username whatever its case, registered, checked at login, changed and ended.

Every change that takes rights away ends the user's sessions at once (app.redis.user_sessions):
disabling, deleting, a new role, a new password (all sessions but the one that changed it).
"""

from sqlalchemy import select
from sqlalchemy.orm import joinedload

from .extensions import db
from .models import Branch, User, now_utc
from .names import name_key
from .passwords import hash_password, needs_rehash, verify_password
from .redis.user_sessions import user_sessions


def find_user(username: str) -> User | None:
    """The user of this username in any case or compatibility form, deleted ones included (a
    username stays taken), with their branch."""
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


def who_may_log_in(user: User | None) -> User | None:
    """The user if they may log in; a disabled or deleted one is answered like a stranger."""
    return user if user is not None and user.can_log_in else None


def login_state(user_id: int) -> tuple[bool, str] | None:
    """Whether the user may log in, and their role, as committed now (None: no such user)."""
    db.session.commit()  # a fresh read, past what this request's transaction has seen
    row = db.session.execute(
        select(User.active, User.deleted_at, User.role).where(User.id == user_id)
    ).one_or_none()
    return None if row is None else (row.active and row.deleted_at is None, row.role)


def change(user: User, *, role: str | None = None, active: bool | None = None) -> None:
    """Give the user another role, or disable or enable them; their sessions end if rights go."""
    ends_sessions = (role is not None and role != user.role) or (active is False and user.active)
    if role is not None:
        user.role = role
    if active is not None:
        user.active = active
    db.session.commit()
    if ends_sessions:
        user_sessions().end(user.id)


def delete(user: User) -> None:
    """Delete the user softly: no more logins, their purchases keep them, the name stays taken."""
    user.deleted_at = now_utc()
    db.session.commit()
    user_sessions().end(user.id)


def change_password(user: User, password: str, keep_sid: str) -> None:
    """Set a new password; every session of the user but `keep_sid` ends."""
    user.password_hash = hash_password(password)
    db.session.commit()
    user_sessions().end(user.id, keep_sid=keep_sid)
