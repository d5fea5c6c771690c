"""Partner commissions: rules, the ledger and the job that keeps it equal to the invoices.

Rules (per partner, in one currency):
    percent   a share of each paid invoice of a referred customer (subtotal less discounts), for the
              customer's first `months` months after binding or forever; `tiers` pick the rate by
              the partner's volume that month (its referred customers' paid invoices), e.g.
              [[0, 1000], [100000, 1500]]: 10 % below 1,000.00, 15 % from there
    bounty    a fixed amount once, on a customer's first paid invoice
Each applies to invoices paid while it is active.

The ledger is append-only in amounts. `run_commissions` computes what every (rule, invoice) and
(rule, customer) should have earned from the current invoice states, in integer minor units
rounded once, and appends the difference: an accrual, an adjustment (the volume tier moved) or
a clawback (the invoice was voided, or the customer rebound away). Run twice, it appends nothing.
Entries wait `hold_days` after payment (pending), are then approved, and a monthly payout
statement pays the approved ones, netting negative entries against positive ones.

What may change is checked twice: in code at flush (`channels.commission_guards`) and by the database
triggers of migration `channels_0002`, which also hold for the bulk approval below and for any SQL
written by hand: amounts never change, status only moves forward, a paid entry, a payout
statement and a rule's terms never change, and nothing of the ledger is deleted.
"""

from __future__ import annotations

import datetime as dt
import io
from decimal import Decimal
from typing import NamedTuple

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from modelshop.billing import audit
from modelshop.billing.accounts import parse_percent
from modelshop.billing.money import check_currency, exact_minor, fmt, round_half_up
from modelshop.billing.periods import parse_period
from modelshop.billing.tables import Customer, Invoice
from modelshop.channels import csvsafe
from modelshop.channels.partners import load_partner
from modelshop.channels.tables import Attribution, Channel, Commission, CommissionRule, JobLock, Payout
from modelshop.db import Database, utcnow
from modelshop.errors import Conflict, NotFound, ValidationError

RULE_KINDS = ("percent", "bounty")


def _month_index(period: str) -> int:
    start, _, _ = parse_period(period)
    return start.year * 12 + start.month - 1


def rate_for(tiers: list, volume_minor: int) -> int:
    """The rate (bp) of the highest tier whose `from` the volume reached."""
    rate = tiers[0][1]
    for start, bp in tiers:
        if volume_minor >= start:
            rate = bp
    return rate


def parse_tiers(tiers: object, currency: str) -> list[list[int]]:
    """[[from, percent], ...] or [{"from", "percent"}, ...] or "0:10,1000:15" → [[from_minor, bp], ...]."""
    if isinstance(tiers, str):
        items = [t.split(":") for t in tiers.split(",") if t.strip()]
    elif isinstance(tiers, list):
        items = [[t.get("from"), t.get("percent")] if isinstance(t, dict) else t for t in tiers]
    else:
        raise ValidationError('tiers: expected e.g. "0:10,1000:15" (volume from : percent)')
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, list | tuple) or len(item) != 2:
            raise ValidationError(f'tiers[{i}]: expected "from:percent", found {item!r}')
        out.append([exact_minor(str(item[0]).strip(), currency, f"tiers[{i}].from"),
                    parse_percent(str(item[1]).strip(), f"tiers[{i}].percent")])
    if not out or out[0][0] != 0:
        raise ValidationError("tiers: the first tier must start at a volume of 0")
    if any(b[0] <= a[0] for a, b in zip(out, out[1:], strict=False)):
        raise ValidationError("tiers: each tier must start at a higher volume than the one before")
    return out


def rule_view(r: CommissionRule) -> dict:
    c = r.currency
    return {"id": r.id, "partner_id": r.partner_id, "kind": r.kind, "currency": c,
            "tiers": [{"from": fmt(a, c), "percent": str(Decimal(bp).scaleb(-2))} for a, bp in r.tiers or []],
            "months": r.months, "bounty": fmt(r.bounty_minor, c) if r.bounty_minor is not None else None,
            "hold_days": r.hold_days, "status": r.status, "created_at": r.created_at.isoformat(),
            "ended_at": r.ended_at.isoformat() if r.ended_at else None}


