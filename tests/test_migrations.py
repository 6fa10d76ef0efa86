"""The migrations on PostgreSQL: down to nothing and up again, store_purchase() included."""

import flask_migrate
import pytest
from sqlalchemy import inspect, text

from app import create_app
from app.extensions import db
from app.services import SALES_ENGINE
from config import TestingConfig

from . import services

pytestmark = pytest.mark.postgres

TABLES = {"tenants", "branches", "users", "products", "purchases", "idempotency_keys"}


def test_migrations_go_down_to_nothing_and_up_again():
    url = services.create_database()
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
            db.engine.dispose()
            app.extensions[SALES_ENGINE].dispose()
    finally:
        services.drop_database(url)
