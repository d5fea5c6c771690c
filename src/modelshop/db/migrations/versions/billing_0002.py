"""billing: idempotency claims (a key reserved before inference) and the request fingerprint

Revision ID: billing_0002
Revises: billing_0001
"""
import sqlalchemy as sa
from alembic import op

from modelshop.db import UTCDateTime

revision = "billing_0002"
down_revision = "billing_0001"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # ADD COLUMN is neither an UPDATE nor a DELETE: the append-only triggers of billing_0001 allow it
    op.add_column("billing_idempotency", sa.Column("fingerprint", sa.String(64)))
    op.create_table(
        "billing_idempotency_claims",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("customer_id", sa.Integer, sa.ForeignKey("billing_customers.id"), nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=False),
        sa.Column("route", sa.String(100), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("claimed_at", UTCDateTime, nullable=False),
        sa.Column("expires_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("customer_id", "idempotency_key", name="uq_billing_idempotency_claims"),
    )


def downgrade() -> None:
    op.drop_table("billing_idempotency_claims")
    with op.batch_alter_table("billing_idempotency") as batch:
        batch.drop_column("fingerprint")
