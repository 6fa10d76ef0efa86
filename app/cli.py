"""Commands for operators: demo data and repairs."""

import secrets
from datetime import timedelta
from decimal import Decimal

import click
from flask import Flask, current_app
from sqlalchemy import select

from .accounts import find_user, new_user
from .extensions import db
from .models import Branch, Product, Tenant
from .names import name_key
from .sales.idempotency import purge_idempotency_keys
from .sales.ranking import rebuild_top_products

DEMO_TENANT = "Demo Store"
DEMO_BRANCHES = ("main", "downtown")
DEMO_USERS = (
    # username, password, role, branch
    ("demo_manager", "manager-pass-123", "manager", "main"),
    ("demo_customer", "customer-pass-123", "customer", "main"),
    ("downtown_customer", "customer-pass-123", "customer", "downtown"),
)
DEMO_PRODUCTS = (
    ("Coffee beans 1kg", Decimal("24.90"), 50),
    ("Espresso cup", Decimal("7.50"), 120),
    ("Milk frother", Decimal("39.99"), 15),
    ("Paper filters x100", Decimal("3.20"), 300),
)


def seed_demo(known_passwords: bool) -> list[tuple[str, str | None, str, str]]:
    """Create the demo tenant, branches, users and products that are missing.

    Returns each demo login with its password, or None for a user that existed already. With
    `known_passwords` false (production) the passwords are random, so only whoever ran the
    command knows them.
    """
    tenant = db.session.scalar(select(Tenant).where(Tenant.name_key == name_key(DEMO_TENANT)))
    if tenant is None:
        tenant = Tenant(name=DEMO_TENANT)
        db.session.add(tenant)
    branches = {}
    for name in DEMO_BRANCHES:
        branch = next((b for b in tenant.branches if b.name == name), None)
        if branch is None:
            branch = Branch(name=name, tenant=tenant)
            db.session.add(branch)
        branches[name] = branch
    db.session.flush()
    logins = []
    for username, password, role, branch_name in DEMO_USERS:
        if find_user(username) is not None:
            logins.append((username, None, role, branch_name))
            continue
        password = password if known_passwords else secrets.token_urlsafe(12)
        db.session.add(new_user(username, password, branches[branch_name], role))
        logins.append((username, password, role, branch_name))
    for branch in branches.values():
        names = set(db.session.scalars(select(Product.name).where(Product.branch_id == branch.id)))
        for name, price, stock in DEMO_PRODUCTS:
            if name not in names:
                db.session.add(Product(branch_id=branch.id, name=name, price=price, stock=stock))
    db.session.commit()
    return logins


def register_commands(app: Flask) -> None:
    @app.cli.command("seed-demo")
    def seed_demo_command():
        """Load the demo tenant, users and products (safe to run again)."""
        # Production never gets a password that anyone could read here.
        known = current_app.config["APP_ENV"] != "production"
        logins = seed_demo(known_passwords=known)
        click.echo(f"Demo data ready in tenant {DEMO_TENANT!r}. Logins:")
        for username, password, role, branch in logins:
            shown = password if password is not None else "(existed already; password unchanged)"
            click.echo(f"  {username} / {shown}  ({role}, branch {branch})")
        if not known and any(password for _, password, _, _ in logins):
            click.echo("These passwords are shown this once.")

    @app.cli.command("rebuild-top-products")
    def rebuild_top_products_command():
        """Recount every branch's best sellers in Redis from the purchases table."""
        click.echo(f"Rebuilt the best sellers of {rebuild_top_products()} branches.")

    @app.cli.command("purge-idempotency-keys")
    @click.option("--hours", default=24, show_default=True, help="Keep keys younger than this.")
    def purge_idempotency_keys_command(hours: int):
        """Forget purchase idempotency keys older than the given age (at least 24 hours)."""
        if hours < 24:
            raise click.BadParameter("keys are kept at least 24 hours", param_hint="--hours")
        click.echo(f"Deleted {purge_idempotency_keys(timedelta(hours=hours))} idempotency keys.")