def create_rule(db: Database, partner_id: int, kind: str, *, percent: object = None, tiers: object = None,
                months: int | None = None, bounty: object = None, currency: str = "USD", hold_days: int = 30,
                actor: str) -> dict:
    """A commission rule for a partner (see the module docstring)."""
    currency = check_currency(currency)
    if kind not in RULE_KINDS:
        raise ValidationError(f'kind: "{kind}" is not one of {", ".join(RULE_KINDS)}')
    if isinstance(hold_days, bool) or not isinstance(hold_days, int) or not 0 <= hold_days <= 365:
        raise ValidationError(f"hold_days: expected a whole number from 0 to 365, found {hold_days!r}")
    fields: dict = {"tiers": None, "months": None, "bounty_minor": None}
    if kind == "percent":
        if (percent is None) == (tiers is None):
            raise ValidationError("a percent rule takes either percent (one rate) or tiers (rates by volume)")
        fields["tiers"] = (parse_tiers(tiers, currency) if tiers is not None
                           else [[0, parse_percent(percent, "percent")]])
        if months is not None and (isinstance(months, bool) or not isinstance(months, int) or months < 1):
            raise ValidationError(f"months: expected a whole number of at least 1 (or none: forever), found {months!r}")
        fields["months"] = months
    else:
        if bounty is None or percent is not None or tiers is not None or months is not None:
            raise ValidationError("a bounty rule takes only bounty (an amount) and currency")
        fields["bounty_minor"] = exact_minor(bounty, currency, "bounty")
        if fields["bounty_minor"] <= 0:
            raise ValidationError("bounty: must be more than zero")
    with db.session() as s:
        load_partner(s, partner_id)
        rule = CommissionRule(partner_id=partner_id, kind=kind, currency=currency, hold_days=hold_days,
                              status="active", created_at=utcnow(), **fields)
        s.add(rule)
        s.flush()
        audit.log(s, actor, "commission.rule", "partner", partner_id, rule_id=rule.id, kind=kind)
        return rule_view(rule)


def end_rule(db: Database, rule_id: int, *, actor: str) -> dict:
    """Stop a rule: invoices paid from now on earn nothing under it (what was earned stays)."""
    with db.write_session() as s:
        # locked: a second end_rule at the same time waits, then finds it ended
        rule = s.get(CommissionRule, rule_id, with_for_update={"key_share": True})
        if rule is None:
            raise NotFound(f"commission rule {rule_id} does not exist")
        if rule.status == "active":
            rule.status, rule.ended_at = "ended", utcnow()
            audit.log(s, actor, "commission.rule_end", "partner", rule.partner_id, rule_id=rule.id)
        return rule_view(rule)


def list_rules(db: Database, partner_id: int | None = None) -> list[dict]:
    q = select(CommissionRule).order_by(CommissionRule.id)
    if partner_id is not None:
        q = q.where(CommissionRule.partner_id == partner_id)
    with db.session() as s:
        return [rule_view(r) for r in s.scalars(q)]


# --- the job ------------------------------------------------------------------------------------

def take_lock(s: Session, name: str) -> None:
    """Write the job's lock row first: a second run (any replica, SQLite or PostgreSQL) waits for this one."""
    dialect = s.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as upsert
    else:
        from sqlalchemy.dialects.sqlite import insert as upsert
    stmt = upsert(JobLock).values(name=name, taken_at=utcnow())
    s.execute(stmt.on_conflict_do_update(index_elements=["name"], set_={"taken_at": stmt.excluded.taken_at}))


class PaidInvoice(NamedTuple):
    """What the job knows of one paid invoice of a customer bound to a partner's channel."""

    invoice_id: int
    customer_id: int
    period: str
    currency: str
    base_minor: int                # subtotal less discounts: what a percentage is taken of
    paid_at: dt.datetime
    voided_at: dt.datetime | None  # voided after payment: what it earned is clawed back
    partner_id: int
    bound_at: dt.datetime          # when the customer was bound: its month 0 for a rule's `months`


