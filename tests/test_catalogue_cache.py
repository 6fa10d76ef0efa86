"""The catalogue page cache: hits skip the database, and every write is seen by the next read."""

import pytest
import redis
from sqlalchemy import event

from app.access import InBranch
from app.extensions import db
from app.redis.pages import cached_page, invalidate
from app.sales.ranking import record_sale, top_products

from .conftest import Store


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


def test_a_sale_during_a_miss_keeps_the_old_page_out_of_the_cache(app, shop):
    branch_id, product_id = shop["branch_id"], shop["product"]["id"]
    with app.test_request_context():

        def build_while_a_sale_commits():
            record_sale(branch_id, product_id, 2)
            return b"page read before the sale"

        assert cached_page(branch_id, 50, None, build_while_a_sale_commits) == b"page read before the sale"
        assert cached_page(branch_id, 50, None, lambda: b"fresh") == b"fresh"
        assert top_products(InBranch(branch_id), 10)[0]["units_sold"] == 2


def test_other_branches_are_cached_apart(shop, store):
    other_branch = store.branch(shop["tenant_id"], "north")["id"]
    store.user("north_customer", other_branch)
    north = store.login("north_customer")
    store.product(other_branch, "North only")
    assert [p["name"] for p in products(north)] == ["North only"]
    assert [p["name"] for p in products(shop["customer"])] == ["Coffee"]


def sid(client):
    return client.get_cookie("session").value


@pytest.mark.redis
def test_a_read_gets_its_session_and_cached_page_in_one_round_trip(make_app, redis_server):
    """Redis counts what reached it: the session's GET and the page's HGET, read in one go."""
    app = make_app(REDIS_URL=redis_server.url)
    store = Store(app, {"Authorization": f"Bearer {app.config['ADMIN_TOKEN']}"})
    branch_id = store.tenant("acme")["branches"][0]["id"]
    store.product(branch_id, "Coffee")
    store.user("alice", branch_id)
    customer = store.login("alice")
    assert sid(customer).startswith(f"{branch_id}.")
    first = customer.get("/products?limit=5").data
    server = redis.Redis.from_url(redis_server.url)
    server.config_resetstat()
    assert customer.get("/products?limit=5").data == first
    info = server.info("all")
    calls = {name: stats["calls"] for name, stats in info.items() if name.startswith("cmdstat_")}
    assert calls == {"cmdstat_get": 1, "cmdstat_hget": 1, "cmdstat_config|resetstat": 1}
    # Read events on the server: one for the request, one for this INFO.
    assert info["total_reads_processed"] == 2
    app.extensions["redis"].close()


def test_a_session_id_naming_another_branch_never_gets_its_pages(app, shop, store):
    other = store.tenant("globex")["branches"][0]["id"]
    store.product(other, "Secret", price=1, stock=1)
    store.user("spy", other)
    spy = store.login("spy")
    assert [p["name"] for p in products(spy)] == ["Secret"]
    customer = shop["customer"]
    own = products(customer)
    # The same session, under an id that claims the other branch: its page is read along
    # with the session, and must not be what the customer sees.
    _, _, random_part = sid(customer).partition(".")
    forged = f"{other}.{random_part}"
    redis = app.extensions["redis"]
    redis.rename(f"session:{sid(customer)}", f"session:{forged}")
    customer.set_cookie("session", forged)
    assert products(customer) == own
    assert customer.get("/me").json["branch_id"] == shop["branch_id"]


def test_an_id_never_issued_that_names_a_branch_is_anonymous(app, shop, client):
    customer = shop["customer"]
    assert products(customer)  # the branch's first page is cached now
    sessions = sorted(app.extensions["redis"].keys("session:*"))
    # The branch's page is read along with the (missing) session, and must not be served.
    client.set_cookie("session", f"{shop['branch_id']}.made-up-session-id")
    response = client.get("/products")
    assert response.status_code == 401 and response.json == {"error": "User not logged in"}
    assert sorted(app.extensions["redis"].keys("session:*")) == sessions
