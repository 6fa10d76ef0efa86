"""Setting a store up for the benchmark: through its API, then its catalogue in bulk.

- ``StoreClient`` sets a store up through its API with the admin token: a tenant (its branch
  "main"), a customer, the product that the purchase runs buy (enough stock for every
  request), and one login whose session cookie wrk replays; ``check_page`` checks the page
  that the catalogue runs read.
- ``load_catalogue`` fills the branch's catalogue to N products with one
  ``INSERT ... SELECT generate_series`` (not one HTTP call per product), then
  ``VACUUM (ANALYZE) products``.

The direct store (scenarios.py) and the scaled-out topology (topology_scenarios.py) are set up
alike.
"""

from __future__ import annotations

import secrets
import time
from http.cookies import SimpleCookie

import psycopg
from servers import BenchError, Http

# Enough for every purchase the runs can make (a few thousand a second at most).
PURCHASE_STOCK = 10_000_000
PAGE = 50


def session_cookie(response) -> str:
    """The session id a login response sets, as a Cookie header value."""
    for header in response.headers.get_all("Set-Cookie") or []:
        morsel = SimpleCookie(header).get("session")
        if morsel is not None and morsel.value:
            return morsel.value
    raise BenchError("the login response set no session cookie")


class StoreClient:
    """Sets a store up through its API (the admin token's): a tenant, a customer, the product the
    purchase run buys and the customer's login, whose cookie wrk replays."""

    page_path = f"/products?limit={PAGE}"

    def __init__(self, port: int, token: str):
        self.client = Http(port)
        self.admin = {"Authorization": f"Bearer {token}"}

    def call(self, method, path, body=None, headers=None, expect=200):
        status, data, response = self.client.request(method, path, body, headers)
        if status != expect:
            raise BenchError(f"{method} {path} answered {status}: {data}")
        return data, response

    def set_up(self) -> tuple[int, int, str]:
        """The branch, the purchase's product and the login's session id."""
        call, admin = self.call, self.admin
        tenants, _ = call("POST", "/register_tenants", {"tenant_names": ["bench"]}, admin, 201)
        branch_id = tenants["tenants"][0]["branches"][0]["id"]
        credentials = {"username": "bench_customer", "password": secrets.token_urlsafe(16)}
        call("POST", "/register_user", {**credentials, "branch_id": branch_id}, admin, 201)
        target, _ = call(
            "POST",
            "/products",
            {"name": "Bench purchase target", "price": 9.99, "stock": PURCHASE_STOCK, "branch_id": branch_id},
            admin,
            201,
        )
        _, response = call("POST", "/login", credentials)
        return branch_id, target["id"], session_cookie(response)

    def check_page(self, cookie: str, n: int) -> None:
        page, _ = self.call("GET", self.page_path, headers={"Cookie": f"session={cookie}"})
        if len(page["products"]) != min(PAGE, n):
            raise BenchError(f"GET {self.page_path} returned {len(page['products'])} products")


def load_catalogue(db: psycopg.Connection, branch_id: int, n: int, into: str = "") -> dict:
    """Top the branch's live catalogue up to n products in one statement, then VACUUM ANALYZE:
    how long it took. `into` names the store, for the line printed."""
    have = db.execute(
        "SELECT count(*) FROM products WHERE branch_id = %s AND deleted_at IS NULL", (branch_id,)
    ).fetchone()[0]
    started = time.monotonic()
    if n > have:
        db.execute(
            """
            INSERT INTO products (branch_id, name, price_cents, stock, created_at, updated_at)
            SELECT %(branch)s::int, 'Bench product ' || g, 100 + (g * 37) %% 99900, 1000, now(), now()
            FROM generate_series(%(first)s::int, %(last)s::int) AS g
            """,
            {"branch": branch_id, "first": have + 1, "last": n},
        )
    inserted = time.monotonic() - started
    db.execute("VACUUM (ANALYZE) products")
    total = time.monotonic() - started
    count = db.execute(
        "SELECT count(*) FROM products WHERE branch_id = %s AND deleted_at IS NULL", (branch_id,)
    ).fetchone()[0]
    if count != n:
        raise BenchError(f"the branch has {count} products, not {n}")
    print(
        f"  loaded N={n:,}{f' into {into}' if into else ''}: {n - have:,} rows in {inserted:.1f} s, "
        f"{total:.1f} s with VACUUM ANALYZE",
        flush=True,
    )
    return {"n": n, "inserted": n - have, "insert_s": inserted, "total_s": total}
