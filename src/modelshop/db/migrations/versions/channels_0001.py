"""channels: partners, channels, links, visits, touches, attributions, costs, commissions, payouts

Revision ID: channels_0001
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

from modelshop.db import UTCDateTime

revision = "channels_0001"
down_revision = "0001"
branch_labels = ("channels",)
depends_on = ("billing_0001",)

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UTM = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")


def upgrade() -> None:
    op.create_table(
        "channels_partners",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("email", sa.String(320)),
        sa.Column("reseller_id", sa.Integer, sa.ForeignKey("billing_resellers.id")),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "channels_channels",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("code", sa.String(64), nullable=False, unique=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("partner_id", sa.Integer, sa.ForeignKey("channels_partners.id"), index=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "channels_links",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("channel_id", sa.Integer, sa.ForeignKey("channels_channels.id"), nullable=False, index=True),
        *(sa.Column(u, sa.String(200)) for u in UTM),
        sa.Column("landing", sa.String(300), nullable=False),
        sa.Column("with_ref", sa.Boolean, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "channels_visits",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("visitor_id", sa.String(36), nullable=False),
        sa.Column("path", sa.String(300), nullable=False),
        sa.Column("occurred_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_channels_visits_at", "channels_visits", ["occurred_at"])
    op.create_index("ix_channels_visits_visitor", "channels_visits", ["visitor_id"])
    op.create_table(
        "channels_touches",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("visitor_id", sa.String(36), nullable=False),
        sa.Column("channel_id", sa.Integer, sa.ForeignKey("channels_channels.id"), nullable=False),
        sa.Column("link_id", sa.Integer, sa.ForeignKey("channels_links.id")),
        sa.Column("ref", sa.String(64)),
        *(sa.Column(u, sa.String(200)) for u in UTM),
        sa.Column("path", sa.String(300), nullable=False),
        sa.Column("occurred_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_channels_touches_visitor_at", "channels_touches", ["visitor_id", "occurred_at"])
    op.create_index("ix_channels_touches_channel_at", "channels_touches", ["channel_id", "occurred_at"])
    op.create_table(
        "channels_attributions",
        sa.Column("customer_id", sa.Integer, sa.ForeignKey("billing_customers.id"), primary_key=True),
        sa.Column("channel_id", sa.Integer, sa.ForeignKey("channels_channels.id"), nullable=False),
        sa.Column("touch_id", sa.BigInteger, sa.ForeignKey("channels_touches.id")),
        sa.Column("visitor_id", sa.String(36)),
        sa.Column("model", sa.String(10), nullable=False),
        sa.Column("bound_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_channels_attributions_channel", "channels_attributions", ["channel_id"])
    op.create_table(
        "channels_costs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("channel_id", sa.Integer, sa.ForeignKey("channels_channels.id"), nullable=False),
        sa.Column("month", sa.String(7), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("amount_minor", sa.BigInteger, nullable=False),
        sa.Column("note", sa.String(300), nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("channel_id", "month", "kind", "currency", name="uq_channels_costs"),
    )
    op.create_table(
        "channels_partner_keys",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("partner_id", sa.Integer, sa.ForeignKey("channels_partners.id"), nullable=False, index=True),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("prefix", sa.String(24), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("revoked_at", UTCDateTime),
    )
    op.create_table(
        "channels_commission_rules",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("partner_id", sa.Integer, sa.ForeignKey("channels_partners.id"), nullable=False, index=True),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("tiers", sa.JSON),
        sa.Column("months", sa.Integer),
        sa.Column("bounty_minor", sa.BigInteger),
        sa.Column("hold_days", sa.Integer, nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("ended_at", UTCDateTime),
    )
    op.create_table(
        "channels_payouts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("partner_id", sa.Integer, sa.ForeignKey("channels_partners.id"), nullable=False),
        sa.Column("month", sa.String(7), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("total_minor", sa.BigInteger, nullable=False),
        sa.Column("entries", sa.Integer, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("partner_id", "month", "currency", name="uq_channels_payouts"),
    )
    op.create_table(
        "channels_commissions",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("partner_id", sa.Integer, sa.ForeignKey("channels_partners.id"), nullable=False),
        sa.Column("rule_id", sa.Integer, sa.ForeignKey("channels_commission_rules.id"), nullable=False),
        sa.Column("customer_id", sa.Integer, sa.ForeignKey("billing_customers.id"), nullable=False),
        sa.Column("invoice_id", sa.Integer, sa.ForeignKey("billing_invoices.id")),
        sa.Column("entry", sa.String(12), nullable=False),
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("base_minor", sa.BigInteger, nullable=False),
        sa.Column("rate_bp", sa.Integer),
        sa.Column("amount_minor", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("hold_until", UTCDateTime, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("approved_at", UTCDateTime),
        sa.Column("paid_at", UTCDateTime),
        sa.Column("payout_id", sa.Integer, sa.ForeignKey("channels_payouts.id")),
        sa.Column("note", sa.String(200), nullable=False),
    )
    op.create_index("ix_channels_commissions_partner_status", "channels_commissions", ["partner_id", "status"])
    op.create_index("ix_channels_commissions_rule_customer", "channels_commissions", ["rule_id", "customer_id"])
    op.create_table(
        "channels_locks",
        sa.Column("name", sa.String(40), primary_key=True),
        sa.Column("taken_at", UTCDateTime, nullable=False),
    )


def downgrade() -> None:
    for table in ("channels_locks", "channels_commissions", "channels_payouts", "channels_commission_rules",
                  "channels_partner_keys", "channels_costs", "channels_attributions", "channels_touches",
                  "channels_visits", "channels_links", "channels_channels", "channels_partners"):
        op.drop_table(table)
