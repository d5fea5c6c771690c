"""billing: usage events say whether their tokens were estimated (counted locally, no usage from upstream)

Revision ID: billing_0005
Revises: billing_0004
"""
import sqlalchemy as sa
from alembic import op

revision = "billing_0005"
down_revision = "billing_0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # ADD COLUMN is neither an UPDATE nor a DELETE: the append-only triggers of billing_0001 allow it, and
    # the server default makes every older event read as measured (the only kind there was)
    op.add_column("billing_usage_events",
                  sa.Column("estimated", sa.Boolean, nullable=False, server_default=sa.false()))


def downgrade() -> None:
    # plain DROP COLUMN (SQLite ≥ 3.35 has it): a batch copy of the table would lose its triggers
    op.drop_column("billing_usage_events", "estimated")
