"""A sale step by step, as on databases without store_purchase() (SQLite)."""

from decimal import Decimal

from sqlalchemy import event, update

from app.extensions import db
from app.models import Product, Purchase


def test_the_sale_records_the_price_the_product_has_when_its_stock_is_taken(app, shop):
    """No earlier read of the product is trusted: a price committed just before the stock is
    taken is the one the purchase records."""
    product_id = shop["product"]["id"]
    changed = []

    def change_price_first(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith("UPDATE products") and not changed:
            changed.append(True)
            with db.engine.connect() as other:
                other.execute(update(Product).where(Product.id == product_id).values(price=Decimal("9.99")))
                other.commit()

    with app.app_context():
        event.listen(db.engine, "before_cursor_execute", change_price_first)
    response = shop["customer"].post("/purchase", json={"product_id": product_id, "quantity": 2})
    assert changed and response.status_code == 201
    assert (response.json["unit_price"], response.json["total"]) == (9.99, 19.98)
    with app.app_context():
        event.remove(db.engine, "before_cursor_execute", change_price_first)
        assert [(p.unit_price, p.quantity) for p in db.session.query(Purchase)] == [(Decimal("9.99"), 2)]
    assert shop["customer"].get(f"/products/{product_id}").json["stock"] == 8
