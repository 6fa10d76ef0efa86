"""Platform administration: registering tenants and opening branches."""

import pytest

from app.extensions import db
from app.models import Branch, Tenant


def register(client, names, headers):
    return client.post("/register_tenants", json={"tenant_names": names}, headers=headers)


def counts(app) -> tuple[int, int]:
    with app.app_context():
        return db.session.query(Tenant).count(), db.session.query(Branch).count()


def test_register_tenants_gives_each_a_main_branch(client, admin):
    response = register(client, ["acme", "globex"], admin)
    assert response.status_code == 201
    body = response.json
    assert body["message"] == "Tenants registered"
    assert [t["name"] for t in body["tenants"]] == ["acme", "globex"]
    for tenant in body["tenants"]:
        assert set(tenant) == {"id", "name", "branches"}
        assert isinstance(tenant["id"], int)
        assert [b["name"] for b in tenant["branches"]] == ["main"]
        assert isinstance(tenant["branches"][0]["id"], int)
    assert len({t["id"] for t in body["tenants"]}) == 2


def test_tenant_name_taken_in_any_case_is_409_and_nothing_is_created(app, client, admin):
    register(client, ["Acme"], admin)
    before = counts(app)
    response = register(client, ["initech", "ACME"], admin)
    assert response.status_code == 409
    assert "error" in response.json
    assert counts(app) == before
    assert register(client, ["initech"], admin).status_code == 201


def test_name_repeated_within_the_request_is_409_and_nothing_is_created(app, client, admin):
    response = register(client, ["initech", "hooli", "Initech"], admin)
    assert response.status_code == 409
    assert counts(app) == (0, 0)


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-token"}, {"Authorization": "Basic abc"}],
    ids=["no token", "wrong token", "other scheme"],
)
def test_register_tenants_without_admin_token_is_403(app, client, headers):
    response = register(client, ["acme"], headers)
    assert response.status_code == 403
    assert "error" in response.json
    assert counts(app) == (0, 0)


def test_registered_tenant_branch_accepts_users(client, admin):
    branch_id = register(client, ["acme"], admin).json["tenants"][0]["branches"][0]["id"]
    response = client.post(
        "/register_user", json={"username": "bob", "password": "password123", "branch_id": branch_id}
    )
    assert response.status_code == 201


def test_create_branch(client, admin, store):
    tenant = store.tenant("acme")
    response = client.post("/branches", json={"tenant_id": tenant["id"], "name": "downtown"}, headers=admin)
    assert response.status_code == 201
    assert response.json == {"id": response.json["id"], "name": "downtown", "tenant_id": tenant["id"]}
    assert response.json["id"] != tenant["branches"][0]["id"]


def test_branch_of_unknown_tenant_is_404(client, admin):
    response = client.post("/branches", json={"tenant_id": 999, "name": "downtown"}, headers=admin)
    assert response.status_code == 404
    assert response.json == {"error": "Tenant not found"}


@pytest.mark.parametrize("name", ["main", "downtown"])
def test_branch_name_taken_in_the_tenant_is_409(app, client, admin, store, name):
    tenant = store.tenant("acme")
    store.branch(tenant["id"], "downtown")
    before = counts(app)
    response = client.post("/branches", json={"tenant_id": tenant["id"], "name": name}, headers=admin)
    assert response.status_code == 409
    assert "error" in response.json
    assert counts(app) == before


def test_same_branch_name_is_allowed_in_another_tenant(client, admin, store):
    acme, globex = store.tenant("acme"), store.tenant("globex")
    store.branch(acme["id"], "downtown")
    response = client.post("/branches", json={"tenant_id": globex["id"], "name": "downtown"}, headers=admin)
    assert response.status_code == 201
    assert response.json["tenant_id"] == globex["id"]


def test_create_branch_without_admin_token_is_403(app, client, store):
    tenant = store.tenant("acme")
    before = counts(app)
    response = client.post("/branches", json={"tenant_id": tenant["id"], "name": "downtown"})
    assert response.status_code == 403
    assert counts(app) == before


def test_logged_in_manager_is_not_an_administrator(shop):
    manager = shop["manager"]
    assert manager.post("/register_tenants", json={"tenant_names": ["evil"]}).status_code == 403
    response = manager.post("/branches", json={"tenant_id": shop["tenant_id"], "name": "annex"})
    assert response.status_code == 403


@pytest.fixture
def app_both(app_on_each_database):
    return app_on_each_database


@pytest.mark.parametrize(
    "first, second",
    [("Straße-co", "STRASSE-CO"), ("acme", "ａｃｍｅ"), ("ﬁne", "FINE"), ("Ⅻ", "xii")],
    ids=["sharp s", "full-width", "ligature", "roman numeral"],
)
def test_names_that_read_the_same_are_the_same_tenant_and_branch(app_both, first, second):
    client, admin = app_both.test_client(), {"Authorization": f"Bearer {app_both.config['ADMIN_TOKEN']}"}
    assert register(client, [first], admin).status_code == 201
    before = counts(app_both)
    assert register(client, [second], admin).status_code == 409
    assert register(client, ["other", second.upper()], admin).status_code == 409
    tenant_id = register(client, ["branchy"], admin).json["tenants"][0]["id"]
    assert (
        client.post("/branches", json={"tenant_id": tenant_id, "name": first}, headers=admin).status_code
        == 201
    )
    taken = client.post("/branches", json={"tenant_id": tenant_id, "name": second}, headers=admin)
    assert taken.status_code == 409
    assert counts(app_both) == (before[0] + 1, before[1] + 2)
