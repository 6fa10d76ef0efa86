"""Bad input: every route answers it with the contract's status and a JSON error, and writes nothing.

On SQLite and on PostgreSQL with real Redis: SQLite stores what PostgreSQL refuses (a NUL).
"""

import base64
import json

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import Branch, Product, Purchase, Tenant, User

DROP = object()  # leave the field out

# route: (caller, method, path, a valid body). The shop's tenant, branch and product are all id 1.
ROUTES = {
    "register_tenants": ("admin", "POST", "/register_tenants", {"tenant_names": ["initech"]}),
    "register_user": (
        "admin",
        "POST",
        "/register_user",
        {"username": "newbie", "password": "password123", "branch_id": 1, "role": "customer"},
    ),
    "login": ("anonymous", "POST", "/login", {"username": "customer1", "password": "password123"}),
    "create_product": ("manager", "POST", "/products", {"name": "Tea", "price": 1.5, "stock": 3}),
    "patch_product": ("manager", "PATCH", "/products/1", {"name": "Tea", "price": 1.5, "stock": 3}),
    "purchase": ("customer", "POST", "/purchase", {"product_id": 1, "quantity": 1}),
    "create_branch": ("admin", "POST", "/branches", {"tenant_id": 1, "name": "north"}),
    # The shop's customer is user 2.
    "patch_user": ("admin", "PATCH", "/users/2", {"active": True, "role": "customer"}),
    "change_password": (
        "customer",
        "POST",
        "/me/password",
        {"current_password": "password123", "new_password": "password456"},
    ),
}
BAD_IDS = [DROP, None, "1", True, 1.0, 1.5, 0, -1, 2**40, [1], {"id": 1}]
BAD_NAMES = [DROP, None, "", "   ", "x" * 101, 5, True, ["Tea"]]
BAD_PRICES = [DROP, None, "1", True, 0, -1, 1000000.01, 0.001, 1e300, [1]]
BAD_STOCKS = [None, -1, 1.5, "3", True, 2**40]
# Text no database can keep (NUL, lone surrogates) is refused in every text field, login included;
# control characters in names and usernames; and text far past any length.
UNSTORABLE = ["nul\x00byte", "\ud800", "tail\udfff"]
CONTROL = ["bell\x07", "del\x7f", "\x1bescape"]
HUGE = ["x" * 100_000]
TEXT_FIELDS = [
    ("register_tenants", "tenant_names", [[v] for v in UNSTORABLE + CONTROL + HUGE]),
    ("register_user", "username", UNSTORABLE + CONTROL + HUGE),
    ("register_user", "password", UNSTORABLE + HUGE),
    ("login", "username", UNSTORABLE + HUGE),
    ("login", "password", UNSTORABLE + HUGE),
    ("create_product", "name", UNSTORABLE + CONTROL + HUGE),
    ("patch_product", "name", UNSTORABLE + CONTROL + HUGE),
    ("create_branch", "name", UNSTORABLE + CONTROL + HUGE),
    ("change_password", "current_password", UNSTORABLE + HUGE),
    ("change_password", "new_password", UNSTORABLE + HUGE),
]
BAD_FIELDS = (
    [
        ("register_tenants", "tenant_names", v)
        for v in [
            DROP,
            None,
            "initech",
            [],
            [1],
            [None],
            [""],
            [" "],
            ["x" * 101],
            [f"t{n}" for n in range(101)],
        ]
    ]
    + [("register_user", "username", v) for v in [DROP, None, "ab", "x" * 65, "bad name", "alice\n", 7]]
    + [("register_user", "password", v) for v in [DROP, None, "short12", "x" * 129, 12345678]]
    + [("register_user", "branch_id", v) for v in BAD_IDS]
    + [("register_user", "role", v) for v in [None, "admin", "", 1]]
    + [("login", field, v) for field in ("username", "password") for v in [DROP, None, "", 5, ["x"]]]
    + [("create_product", "name", v) for v in BAD_NAMES]
    + [("create_product", "price", v) for v in [*BAD_PRICES, float("nan"), float("inf")]]
    + [("create_product", "stock", v) for v in BAD_STOCKS]
    + [("create_product", "branch_id", v) for v in BAD_IDS[1:]]
    + [("patch_product", "name", v) for v in BAD_NAMES[1:]]
    + [("patch_product", "price", v) for v in BAD_PRICES[1:]]
    + [("patch_product", "stock", v) for v in BAD_STOCKS]
    + [("purchase", "product_id", v) for v in BAD_IDS]
    + [("purchase", "quantity", v) for v in [DROP, None, 0, 1001, -5, 1.5, 2.0, "1", True, [1]]]
    + [("create_branch", "tenant_id", v) for v in BAD_IDS]
    + [("create_branch", "name", v) for v in BAD_NAMES]
    + [(route, field, 1) for route in ROUTES for field in ("unknown", "id", "is_admin")]
    + [("patch_product", field, 2) for field in ("branch_id", "deleted_at", "created_at")]
    + [(route, field, value) for route, field, values in TEXT_FIELDS for value in values]
    + [("patch_user", "active", v) for v in [None, "true", 1, 0, [True]]]
    + [("patch_user", "role", v) for v in [None, "admin", "", 1]]
    + [("patch_user", field, 1) for field in ("username", "password_hash", "branch_id", "deleted_at")]
    + [
        ("change_password", field, v)
        for field in ("current_password", "new_password")
        for v in [DROP, None, "", 5]
    ]
    + [("change_password", "new_password", v) for v in ["short12", "x" * 129]]
    # An unknown field's name is text too.
    + [(route, "nul\x00key", 1) for route in ROUTES]
)


