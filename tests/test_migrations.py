"""The migrations on PostgreSQL: down to nothing and up again, store_purchase() included."""

import flask_migrate
import pytest
from sqlalchemy import inspect, text

from app import create_app
from app.database import dispose_engines
from app.extensions import db
from config import TestingConfig

from . import servers

pytestmark = pytest.mark.postgres

TABLES = {"tenants", "branches", "users", "products", "purchases", "idempotency_keys"}


def test_migrations_go_down_to_nothing_and_up_again():
    url = servers.create_database()
    try:
        app = create_app(TestingConfig({"DATABASE_URL": url}))
        with app.app_context():

            def state():
                tables = set(inspect(db.engine).get_table_names()) - {"alembic_version"}
                functions = db.session.scalar(
                    text("SELECT count(*) FROM pg_proc WHERE proname = 'store_purchase'")
                )
                db.session.commit()
                return tables, functions

            flask_migrate.upgrade()
            assert state() == (TABLES, 1)
            flask_migrate.downgrade(revision="base")
            assert state() == (set(), 0)
            flask_migrate.upgrade()
            assert state() == (TABLES, 1)
            db.session.remove()
        dispose_engines(app)
    finally:
        servers.drop_database(url)


SEED = """
INSERT INTO tenants (id, name, created_at) VALUES (1, 'acme', now());
INSERT INTO branches (id, tenant_id, name, created_at) VALUES (1, 1, 'main', now());
INSERT INTO users (id, username, password_hash, role, branch_id, created_at)
     VALUES (1, 'alice', 'x', 'customer', 1, now());
INSERT INTO products (id, branch_id, name, price_cents, stock, created_at, updated_at)
     VALUES (1, 1, 'Tea', 150, 5, now(), now());
"""
# Sold, refused for stock, refused for a product that does not exist: each under its own key.
SALES = {"sold": (1, 2), "out_of_stock": (1, 50), "not_found": (99, 1)}


def sell(key: str, *more) -> tuple:
    """A call of store_purchase(), with the arguments a revision's version adds after the first seven."""
    product_id, quantity = SALES[key]
    extra = "".join(f", {value}" for value in more)
    row = db.session.execute(
        text(f"SELECT * FROM store_purchase(1, 1, 1, :product, :quantity, :key, 'hash'{extra})"),
        {"product": product_id, "quantity": quantity, "key": key},
    ).one()
    db.session.commit()
    return tuple(row)


def test_kept_answers_survive_the_outcome_migration_both_ways():
    """Keys kept with HTTP statuses before revision a41c7e93d0b5 replay after it, and back."""
    url = servers.create_database()
    try:
        app = create_app(TestingConfig({"DATABASE_URL": url}))
        with app.app_context():
            flask_migrate.upgrade(revision="5f3a9c1e7b20")
            db.session.execute(text(SEED))
            db.session.commit()
            first = {key: sell(key) for key in SALES}
            assert [row[1] for row in first.values()] == [201, 409, 404]

            flask_migrate.upgrade()
            kept = db.session.execute(text("SELECT key, outcome FROM idempotency_keys ORDER BY id")).all()
            assert [tuple(row) for row in kept] == [(key, key) for key in SALES]
            for key in SALES:
                outcome, replayed, purchase_id, *_ = sell(key, 500)
                assert (outcome, replayed, purchase_id) == (key, True, first[key][3])

            flask_migrate.downgrade(revision="5f3a9c1e7b20")
            # The old function's columns: outcome, status_code, error, purchase_id, ...
            replays = [sell(key) for key in SALES]
            assert [row[0] for row in replays] == ["replayed"] * 3
            assert [row[1:4] for row in replays] == [row[1:4] for row in first.values()]
            db.session.remove()
        dispose_engines(app)
    finally:
        servers.drop_database(url)


def test_names_that_now_read_the_same_stay_valid_and_block_a_third(tmp_path):
    """Two tenants stored before the names revision that its rule says are one: both stay, the
    older keeps the name, and nobody can register it again."""
    url = servers.create_database()
    try:
        app = create_app(TestingConfig({"DATABASE_URL": url}))
        with app.app_context():
            flask_migrate.upgrade(revision="a41c7e93d0b5")
            for name in ("Straße", "STRASSE"):
                db.session.execute(
                    text("INSERT INTO tenants (name, created_at) VALUES (:n, now())"), {"n": name}
                )
            db.session.commit()
            flask_migrate.upgrade()
            names = db.session.execute(text("SELECT name, name_key FROM tenants ORDER BY id")).all()
            assert [tuple(row) for row in names] == [("Straße", "strasse"), ("STRASSE", "strasse#2")]
            db.session.commit()
        admin = {"Authorization": f"Bearer {app.config['ADMIN_TOKEN']}"}
        response = app.test_client().post(
            "/register_tenants", json={"tenant_names": ["strasse"]}, headers=admin
        )
        assert response.status_code == 409
        with app.app_context():
            flask_migrate.downgrade(revision="a41c7e93d0b5")
            assert db.session.execute(text("SELECT count(*) FROM tenants")).scalar() == 2
            db.session.commit()
        dispose_engines(app)
    finally:
        servers.drop_database(url)
