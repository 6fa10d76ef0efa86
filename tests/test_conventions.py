"""Conventions every answer keeps: not stored by shared caches, servers from configuration, a
bounded page cache."""

import pytest

from app.redis.pages import PAGES_PER_BRANCH
from app.schemas import Cursor


@pytest.mark.parametrize(
    "caller, method, path",
    [
        ("customer", "GET", "/me"),
        ("customer", "GET", "/products"),
        ("customer", "GET", "/products/1"),
        ("customer", "GET", "/purchases"),
        ("customer", "GET", "/stats/top-products"),
        ("customer", "POST", "/purchase"),
        ("anonymous", "GET", "/me"),
        ("anonymous", "POST", "/login"),
        ("manager", "PATCH", "/products/1"),
        ("anonymous", "GET", "/nope"),
    ],
)
def test_answers_that_depend_on_the_caller_are_not_stored(shop, client, caller, method, path):
    who = client if caller == "anonymous" else shop[caller]
    body = {"product_id": 1, "quantity": 1} if path == "/purchase" else {"stock": 3}
    response = who.open(path, method=method, json=body if method != "GET" else None)
    assert response.headers["Cache-Control"] == "no-store"


def test_the_documents_servers_never_come_from_the_host_header(make_app):
    relative = make_app().test_client().get("/openapi.json", headers={"Host": "evil.example"})
    assert relative.json["servers"] == [{"url": "/"}]
    public = make_app(PUBLIC_URL="https://store.example/api").test_client()
    assert public.get("/openapi.json", headers={"Host": "evil.example"}).json["servers"] == [
        {"url": "https://store.example/api"}
    ]


def test_a_branch_caches_a_bounded_number_of_pages_and_reads_stay_right(app, shop, store):
    """Every distinct limit and cursor is a page of its own; past the bound, pages are read from
    the database and not kept."""
    customer, branch_id = shop["customer"], shop["branch_id"]
    products = [shop["product"], *(store.product(branch_id, f"Extra {n}") for n in range(3))]
    ids = [product["id"] for product in products]
    for after in range(PAGES_PER_BRANCH + 50):
        page = customer.get(f"/products?limit=2&cursor={Cursor.encode(after)}").json
        assert [p["id"] for p in page["products"]] == [i for i in ids if i > after][:2]
    assert app.extensions["redis"].hlen(f"catalogue:{branch_id}") <= PAGES_PER_BRANCH + 1
    assert customer.get("/products?limit=100").json["products"] == products
