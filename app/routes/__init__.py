"""The HTTP routes, one blueprint per area: thin views that validate, call the store, answer."""

from apiflask import APIFlask

from . import accounts, catalogue, docs, health, purchases, sessions, tenants, users


def register_routes(app: APIFlask) -> None:
    for blueprint in (tenants.bp, accounts.bp, sessions.bp, users.bp, catalogue.bp, purchases.bp, health.bp):
        app.register_blueprint(blueprint)
    docs.configure(app)
    app.after_request(not_stored)


def not_stored(response):
    """Nothing a shared cache could hand to another caller: answers depend on who asks.

    Files that say how long they keep (Swagger UI's) keep saying it.
    """
    response.headers.setdefault("Cache-Control", "no-store")
    return response
