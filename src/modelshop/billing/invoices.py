"""Invoices per customer and period: draft → finalised → paid | void (with a credit note).

A run aggregates the period's usage in SQL (GROUP BY customer and model: a charge may price only
some models) and (re)computes drafts; an
invoice that left draft is never touched again (here, in `billing.ledger_guards` and by triggers).
Finalising numbers the invoice from one gapless sequence and draws prepaid credits first.

Every flow that writes here decides on what it read (a status, a wallet balance, the highest
number), so each runs in `Database.write_session` (SQLite: one writer at a time from the first
read) and on PostgreSQL locks what it read: the invoice row, the customer row before reading
the wallet, and a transaction-level advisory lock per number sequence.
"""

from __future__ import annotations

import datetime as dt
import zlib

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from modelshop.billing import audit, wallet
from modelshop.billing.accounts import load_customer, plan_spec
from modelshop.billing.money import fmt
from modelshop.billing.periods import parse_period
from modelshop.billing.pricing import Line, discount_line, plan_lines
from modelshop.billing.tables import CreditNote, Customer, Invoice, InvoiceLine, Plan, Reseller, WalletEntry
from modelshop.billing.usage import by_name, usage_by_model
from modelshop.db import Database, utcnow
from modelshop.errors import Conflict, NotFound, ValidationError

NUMBER_PREFIX, CREDIT_NOTE_PREFIX = "INV", "CN"


def invoice_view(inv: Invoice, lines: list[InvoiceLine], customer: Customer | None = None) -> dict:
    c = inv.currency
    return {"id": inv.id, "number": f"{NUMBER_PREFIX}-{inv.number:06d}" if inv.number else None,
            "customer_id": inv.customer_id, "customer": customer.name if customer else None,
            "period": inv.period, "status": inv.status, "currency": c,
            "lines": [{"kind": ln.kind, "metric": ln.metric, "models": ln.models, "description": ln.description,
                       "quantity": str(ln.quantity),
                       "unit_price": None if ln.unit_price is None else str(ln.unit_price),
                       "amount": fmt(ln.amount_minor, c)} for ln in sorted(lines, key=lambda x: x.position)],
            "subtotal": fmt(inv.subtotal_minor, c), "discount": fmt(inv.discount_minor, c),
            "credits_applied": fmt(inv.credits_applied_minor, c), "total": fmt(inv.total_minor, c),
            "created_at": inv.created_at.isoformat(),
            "finalized_at": inv.finalized_at.isoformat() if inv.finalized_at else None,
            "paid_at": inv.paid_at.isoformat() if inv.paid_at else None,
            "voided_at": inv.voided_at.isoformat() if inv.voided_at else None}


def _usage_per_customer(s: Session, start: dt.datetime, end: dt.datetime, customer_id: int | None = None) -> dict:
    """customer → model NAME → metric → units of the period (`pricing.Usage` per customer)."""
    return by_name(usage_by_model(s, start, end, customer_id))


def _lines_for(customer: Customer, plan: Plan, reseller: Reseller | None, quantities: dict,
               end: dt.datetime) -> list[Line]:
    spec = plan_spec(plan)
    lines = plan_lines(spec, quantities, base_fee=customer.created_at < end)
    subtotal = sum(ln.amount_minor for ln in lines)
    if reseller is not None:
        d = discount_line(subtotal, reseller.discount_bp, reseller.name)
        if d:
            lines.append(d)
    return lines


def _fill(s: Session, inv: Invoice, lines: list[Line], plan: Plan, balance_minor: int) -> list[InvoiceLine]:
    """Write a draft's lines (its old ones already deleted) and amounts; credits are previewed from the
    wallet balance here and drawn only at finalisation."""
    rows = [InvoiceLine(invoice_id=inv.id, position=i, kind=ln.kind, metric=ln.metric, description=ln.description,
                        quantity=ln.quantity, unit_price=ln.unit_price, amount_minor=ln.amount_minor,
                        models=None if ln.models is None else list(ln.models))
            for i, ln in enumerate(lines)]
    s.add_all(rows)
    inv.plan_id, inv.currency = plan.id, plan.currency
    inv.subtotal_minor = sum(ln.amount_minor for ln in lines if ln.kind != "discount")
    inv.discount_minor = -sum(ln.amount_minor for ln in lines if ln.kind == "discount")
    due = inv.subtotal_minor - inv.discount_minor
    inv.credits_applied_minor = max(0, min(due, balance_minor))
    inv.total_minor = due - inv.credits_applied_minor
    return rows


def _open_invoices(s: Session, period: str, customer_id: int | None) -> dict[int, Invoice]:
    """The current (non-void) invoice of each customer for the period, locked: a draft being finalised
    meanwhile is waited for and then seen as finalised, never recomputed under it."""
    q = (select(Invoice).where(Invoice.period == period, Invoice.status != "void").order_by(Invoice.id)
         .with_for_update(key_share=True))
    if customer_id is not None:
        q = q.where(Invoice.customer_id == customer_id)
    return {inv.customer_id: inv for inv in s.scalars(q)}