class EntryKey(NamedTuple):
    """What one line of the ledger is for: a rule, a customer and an invoice (a bounty's first paid one)."""

    rule_id: int
    customer_id: int
    invoice_id: int | None


def paid_invoices(s: Session) -> list[PaidInvoice]:
    """Every paid invoice (paid_at set, voided later or not) of a customer bound to a partner's channel,
    in the order they were paid."""
    rows = s.execute(
        select(Invoice.id, Invoice.customer_id, Invoice.period, Invoice.currency,
               Invoice.subtotal_minor - Invoice.discount_minor, Invoice.paid_at, Invoice.voided_at,
               Channel.partner_id, Attribution.bound_at)
        .join(Attribution, Attribution.customer_id == Invoice.customer_id)
        .join(Channel, Channel.id == Attribution.channel_id)
        .where(Channel.partner_id.is_not(None), Invoice.paid_at.is_not(None))
        .order_by(Invoice.paid_at, Invoice.id))
    return [PaidInvoice(*row) for row in rows]


def _ledger(s: Session) -> dict[EntryKey, dict]:
    """Per ledger line: the sum so far and the latest hold of its pending entries."""
    rows = s.execute(select(Commission.rule_id, Commission.customer_id, Commission.invoice_id,
                            func.sum(Commission.amount_minor), func.count(),
                            func.max(Commission.hold_until).filter(Commission.status == "pending"))
                     .group_by(Commission.rule_id, Commission.customer_id, Commission.invoice_id)).all()
    return {EntryKey(r, c, i): {"sum": int(total or 0), "n": n, "pending_hold": hold}
            for r, c, i, total, n, hold in rows}


def _active(rule: CommissionRule, paid_at: dt.datetime) -> bool:
    return rule.created_at <= paid_at and (rule.ended_at is None or paid_at < rule.ended_at)


def run_commissions(db: Database, *, now: dt.datetime | None = None, actor: str) -> dict:
    """Bring the ledger in line with the invoices, then approve entries whose hold has passed."""
    now = now or utcnow()
    with db.write_session() as s:
        take_lock(s, "commissions")
        rules = s.scalars(select(CommissionRule).order_by(CommissionRule.id)).all()
        facts = paid_invoices(s)
        ledger = _ledger(s)
        volume: dict[tuple[int, str, str], int] = {}  # (partner, period, currency) → paid invoices still standing
        for f in facts:
            if f.voided_at is None:
                bucket = (f.partner_id, f.period, f.currency)
                volume[bucket] = volume.get(bucket, 0) + f.base_minor
        targets: dict[EntryKey, dict] = {}
        for rule in rules:
            mine = [f for f in facts if f.partner_id == rule.partner_id and f.currency == rule.currency]
            if rule.kind == "percent":
                for f in mine:
                    k = _month_index(f.period) - _month_index(f"{f.bound_at.year:04d}-{f.bound_at.month:02d}")
                    ok = (f.voided_at is None and _active(rule, f.paid_at) and k >= 0
                          and (rule.months is None or k < rule.months))
                    bp = rate_for(rule.tiers, volume.get((f.partner_id, f.period, f.currency), 0))
                    targets[EntryKey(rule.id, f.customer_id, f.invoice_id)] = {
                        "amount": round_half_up(Decimal(f.base_minor) * bp / 10000) if ok else 0, "base": f.base_minor,
                        "bp": bp, "period": f.period, "cur": f.currency,
                        "hold": f.paid_at + dt.timedelta(days=rule.hold_days), "rule": rule}
            else:
                first: dict[int, PaidInvoice] = {}
                for f in mine:  # ordered by paid_at: each customer's first paid invoice still standing
                    if f.voided_at is None and f.customer_id not in first:
                        first[f.customer_id] = f
                for cust, f in first.items():
                    if _active(rule, f.paid_at):
                        targets[EntryKey(rule.id, cust, f.invoice_id)] = {
                            "amount": rule.bounty_minor, "base": f.base_minor, "bp": None, "period": f.period,
                            "cur": rule.currency, "hold": f.paid_at + dt.timedelta(days=rule.hold_days), "rule": rule}
        by_id = {r.id: r for r in rules}
        written = {"accrual": 0, "adjustment": 0, "clawback": 0}
        for key in sorted(set(targets) | {k for k, e in ledger.items() if e["sum"]},
                          key=lambda k: (k.rule_id, k.customer_id, k.invoice_id or 0)):
            t = targets.get(key)
            have = ledger.get(key, {"sum": 0, "n": 0, "pending_hold": None})
            want = t["amount"] if t else 0
            delta = want - have["sum"]
            if delta == 0:
                continue
            rule = by_id[key.rule_id]
            entry = "accrual" if have["n"] == 0 else ("clawback" if want == 0 else "adjustment")
            if delta > 0:
                hold = t["hold"]
            else:  # a reversal waits with what it reverses, if that still waits; else it is due at once
                hold = max(filter(None, [have["pending_hold"], now]))
            info = t if want else _last_entry(s, key)  # a clawback reverses at the rate it was earned
            s.add(Commission(partner_id=rule.partner_id, rule_id=rule.id, customer_id=key.customer_id,
                             invoice_id=key.invoice_id,
                             entry=entry, period=info["period"], currency=info["cur"], base_minor=info["base"],
                             rate_bp=info["bp"], amount_minor=delta, status="pending", hold_until=hold,
                             created_at=now, note=rule.kind))
            written[entry] += 1
        s.flush()
        approved = s.execute(update(Commission).where(Commission.status == "pending", Commission.hold_until <= now)
                             .values(status="approved", approved_at=now)).rowcount
        if any(written.values()) or approved:
            audit.log(s, actor, "commission.run", "commissions", "*", approved=approved, **written)
    return {**written, "approved": approved}


