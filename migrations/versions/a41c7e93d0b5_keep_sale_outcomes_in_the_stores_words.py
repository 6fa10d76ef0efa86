"""keep sale outcomes in the store's words

Revision ID: a41c7e93d0b5
Revises: 5f3a9c1e7b20
Create Date: 2026-12-01 12:00:00.000000

An idempotency key kept the HTTP status and error text of the first answer, and
store_purchase() chose them: the database spoke HTTP. Both now say what happened to the
sale ('sold', 'out_of_stock', 'not_found'); app/routes/purchases.py alone turns that into
an answer. app/sales/steps.py runs the same steps as statements on SQLite, and the purchase
tests run against both.

"""
from alembic import context, op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'a41c7e93d0b5'
down_revision = '5f3a9c1e7b20'
branch_labels = None
depends_on = None


# Outcomes: 'sold', 'out_of_stock' and 'not_found' (a new answer, kept under the key if there
# is one, or the kept answer of the key when `replayed`), 'in_flight' (another request holds
# the key) and 'key_reused' (the key was first used with another request body).
STORE_PURCHASE = """
CREATE FUNCTION store_purchase(
    buyer_id integer,
    buyer_tenant_id integer,
    buyer_branch_id integer,
    wanted_product_id integer,
    wanted_quantity integer,
    idempotency_key text,
    body_hash text,
    lock_timeout_ms integer,
    OUT outcome text,
    OUT replayed boolean,
    OUT purchase_id integer,
    OUT product_id integer,
    OUT quantity integer,
    OUT unit_price_cents bigint,
    OUT total_cents bigint
)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    kept idempotency_keys%ROWTYPE;
    sold_name varchar;
BEGIN
    -- A row or table another transaction holds is waited for this long at most: the caller
    -- answers 503 rather than hang. Local to this call's transaction.
    PERFORM set_config('lock_timeout', lock_timeout_ms || 'ms', true);
    replayed := false;
    IF idempotency_key IS NOT NULL THEN
        -- Held until the transaction ends: a concurrent request with the key is told at
        -- once rather than waiting; the key is looked up only once the lock is ours.
        IF NOT pg_try_advisory_xact_lock(hashtextextended(buyer_id || ':' || idempotency_key, 0)) THEN
            outcome := 'in_flight';
            RETURN;
        END IF;
        SELECT * INTO kept FROM idempotency_keys AS k
         WHERE k.user_id = buyer_id AND k.key = idempotency_key;
        IF FOUND THEN
            IF kept.request_hash <> body_hash THEN
                outcome := 'key_reused';
                RETURN;
            END IF;
            outcome := kept.outcome;
            replayed := true;
            purchase_id := kept.purchase_id;
            SELECT p.product_id, p.quantity, p.unit_price_cents, p.total_cents
              INTO product_id, quantity, unit_price_cents, total_cents
              FROM purchases AS p WHERE p.id = kept.purchase_id;
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
        product_id := wanted_product_id;
        quantity := wanted_quantity;
        total_cents := unit_price_cents * wanted_quantity;
        INSERT INTO purchases (tenant_id, branch_id, user_id, product_id, product_name,
                               unit_price_cents, quantity, total_cents, created_at)
        VALUES (buyer_tenant_id, buyer_branch_id, buyer_id, wanted_product_id, sold_name,
                unit_price_cents, wanted_quantity, total_cents, now())
        RETURNING id INTO purchase_id;
    ELSIF EXISTS (SELECT FROM products AS p
                   WHERE p.id = wanted_product_id AND p.branch_id = buyer_branch_id
                     AND p.deleted_at IS NULL) THEN
        outcome := 'out_of_stock';
    ELSE
        outcome := 'not_found';
    END IF;

    IF idempotency_key IS NOT NULL THEN
        INSERT INTO idempotency_keys (user_id, key, request_hash, outcome, purchase_id, created_at)
        VALUES (buyer_id, idempotency_key, body_hash, outcome, purchase_id, now());
    END IF;
END
$$
"""

# What the answers kept before this revision stood for, both ways.
STATUS_OF = {"sold": (201, None), "out_of_stock": (409, "Insufficient stock"), "not_found": (404, "Product not found")}


def previous_store_purchase() -> str:
    return context.script.get_revision(down_revision).module.STORE_PURCHASE


def upgrade():
    with op.batch_alter_table('idempotency_keys', schema=None) as batch_op:
        batch_op.add_column(sa.Column('outcome', sa.String(length=16), nullable=True))
    for outcome, (status, _) in STATUS_OF.items():
        op.execute(sa.text("UPDATE idempotency_keys SET outcome = :o WHERE status_code = :s").bindparams(o=outcome, s=status))
    with op.batch_alter_table('idempotency_keys', schema=None) as batch_op:
        batch_op.alter_column('outcome', existing_type=sa.String(length=16), nullable=False)
        batch_op.create_check_constraint(op.f('ck_idempotency_keys_outcome'), "outcome IN ('sold', 'out_of_stock', 'not_found')")
        batch_op.drop_column('status_code')
        batch_op.drop_column('error')
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION store_purchase")
        op.execute(STORE_PURCHASE)


def downgrade():
    with op.batch_alter_table('idempotency_keys', schema=None) as batch_op:
        batch_op.add_column(sa.Column('status_code', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('error', sa.String(length=100), nullable=True))
    for outcome, (status, error) in STATUS_OF.items():
        op.execute(
            sa.text("UPDATE idempotency_keys SET status_code = :s, error = :e WHERE outcome = :o")
            .bindparams(s=status, e=error, o=outcome)
        )
    with op.batch_alter_table('idempotency_keys', schema=None) as batch_op:
        batch_op.alter_column('status_code', existing_type=sa.Integer(), nullable=False)
        batch_op.drop_constraint(op.f('ck_idempotency_keys_outcome'), type_='check')
        batch_op.drop_column('outcome')
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION store_purchase")
        op.execute(previous_store_purchase())