def _balances(s: Session, customer_id: int | None) -> dict[tuple[int, str], int]:
    q = (select(WalletEntry.customer_id, WalletEntry.currency, func.sum(WalletEntry.amount_minor))
         .group_by(WalletEntry.customer_id, WalletEntry.currency))
    if customer_id is not None:
        q = q.where(WalletEntry.customer_id == customer_id)
    return {(c, cur): int(total or 0) for c, cur, total in s.execute(q)}


def _lines(s: Session, invoice_ids: list[int]) -> dict[int, list[InvoiceLine]]:
    out: dict[int, list[InvoiceLine]] = {i: [] for i in invoice_ids}
    for ln in s.scalars(select(InvoiceLine).where(InvoiceLine.invoice_id.in_(invoice_ids))) if invoice_ids else ():
        out[ln.invoice_id].append(ln)
    return out


def run_invoices(db: Database, period: str, *, customer_id: int | None = None, actor: str) -> dict:
    """Compute the drafts of a period: new ones made, existing drafts recomputed, finalised ones untouched.

    A fixed number of statements whatever the number of events: one GROUP BY over the usage, one
    read each of the open invoices and wallet balances, then the drafts written in bulk.
    """
    start, end, kind = parse_period(period)
    try:
        return _run(db, period, start, end, kind, customer_id, actor)
    except IntegrityError:
        raise Conflict(f"another invoice run for {period} made the same drafts at the same time; "
                       "run it again to recompute them") from None


def _run(db: Database, period: str, start: dt.datetime, end: dt.datetime, kind: str, customer_id: int | None,
         actor: str) -> dict:
    with db.write_session() as s:
        usage = _usage_per_customer(s, start, end, customer_id)
        q = (select(Customer, Plan, Reseller).join(Plan, Customer.plan_id == Plan.id)
             .outerjoin(Reseller, Customer.reseller_id == Reseller.id)
             .where(Plan.interval == kind, Customer.created_at < end).order_by(Customer.id))
        if customer_id is not None:
            q = q.where(Customer.id == customer_id)
        billable = [(c, p, r) for c, p, r in s.execute(q) if c.id in usage or plan_spec(p).base_fee is not None]
        current = _open_invoices(s, period, customer_id)
        frozen = [inv.id for inv in current.values() if inv.status != "draft"]
        drafts = [inv.id for inv in current.values() if inv.status == "draft"]
        if drafts:
            s.execute(delete(InvoiceLine).where(InvoiceLine.invoice_id.in_(drafts)))
        fresh = [Invoice(customer_id=c.id, plan_id=p.id, period=period, currency=p.currency, status="draft",
                         created_at=utcnow()) for c, p, _ in billable if c.id not in current]
        s.add_all(fresh)
        s.flush()
        current.update({inv.customer_id: inv for inv in fresh})
        balances = _balances(s, customer_id)
        lines = _lines(s, frozen)
        for customer, plan, reseller in billable:
            inv = current[customer.id]
            if inv.status == "draft":
                lines[inv.id] = _fill(s, inv, _lines_for(customer, plan, reseller, usage.get(customer.id, {}), end),
                                      plan, balances.get((customer.id, plan.currency), 0))
        s.flush()
        out = [invoice_view(current[c.id], lines[current[c.id].id], c) for c, _, _ in billable]
        counts = {"created": len(fresh), "updated": len(drafts), "unchanged": len(frozen)}
        audit.log(s, actor, "invoice.run", "period", period, customer_id=customer_id, **counts)
    return {"period": period, **counts, "invoices": out}


def _load(s: Session, invoice_id: int, customer_id: int | None = None, lock: bool = False) -> Invoice:
    inv = (s.get(Invoice, invoice_id, with_for_update={"key_share": True}, populate_existing=True) if lock
           else s.get(Invoice, invoice_id))
    if inv is None or (customer_id is not None and inv.customer_id != customer_id):
        raise NotFound(f"invoice {invoice_id} does not exist")
    return inv


def _next(s: Session, column) -> int:
    """The next number of a gapless sequence (the column's max + 1), held until this transaction ends.

    SQLite: the write session already holds the writer lock. PostgreSQL: an advisory lock per
    sequence, so concurrent finalisations take numbers in turn instead of colliding on the unique index.
    """
    if s.get_bind().dialect.name == "postgresql":
        key = zlib.crc32(f"{column.table.name}.{column.key}".encode())
        s.execute(select(func.pg_advisory_xact_lock(key)))
    return int(s.scalar(select(func.coalesce(func.max(column), 0))) or 0) + 1