def _last_entry(s: Session, key: EntryKey) -> dict:
    last = s.scalars(select(Commission).where(Commission.rule_id == key.rule_id,
                                              Commission.customer_id == key.customer_id,
                                              Commission.invoice_id.is_(None) if key.invoice_id is None
                                              else Commission.invoice_id == key.invoice_id)
                     .order_by(Commission.id.desc()).limit(1)).one()
    return {"period": last.period, "cur": last.currency, "base": last.base_minor, "bp": last.rate_bp}


# --- reading and paying -------------------------------------------------------------------------

def entry_view(c: Commission, customer: str | None = None) -> dict:
    cur = c.currency
    return {"id": c.id, "partner_id": c.partner_id, "rule_id": c.rule_id, "kind": c.note, "entry": c.entry,
            "customer_id": c.customer_id, "customer": customer, "invoice_id": c.invoice_id, "period": c.period,
            "currency": cur, "base": fmt(c.base_minor, cur),
            "rate_percent": str(Decimal(c.rate_bp).scaleb(-2)) if c.rate_bp is not None else None,
            "amount": fmt(c.amount_minor, cur), "status": c.status, "hold_until": c.hold_until.isoformat(),
            "approved_at": c.approved_at.isoformat() if c.approved_at else None,
            "paid_at": c.paid_at.isoformat() if c.paid_at else None, "payout_id": c.payout_id}


def list_commissions(db: Database, *, partner_id: int | None = None, status: str | None = None) -> dict:
    """Entries (newest last) and the balance per status and currency."""
    q = select(Commission, Customer.name).join(Customer, Customer.id == Commission.customer_id).order_by(Commission.id)
    if partner_id is not None:
        q = q.where(Commission.partner_id == partner_id)
    if status:
        q = q.where(Commission.status == status)
    with db.session() as s:
        rows = s.execute(q).all()
    totals: dict[str, dict[str, int]] = {}
    for c, _ in rows:
        cur = totals.setdefault(c.currency, {"pending": 0, "approved": 0, "paid": 0})
        cur[c.status] += c.amount_minor
    return {"entries": [entry_view(c, n) for c, n in rows],
            "totals": {cur: {k: fmt(v, cur) for k, v in t.items()} for cur, t in totals.items()}}


