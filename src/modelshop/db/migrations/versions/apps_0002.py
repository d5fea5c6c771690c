"""apps: a bot may compose its replies with a generative model (apps_bots.llm); a turn keeps the model that
wrote its reply and the FAQ ids the reply cites

Revision ID: apps_0002
Revises: apps_0001
"""
import sqlalchemy as sa
from alembic import op

revision = "apps_0002"
down_revision = "apps_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # nullable columns: every bot made before reads as one without a generative model, every turn as written
    # by the FAQ or the rules, which is what they were
    op.add_column("apps_bots", sa.Column("llm", sa.String(200)))
    op.add_column("apps_turns", sa.Column("model", sa.String(200)))
    op.add_column("apps_turns", sa.Column("citations", sa.JSON))


def downgrade() -> None:
    # plain DROP COLUMN (SQLite >= 3.35 has it), as billing_0005 does
    op.drop_column("apps_turns", "citations")
    op.drop_column("apps_turns", "model")
    op.drop_column("apps_bots", "llm")
