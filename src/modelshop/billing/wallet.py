"""Prepaid credits: a per-customer wallet kept as its own append-only ledger.

Top-ups add, finalised invoices draw (never below zero), voids refund what the invoice drew.
The balance is the sum of the entries; no stored balance can drift from them. Whoever draws
locks the customer row first (`accounts.load_customer(lock=True)` in a write session) and reads
the balance after, so two invoices finalised at once never spend the same credit twice.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from modelshop.billing import audit
from modelshop.billing.accounts import load_customer
from modelshop.billing.money import exact_minor, fmt
from modelshop.billing.tables import Plan, WalletEntry
from modelshop.db import Database, utcnow
from modelshop.errors import ValidationError


def balance_minor(s: Session, customer_id: int, currency: str) -> int:
    return int(s.scalar(select(func.coalesce(func.sum(WalletEntry.amount_minor), 0))
                        .where(WalletEntry.customer_id == customer_id, WalletEntry.currency == currency)) or 0)


def add_entry(s: Session, customer_id: int, currency: str, amount_minor: int, kind: str, *, actor: str,
              invoice_id: int | None = None, note: str = "") -> WalletEntry:
    entry = WalletEntry(customer_id=customer_id, currency=currency, amount_minor=amount_minor, kind=kind,
                        invoice_id=invoice_id, note=note, actor=actor, created_at=utcnow())
    s.add(entry)
    return entry


def topup(db: Database, customer_id: int, amount: object, *, actor: str, note: str = "") -> dict:
    """Add prepaid credit in the currency of the customer's plan; returns the new balance."""
    with db.session() as s:
        customer = load_customer(s, customer_id)
        currency = s.get(Plan, customer.plan_id).currency
        minor = exact_minor(amount, currency, "amount")
        if minor <= 0:
            raise ValidationError("amount: a top-up must be more than zero")
        entry = add_entry(s, customer_id, currency, minor, "topup", actor=actor, note=note)
        s.flush()
        audit.log(s, actor, "wallet.topup", "customer", customer_id, amount=fmt(minor, currency),
                  currency=currency, entry_id=entry.id)
        return {"customer_id": customer_id, "currency": currency, "topped_up": fmt(minor, currency),
                "balance": fmt(balance_minor(s, customer_id, currency), currency)}


def wallet(db: Database, customer_id: int, limit: int = 100) -> dict:
    """The balance and the newest entries of a customer's wallet."""
    with db.session() as s:
        customer = load_customer(s, customer_id)
        currency = s.get(Plan, customer.plan_id).currency
        rows = s.scalars(select(WalletEntry).where(WalletEntry.customer_id == customer_id)
                         .order_by(WalletEntry.id.desc()).limit(limit)).all()
        return {"customer_id": customer_id, "currency": currency,
                "balance": fmt(balance_minor(s, customer_id, currency), currency),
                "entries": [{"id": e.id, "kind": e.kind, "amount": fmt(e.amount_minor, e.currency),
                             "currency": e.currency, "invoice_id": e.invoice_id, "note": e.note,
                             "created_at": e.created_at.isoformat()} for e in rows]}
