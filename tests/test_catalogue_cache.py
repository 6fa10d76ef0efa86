"""The catalogue page cache: hits skip the database, and every write is seen by the next read."""

from sqlalchemy import event

from app.cache import cached_page, invalidate
from app.extensions import db


def products(client, query=""):
    return client.get(f"/products{query}").json["products"]


def count_queries(app):
    statements = []
    with app.app_context():
        event.listen(db.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    return statements


def test_a_cached_page_is_served_without_the_database(app, shop):
    customer = shop["customer"]
    first = customer.get("/products").data
    # The same compact JSON, with a final newline, as every other answer.
    assert first.endswith(b"}\n") and b", " not in first and b": " not in first
    statements = count_queries(app)
    assert customer.get("/products").data == first
    assert statements == []


def test_purchases_and_edits_are_seen_by_the_next_read(shop, store):
    customer, manager, product_id = shop["customer"], shop["manager"], shop["product"]["id"]
    assert products(customer)[0]["stock"] == 10
    customer.post("/purchase", json={"product_id": product_id, "quantity": 3})
    assert products(customer)[0]["stock"] == 7
    manager.patch(f"/products/{product_id}", json={"name": "Decaf"})
    assert products(customer)[0]["name"] == "Decaf"
    added = manager.post("/products", json={"name": "Tea", "price": 1}).json
    assert [p["id"] for p in products(customer)] == [product_id, added["id"]]
    manager.delete(f"/products/{product_id}")
    assert [p["id"] for p in products(customer)] == [added["id"]]


def test_pages_are_cached_per_limit_and_cursor(shop, store):
    customer = shop["customer"]
    for name in ("A", "B", "C"):
        store.product(shop["branch_id"], name)
    first = customer.get("/products?limit=2").json
    second = customer.get(f"/products?limit=2&cursor={first['next_cursor']}").json
    assert len(first["products"]) == 2 and len(second["products"]) == 2
    assert products(customer, "?limit=4") == first["products"] + second["products"]


def test_a_write_during_a_miss_keeps_the_old_page_out_of_the_cache(app, shop):
    branch_id = shop["branch_id"]
    with app.test_request_context():

        def build_while_a_write_commits():
            invalidate(branch_id)
            return b"page read before the write"

        assert cached_page(branch_id, 50, None, build_while_a_write_commits) == b"page read before the write"
        assert cached_page(branch_id, 50, None, lambda: b"fresh") == b"fresh"
        assert cached_page(branch_id, 50, None, lambda: b"not called") == b"fresh"


def test_other_branches_are_cached_apart(shop, store):
    other_branch = store.branch(shop["tenant_id"], "north")["id"]
    store.user("north_customer", other_branch)
    north = store.login("north_customer")
    store.product(other_branch, "North only")
    assert [p["name"] for p in products(north)] == ["North only"]
    assert [p["name"] for p in products(shop["customer"])] == ["Coffee"]