def payout(db: Database, partner_id: int, month: str, *, currency: str = "USD", actor: str) -> dict:
    """The month's payout statement: every approved, unpaid entry approved by the month's end, netted.

    Idempotent: the statement of a month is made once and returned as it was on later calls.
    """
    currency = check_currency(currency)
    start, end, kind = parse_period(month)
    if kind != "month":
        raise ValidationError(f'month: "{month}" must be YYYY-MM')
    with db.write_session() as s:
        load_partner(s, partner_id)
        done = s.scalar(select(Payout).where(Payout.partner_id == partner_id, Payout.month == month,
                                             Payout.currency == currency))
        if done is not None:
            return statement(s, done)
        due = s.scalars(select(Commission).where(Commission.partner_id == partner_id, Commission.currency == currency,
                                                 Commission.status == "approved", Commission.approved_at < end)
                        # PostgreSQL: a statement of another month made meanwhile pays an entry once;
                        # this one waits for it and then no longer sees what it paid
                        .order_by(Commission.id).with_for_update(key_share=True)).all()
        total = sum(c.amount_minor for c in due)
        if total <= 0:
            raise ValidationError(f"nothing to pay partner {partner_id} for {month}: approved entries net "
                                  f"{fmt(total, currency)} {currency}; a negative balance is carried to the next "
                                  "statement")
        p = Payout(partner_id=partner_id, month=month, currency=currency, total_minor=total, entries=len(due),
                   created_at=utcnow())
        s.add(p)
        try:
            s.flush()
        except IntegrityError:
            raise Conflict(f"the {month} statement of partner {partner_id} is being made right now; "
                           "try again") from None
        now = utcnow()
        for c in due:
            c.status, c.paid_at, c.payout_id = "paid", now, p.id
        s.flush()
        audit.log(s, actor, "commission.payout", "partner", partner_id, payout_id=p.id, month=month,
                  total=fmt(total, currency), currency=currency, entries=len(due))
        return statement(s, p)


def statement(s: Session, p: Payout) -> dict:
    rows = s.execute(select(Commission, Customer.name).join(Customer, Customer.id == Commission.customer_id)
                     .where(Commission.payout_id == p.id).order_by(Commission.id)).all()
    return {"id": p.id, "partner_id": p.partner_id, "month": p.month, "currency": p.currency,
            "total": fmt(p.total_minor, p.currency), "entries": [entry_view(c, n) for c, n in rows],
            "created_at": p.created_at.isoformat()}


def get_statement(db: Database, payout_id: int, *, partner_id: int | None = None) -> dict:
    with db.session() as s:
        p = s.get(Payout, payout_id)
        if p is None or (partner_id is not None and p.partner_id != partner_id):
            raise NotFound(f"payout statement {payout_id} does not exist")
        return statement(s, p)


def list_payouts(db: Database, partner_id: int | None = None) -> list[dict]:
    q = select(Payout).order_by(Payout.id)
    if partner_id is not None:
        q = q.where(Payout.partner_id == partner_id)
    with db.session() as s:
        return [{"id": p.id, "partner_id": p.partner_id, "month": p.month, "currency": p.currency,
                 "total": fmt(p.total_minor, p.currency), "entries": p.entries, "created_at": p.created_at.isoformat()}
                for p in s.scalars(q)]


STATEMENT_COLUMNS = ("entry_id", "customer_id", "customer", "invoice_id", "period", "kind", "entry", "base",
                     "rate_percent", "amount", "currency")


def statement_csv(st: dict) -> str:
    """A payout statement as CSV: one line per entry and a closing total line."""
    out = io.StringIO()
    w = csvsafe.writer(out, lineterminator="\n")  # names in it are chosen by customers: no formulas
    w.writerow(STATEMENT_COLUMNS)
    for e in st["entries"]:
        w.writerow([e["id"], e["customer_id"], e["customer"], e["invoice_id"] or "", e["period"], e["kind"],
                    e["entry"], e["base"], e["rate_percent"] or "", e["amount"], e["currency"]])
    w.writerow(["total", "", "", "", st["month"], "", "", "", "", st["total"], st["currency"]])
    return out.getvalue()
