"""let users be disabled and deleted

Revision ID: e5a8d2c61f47
Revises: c7e2b91f4d03
Create Date: 2026-12-02 00:30:00.000000

A user is disabled (active false) or deleted (deleted_at set) rather than removed: their
purchases keep their user_id, and their username stays taken. Every user so far is active.

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'e5a8d2c61f47'
down_revision = 'c7e2b91f4d03'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('active', sa.Boolean(), server_default=sa.true(), nullable=False))
        batch_op.add_column(sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('deleted_at')
        batch_op.drop_column('active')
