"""apps: versioned artifacts (knowledge bases, recommenders), bots, sessions, turns, tickets,
labelling queue, dataset versions

Revision ID: apps_0001
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

from modelshop.db import UTCDateTime

revision = "apps_0001"
down_revision = "0001"
branch_labels = ("apps",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "apps_artifacts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("name", sa.String(100), nullable=False, index=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("stage", sa.String(20), nullable=False),
        sa.Column("path", sa.String(300), nullable=False),
        sa.Column("meta", sa.JSON, nullable=False),
        sa.Column("data_sha256", sa.String(64)),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("promoted_at", UTCDateTime),
        sa.UniqueConstraint("kind", "name", "version", name="uq_apps_artifacts_kind_name_version"),
    )
    op.create_table(
        "apps_bots",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("intent_model", sa.String(200), nullable=False),
        sa.Column("kb", sa.String(100)),
        sa.Column("dataset", sa.String(100), nullable=False),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "apps_sessions",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("bot_id", sa.Integer, sa.ForeignKey("apps_bots.id"), nullable=False, index=True),
        sa.Column("customer_id", sa.Integer),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "apps_turns",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("session_id", sa.String(32), sa.ForeignKey("apps_sessions.id"), nullable=False, index=True),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("reply", sa.Text, nullable=False),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("intent", sa.String(100)),
        sa.Column("confidence", sa.Float),
        sa.Column("faq_id", sa.String(200)),
        sa.Column("faq_score", sa.Float),
        sa.Column("handoff", sa.Boolean, nullable=False),
        sa.Column("rating", sa.Integer),
        sa.Column("rated_at", UTCDateTime),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "apps_tickets",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("bot_id", sa.Integer, sa.ForeignKey("apps_bots.id"), nullable=False, index=True),
        sa.Column("session_id", sa.String(32), sa.ForeignKey("apps_sessions.id"), nullable=False, index=True),
        sa.Column("turn_id", sa.Integer, sa.ForeignKey("apps_turns.id"), nullable=False),
        sa.Column("reason", sa.String(40), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("question", sa.Text, nullable=False),
        sa.Column("reply", sa.Text),
        sa.Column("answered_by", sa.String(100)),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("answered_at", UTCDateTime),
    )
    op.create_table(
        "apps_dataset_versions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(100), nullable=False, index=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("path", sa.String(300), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("rows", sa.Integer, nullable=False),
        sa.Column("added", sa.Integer, nullable=False),
        sa.Column("parent_id", sa.Integer, sa.ForeignKey("apps_dataset_versions.id")),
        sa.Column("base", sa.String(300)),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("name", "version", name="uq_apps_dataset_versions_name_version"),
    )
    op.create_table(
        "apps_label_items",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("dataset", sa.String(100), nullable=False, index=True),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("reason", sa.String(20), nullable=False),
        sa.Column("suggested", sa.String(100)),
        sa.Column("confidence", sa.Float),
        sa.Column("choices", sa.JSON, nullable=False),
        sa.Column("turn_id", sa.Integer, sa.ForeignKey("apps_turns.id"), unique=True),
        sa.Column("status", sa.String(20), nullable=False, index=True),
        sa.Column("label", sa.String(100)),
        sa.Column("labelled_by", sa.String(100)),
        sa.Column("labelled_at", UTCDateTime),
        sa.Column("exported_in", sa.Integer, sa.ForeignKey("apps_dataset_versions.id")),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )


def downgrade() -> None:
    for table in ("apps_label_items", "apps_dataset_versions", "apps_tickets", "apps_turns", "apps_sessions",
                  "apps_bots", "apps_artifacts"):
        op.drop_table(table)
