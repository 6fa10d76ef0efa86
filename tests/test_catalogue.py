"""The branch catalogue: listing, reading and editing products, with exact money."""

import json
from decimal import Decimal

import pytest

from app.extensions import db
from app.models import Product


@pytest.fixture
def six_products(shop, store):
    """The shop's Coffee plus five more, in creation (= id) order."""
    extra = [store.product(shop["branch_id"], f"Item {n}", price=n, stock=n) for n in range(1, 6)]
    return [shop["product"], *extra]


def pages(client, limit):
    url, seen = f"/products?limit={limit}", []
    while url:
        response = client.get(url)
        assert response.status_code == 200, response.json
        seen.append(response.json)
        cursor = response.json["next_cursor"]
        url = f"/products?limit={limit}&cursor={cursor}" if cursor is not None else None
    return seen


def test_list_products_defaults_to_one_page_in_id_order(shop, six_products):
    response = shop["customer"].get("/products")
    assert response.status_code == 200
    assert response.json == {"products": six_products, "next_cursor": None}


def test_list_products_pages_with_cursor(shop, six_products):
    result = pages(shop["customer"], 4)
    assert [len(page["products"]) for page in result] == [4, 2]
    assert isinstance(result[0]["next_cursor"], str)
    assert [p for page in result for p in page["products"]] == six_products


def test_full_last_page_has_null_cursor(shop, six_products):
    result = pages(shop["customer"], 3)
    assert [len(page["products"]) for page in result] == [3, 3]
    assert result[-1]["next_cursor"] is None
    ids = [p["id"] for page in result for p in page["products"]]
    assert ids == sorted(ids)


def test_deleted_products_are_not_listed(shop, six_products):
    gone = six_products[2]["id"]
    assert shop["manager"].delete(f"/products/{gone}").status_code == 204
    listed = [p["id"] for page in pages(shop["customer"], 2) for p in page["products"]]
    assert listed == [p["id"] for p in six_products if p["id"] != gone]


def test_list_products_requires_login(client):
    response = client.get("/products")
    assert response.status_code == 401
    assert response.json == {"error": "User not logged in"}


def test_get_one_product(shop):
    product = shop["product"]
    response = shop["customer"].get(f"/products/{product['id']}")
    assert response.status_code == 200
    assert response.json == {"id": product["id"], "name": "Coffee", "price": 2.5, "stock": 10}


def test_unknown_and_deleted_products_are_the_same_404(shop):
    product_id = shop["product"]["id"]
    shop["manager"].delete(f"/products/{product_id}")
    unknown = shop["customer"].get("/products/99999")
    deleted = shop["customer"].get(f"/products/{product_id}")
    assert unknown.status_code == deleted.status_code == 404
    assert unknown.json == deleted.json == {"error": "Product not found"}


def test_manager_adds_product_to_own_branch(shop):
    response = shop["manager"].post("/products", json={"name": "Tea", "price": 4.2, "stock": 7})
    assert response.status_code == 201
    assert response.json == {"id": response.json["id"], "name": "Tea", "price": 4.2, "stock": 7}
    assert shop["customer"].get(f"/products/{response.json['id']}").json == response.json


def test_manager_may_name_own_branch_but_no_other(shop, store):
    own = shop["manager"].post("/products", json={"name": "Tea", "price": 1, "branch_id": shop["branch_id"]})
    assert own.status_code == 201
    other = store.tenant("globex")["branches"][0]["id"]
    response = shop["manager"].post("/products", json={"name": "Tea", "price": 1, "branch_id": other})
    assert response.status_code == 403


def test_stock_defaults_to_zero(shop):
    response = shop["manager"].post("/products", json={"name": "Tea", "price": 1})
    assert response.json["stock"] == 0


def test_customer_cannot_change_the_catalogue(shop):
    customer, product_id = shop["customer"], shop["product"]["id"]
    assert customer.post("/products", json={"name": "Tea", "price": 1}).status_code == 403
    assert customer.patch(f"/products/{product_id}", json={"stock": 0}).status_code == 403
    assert customer.delete(f"/products/{product_id}").status_code == 403
    assert customer.get(f"/products/{product_id}").json == shop["product"]


def test_anonymous_cannot_add_products(client, shop):
    response = client.post("/products", json={"name": "Tea", "price": 1, "branch_id": shop["branch_id"]})
    assert response.status_code == 401


def test_admin_adds_product_to_given_branch(client, admin, shop):
    body = {"name": "Tea", "price": 3, "stock": 1, "branch_id": shop["branch_id"]}
    response = client.post("/products", json=body, headers=admin)
    assert response.status_code == 201
    assert shop["customer"].get(f"/products/{response.json['id']}").status_code == 200


def test_admin_must_give_branch_id(client, admin):
    response = client.post("/products", json={"name": "Tea", "price": 3}, headers=admin)
    assert response.status_code == 422
    assert "branch_id" in response.json["details"]


def test_admin_product_in_unknown_branch_is_404(client, admin):
    response = client.post("/products", json={"name": "Tea", "price": 3, "branch_id": 999}, headers=admin)
    assert response.status_code == 404
    assert response.json == {"error": "Branch not found"}


def test_manager_patches_product(shop):
    product_id = shop["product"]["id"]
    response = shop["manager"].patch(f"/products/{product_id}", json={"price": 3.75, "stock": 4})
    assert response.status_code == 200
    assert response.json == {"id": product_id, "name": "Coffee", "price": 3.75, "stock": 4}
    assert shop["customer"].get(f"/products/{product_id}").json == response.json


def test_admin_patches_any_product(client, admin, shop):
    product_id = shop["product"]["id"]
    response = client.patch(f"/products/{product_id}", json={"name": "Decaf"}, headers=admin)
    assert response.status_code == 200
    assert response.json["name"] == "Decaf"


def test_patch_unknown_product_is_404_and_empty_patch_is_422(shop):
    assert shop["manager"].patch("/products/99999", json={"stock": 1}).status_code == 404
    assert shop["manager"].patch(f"/products/{shop['product']['id']}", json={}).status_code == 422


def test_delete_product_is_204_then_404(shop):
    product_id = shop["product"]["id"]
    response = shop["manager"].delete(f"/products/{product_id}")
    assert response.status_code == 204
    assert response.get_data() == b""
    assert shop["manager"].delete(f"/products/{product_id}").status_code == 404
    assert shop["manager"].patch(f"/products/{product_id}", json={"stock": 1}).status_code == 404


@pytest.mark.parametrize("price", [0.1, 0.3, 19.99, 0.07, 1.15, 999999.99, 1000000])
def test_prices_are_stored_and_returned_exactly(app, shop, price):
    response = shop["manager"].post("/products", json={"name": "Exact", "price": price})
    assert response.status_code == 201
    assert response.json["price"] == price
    # The JSON text itself carries the exact decimal, not a float artefact like 0.1000000000000000055.
    assert json.loads(response.get_data(), parse_float=Decimal)["price"] == Decimal(repr(price))
    with app.app_context():
        assert db.session.get(Product, response.json["id"]).price == Decimal(repr(price))


def test_patched_price_is_exact(app, shop):
    product_id = shop["product"]["id"]
    response = shop["manager"].patch(f"/products/{product_id}", json={"price": 0.1})
    assert response.json["price"] == 0.1
    with app.app_context():
        assert db.session.get(Product, product_id).price == Decimal("0.10")
