"""The README's walkthrough through a client generated from /openapi.json, and nothing else.

Run by test_generated_client.py in a virtualenv of its own, where the generated package
`store_api_client` is installed: python client_walkthrough.py <base url> <admin token>.
Every answer must parse into the model the document names for its status.
"""

import sys

from store_api_client import AuthenticatedClient, Client
from store_api_client.api.accounts import (
    get_me,
    post_login,
    post_logout,
    post_me_password,
    post_register_user,
)
from store_api_client.api.administration import post_register_tenants
from store_api_client.api.catalogue import get_products, post_products
from store_api_client.api.purchases import get_purchases, get_stats_top_products, post_purchase
from store_api_client.api.sessions import delete_me_sessions_handle, get_me_sessions, post_logout_all
from store_api_client.api.staff import get_users, patch_users_user_id
from store_api_client.models import (
    HTTPError,
    LoginIn,
    LoginOut,
    MeOut,
    MessageOut,
    PasswordIn,
    ProductIn,
    ProductOut,
    ProductPageOut,
    PurchaseCreatedOut,
    PurchaseIn,
    PurchasePageOut,
    RegisteredOut,
    RegisterIn,
    RegisterInRole,
    SessionsOut,
    TenantsIn,
    TenantsOut,
    TopProductsOut,
    UserOut,
    UserPageOut,
    UserPatchIn,
)


def parsed(response, model, status):
    assert response.status_code == status, (response.status_code, response.content)
    assert isinstance(response.parsed, model), (model, response.parsed)
    return response.parsed


def logged_in(base: str, username: str, password: str) -> Client:
    """A client holding the session cookie: the document's `session` scheme (the generated
    AuthenticatedClient carries a bearer token, which is the administrator's scheme)."""
    answer = post_login.sync_detailed(client=Client(base), body=LoginIn(username=username, password=password))
    parsed(answer, LoginOut, 200)
    cookie = answer.headers["set-cookie"].split(";", 1)[0].split("=", 1)[1]
    return Client(base, cookies={"session": cookie})


def main(base: str, admin_token: str) -> None:
    admin = AuthenticatedClient(base, token=admin_token)
    tenants = parsed(
        post_register_tenants.sync_detailed(client=admin, body=TenantsIn(["acme", "globex"])), TenantsOut, 201
    )
    branch_id = tenants.tenants[0].branches[0].id
    manager = RegisterIn("boss", "password123", branch_id, role=RegisterInRole.MANAGER)
    parsed(post_register_user.sync_detailed(client=admin, body=manager), RegisteredOut, 201)
    customer = RegisterIn("newuser", "password123", branch_id)
    user_id = parsed(
        post_register_user.sync_detailed(client=Client(base), body=customer), RegisteredOut, 201
    ).user_id
    boss = logged_in(base, "boss", "password123")
    made = parsed(
        post_products.sync_detailed(client=boss, body=ProductIn("Coffee beans 1kg", 24.9, stock=50)),
        ProductOut,
        201,
    )

    shopper = logged_in(base, "newuser", "password123")
    me = parsed(get_me.sync_detailed(client=shopper), MeOut, 200)
    assert (me.username, me.branch_id) == ("newuser", branch_id)
    page = parsed(get_products.sync_detailed(client=shopper), ProductPageOut, 200)
    assert [p.id for p in page.products] == [made.id] and page.next_cursor is None
    bought = post_purchase.sync_detailed(
        client=shopper, body=PurchaseIn(made.id, 2), idempotency_key="order-1"
    )
    receipt = parsed(bought, PurchaseCreatedOut, 201)
    assert receipt.total == 49.8
    again = post_purchase.sync_detailed(
        client=shopper, body=PurchaseIn(made.id, 2), idempotency_key="order-1"
    )
    assert parsed(again, PurchaseCreatedOut, 201).purchase_id == receipt.purchase_id
    assert again.headers["idempotent-replayed"] == "true"
    history = parsed(get_purchases.sync_detailed(client=shopper), PurchasePageOut, 200)
    assert [p.quantity for p in history.purchases] == [2]
    best = parsed(get_stats_top_products.sync_detailed(client=shopper), TopProductsOut, 200)
    assert best.products[0].units_sold == 2

    # The account routes: sessions, a new password, the manager's view of the branch's users.
    other = logged_in(base, "newuser", "password123")
    sessions = parsed(get_me_sessions.sync_detailed(client=shopper), SessionsOut, 200)
    assert sorted(s.current for s in sessions.sessions) == [False, True]
    [handle] = [s.id for s in sessions.sessions if not s.current]
    assert delete_me_sessions_handle.sync_detailed(handle, client=shopper).status_code == 204
    parsed(get_me.sync_detailed(client=other), HTTPError, 401)
    changed = post_me_password.sync_detailed(client=shopper, body=PasswordIn("password123", "password456"))
    parsed(changed, MessageOut, 200)
    shopper = logged_in(base, "newuser", "password456")
    users = parsed(get_users.sync_detailed(client=boss), UserPageOut, 200)
    assert {u.username for u in users.users} == {"boss", "newuser"}
    disabled = parsed(
        patch_users_user_id.sync_detailed(user_id, client=boss, body=UserPatchIn(active=False)), UserOut, 200
    )
    assert disabled.active is False
    parsed(get_me.sync_detailed(client=shopper), HTTPError, 401)

    parsed(post_logout_all.sync_detailed(client=boss), MessageOut, 200)
    parsed(post_logout.sync_detailed(client=boss), MessageOut, 200)
    parsed(get_me.sync_detailed(client=boss), HTTPError, 401)
    print("walkthrough done")


if __name__ == "__main__":
    main(*sys.argv[1:3])
