"""Schemathesis fuzzes every operation of the app's own OpenAPI document, in process over WSGI.

Every response must pass all of Schemathesis' default checks: no server error, and no status,
content type, header or body that contradicts the document. The calls carry the administrator's
token and a manager's session, so the routes behind them are fuzzed too, not only their 401/403.
"""

import itertools

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck
from hypothesis import strategies as st

from app import create_app
from app.schemas import MAX_ID, Cursor
from config import TestingConfig

from .conftest import Store


def _document() -> dict:
    # Only the document is needed at collection time: an app that is never given a database.
    response = create_app(TestingConfig()).test_client().get("/openapi.json")
    assert response.status_code == 200
    return response.json


schema = schemathesis.openapi.from_dict(_document())
# The calls carry a session and the administrator's token themselves (Caller), so no case can
# be one without them: Schemathesis is not to generate the security parameters.
schema.config.generation.with_security_parameters = False
# Nor to judge whether a call with bad credentials was refused: it never sends one. The tenancy
# matrix (test_tenancy.py) answers that, route by route.
schema.config.checks.update(excluded_check_names=["ignored_auth"])
# The document gives the opaque ?cursor= a format of its own: the next_cursor of an earlier page.
schemathesis.openapi.format("cursor", st.integers(min_value=0, max_value=MAX_ID).map(Cursor.encode))


def _integers_unspelled(value):
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_integers_unspelled(item) for item in value]
    if isinstance(value, dict):
        return {key: _integers_unspelled(item) for key, item in value.items()}
    return value


def _prices_in_cents(body):
    price = body.get("price") if isinstance(body, dict) else None
    if isinstance(price, float) and 0 < price <= 1_000_000:
        return {**body, "price": max(round(price, 2), 0.01)}
    return body


@schema.hook
def map_body(context, body):
    """Write whole numbers as 2, never 2.0, and prices in cents.

    Under OpenAPI 3.1 (JSON Schema 2020-12) 2.0 is an integer and Schemathesis draws it for
    integer fields, while the contract takes ids, quantities and stock as integers written
    without a fraction, and answers 2.0 with a 422 (see test_bad_input). The values are the
    same; only the spelling is narrowed, so no check is weakened.

    The document states a price's two decimals in words rather than as `multipleOf: 0.01`,
    which standard validators reject for 19.99 in floating point; a price within the bounds is
    rounded to its cents, so drawn prices such as 5e-324 stay valid. test_bad_input covers the
    prices with more decimals.
    """
    return _prices_in_cents(_integers_unspelled(body))


MANAGER = "fuzz_manager"


class Caller:
    """The data the fuzzer works on, and the credentials sent with every generated request."""

    def __init__(self, app, store: Store, admin: dict):
        self.app = app
        self.store = store
        self.admin = admin
        tenant = store.tenant("fuzz-tenant")
        branch_id = tenant["branches"][0]["id"]
        self.branch_id = branch_id
        self.buyers = itertools.count(1)
        store.user(MANAGER, branch_id, role="manager")
        store.user("fuzz_customer", branch_id)
        self.products = [store.product(branch_id, f"Product {n}", price=9.99, stock=1000) for n in range(3)]
        # Purchases to list and best sellers to rank, a page or two of each.
        customer = store.login("fuzz_customer")
        for product in self.products:
            response = customer.post("/purchase", json={"product_id": product["id"], "quantity": 2})
            assert response.status_code == 201, response.json
        # Another tenant's product: ids exist that the manager's branch does not own.
        other = store.tenant("other-tenant")
        store.product(other["branches"][0]["id"], "Elsewhere", price=1, stock=5)
        self.login()

    def login(self) -> None:
        self.cookies = self.session_of(MANAGER)

    def session_of(self, username: str) -> dict:
        client = self.store.login(username)
        return {"session": client.get_cookie("session").value}

    def new_buyer(self) -> dict:
        """A session of a user who has sent no Idempotency-Key yet."""
        username = f"buyer{next(self.buyers)}"
        self.store.user(username, self.branch_id)
        return self.session_of(username)


@pytest.fixture
def caller(app, store, admin):
    # The fuzzer sends many wrong passwords; the limits themselves are tested in test_accounts.
    for setting in (
        "LOGIN_LIMIT_PER_USERNAME",
        "LOGIN_LIMIT_PER_USERNAME_AND_ADDRESS",
        "LOGIN_LIMIT_PER_ADDRESS",
        "REGISTER_LIMIT_PER_ADDRESS",
    ):
        app.config[setting] = "100000 per minute"
    return Caller(app, store, admin)


@schema.parametrize()
@hypothesis.settings(
    max_examples=50,
    deadline=None,
    derandomize=True,
    # One app serves all of an operation's examples; Hypothesis cannot see it is reset per test.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_api_conforms_to_its_document(case, caller):
    cookies = caller.cookies
    if case.path == "/purchase":
        # Hypothesis draws the same Idempotency-Key for different bodies across examples, which the
        # contract rightly answers with 422; each example buys as a user with no keys yet.
        cookies = caller.new_buyer()
    case.call_and_validate(app=caller.app, headers=caller.admin, cookies=cookies)
    if case.path in ("/login", "/logout"):
        # Either may have replaced or deleted the session; later calls need a live one.
        caller.login()


def test_successes_the_fuzzer_seldom_draws_conform_too(caller):
    """A real login, an existing product edited, bought twice with one key, listed and deleted."""

    def call(path, method, cookies=None, **data):
        case = schema[path][method].Case(**data)
        cookies = caller.cookies if cookies is None else cookies
        return case.call_and_validate(app=caller.app, headers=caller.admin, cookies=cookies)

    body = {"username": MANAGER, "password": "password123"}
    assert call("/login", "POST", cookies={}, body=body).status_code == 200
    assert call("/me", "GET").status_code == 200
    product_id = caller.products[0]["id"]
    product = {"product_id": product_id}
    assert call("/products/{product_id}", "GET", path_parameters=product).status_code == 200
    edit = {"name": "Renamed", "price": 4.5, "stock": 7}
    assert call("/products/{product_id}", "PATCH", path_parameters=product, body=edit).status_code == 200
    purchase = {"body": {"product_id": product_id, "quantity": 2}, "headers": {"Idempotency-Key": "once"}}
    assert call("/purchase", "POST", **purchase).status_code == 201
    replay = call("/purchase", "POST", **purchase)
    assert replay.status_code == 201 and replay.headers["idempotent-replayed"] == ["true"]
    assert call("/purchase", "POST", body={"product_id": product_id, "quantity": 1000}).status_code == 409
    purchases = call("/purchases", "GET", query={"limit": 2}).json()
    assert len(purchases["purchases"]) == 2 and purchases["next_cursor"]
    rest = call("/purchases", "GET", query={"cursor": purchases["next_cursor"]}).json()
    assert rest["purchases"] and rest["next_cursor"] is None
    assert call("/stats/top-products", "GET").json()["products"]
    assert call("/products/{product_id}", "DELETE", path_parameters=product).status_code == 204
    assert call("/products/{product_id}", "GET", path_parameters=product).status_code == 404
    assert call("/logout", "POST").status_code == 200
    assert call("/me", "GET").status_code == 401
