"""The branch's catalogue: listing for every logged-in user, editing for managers and the administrator."""

from apiflask import APIBlueprint, Schema, abort, fields
from flask import current_app
from marshmallow import ValidationError, validates_schema

from ..access import InBranch, get_branch, get_product, live_products, login_required, manager_or_admin
from ..extensions import db
from ..models import Product, now_utc
from ..parsing import JsonParser, QueryParser
from ..redis.pages import cached_page, invalidate, page_read
from ..schemas import PageQuery, id_field, name_field, page_of, price_field, stock_field

bp = APIBlueprint("catalogue", __name__, tag="Catalogue")
PAGE_QUERY = QueryParser(PageQuery)


class ProductOut(Schema):
    id = fields.Integer()
    name = fields.String()
    price = fields.Decimal(as_string=False)
    stock = fields.Integer()


class ProductPageOut(Schema):
    products = fields.List(fields.Nested(ProductOut))
    next_cursor = fields.String(allow_none=True)


class ProductIn(Schema):
    name = name_field(required=True)
    price = price_field(required=True)
    stock = stock_field(load_default=0)
    branch_id = id_field(metadata={"description": "Required for the administrator; a manager's own branch."})


class ProductPatchIn(Schema):
    name = name_field()
    price = price_field()
    stock = stock_field()

    @validates_schema
    def not_empty(self, data, **kwargs):
        if not data:
            raise ValidationError("Give at least one of name, price, stock.", "_schema")


catalogue_editor = manager_or_admin("Only a manager or the administrator may change the catalogue")


def page_read_with_session(environ: dict, branch_id: int) -> tuple | None:
    """For GET /products: the cached page's read, sent with the session's (app.redis.pending).

    Only for a query string this process has parsed already; the view parses the others.
    """
    query = PAGE_QUERY.known(environ.get("QUERY_STRING", "").encode("latin-1"))
    return None if query is None else page_read(branch_id, query["limit"], query["cursor"])


@bp.get("/products")
@login_required
@PAGE_QUERY.input(bp)
@bp.output(ProductPageOut)
@bp.doc(responses={401: "User not logged in"})
def list_products(identity, query_data):
    """List the products of the session's branch, by id, one page at a time."""
    limit, after = query_data["limit"], query_data["cursor"]

    def build() -> bytes:
        query = live_products(identity.scope).order_by(Product.id).limit(limit + 1)
        if after is not None:
            query = query.where(Product.id > after)
        products, next_cursor = page_of(db.session.scalars(query).all(), limit)
        page = ProductPageOut().dump({"products": products, "next_cursor": next_cursor})
        # Byte for byte what every other route answers: compact, with a final newline.
        return current_app.json.response(page).get_data()

    # Served as cached, bytes and all: a dump through ProductPageOut per read would cost more
    # than the read itself.
    page = cached_page(identity.branch_id, limit, after, build)
    return current_app.response_class(page, mimetype="application/json")


@bp.get("/products/<int:product_id>")
@login_required
@bp.output(ProductOut)
@bp.doc(responses={401: "User not logged in", 404: "Product not found"})
def get_one(identity, product_id):
    """One product of the session's branch."""
    return get_product(product_id, identity.scope)


@bp.post("/products")
@catalogue_editor
@JsonParser(ProductIn).input(bp)
@bp.output(ProductOut, status_code=201)
@bp.doc(responses={401: "Not logged in", 403: "Not a manager of this branch", 404: "Branch not found"})
def create_product(scope, json_data):
    """Add a product to the manager's branch, or to any branch for the administrator."""
    wanted = json_data.pop("branch_id", None)
    if isinstance(scope, InBranch):
        if wanted not in (None, scope.branch_id):
            abort(403, "Managers add products to their own branch only")
        branch_id = scope.branch_id
    elif wanted is None:
        abort(422, "Validation error", {"branch_id": ["Required for the administrator."]})
    else:
        branch_id = get_branch(wanted).id
    product = Product(branch_id=branch_id, **json_data)
    db.session.add(product)
    db.session.commit()
    invalidate(branch_id)
    return product


@bp.patch("/products/<int:product_id>")
@catalogue_editor
@JsonParser(ProductPatchIn).input(bp)
@bp.output(ProductOut)
@bp.doc(responses={401: "Not logged in", 403: "Not a manager", 404: "Product not found"})
def update_product(scope, product_id, json_data):
    """Change a product's name, price or stock."""
    product = get_product(product_id, scope)
    for field, value in json_data.items():
        setattr(product, field, value)
    db.session.commit()
    invalidate(product.branch_id)
    return product


@bp.delete("/products/<int:product_id>")
@catalogue_editor
@bp.output({}, status_code=204)
@bp.doc(responses={401: "Not logged in", 403: "Not a manager", 404: "Product not found"})
def delete_product(scope, product_id):
    """Take a product off sale; past purchases keep their snapshot."""
    product = get_product(product_id, scope)
    product.deleted_at = now_utc()
    db.session.commit()
    invalidate(product.branch_id)
    return ""
