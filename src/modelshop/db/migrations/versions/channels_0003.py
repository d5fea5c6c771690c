"""channels: one visit row per visitor and landing

Revision ID: channels_0003
Revises: channels_0002
"""
import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = "channels_0003"
down_revision = "channels_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
