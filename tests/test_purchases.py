"""Buying: stock, snapshots, history and best sellers."""

import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import psycopg
import pytest

from app.extensions import db
from app.models import Purchase

from . import servers


@pytest.fixture
def app(app_on_each_database):
    return app_on_each_database


def test_purchase_decrements_stock_and_snapshots_price(shop):
    customer, product = shop["customer"], shop["product"]
    response = customer.post("/purchase", json={"product_id": product["id"], "quantity": 3})
    assert response.status_code == 201
    assert response.json == {
        "message": "Purchase created",
        "purchase_id": response.json["purchase_id"],
        "product_id": product["id"],
        "quantity": 3,
        "unit_price": 2.5,
        "total": 7.5,
    }
    assert customer.get(f"/products/{product['id']}").json["stock"] == 7


def test_purchase_totals_are_exact(shop, store):
    product = store.product(shop["branch_id"], "Sticker", price=0.1, stock=5)
    response = shop["customer"].post("/purchase", json={"product_id": product["id"], "quantity": 3})
    assert response.json["total"] == 0.3
    assert response.json["unit_price"] == 0.1


def test_purchase_beyond_stock_is_409_and_changes_nothing(app, shop):
    customer, product = shop["customer"], shop["product"]
    response = customer.post("/purchase", json={"product_id": product["id"], "quantity": 11})
    assert response.status_code == 409
    assert response.json == {"error": "Insufficient stock"}
    assert customer.get(f"/products/{product['id']}").json["stock"] == 10
    with app.app_context():
        assert db.session.query(Purchase).count() == 0


def test_purchase_requires_login(client, shop):
    response = client.post("/purchase", json={"product_id": shop["product"]["id"], "quantity": 1})
    assert response.status_code == 401
    assert response.json == {"error": "User not logged in"}


def test_deleted_product_is_not_sold_but_history_keeps_snapshot(shop):
    customer, manager, product = shop["customer"], shop["manager"], shop["product"]
    customer.post("/purchase", json={"product_id": product["id"], "quantity": 1})
    manager.patch(f"/products/{product['id']}", json={"name": "Renamed", "price": 99})
    assert manager.delete(f"/products/{product['id']}").status_code == 204
    response = customer.post("/purchase", json={"product_id": product["id"], "quantity": 1})
    assert response.status_code == 404
    history = customer.get("/purchases").json["purchases"]
    assert [(p["product_name"], p["unit_price"]) for p in history] == [("Coffee", 2.5)]


def test_customer_sees_own_purchases_manager_sees_branch(shop, store):
    store.user("customer2", shop["branch_id"])
    other = store.login("customer2")
    product_id = shop["product"]["id"]
    shop["customer"].post("/purchase", json={"product_id": product_id, "quantity": 1})
    other.post("/purchase", json={"product_id": product_id, "quantity": 2})
    assert [p["quantity"] for p in shop["customer"].get("/purchases").json["purchases"]] == [1]
    assert [p["quantity"] for p in other.get("/purchases").json["purchases"]] == [2]
    assert [p["quantity"] for p in shop["manager"].get("/purchases").json["purchases"]] == [1, 2]


def test_purchases_are_paginated(shop):
    customer, product_id = shop["customer"], shop["product"]["id"]
    for _ in range(5):
        customer.post("/purchase", json={"product_id": product_id, "quantity": 1})
    first = customer.get("/purchases?limit=2").json
    second = customer.get(f"/purchases?limit=2&cursor={first['next_cursor']}").json
    third = customer.get(f"/purchases?limit=2&cursor={second['next_cursor']}").json
    ids = [p["id"] for page in (first, second, third) for p in page["purchases"]]
    assert ids == sorted(ids) and len(set(ids)) == 5
    assert third["next_cursor"] is None


