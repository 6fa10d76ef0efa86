"""Tenancy: each actor reaches its own branch as the contract allows, and nothing else.

Actors: a customer and a manager of the branch "own", the platform administrator (token, no
session), an anonymous caller and one with a forged token. Targets: "own", "sibling" (another
branch of the same tenant), "foreign" (another tenant) and "missing" (ids that do not exist).
"""

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import Branch, Product, Purchase, Tenant, User

MISSING = 999_999

# route             target    customer manager admin nobody  (nobody: no session and no valid token)
MATRIX = """
get_product         own       200 200 401 401
get_product         sibling   404 404 401 401
get_product         foreign   404 404 401 401
get_product         missing   404 404 401 401
patch_product       own       403 200 200 401
patch_product       sibling   403 404 200 401
patch_product       foreign   403 404 200 401
patch_product       missing   403 404 404 401
delete_product      own       403 204 204 401
delete_product      sibling   403 404 204 401
delete_product      foreign   403 404 204 401
delete_product      missing   403 404 404 401
purchase            own       201 201 401 401
purchase            sibling   404 404 401 401
purchase            foreign   404 404 401 401
purchase            missing   404 404 401 401
create_product      none      403 201 422 401
create_product      own       403 201 201 401
create_product      sibling   403 403 201 401
create_product      foreign   403 403 201 401
create_product      missing   403 403 404 401
register_tenants    none      403 403 201 403
create_branch       own       403 403 201 403
create_branch       foreign   403 403 201 403
create_branch       missing   403 403 404 403
register_manager    own       403 403 201 403
register_manager    sibling   403 403 201 403
register_manager    foreign   403 403 201 403
register_customer   own       201 201 201 201
register_customer   foreign   201 201 201 201
list_products       none      200 200 401 401
list_purchases      none      200 200 401 401
top_products        none      200 200 401 401
me                  none      200 200 401 401
my_sessions         none      200 200 401 401
list_users          none      403 200 422 401
list_users          own       403 200 200 401
list_users          sibling   403 403 200 401
list_users          foreign   403 403 200 401
list_users          missing   403 403 404 401
disable_user        own       403 200 200 401
disable_user        sibling   403 404 200 401
disable_user        foreign   403 404 200 401
disable_user        missing   403 404 404 401
change_role         own       403 403 200 401
change_role         sibling   403 403 200 401
change_role         foreign   403 403 200 401
change_role         missing   403 403 404 401
disable_manager     own       403 403 200 401
delete_user         own       403 204 204 401
delete_user         sibling   403 404 204 401
delete_user         foreign   403 404 204 401
delete_user         missing   403 404 404 401
"""
ACTORS = ("customer", "manager", "admin", "anonymous", "forged")
COLUMN = {"customer": 0, "manager": 1, "admin": 2, "anonymous": 3, "forged": 3}
CASES = [
    pytest.param(route, target, actor, int(codes[COLUMN[actor]]), id=f"{actor}-{route}-{target}")
    for route, target, *codes in (line.split() for line in MATRIX.strip().splitlines())
    for actor in ACTORS
]


class World:
    """The shop's branch ("own"), a sibling branch and a foreign tenant, each with a product and a buyer."""

    def __init__(self, app, store, shop):
        self.app = app
        sibling, foreign = store.branch(shop["tenant_id"], "north"), store.tenant("globex")
        self.tenants = {"own": shop["tenant_id"], "foreign": foreign["id"], "missing": MISSING}
        self.branches = {
            "own": shop["branch_id"],
            "sibling": sibling["id"],
            "foreign": foreign["branches"][0]["id"],
            "missing": MISSING,
        }
        self.products = {"own": shop["product"]["id"], "missing": MISSING}
        self.viewers = {"own": shop["customer"]}
        # Users to manage: a customer of each branch, and a second manager of the shop's.
        self.users = {"own": store.user("own_target", shop["branch_id"]), "missing": MISSING}
        self.own_manager = store.user("second_manager", shop["branch_id"], role="manager")
        for target in ("sibling", "foreign"):
            self.products[target] = store.product(self.branches[target], f"{target} tea", 3, 10)["id"]
            self.users[target] = store.user(f"{target}_buyer", self.branches[target])
            self.viewers[target] = store.login(f"{target}_buyer")
        self.clients = {"customer": shop["customer"], "manager": shop["manager"]}
        self.clients |= {actor: app.test_client() for actor in ("admin", "anonymous", "forged")}
        self.headers = {"admin": store.admin, "forged": {"Authorization": "Bearer not-the-token"}}

    def call(self, actor, method, path, body=None):
        return self.clients[actor].open(path, method=method, json=body, headers=self.headers.get(actor))

    def request(self, route, target):
        product, branch = self.products.get(target), self.branches.get(target)
        user = {"username": f"new_{route}", "password": "password123", "branch_id": branch}
        return {
            "get_product": ("GET", f"/products/{product}", None),
            "patch_product": ("PATCH", f"/products/{product}", {"name": "Renamed", "stock": 0}),
            "delete_product": ("DELETE", f"/products/{product}", None),
            "purchase": ("POST", "/purchase", {"product_id": product, "quantity": 1}),
            "create_product": ("POST", "/products", {"name": "New", "price": 1, "branch_id": branch}),
            "register_tenants": ("POST", "/register_tenants", {"tenant_names": ["initech"]}),
            "create_branch": ("POST", "/branches", {"tenant_id": self.tenants.get(target), "name": "south"}),
            "register_manager": ("POST", "/register_user", user | {"role": "manager"}),
            "register_customer": ("POST", "/register_user", user),
            "list_products": ("GET", "/products", None),
            "list_purchases": ("GET", "/purchases", None),
            "top_products": ("GET", "/stats/top-products", None),
            "me": ("GET", "/me", None),
            "my_sessions": ("GET", "/me/sessions", None),
            "list_users": ("GET", "/users" + (f"?branch_id={branch}" if branch else ""), None),
            "disable_user": ("PATCH", f"/users/{self.users.get(target)}", {"active": False}),
            "change_role": ("PATCH", f"/users/{self.users.get(target)}", {"role": "manager"}),
            "disable_manager": ("PATCH", f"/users/{self.own_manager}", {"active": False}),
            "delete_user": ("DELETE", f"/users/{self.users.get(target)}", None),
        }[route]

    def state(self):
        """Every row a call could create or change, and the best-seller rankings."""
        with self.app.app_context():
            rows = [
                db.session.execute(select(model.__table__).order_by("id")).all()
                for model in (Tenant, Branch, User, Product, Purchase)
            ]
        redis = self.app.extensions["redis"]
        return rows, {key: redis.zrange(key, 0, -1, withscores=True) for key in redis.keys("top-products:*")}