def finalize(db: Database, invoice_id: int, *, actor: str, now: dt.datetime | None = None) -> dict:
    """Recompute a draft from the closed period's usage, draw prepaid credits, number it; then it is frozen.

    The customer row is locked before the wallet is read, so two invoices of one customer finalised
    at once draw its balance once: the second waits and sees what the first left.
    """
    now = now or utcnow()
    with db.write_session() as s:
        inv = _load(s, invoice_id, lock=True)
        if inv.status != "draft":
            raise Conflict(f"invoice {invoice_id} is {inv.status}; only a draft can be finalised")
        start, end, _ = parse_period(inv.period)
        if end > now:
            raise ValidationError(f"period {inv.period} is still open until {end.isoformat()}; "
                                  "finalise its invoices after it ends")
        customer = load_customer(s, inv.customer_id, lock=True)
        plan = s.get(Plan, customer.plan_id)
        reseller = s.get(Reseller, customer.reseller_id) if customer.reseller_id else None
        quantities = _usage_per_customer(s, start, end, customer.id).get(customer.id, {})
        s.execute(delete(InvoiceLine).where(InvoiceLine.invoice_id == inv.id))
        _fill(s, inv, _lines_for(customer, plan, reseller, quantities, end), plan,
              wallet.balance_minor(s, customer.id, plan.currency))
        if inv.credits_applied_minor:
            wallet.add_entry(s, customer.id, inv.currency, -inv.credits_applied_minor, "draw",
                             actor=actor, invoice_id=inv.id, note=f"invoice for {inv.period}")
        inv.number, inv.status, inv.finalized_at = _next(s, Invoice.number), "finalised", now
        s.flush()
        if inv.total_minor == 0:  # fully covered by credits (or nothing due): settled at once
            inv.status, inv.paid_at = "paid", now
        audit.log(s, actor, "invoice.finalize", "invoice", inv.id, number=inv.number,
                  total=fmt(inv.total_minor, inv.currency), currency=inv.currency)
        return invoice_view(inv, _lines(s, [inv.id])[inv.id], customer)


def pay(db: Database, invoice_id: int, *, actor: str, reference: str = "") -> dict:
    """Mark a finalised invoice paid."""
    with db.write_session() as s:
        inv = _load(s, invoice_id, lock=True)
        if inv.status != "finalised":
            raise Conflict(f"invoice {invoice_id} is {inv.status}; only a finalised invoice can be paid")
        inv.status, inv.paid_at = "paid", utcnow()
        audit.log(s, actor, "invoice.pay", "invoice", inv.id, reference=reference or None)
        return invoice_view(inv, _lines(s, [inv.id])[inv.id], s.get(Customer, inv.customer_id))


def void(db: Database, invoice_id: int, *, reason: str, actor: str) -> dict:
    """Void a finalised or paid invoice: a numbered credit note, drawn credits (and payments) back to the wallet."""
    if not reason.strip():
        raise ValidationError("reason: say why the invoice is voided")
    with db.write_session() as s:
        inv = _load(s, invoice_id, lock=True)
        if inv.status not in ("finalised", "paid"):
            raise Conflict(f"invoice {invoice_id} is {inv.status}; only a finalised or paid invoice is "
                           "voided (a draft is simply run again)")
        note = CreditNote(number=_next(s, CreditNote.number), invoice_id=inv.id, currency=inv.currency,
                          amount_minor=inv.subtotal_minor - inv.discount_minor, reason=reason.strip(),
                          created_at=utcnow())
        s.add(note)
        back = inv.credits_applied_minor + (inv.total_minor if inv.status == "paid" else 0)
        if back:
            wallet.add_entry(s, inv.customer_id, inv.currency, back, "credit_note", actor=actor,
                             invoice_id=inv.id, note=f"{CREDIT_NOTE_PREFIX}-{note.number:06d}")
        inv.status, inv.voided_at = "void", utcnow()
        s.flush()
        audit.log(s, actor, "invoice.void", "invoice", inv.id, reason=reason.strip(),
                  credit_note=note.number, amount=fmt(note.amount_minor, inv.currency))
        view = invoice_view(inv, _lines(s, [inv.id])[inv.id], s.get(Customer, inv.customer_id))
        return {**view, "credit_note": {"number": f"{CREDIT_NOTE_PREFIX}-{note.number:06d}",
                                        "amount": fmt(note.amount_minor, inv.currency),
                                        "to_wallet": fmt(back, inv.currency), "reason": note.reason}}


def get_invoice(db: Database, invoice_id: int, *, customer_id: int | None = None) -> dict:
    """One invoice; `customer_id` restricts it to that customer's own (self-service)."""
    with db.session() as s:
        inv = _load(s, invoice_id, customer_id)
        return invoice_view(inv, _lines(s, [inv.id])[inv.id], s.get(Customer, inv.customer_id))


def list_invoices(db: Database, *, customer_id: int | None = None, period: str | None = None,
                  status: str | None = None) -> list[dict]:
    q = select(Invoice, Customer).join(Customer, Invoice.customer_id == Customer.id).order_by(Invoice.id)
    if customer_id is not None:
        q = q.where(Invoice.customer_id == customer_id)
    if period:
        parse_period(period)
        q = q.where(Invoice.period == period)
    if status:
        q = q.where(Invoice.status == status)
    with db.session() as s:
        rows = s.execute(q).all()
        lines = _lines(s, [inv.id for inv, _ in rows])
        return [invoice_view(inv, lines[inv.id], c) for inv, c in rows]