def test_concurrent_purchases_never_oversell(app, shop, store):
    product = store.product(shop["branch_id"], "Limited", price=1, stock=5)
    clients = [store.login("customer1") for _ in range(12)]

    def buy(client):
        return client.post("/purchase", json={"product_id": product["id"], "quantity": 1}).status_code

    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = list(pool.map(buy, clients))
    assert sorted(statuses) == [201] * 5 + [409] * 7
    assert shop["customer"].get(f"/products/{product['id']}").json["stock"] == 0


def test_top_products_rank_units_sold(shop, store):
    customer = shop["customer"]
    tea = store.product(shop["branch_id"], "Tea", price=1, stock=50)
    customer.post("/purchase", json={"product_id": shop["product"]["id"], "quantity": 2})
    customer.post("/purchase", json={"product_id": tea["id"], "quantity": 5})
    customer.post("/purchase", json={"product_id": tea["id"], "quantity": 1})
    response = customer.get("/stats/top-products")
    assert response.json == {
        "products": [
            {"product_id": tea["id"], "name": "Tea", "units_sold": 6},
            {"product_id": shop["product"]["id"], "name": "Coffee", "units_sold": 2},
        ]
    }
    assert customer.get("/stats/top-products?limit=1").json["products"][0]["name"] == "Tea"


def test_rebuild_top_products_recounts_from_database(app, shop, runner):
    customer, product_id = shop["customer"], shop["product"]["id"]
    customer.post("/purchase", json={"product_id": product_id, "quantity": 4})
    app.extensions["redis"].delete(f"top-products:{shop['branch_id']}")
    assert customer.get("/stats/top-products").json["products"] == []
    result = runner.invoke(args=["rebuild-top-products"])
    assert result.exit_code == 0, result.output
    assert customer.get("/stats/top-products").json["products"][0]["units_sold"] == 4


class PriceChangeInFlight:
    """Another connection changes a product's price and holds its write lock until `commit`."""

    def __init__(self, app, product_id: int, cents: int):
        self.url = app.config["SQLALCHEMY_DATABASE_URI"]
        update = "UPDATE products SET price_cents = %s WHERE id = %s"
        if self.url.startswith("sqlite"):
            self.connection = sqlite3.connect(self.url.removeprefix("sqlite:///"), isolation_level=None)
            self.connection.execute("BEGIN IMMEDIATE")
            self.connection.execute(update.replace("%s", "?"), (cents, product_id))
        else:
            self.connection = psycopg.connect(self.url.replace("+psycopg", "", 1))
            self.connection.execute(update, (cents, product_id))

    def wait_for_a_sale_to_queue(self) -> None:
        if self.url.startswith("sqlite"):
            # SQLite shows no waiters; the sale reaches its write well within this.
            time.sleep(0.5)
            return
        servers.wait_for_lock_wait(self.url, "%store_purchase%")

    def commit(self) -> None:
        if isinstance(self.connection, sqlite3.Connection):
            self.connection.execute("COMMIT")
        else:
            self.connection.commit()
        self.connection.close()


def test_a_sale_records_the_price_committed_while_it_waited_for_the_stock(app, shop):
    """No earlier read of the product is trusted: the price is read where the stock is taken."""
    customer, product_id = shop["customer"], shop["product"]["id"]
    app.config["DATABASE_LOCK_TIMEOUT_MS"] = 10_000  # the sale waits on purpose
    change = PriceChangeInFlight(app, product_id, 999)
    with ThreadPoolExecutor(max_workers=1) as pool:
        buying = pool.submit(customer.post, "/purchase", json={"product_id": product_id, "quantity": 2})
        change.wait_for_a_sale_to_queue()
        change.commit()
        response = buying.result(timeout=10)
    assert response.status_code == 201
    assert (response.json["unit_price"], response.json["total"]) == (9.99, 19.98)
    with app.app_context():
        assert [(p.unit_price, p.quantity) for p in db.session.query(Purchase)] == [(Decimal("9.99"), 2)]
    assert customer.get(f"/products/{product_id}").json["stock"] == 8
