"""Who is calling, and the scope tenant-owned rows are looked up in.

A session's caller sees one branch: `InBranch`. The platform administrator sees every branch:
`EVERYWHERE`, named where it is meant. A lookup takes one of the two and refuses anything else,
so a branch left unset by mistake fails loudly instead of dropping the tenant filter.
"""

import hmac
from dataclasses import dataclass
from functools import wraps

from apiflask import abort
from flask import current_app, request, session
from sqlalchemy import Select, select

from .extensions import db
from .models import Branch, Product, Purchase, User
from .redis.user_sessions import user_sessions
from .schemas import MAX_ID


@dataclass(frozen=True)
class InBranch:
    branch_id: int

    def __post_init__(self):
        if type(self.branch_id) is not int or self.branch_id < 1:
            raise TypeError(f"a branch scope needs a branch id, got {self.branch_id!r}")


class Everywhere:
    """The administrator's scope: every branch of every tenant."""

    def __repr__(self) -> str:
        return "EVERYWHERE"


EVERYWHERE = Everywhere()
Scope = InBranch | Everywhere


@dataclass(frozen=True)
class Identity:
    user_id: int
    branch_id: int
    tenant_id: int
    role: str

    @property
    def is_manager(self) -> bool:
        return self.role == "manager"

    @property
    def scope(self) -> InBranch:
        return InBranch(self.branch_id)


def start_session(user_id: int, branch_id: int, tenant_id: int, role: str) -> None:
    """Replace whatever session the client had with a fresh one for this user, known to Redis
    as one of the user's sessions from now on (UserSessions.create)."""
    end_session()
    session.update(user_id=user_id, branch_id=branch_id, tenant_id=tenant_id, role=role)
    current_app.session_interface.regenerate(session)
    user_sessions().create(session)


def end_session() -> None:
    """End the request's session, if it has one: its key is deleted as the response is made."""
    user_id = session.get("user_id")
    if user_id is not None:
        user_sessions().forget(user_id, session.sid)
    session.clear()


def current_identity() -> Identity | None:
    user_id = session.get("user_id")
    if user_id is None:
        return None
    return Identity(user_id, session["branch_id"], session["tenant_id"], session["role"])


# The OpenAPI document's security alternatives, as each access decorator declares them on the
# view it wraps (app.openapi reads them).
SESSION = {"session": []}
ADMINISTRATOR = {"administrator": []}
ANYONE = {}


def declares(*alternatives: dict):
    def mark(view):
        view.openapi_security = list(alternatives)
        return view

    return mark


def login_required(view):
    """Answer 401 unless the request carries a logged-in session."""

    @declares(SESSION)
    @wraps(view)
    def wrapper(*args, **kwargs):
        identity = current_identity()
        if identity is None:
            abort(401, "User not logged in")
        return view(identity, *args, **kwargs)

    return wrapper


LOOPBACK = ("127.0.0.1", "::1")


def is_admin() -> bool:
    token = current_app.config["ADMIN_TOKEN"]
    if token is None:
        # Development without a token opens administration to this machine's own clients, as
        # announced at start-up; production and testing never start without one.
        return current_app.config["APP_ENV"] == "development" and request.remote_addr in LOOPBACK
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.encode(), token.encode())


def manager_or_admin(refusal: str):
    """Let managers act within their own branch and the administrator anywhere; customers get
    403 with `refusal`. The view receives the scope it may act in: InBranch or EVERYWHERE."""

    def decorator(view):
        @declares(SESSION, ADMINISTRATOR)
        @wraps(view)
        def wrapper(*args, **kwargs):
            identity = current_identity()
            if identity is not None:
                if not identity.is_manager:
                    abort(403, refusal)
                return view(identity.scope, *args, **kwargs)
            if is_admin():
                return view(EVERYWHERE, *args, **kwargs)
            abort(401, "User not logged in")

        return wrapper

    return decorator


def admin_required(view):
    """Answer 403 unless the caller presents the platform administrator's token."""

    @declares(ADMINISTRATOR)
    @wraps(view)
    def wrapper(*args, **kwargs):
        if not is_admin():
            abort(403, "Administrator token required")
        return view(*args, **kwargs)

    return wrapper


def scoped(query: Select, branch_column, scope: Scope) -> Select:
    """The query limited to the scope by the given branch column: the one place scopes apply."""
    if isinstance(scope, InBranch):
        return query.where(branch_column == scope.branch_id)
    if scope is EVERYWHERE:
        return query
    raise TypeError(f"not a scope: {scope!r}")


def live_products(scope: Scope) -> Select:
    """Products on sale within the scope."""
    return scoped(select(Product).where(Product.deleted_at.is_(None)), Product.branch_id, scope)


def purchases(scope: Scope) -> Select:
    """Purchases made within the scope."""
    return scoped(select(Purchase), Purchase.branch_id, scope)


def get_product(product_id: int, scope: Scope) -> Product:
    """A live product within the scope; anything else is the same 404."""
    # An id beyond the column's range (a path like /products/<2**70>) cannot exist and would
    # overflow the query.
    if not 1 <= product_id <= MAX_ID:
        abort(404, "Product not found")
    product = db.session.scalar(live_products(scope).where(Product.id == product_id))
    if product is None:
        abort(404, "Product not found")
    return product


def get_user(user_id: int, scope: Scope) -> User:
    """A user within the scope who is not deleted; anything else is the same 404."""
    if not 1 <= user_id <= MAX_ID:
        abort(404, "User not found")
    query = scoped(select(User).where(User.id == user_id, User.deleted_at.is_(None)), User.branch_id, scope)
    user = db.session.scalar(query)
    if user is None:
        abort(404, "User not found")
    return user


def users(scope: Scope) -> Select:
    """Users within the scope who are not deleted."""
    return scoped(select(User).where(User.deleted_at.is_(None)), User.branch_id, scope)


def get_branch(branch_id: int) -> Branch:
    """Any branch, by id: for the administrator and for registration, which name a branch."""
    branch = db.session.get(Branch, branch_id)
    if branch is None:
        abort(404, "Branch not found")
    return branch
