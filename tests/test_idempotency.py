"""Idempotency keys on POST /purchase: replay, mismatch and concurrency."""

from concurrent.futures import ThreadPoolExecutor

import pytest

from app.extensions import db
from app.models import Product, Purchase


@pytest.fixture
def app(app_on_each_database):
    return app_on_each_database


def buy(client, product_id, quantity=1, key="order-1"):
    headers = {"Idempotency-Key": key} if key is not None else {}
    return client.post("/purchase", json={"product_id": product_id, "quantity": quantity}, headers=headers)


def counts(app, product_id):
    with app.app_context():
        return db.session.query(Purchase).count(), db.session.get(Product, product_id).stock


def test_retry_with_same_key_replays_the_first_answer_and_buys_once(app, shop):
    customer, product_id = shop["customer"], shop["product"]["id"]
    first = buy(customer, product_id, 2)
    again = buy(customer, product_id, 2)
    assert first.status_code == again.status_code == 201
    assert again.json == first.json
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert counts(app, product_id) == (1, 8)


def test_same_key_with_another_body_is_422_and_buys_nothing(app, shop):
    customer, product_id = shop["customer"], shop["product"]["id"]
    buy(customer, product_id, 2)
    response = buy(customer, product_id, 3)
    assert response.status_code == 422
    assert "Idempotency-Key" in response.json["error"]
    assert counts(app, product_id) == (1, 8)


def test_a_failed_first_attempt_is_replayed_too(app, shop):
    customer, product_id = shop["customer"], shop["product"]["id"]
    assert buy(customer, product_id, 50).status_code == 409
    replay = buy(customer, product_id, 50)
    assert replay.status_code == 409
    assert replay.json == {"error": "Insufficient stock"}
    assert replay.headers["Idempotent-Replayed"] == "true"


def test_keys_belong_to_one_user(app, shop, store):
    store.user("customer2", shop["branch_id"])
    other = store.login("customer2")
    product_id = shop["product"]["id"]
    assert buy(shop["customer"], product_id, 1).status_code == 201
    response = buy(other, product_id, 1)
    assert response.status_code == 201 and "Idempotent-Replayed" not in response.headers
    assert counts(app, product_id) == (2, 8)


def test_without_a_key_every_request_buys(app, shop):
    customer, product_id = shop["customer"], shop["product"]["id"]
    buy(customer, product_id, 1, key=None)
    buy(customer, product_id, 1, key=None)
    assert counts(app, product_id) == (2, 8)


@pytest.mark.parametrize("key", ["", "k" * 256, "nul\x00", "bell\x07", "\u00e9t\u00e9"])
def test_key_length_is_validated(app, shop, key):
    response = buy(shop["customer"], shop["product"]["id"], 1, key=key)
    assert response.status_code == 422
    assert "Idempotency-Key" in response.json["details"]
    assert counts(app, shop["product"]["id"]) == (0, 10)


def test_concurrent_requests_with_one_key_buy_once(app, shop, store):
    product_id = shop["product"]["id"]
    clients = [store.login("customer1") for _ in range(8)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(lambda c: buy(c, product_id, 1, key="same"), clients))
    assert {r.status_code for r in responses} <= {201, 409}
    assert counts(app, product_id) == (1, 9)
    created = {r.json["purchase_id"] for r in responses if r.status_code == 201}
    assert len(created) == 1


def test_purge_keeps_keys_for_at_least_a_day(app, shop, runner):
    buy(shop["customer"], shop["product"]["id"], 1)
    assert runner.invoke(args=["purge-idempotency-keys", "--hours", "1"]).exit_code != 0
    result = runner.invoke(args=["purge-idempotency-keys"])
    assert "Deleted 0" in result.output
    assert buy(shop["customer"], shop["product"]["id"], 1).headers["Idempotent-Replayed"] == "true"