@pytest.fixture
def app(app_on_each_database):
    return app_on_each_database


@pytest.fixture
def call(app, shop, admin):
    clients = {"admin": app.test_client(), "anonymous": app.test_client(), **shop}

    def call(caller, method, path, **kwargs):
        headers = admin if caller == "admin" else {}
        return clients[caller].open(path, method=method, headers=headers, **kwargs)

    return call


@pytest.fixture
def unchanged(app, call):
    """Asserts, after the test, that no row of any table was written."""

    def rows():
        with app.app_context():
            return [
                db.session.execute(select(model.__table__).order_by("id")).all()
                for model in (Tenant, Branch, User, Product, Purchase)
            ]

    before = rows()
    yield
    assert rows() == before


def assert_error(response, status, field=None):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert isinstance(body["error"], str) and body["error"]
    if status == 422:
        details = body["details"]
        assert all(isinstance(m, list) and m and all(isinstance(s, str) for s in m) for m in details.values())
        if field is not None:
            assert field in details, details
    else:
        assert "details" not in body


def label(value):
    return "missing" if value is DROP else repr(value)[:20]


@pytest.mark.parametrize(
    "route, field, value",
    [pytest.param(*case, id=f"{case[0]}-{case[1]}-{label(case[2])}") for case in BAD_FIELDS],
)
def test_invalid_field_is_a_422_naming_the_field(call, unchanged, route, field, value):
    caller, method, path, body = ROUTES[route]
    body = {**body, field: value}
    if value is DROP:
        del body[field]
    assert_error(call(caller, method, path, json=body), 422, field)


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("body", [None, [], ["x"], "text", 7, True, {}], ids=repr)
def test_body_that_is_not_an_object_or_is_empty_is_a_422(call, unchanged, route, body):
    caller, method, path, _ = ROUTES[route]
    response = call(caller, method, path, data=json.dumps(body), content_type="application/json")
    assert_error(response, 422)


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(
    "payload, content_type, status",
    [
        ({"a": "b"}, "application/x-www-form-urlencoded", 415),
        ('{"a": 1}', "text/plain", 415),
        ('{"a": 1}', None, 415),
        ("{", "application/json", 400),
        ('{"name": "x",}', "application/json", 400),
        ("{'name': 'x'}", "application/json", 400),
        (b'{"name": "\xff"}', "application/json", 400),
        ("[" * 100_000 + "]" * 100_000, "application/json", 400),
        ('{"n": ' + "9" * 5000 + "}", "application/json", 400),
        ('{"x": "' + "y" * (1024 * 1024) + '"}', "application/json", 413),
    ],
    ids=[
        "form",
        "text",
        "no-type",
        "truncated",
        "trailing-comma",
        "quotes",
        "bad-utf8",
        "deep",
        "huge-int",
        "over-1MiB",
    ],
)
def test_body_that_is_not_json_is_refused(call, unchanged, route, payload, content_type, status):
    caller, method, path, _ = ROUTES[route]
    assert_error(call(caller, method, path, data=payload, content_type=content_type), status)


def cursor(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


BAD_LIMITS = ["0", "-1", "abc", "", "1.5", "true", "99999999999999999999"]
BAD_CURSORS = [
    "abc",
    "",
    "!!!",
    cursor(b"id:x"),
    cursor(b"id:-1"),
    cursor(b"pk:1"),
    cursor(b"\xff\xfe"),
    cursor(b"id:2147483648"),
    cursor(b"id:" + b"9" * 30),
]


@pytest.mark.parametrize(
    "query",
    [
        *(f"/{path}?limit={limit}" for path in ("products", "purchases") for limit in [*BAD_LIMITS, "101"]),
        *(f"/{path}?cursor={value}" for path in ("products", "purchases") for value in BAD_CURSORS),
        *(f"/stats/top-products?limit={limit}" for limit in [*BAD_LIMITS, "51"]),
    ],
)
def test_bad_limit_or_cursor_is_a_422(call, query):
    field = query.split("?")[1].split("=")[0]
    assert_error(call("manager", "GET", query), 422, field)


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
@pytest.mark.parametrize("product_id", ["0", "-1", str(2**40), str(2**70), "abc", "1.5"])
def test_impossible_product_id_in_path_is_a_404(call, unchanged, method, product_id):
    body = {"name": "Renamed"} if method == "PATCH" else None
    assert_error(call("manager", method, f"/products/{product_id}", json=body), 404)


@pytest.mark.parametrize(
    "method, path, status",
    [
        ("GET", "/nope", 404),
        ("POST", "/nope", 404),
        ("GET", "/products/1/extra", 404),
        ("GET", "/products/", 404),
        ("PUT", "/purchase", 405),
        ("GET", "/purchase", 405),
        ("DELETE", "/products", 405),
        ("POST", "/me", 405),
        ("GET", "/login", 405),
        ("PUT", "/products/1", 405),
        ("GET", "/branches", 405),
        ("DELETE", "/logout", 405),
        ("OPTIONS", "/products", 405),
        ("OPTIONS", "/purchase", 405),
    ],
)
def test_unknown_route_or_method_is_json(call, unchanged, method, path, status):
    assert_error(call("manager", method, path, json={"name": "x"}), status)


def test_refused_purchases_leave_stock_and_rankings_alone(app, call, shop):
    for quantity in (0, 1001, -5, 2.0, "1", True):
        assert_error(call("customer", "POST", "/purchase", json={"product_id": 1, "quantity": quantity}), 422)
    assert call("customer", "GET", "/products/1").json == shop["product"]
    assert app.extensions["redis"].keys("top-products:*") == []
