"""billing: plans, customers, keys, usage ledger, invoices, wallet, audit log (+ immutability triggers)

Revision ID: billing_0001
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

from modelshop.db import UTCDateTime

revision = "billing_0001"
down_revision = "0001"
branch_labels = ("billing",)
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
APPEND_ONLY = ("billing_usage_events", "billing_idempotency", "billing_wallet_entries",
               "billing_credit_notes", "billing_audit_log")
# columns of an invoice that never change once it left draft (status may still go to paid or void)
FROZEN = ("number", "customer_id", "plan_id", "period", "currency", "subtotal_minor", "discount_minor",
          "credits_applied_minor", "total_minor", "created_at", "finalized_at")


def upgrade() -> None:
    op.create_table(
        "billing_resellers",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("discount_bp", sa.Integer, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "billing_plans",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("code", sa.String(64), nullable=False, index=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("interval", sa.String(10), nullable=False),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("spec_sha256", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("code", "version", name="uq_billing_plans_code_version"),
    )
    op.create_table(
        "billing_customers",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("email", sa.String(320)),
        sa.Column("plan_id", sa.Integer, sa.ForeignKey("billing_plans.id"), nullable=False),
        sa.Column("reseller_id", sa.Integer, sa.ForeignKey("billing_resellers.id")),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "billing_api_keys",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("customer_id", sa.Integer, sa.ForeignKey("billing_customers.id"), index=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("prefix", sa.String(20), nullable=False),
        sa.Column("models", sa.JSON),
        sa.Column("rpm", sa.Integer),
        sa.Column("tpm", sa.Integer),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("expires_at", UTCDateTime),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("revoked_at", UTCDateTime),
        sa.Column("last_used_at", UTCDateTime),
        sa.Column("replaces_id", sa.Integer, sa.ForeignKey("billing_api_keys.id")),
    )
    op.create_table(
        "billing_usage_events",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("customer_id", sa.Integer, sa.ForeignKey("billing_customers.id"), nullable=False),
        sa.Column("key_id", sa.Integer, sa.ForeignKey("billing_api_keys.id"), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("route", sa.String(100), nullable=False),
        sa.Column("requests", sa.Integer, nullable=False),
        sa.Column("tokens", sa.Integer, nullable=False),
        sa.Column("characters", sa.Integer, nullable=False),
        sa.Column("compute_us", sa.BigInteger, nullable=False),
        sa.Column("idempotency_key", sa.String(255)),
        sa.Column("occurred_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("customer_id", "idempotency_key", name="uq_billing_usage_events_idem"),
    )
    op.create_index("ix_billing_usage_events_customer_at", "billing_usage_events", ["customer_id", "occurred_at"])
    op.create_index("ix_billing_usage_events_at", "billing_usage_events", ["occurred_at"])
    op.create_table(
        "billing_idempotency",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("customer_id", sa.Integer, sa.ForeignKey("billing_customers.id"), nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=False),
        sa.Column("route", sa.String(100), nullable=False),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column("headers", sa.JSON, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("customer_id", "idempotency_key", name="uq_billing_idempotency"),
    )
    op.create_table(
        "billing_usage_counters",
        sa.Column("customer_id", sa.Integer, sa.ForeignKey("billing_customers.id"), primary_key=True),
        sa.Column("month", sa.String(7), primary_key=True),
        sa.Column("requests", sa.BigInteger, nullable=False),
        sa.Column("tokens", sa.BigInteger, nullable=False),
        sa.Column("characters", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "billing_invoices",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("number", sa.Integer, unique=True),
        sa.Column("customer_id", sa.Integer, sa.ForeignKey("billing_customers.id"), nullable=False),
        sa.Column("plan_id", sa.Integer, sa.ForeignKey("billing_plans.id"), nullable=False),
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("subtotal_minor", sa.BigInteger, nullable=False),
        sa.Column("discount_minor", sa.BigInteger, nullable=False),
        sa.Column("credits_applied_minor", sa.BigInteger, nullable=False),
        sa.Column("total_minor", sa.BigInteger, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("finalized_at", UTCDateTime),
        sa.Column("paid_at", UTCDateTime),
        sa.Column("voided_at", UTCDateTime),
    )
    op.create_index("uq_billing_invoices_open", "billing_invoices", ["customer_id", "period"], unique=True,
                    sqlite_where=sa.text("status <> 'void'"), postgresql_where=sa.text("status <> 'void'"))
    op.create_table(
        "billing_invoice_lines",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("invoice_id", sa.Integer, sa.ForeignKey("billing_invoices.id"), nullable=False, index=True),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("metric", sa.String(20)),
        sa.Column("description", sa.String(300), nullable=False),
        sa.Column("quantity", sa.String(40), nullable=False),
        sa.Column("unit_price", sa.String(40)),
        sa.Column("amount_minor", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "billing_credit_notes",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("number", sa.Integer, nullable=False, unique=True),
        sa.Column("invoice_id", sa.Integer, sa.ForeignKey("billing_invoices.id"), nullable=False, unique=True),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("amount_minor", sa.BigInteger, nullable=False),
        sa.Column("reason", sa.String(300), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "billing_wallet_entries",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("customer_id", sa.Integer, sa.ForeignKey("billing_customers.id"), nullable=False, index=True),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("amount_minor", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.String(12), nullable=False),
        sa.Column("invoice_id", sa.Integer, sa.ForeignKey("billing_invoices.id")),
        sa.Column("note", sa.String(300), nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "billing_audit_log",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("at", UTCDateTime, nullable=False, index=True),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("action", sa.String(40), nullable=False),
        sa.Column("entity", sa.String(30), nullable=False),
        sa.Column("entity_id", sa.String(64), nullable=False),
        sa.Column("detail", sa.JSON, nullable=False),
    )
    _create_guards()


def _create_guards() -> None:
    """Triggers: append-only ledgers refuse UPDATE/DELETE; a non-draft invoice and its lines never change."""
    changed = " OR ".join(f"NEW.{c} IS DISTINCT FROM OLD.{c}" for c in FROZEN)
    transition = ("NOT ((OLD.status = 'finalised' AND NEW.status IN ('finalised', 'paid', 'void')) "
                  "OR (OLD.status = 'paid' AND NEW.status IN ('paid', 'void')))")
    if op.get_bind().dialect.name == "sqlite":
        changed = changed.replace("IS DISTINCT FROM", "IS NOT")
        for table in APPEND_ONLY:
            for verb in ("UPDATE", "DELETE"):
                op.execute(f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                           f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END")
        op.execute("CREATE TRIGGER billing_invoices_frozen BEFORE UPDATE ON billing_invoices "
                   f"WHEN OLD.status <> 'draft' AND (({changed}) OR {transition}) "
                   "BEGIN SELECT RAISE(ABORT, 'a finalised invoice never changes'); END")
        op.execute("CREATE TRIGGER billing_invoices_no_delete BEFORE DELETE ON billing_invoices "
                   "WHEN OLD.status <> 'draft' BEGIN SELECT RAISE(ABORT, 'a finalised invoice never changes'); END")
        for verb, row in (("INSERT", "NEW"), ("UPDATE", "OLD"), ("DELETE", "OLD")):
            op.execute(f"CREATE TRIGGER billing_invoice_lines_frozen_{verb.lower()} BEFORE {verb} "
                       f"ON billing_invoice_lines WHEN (SELECT status FROM billing_invoices "
                       f"WHERE id = {row}.invoice_id) <> 'draft' "
                       "BEGIN SELECT RAISE(ABORT, 'a finalised invoice never changes'); END")
        return
    op.execute("CREATE FUNCTION billing_refuse() RETURNS trigger LANGUAGE plpgsql AS "
               "$$ BEGIN RAISE EXCEPTION '%', TG_ARGV[0]; END $$")
    op.execute("CREATE FUNCTION billing_lines_frozen() RETURNS trigger LANGUAGE plpgsql AS $$ "
               "DECLARE inv integer; st text; BEGIN "
               "IF TG_OP = 'INSERT' THEN inv := NEW.invoice_id; ELSE inv := OLD.invoice_id; END IF; "
               "SELECT status INTO st FROM billing_invoices WHERE id = inv; "
               "IF st <> 'draft' THEN RAISE EXCEPTION 'a finalised invoice never changes'; END IF; "
               "IF TG_OP = 'DELETE' THEN RETURN OLD; END IF; RETURN NEW; END $$")
    for table in APPEND_ONLY:
        op.execute(f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                   f"FOR EACH ROW EXECUTE FUNCTION billing_refuse('{table} is append-only')")
    op.execute("CREATE TRIGGER billing_invoices_frozen BEFORE UPDATE ON billing_invoices FOR EACH ROW "
               f"WHEN (OLD.status <> 'draft' AND (({changed}) OR {transition})) "
               "EXECUTE FUNCTION billing_refuse('a finalised invoice never changes')")
    op.execute("CREATE TRIGGER billing_invoices_no_delete BEFORE DELETE ON billing_invoices FOR EACH ROW "
               "WHEN (OLD.status <> 'draft') EXECUTE FUNCTION billing_refuse('a finalised invoice never changes')")
    op.execute("CREATE TRIGGER billing_invoice_lines_frozen BEFORE INSERT OR UPDATE OR DELETE "
               "ON billing_invoice_lines FOR EACH ROW EXECUTE FUNCTION billing_lines_frozen()")


def downgrade() -> None:
    for table in ("billing_audit_log", "billing_wallet_entries", "billing_credit_notes", "billing_invoice_lines",
                  "billing_invoices", "billing_usage_counters", "billing_idempotency", "billing_usage_events",
                  "billing_api_keys", "billing_customers", "billing_plans", "billing_resellers"):
        op.drop_table(table)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS billing_lines_frozen()")
        op.execute("DROP FUNCTION IF EXISTS billing_refuse()")