@pytest.fixture
def world(app, store, shop):
    return World(app, store, shop)


@pytest.mark.parametrize("route, target, actor, status", CASES)
def test_each_actor_gets_what_the_contract_allows_and_nothing_else(world, route, target, actor, status):
    method, path, body = world.request(route, target)
    if route == "create_product" and target == "none":
        del body["branch_id"]
    owner, product_path = world.viewers.get(target), f"/products/{world.products.get(target)}"
    seen_by_owner = owner.get(product_path).json if owner else None
    before = world.state()
    response = world.call(actor, method, path, body)
    assert response.status_code == status, response.get_json()
    if status >= 400:
        assert isinstance(response.json["error"], str)
        assert world.state() == before
        assert owner is None or owner.get(product_path).json == seen_by_owner
        if target in ("sibling", "foreign"):
            # Another branch's or tenant's row is answered exactly like an id that does not exist.
            missing = world.call(actor, *world.request(route, "missing"))
            assert (response.status_code, response.json) == (missing.status_code, missing.json)
    elif method != "GET":
        assert world.state() != before
    with world.app.app_context():
        if route == "create_product" and status == 201:
            product = db.session.get(Product, response.json["id"])
            assert product.branch_id == world.branches["own" if target == "none" else target]
        if route in ("register_manager", "register_customer") and status == 201:
            # Only the administrator chooses a role; anyone else's registration is a customer.
            user = db.session.get(User, response.json["user_id"])
            assert (user.role, user.branch_id) == (route.removeprefix("register_"), world.branches[target])


def test_no_one_can_move_a_product_to_another_branch(world):
    before = world.state()
    for actor in ("manager", "admin"):
        for target in ("sibling", "foreign"):
            body = {"branch_id": world.branches[target]}
            response = world.call(actor, "PATCH", f"/products/{world.products['own']}", body)
            assert response.status_code == 422 and "branch_id" in response.json["details"]
    assert world.state() == before


@pytest.mark.parametrize("actor", ["customer", "manager"])
def test_product_lists_show_only_the_sessions_branch_on_every_page(world, store, actor):
    extra = [store.product(world.branches[t], f"more {t}", 1, 1)["id"] for t in ("own", "sibling", "foreign")]
    seen, cursor = [], None
    while True:
        page = world.call(actor, "GET", "/products?limit=1" + (f"&cursor={cursor}" if cursor else "")).json
        seen += [product["id"] for product in page["products"]]
        if (cursor := page["next_cursor"]) is None:
            break
    assert seen == [world.products["own"], extra[0]]


def buy_everywhere(world):
    """One purchase by each branch's customer and one by the own branch's manager."""
    for target, viewer in world.viewers.items():
        response = viewer.post("/purchase", json={"product_id": world.products[target], "quantity": 2})
        assert response.status_code == 201
    bought = world.call("manager", "POST", "/purchase", {"product_id": world.products["own"], "quantity": 1})
    assert bought.status_code == 201


def test_purchase_history_is_the_customers_own_or_the_managers_branch(world):
    buy_everywhere(world)
    with world.app.app_context():
        branch_of = dict(db.session.execute(select(Purchase.id, Purchase.branch_id)).all())
    customer = world.call("customer", "GET", "/purchases").json["purchases"]
    manager = world.call("manager", "GET", "/purchases").json["purchases"]
    assert [p["quantity"] for p in customer] == [2]
    assert [p["quantity"] for p in manager] == [2, 1]
    assert {branch_of[p["id"]] for p in customer + manager} == {world.branches["own"]}
    for target in ("sibling", "foreign"):
        theirs = world.viewers[target].get("/purchases").json["purchases"]
        assert [p["product_id"] for p in theirs] == [world.products[target]]


@pytest.mark.parametrize("target", ["own", "sibling", "foreign"])
def test_best_sellers_never_show_other_branches_products(world, target):
    buy_everywhere(world)
    # Even a ranking that somehow lists other branches' products does not show them.
    others = {str(world.products[other]): 100 for other in ("own", "sibling", "foreign") if other != target}
    world.app.extensions["redis"].zadd(f"top-products:{world.branches[target]}", others)
    ranked = world.viewers[target].get("/stats/top-products").json["products"]
    assert [p["product_id"] for p in ranked] == [world.products[target]]


@pytest.mark.parametrize("actor", ["customer", "manager"])
def test_me_names_the_sessions_own_branch_and_tenant(world, actor):
    me = world.call(actor, "GET", "/me").json
    assert (me["role"], me["branch_id"], me["branch_name"], me["tenant_id"], me["tenant_name"]) == (
        actor,
        world.branches["own"],
        "main",
        world.tenants["own"],
        "acme",
    )
