"""channels: one visit row per visitor and landing

Revision ID: channels_0003
Revises: channels_0002
"""
import sqlalchemy as sa
from alembic import op

revision = "channels_0003"
down_revision = "channels_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # keep each visitor's first view of a page; the repeats only ever counted once (distinct visitors)
    op.execute(sa.text("DELETE FROM channels_visits WHERE id NOT IN "
                       "(SELECT MIN(id) FROM channels_visits GROUP BY visitor_id, path)"))
    op.create_index("uq_channels_visits_visitor_path", "channels_visits", ["visitor_id", "path"], unique=True)
    op.drop_index("ix_channels_visits_visitor", table_name="channels_visits")  # the new index's prefix serves it


def downgrade() -> None:
    op.create_index("ix_channels_visits_visitor", "channels_visits", ["visitor_id"])
    op.drop_index("uq_channels_visits_visitor_path", table_name="channels_visits")
