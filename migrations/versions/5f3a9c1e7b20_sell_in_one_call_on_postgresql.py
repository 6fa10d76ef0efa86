"""sell in one call on PostgreSQL

Revision ID: 5f3a9c1e7b20
Revises: d8d05eb958ca
Create Date: 2026-11-26 04:00:00.000000

A purchase is the store's busiest write. As one function it costs one round trip and
one transaction instead of a statement per step. Replaced by revision a41c7e93d0b5,
which says what happened to a sale instead of how to answer it.

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '5f3a9c1e7b20'
down_revision = 'd8d05eb958ca'
branch_labels = None
depends_on = None


# Outcomes: 'sold' and 'refused' (a new answer, stored under the key if there is one),
# 'replayed' (the stored answer of the key), 'in_flight' (another request holds the key)
# and 'reused' (the key was first used with another request body).
STORE_PURCHASE = """
CREATE FUNCTION store_purchase(
    buyer_id integer,
    buyer_tenant_id integer,
    buyer_branch_id integer,
    wanted_product_id integer,
    wanted_quantity integer,
    idempotency_key text,
    body_hash text,
    OUT outcome text,
    OUT status_code integer,
    OUT error text,
    OUT purchase_id integer,
    OUT product_id integer,
    OUT quantity integer,
    OUT unit_price_cents bigint,
    OUT total_cents bigint
)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    stored idempotency_keys%ROWTYPE;
    sold_name varchar;
BEGIN
    IF idempotency_key IS NOT NULL THEN
        -- Held until the transaction ends: a concurrent request with the key gets 409 at
        -- once rather than waiting; the key is looked up only once the lock is ours.
        IF NOT pg_try_advisory_xact_lock(hashtextextended(buyer_id || ':' || idempotency_key, 0)) THEN
            outcome := 'in_flight';
            RETURN;
        END IF;
        SELECT * INTO stored FROM idempotency_keys AS k
         WHERE k.user_id = buyer_id AND k.key = idempotency_key;
        IF FOUND THEN
            IF stored.request_hash <> body_hash THEN
                outcome := 'reused';
                RETURN;
            END IF;
            outcome := 'replayed';
            status_code := stored.status_code;
            error := stored.error;
            purchase_id := stored.purchase_id;
            SELECT p.product_id, p.quantity, p.unit_price_cents, p.total_cents
              INTO product_id, quantity, unit_price_cents, total_cents
              FROM purchases AS p WHERE p.id = stored.purchase_id;
            RETURN;
        END IF;
    END IF;

    -- Checks the stock and reads the name and price under the row lock, in one statement:
    -- nobody oversells, and the purchase records what the product was when it was sold.
    UPDATE products AS p SET stock = p.stock - wanted_quantity
     WHERE p.id = wanted_product_id AND p.branch_id = buyer_branch_id
       AND p.deleted_at IS NULL AND p.stock >= wanted_quantity
    RETURNING p.name, p.price_cents INTO sold_name, unit_price_cents;
    IF FOUND THEN
        outcome := 'sold';
        status_code := 201;
        product_id := wanted_product_id;
        quantity := wanted_quantity;
        total_cents := unit_price_cents * wanted_quantity;
        INSERT INTO purchases (tenant_id, branch_id, user_id, product_id, product_name,
                               unit_price_cents, quantity, total_cents, created_at)
        VALUES (buyer_tenant_id, buyer_branch_id, buyer_id, wanted_product_id, sold_name,
                unit_price_cents, wanted_quantity, total_cents, now())
        RETURNING id INTO purchase_id;
    ELSE
        outcome := 'refused';
        IF EXISTS (SELECT FROM products AS p
                    WHERE p.id = wanted_product_id AND p.branch_id = buyer_branch_id
                      AND p.deleted_at IS NULL) THEN
            status_code := 409;
            error := 'Insufficient stock';
        ELSE
            status_code := 404;
            error := 'Product not found';
        END IF;
    END IF;

    IF idempotency_key IS NOT NULL THEN
        INSERT INTO idempotency_keys (user_id, key, request_hash, status_code, purchase_id,
                                      error, created_at)
        VALUES (buyer_id, idempotency_key, body_hash, status_code, purchase_id, error, now());
    END IF;
END
$$
"""


def upgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute(STORE_PURCHASE)


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION store_purchase")
