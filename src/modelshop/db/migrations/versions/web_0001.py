"""web: console sessions (server-side, revocable) with their CSRF tokens

Revision ID: web_0001
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

from modelshop.db import UTCDateTime

revision = "web_0001"
down_revision = "0001"
branch_labels = ("web",)
depends_on = ("billing_0001", "channels_0001")  # sessions point at admin keys and at partner keys

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "web_sessions",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("id_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("api_key_id", sa.Integer, sa.ForeignKey("billing_api_keys.id"), index=True),
        sa.Column("partner_key_id", sa.Integer, sa.ForeignKey("channels_partner_keys.id"), index=True),
        sa.Column("csrf", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("expires_at", UTCDateTime, nullable=False, index=True),
        sa.Column("revoked_at", UTCDateTime),
    )


def downgrade() -> None:
    op.drop_table("web_sessions")
