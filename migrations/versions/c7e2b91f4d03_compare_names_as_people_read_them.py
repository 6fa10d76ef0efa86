"""compare names as people read them

Revision ID: c7e2b91f4d03
Revises: a41c7e93d0b5
Create Date: 2026-12-01 23:00:00.000000

Tenant, branch and user names were unique under lower(), so Straße-co and STRASSE-CO were two
tenants. Each name now keeps its key (app.names.name_key: NFKC, then casefold) in a column
with the unique index. Rows already stored stay valid: where two earlier names share a key,
the older keeps it and the later one's key gets its id appended, so nothing is renamed or
lost, and the next registration of that name is refused.

"""
import unicodedata

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'c7e2b91f4d03'
down_revision = 'a41c7e93d0b5'
branch_labels = None
depends_on = None


def name_key(name: str) -> str:
    # app.names.name_key as of this revision: a migration keeps the rule it was written with.
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())


# table, name column, key column, the columns a name is unique within
TABLES = (
    ("tenants", "name", "name_key", ()),
    ("branches", "name", "name_key", ("tenant_id",)),
    ("users", "username", "username_key", ()),
)
LOWER_INDEXES = {
    "tenants": ("uq_tenants_name_lower", ["lower(name)"]),
    "branches": ("uq_branches_tenant_id_name_lower", ["tenant_id", "lower(name)"]),
    "users": ("uq_users_username_lower", ["lower(username)"]),
}


def fill_keys(table: str, name: str, key: str, within: tuple) -> None:
    connection = op.get_bind()
    rows = connection.execute(sa.text(f"SELECT id, {name} {''.join(', ' + c for c in within)} FROM {table} ORDER BY id"))
    taken = set()
    for row in rows.all():
        value = name_key(row[1])
        scope = tuple(row[2:])
        if (scope, value) in taken:
            value = f"{value}#{row[0]}"
        taken.add((scope, value))
        connection.execute(sa.text(f"UPDATE {table} SET {key} = :key WHERE id = :id"), {"key": value, "id": row[0]})


def upgrade():
    for table, name, key, within in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column(key, sa.String(length=400 if key == "name_key" else 256), nullable=True))
        fill_keys(table, name, key, within)
        index, _ = LOWER_INDEXES[table]
        op.drop_index(index, table_name=table)
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column(key, existing_type=sa.String(), nullable=False)
            batch_op.create_unique_constraint(op.f(f"uq_{table}_{within[0] if within else key}"), [*within, key])


def downgrade():
    for table, name, key, within in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(op.f(f"uq_{table}_{within[0] if within else key}"), type_="unique")
            batch_op.drop_column(key)
        index, columns = LOWER_INDEXES[table]
        op.create_index(index, table, [sa.text(column) if "(" in column else column for column in columns], unique=True)
