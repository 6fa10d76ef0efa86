"""Buying from the branch's catalogue, the purchase history and the best sellers."""

from apiflask import APIBlueprint, Schema, abort, fields, validators
from flask import current_app

from ..access import Identity, login_required, purchases
from ..extensions import db
from ..models import Purchase
from ..parsing import HeaderParser, JsonParser, QueryParser
from ..sales import Outcome, SaleResult, sell
from ..sales.ranking import top_products
from ..schemas import PageQuery, id_field, page_of

bp = APIBlueprint("purchases", __name__, tag="Purchases")

MAX_QUANTITY = 1000

# How each outcome of a sale is answered; a sale says what happened, this says it in HTTP.
REFUSALS = {
    Outcome.OUT_OF_STOCK: (409, "Insufficient stock"),
    Outcome.NOT_FOUND: (404, "Product not found"),
    Outcome.KEY_REUSED: (422, "Idempotency-Key already used with a different request body"),
    Outcome.IN_FLIGHT: (409, "A request with this Idempotency-Key is still in progress"),
}


class PurchaseIn(Schema):
    product_id = id_field(required=True)
    quantity = fields.Integer(strict=True, required=True, validate=validators.Range(min=1, max=MAX_QUANTITY))


class IdempotencyHeader(Schema):
    key = fields.String(
        data_key="Idempotency-Key",
        load_default=None,
        # Visible ASCII and spaces: a key is a client's token, kept as text in the database.
        validate=[
            validators.Length(min=1, max=255),
            validators.Regexp(r"\A[\x20-\x7e]*\Z", error="Printable ASCII characters only."),
        ],
        metadata={"description": "Retry-safe: the same key and body replay the first answer."},
    )


class PurchaseLineOut(Schema):
    """What was bought: shared by the answer to a purchase and the purchase history."""

    product_id = fields.Integer()
    quantity = fields.Integer()
    unit_price = fields.Decimal(as_string=False)
    total = fields.Decimal(as_string=False)


class PurchaseCreatedOut(PurchaseLineOut):
    message = fields.String()
    purchase_id = fields.Integer()


class PurchaseOut(PurchaseLineOut):
    id = fields.Integer()
    user_id = fields.Integer()
    product_name = fields.String()
    created_at = fields.DateTime()


class PurchasePageOut(Schema):
    purchases = fields.List(fields.Nested(PurchaseOut))
    next_cursor = fields.String(allow_none=True)


class TopQuery(Schema):
    limit = fields.Integer(load_default=10, validate=validators.Range(min=1, max=50))


class TopProductOut(Schema):
    product_id = fields.Integer()
    name = fields.String()
    units_sold = fields.Integer()


class TopProductsOut(Schema):
    products = fields.List(fields.Nested(TopProductOut))


def answer(result: SaleResult):
    """The HTTP answer to a sale's result."""
    headers = {"Idempotent-Replayed": "true"} if result.replayed else {}
    if result.outcome is not Outcome.SOLD:
        status, message = REFUSALS[result.outcome]
        abort(status, message, headers=headers)
    # The receipt is already in PurchaseCreatedOut's shape: answered as JSON directly rather
    # than dumped through the schema again on the store's busiest write.
    response = current_app.json.response({"message": "Purchase created", **result.receipt._asdict()})
    response.status_code = 201
    response.headers.update(headers)
    return response


@bp.post("/purchase")
@login_required
@JsonParser(PurchaseIn).input(bp)
@HeaderParser(IdempotencyHeader).input(bp)
@bp.output(PurchaseCreatedOut, status_code=201)
@bp.doc(
    responses={
        401: "User not logged in",
        404: "Product not found",
        409: "Insufficient stock, or a request with this Idempotency-Key is still running",
        422: "Invalid body, or an Idempotency-Key reused with another body",
    }
)
def create_purchase(identity: Identity, json_data, headers):
    """Buy a product of the session's branch; its stock drops in the same transaction."""
    return answer(sell(identity, json_data["product_id"], json_data["quantity"], headers["key"]))


@bp.get("/purchases")
@login_required
@QueryParser(PageQuery).input(bp)
@bp.output(PurchasePageOut)
@bp.doc(responses={401: "User not logged in"})
def list_purchases(identity: Identity, query_data):
    """A customer's own purchases, or all of the branch's for a manager, by id."""
    limit, after = query_data["limit"], query_data["cursor"]
    query = purchases(identity.scope)
    if not identity.is_manager:
        query = query.where(Purchase.user_id == identity.user_id)
    if after is not None:
        query = query.where(Purchase.id > after)
    rows = db.session.scalars(query.order_by(Purchase.id).limit(limit + 1)).all()
    page, next_cursor = page_of(rows, limit)
    return {"purchases": page, "next_cursor": next_cursor}


@bp.get("/stats/top-products")
@login_required
@QueryParser(TopQuery).input(bp)
@bp.output(TopProductsOut)
@bp.doc(responses={401: "User not logged in"})
def best_sellers(identity: Identity, query_data):
    """The branch's best-selling products, live from Redis."""
    return {"products": top_products(identity.scope, query_data["limit"])}
