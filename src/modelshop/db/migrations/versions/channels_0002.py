"""channels: database triggers guarding the commission ledger

What never changes, whoever writes (the ORM guard of `channels.commission_guards` says the same earlier, with
a clearer message; these also stop plain SQL and bulk updates that bypass it):

    channels_commissions      never deleted; an entry is written pending; its amount and what it is
                              for (partner, rule, customer, invoice, entry, period, currency, base,
                              rate, hold, note, created_at) never change; status only moves
                              pending → approved → paid, approved_at is set once, an entry is paid
                              only by a payout statement, and a paid entry never changes at all
    channels_commission_rules never deleted; its terms never change; status only moves
                              active → ended, and ended_at is set once
    channels_payouts          a statement is written once: no UPDATE, no DELETE

Corrections are new rows: a clawback or an adjustment entry, a new rule after ending the old one.

Revision ID: channels_0002
Revises: channels_0001
"""
from alembic import op

revision = "channels_0002"
down_revision = "channels_0001"
branch_labels = None
depends_on = None

LEDGER = "channels_commissions"
FROZEN = ("id", "partner_id", "rule_id", "customer_id", "invoice_id", "entry", "period", "currency",
          "base_minor", "rate_bp", "amount_minor", "hold_until", "created_at", "note")
STATUS = ("status", "approved_at", "paid_at", "payout_id")
RULE_TERMS = ("id", "partner_id", "kind", "currency", "tiers", "months", "bounty_minor", "hold_days", "created_at")

FIX = "record a correcting entry instead"
MESSAGES = {
    "delete": f"{LEDGER}: an entry is never deleted; {FIX}",
    "insert": f"{LEDGER}: a new entry starts pending (approved and paid by the commission job and payouts)",
    "frozen": f"{LEDGER}: an entry never changes its amount or what it is for; {FIX}",
    "status": (f"{LEDGER}: status only moves pending -> approved -> paid (paid by a payout statement) "
               "and a paid entry never changes; a clawback is a new negative entry"),
    "rule_delete": "channels_commission_rules: a rule is never deleted; end it instead",
    "rule_terms": "channels_commission_rules: a rule never changes its terms; end it and create a new one",
    "payout": "channels_payouts: a payout statement is written once and never changes",
}


def _conditions(distinct: str, json_text: str) -> dict[str, str]:
    """The WHEN clause of each refusal, in the dialect's spelling of IS DISTINCT FROM."""
    def changed(cols, old="OLD", new="NEW"):
        return " OR ".join(f"{new}.{c}{json_text if c == 'tiers' else ''} {distinct} "
                           f"{old}.{c}{json_text if c == 'tiers' else ''}" for c in cols)

    moves = ("(OLD.status = 'pending' AND NEW.status IN ('pending', 'approved')) "
             "OR (OLD.status = 'approved' AND NEW.status IN ('approved', 'paid'))")
    return {
        "insert": "NEW.status <> 'pending' OR NEW.approved_at IS NOT NULL OR NEW.paid_at IS NOT NULL "
                  "OR NEW.payout_id IS NOT NULL",
        "frozen": changed(FROZEN),
        "status": (f"(OLD.status = 'paid' AND ({changed(STATUS)})) "
                   f"OR (OLD.status <> 'paid' AND NOT ({moves})) "
                   f"OR (OLD.approved_at IS NOT NULL AND NEW.approved_at {distinct} OLD.approved_at) "
                   "OR (NEW.status = 'approved' AND NEW.approved_at IS NULL) "
                   "OR (NEW.status = 'paid' AND (NEW.paid_at IS NULL OR NEW.payout_id IS NULL)) "
                   "OR (NEW.status <> 'paid' AND (NEW.paid_at IS NOT NULL OR NEW.payout_id IS NOT NULL))"),
        "rule_terms": (f"{changed(RULE_TERMS)} "
                       "OR NOT ((OLD.status = 'active' AND NEW.status IN ('active', 'ended')) "
                       "OR (OLD.status = 'ended' AND NEW.status = 'ended')) "
                       f"OR (OLD.ended_at IS NOT NULL AND NEW.ended_at {distinct} OLD.ended_at)"),
    }


# (trigger name, table, verb, message key); the keys in ALWAYS refuse every row, the others only rows matching WHEN
TRIGGERS = (
    ("channels_commissions_no_delete", LEDGER, "DELETE", "delete"),
    ("channels_commissions_pending", LEDGER, "INSERT", "insert"),
    ("channels_commissions_frozen", LEDGER, "UPDATE", "frozen"),
    ("channels_commissions_status", LEDGER, "UPDATE", "status"),
    ("channels_commission_rules_no_delete", "channels_commission_rules", "DELETE", "rule_delete"),
    ("channels_commission_rules_terms", "channels_commission_rules", "UPDATE", "rule_terms"),
    ("channels_payouts_no_update", "channels_payouts", "UPDATE", "payout"),
    ("channels_payouts_no_delete", "channels_payouts", "DELETE", "payout"),
)
ALWAYS = {"delete", "rule_delete", "payout"}


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        when = _conditions("IS NOT", "")
        for name, table, verb, key in TRIGGERS:
            clause = "" if key in ALWAYS else f"WHEN {when[key]} "
            op.execute(f"CREATE TRIGGER {name} BEFORE {verb} ON {table} {clause}"
                       f"BEGIN SELECT RAISE(ABORT, '{MESSAGES[key]}'); END")
        return
    when = _conditions("IS DISTINCT FROM", "::text")  # json has no equality operator: compare its text
    op.execute("CREATE FUNCTION channels_refuse() RETURNS trigger LANGUAGE plpgsql AS "
               "$$ BEGIN RAISE EXCEPTION '%', TG_ARGV[0]; END $$")
    for name, table, verb, key in TRIGGERS:
        clause = "" if key in ALWAYS else f"WHEN ({when[key]}) "
        op.execute(f"CREATE TRIGGER {name} BEFORE {verb} ON {table} FOR EACH ROW {clause}"
                   f"EXECUTE FUNCTION channels_refuse('{MESSAGES[key]}')")


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for name, table, _verb, _key in TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}" if postgres else f"DROP TRIGGER IF EXISTS {name}")
    if postgres:
        op.execute("DROP FUNCTION IF EXISTS channels_refuse()")
