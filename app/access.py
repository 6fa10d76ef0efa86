"""Who is calling, and the one place tenant-owned rows are looked up within their scope."""

import hmac
from dataclasses import dataclass
from functools import wraps

from apiflask import abort
from flask import current_app, request, session
from sqlalchemy import Select, select

from .extensions import db
from .models import Branch, Product
from .schemas import MAX_ID


@dataclass(frozen=True)
class Identity:
    user_id: int
    branch_id: int
    tenant_id: int
    role: str

    @property
    def is_manager(self) -> bool:
        return self.role == "manager"


def start_session(user_id: int, branch_id: int, tenant_id: int, role: str) -> None:
    """Replace whatever session the client had with a fresh one for this user."""
    session.clear()
    session.update(user_id=user_id, branch_id=branch_id, tenant_id=tenant_id, role=role)
    current_app.session_interface.regenerate(session)


def current_identity() -> Identity | None:
    user_id = session.get("user_id")
    if user_id is None:
        return None
    return Identity(user_id, session["branch_id"], session["tenant_id"], session["role"])


def login_required(view):
    """Answer 401 unless the request carries a logged-in session."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        identity = current_identity()
        if identity is None:
            abort(401, "User not logged in")
        return view(identity, *args, **kwargs)

    return wrapper


def is_admin() -> bool:
    token = current_app.config["ADMIN_TOKEN"]
    if token is None:
        # Development without a token leaves administration open, as announced at
        # start-up; production refuses to start without one.
        return current_app.config["APP_ENV"] == "development"
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.encode(), token.encode())


def admin_required(view):
    """Answer 403 unless the caller presents the platform administrator's token."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        if not is_admin():
            abort(403, "Administrator token required")
        return view(*args, **kwargs)

    return wrapper


def live_products(branch_id: int | None) -> Select:
    """Products that are on sale, limited to one branch unless the caller is the administrator."""
    query = select(Product).where(Product.deleted_at.is_(None))
    if branch_id is not None:
        query = query.where(Product.branch_id == branch_id)
    return query


def get_product(product_id: int, branch_id: int | None) -> Product:
    """A live product of the branch; anything else is the same 404."""
    # An id beyond the column's range (a path like /products/<2**70>) cannot exist and would
    # overflow the query.
    if not 1 <= product_id <= MAX_ID:
        abort(404, "Product not found")
    product = db.session.scalar(live_products(branch_id).where(Product.id == product_id))
    if product is None:
        abort(404, "Product not found")
    return product


def get_branch(branch_id: int) -> Branch:
    branch = db.session.get(Branch, branch_id)
    if branch is None:
        abort(404, "Branch not found")
    return branch
