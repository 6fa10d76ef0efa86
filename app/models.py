"""The store's tables: tenants own branches; users, products and purchases belong to a branch."""

from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    String,
    UniqueConstraint,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates
from sqlalchemy.types import TypeDecorator

from .extensions import db
from .money import from_cents, to_cents
from .names import name_key


def now_utc() -> datetime:
    return datetime.now(UTC)


class Cents(TypeDecorator):
    """An exact amount with two decimals, stored as whole cents on every database."""

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value, dialect):
        return None if value is None else to_cents(value)

    def process_result_value(self, value, dialect):
        return None if value is None else from_cents(value)


class Timestamp(TypeDecorator):
    """A UTC timestamp that comes back timezone-aware, also from SQLite."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class Tenant(db.Model):
    __tablename__ = "tenants"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    # The name as uniqueness compares it (app.names), kept with every name set.
    name_key: Mapped[str] = mapped_column(String(400), unique=True)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=now_utc)

    branches: Mapped[list["Branch"]] = relationship(back_populates="tenant", order_by="Branch.id")

    @validates("name")
    def _keep_key(self, _, name: str) -> str:
        self.name_key = name_key(name)
        return name


class Branch(db.Model):
    __tablename__ = "branches"

    __table_args__ = (UniqueConstraint("tenant_id", "name_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    name: Mapped[str] = mapped_column(String(100))
    name_key: Mapped[str] = mapped_column(String(400))
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=now_utc)

    tenant: Mapped[Tenant] = relationship(back_populates="branches")

    @validates("name")
    def _keep_key(self, _, name: str) -> str:
        self.name_key = name_key(name)
        return name


ROLES = ("customer", "manager")


class User(db.Model):
    __tablename__ = "users"
    __table_args__ = (CheckConstraint("role IN ('customer', 'manager')", name="role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64))
    username_key: Mapped[str] = mapped_column(String(256), unique=True)
    # Werkzeug's scrypt hashes are 162 characters; leave room for stronger parameters.
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default="customer")
    branch_id: Mapped[int] = mapped_column(ForeignKey("branches.id"), index=True)
    # A disabled user cannot log in; a deleted one neither, and stays so that their purchases
    # keep their user_id and their username stays taken.
    active: Mapped[bool] = mapped_column(default=True, server_default=true())
    deleted_at: Mapped[datetime | None] = mapped_column(Timestamp)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=now_utc)

    branch: Mapped[Branch] = relationship()

    @property
    def can_log_in(self) -> bool:
        return self.active and self.deleted_at is None

    @validates("username")
    def _keep_key(self, _, username: str) -> str:
        self.username_key = name_key(username)
        return username


class Product(db.Model):
    __tablename__ = "products"
    __table_args__ = (
        CheckConstraint("stock >= 0", name="stock_not_negative"),
        CheckConstraint("price_cents > 0", name="price_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    branch_id: Mapped[int] = mapped_column(ForeignKey("branches.id"))
    name: Mapped[str] = mapped_column(String(100))
    price: Mapped[Decimal] = mapped_column("price_cents", Cents)
    stock: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=now_utc)
    updated_at: Mapped[datetime] = mapped_column(Timestamp, default=now_utc, onupdate=now_utc)
    # Deleted products stay so that past purchases and statistics can name them.
    deleted_at: Mapped[datetime | None] = mapped_column(Timestamp)


# Serves the catalogue page: live products of a branch in id order.
Index(
    "ix_products_branch_id_live",
    Product.branch_id,
    Product.id,
    postgresql_where=Product.deleted_at.is_(None),
    sqlite_where=Product.deleted_at.is_(None),
)


class Purchase(db.Model):
    __tablename__ = "purchases"
    __table_args__ = (CheckConstraint("quantity > 0", name="quantity_positive"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    branch_id: Mapped[int] = mapped_column(ForeignKey("branches.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    # A snapshot: later edits to the product do not rewrite what was sold.
    product_name: Mapped[str] = mapped_column(String(100))
    unit_price: Mapped[Decimal] = mapped_column("unit_price_cents", Cents)
    quantity: Mapped[int]
    total: Mapped[Decimal] = mapped_column("total_cents", Cents)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=now_utc)


Index("ix_purchases_branch_id_id", Purchase.branch_id, Purchase.id)
Index("ix_purchases_user_id_id", Purchase.user_id, Purchase.id)
Index("ix_purchases_product_id", Purchase.product_id)


class IdempotencyKey(db.Model):
    """The outcome of a purchase request, kept under the client's key so a retry replays it.

    Written in the same transaction as the purchase it records, so the two cannot disagree,
    and in the database so that keys survive a Redis restart.
    """

    __tablename__ = "idempotency_keys"
    __table_args__ = (
        UniqueConstraint("user_id", "key"),
        CheckConstraint("outcome IN ('sold', 'out_of_stock', 'not_found')", name="outcome"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    # What the first request came to (app.sales.Outcome), and the purchase it created if it sold.
    outcome: Mapped[str] = mapped_column(String(16))
    purchase_id: Mapped[int | None] = mapped_column(ForeignKey("purchases.id"))
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=now_utc, index=True)
