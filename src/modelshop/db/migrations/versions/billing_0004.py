"""billing: input and output tokens in the ledger, per-model monthly counters, the models of an invoice line

Revision ID: billing_0004
Revises: billing_0003
"""
import sqlalchemy as sa
from alembic import op

revision = "billing_0004"
down_revision = "billing_0003"
branch_labels = None
depends_on = None

METRICS = ("requests", "tokens", "characters", "input_tokens", "output_tokens")


def upgrade() -> None:
    # ADD COLUMN is neither an UPDATE nor a DELETE: the append-only triggers of billing_0001 allow it,
    # and the server default makes every older row (and call) read 0 generated tokens
    for table, kind in (("billing_usage_events", sa.Integer), ("billing_usage_counters", sa.BigInteger)):
        for column in ("input_tokens", "output_tokens"):
            op.add_column(table, sa.Column(column, kind, nullable=False, server_default="0"))
    op.add_column("billing_invoice_lines", sa.Column("models", sa.JSON))
    op.create_table(
        "billing_usage_model_counters",
        sa.Column("customer_id", sa.Integer, sa.ForeignKey("billing_customers.id"), primary_key=True),
        sa.Column("month", sa.String(7), primary_key=True),
        sa.Column("model", sa.String(200), primary_key=True),
        *(sa.Column(m, sa.BigInteger, nullable=False) for m in METRICS),
    )
    _backfill()


def _backfill() -> None:
    """The per-model counters of the months already in the ledger, summed in SQL (one statement)."""
    if op.get_bind().dialect.name == "sqlite":
        month = sa.func.substr(sa.column("occurred_at"), 1, 7)     # stored as "YYYY-MM-DD HH:MM:SS..." in UTC
    else:
        month = sa.func.to_char(sa.func.timezone("UTC", sa.column("occurred_at")), "YYYY-MM")
    events = sa.table("billing_usage_events", sa.column("customer_id"), sa.column("model"),
                      sa.column("occurred_at"), *(sa.column(m) for m in METRICS))
    counters = sa.table("billing_usage_model_counters", sa.column("customer_id"), sa.column("month"),
                        sa.column("model"), *(sa.column(m) for m in METRICS))
    month = month.label("month")
    totals = (sa.select(events.c.customer_id, month, events.c.model, *(sa.func.sum(events.c[m]) for m in METRICS))
              .group_by(events.c.customer_id, month, events.c.model))
    op.execute(counters.insert().from_select(["customer_id", "month", "model", *METRICS], totals))


def downgrade() -> None:
    op.drop_table("billing_usage_model_counters")
    # plain DROP COLUMN (SQLite ≥ 3.35 has it): a batch copy of the table would lose its triggers
    op.drop_column("billing_invoice_lines", "models")
    for table in ("billing_usage_events", "billing_usage_counters"):
        for column in ("input_tokens", "output_tokens"):
            op.drop_column(table, column)
