"""Immutability in code: append-only ledgers and finalised invoices refuse changes at flush time.

The database triggers of migration `billing_0001` say the same for writes that bypass the ORM;
this guard gives the clear `Conflict` message before any SQL is sent.
"""

from __future__ import annotations

from sqlalchemy import event, inspect
from sqlalchemy.orm import Session

from modelshop.billing.tables import APPEND_ONLY, Invoice, InvoiceLine
from modelshop.errors import Conflict

# status changes allowed once an invoice has left draft; nothing else on it may change
TRANSITIONS = {"finalised": {"finalised", "paid", "void"}, "paid": {"paid", "void"}, "void": {"void"}}
MUTABLE_AFTER_DRAFT = {"status", "paid_at", "voided_at"}


def _committed_status(invoice: Invoice) -> str | None:
    history = inspect(invoice).attrs.status.history
    if history.deleted:
        return history.deleted[0]
    return history.unchanged[0] if history.unchanged else invoice.status


def _check_invoice(invoice: Invoice, deleted: bool) -> None:
    before = _committed_status(invoice)
    if before in (None, "draft"):
        return
    label = f"invoice {invoice.id}"
    if deleted:
        raise Conflict(f"{label} is {before}; a finalised invoice is never deleted (void it instead)")
    state = inspect(invoice)
    changed = {a.key for a in state.attrs if a.history.has_changes()}
    if changed - MUTABLE_AFTER_DRAFT:
        raise Conflict(f"{label} is {before} and never changes ({', '.join(sorted(changed - MUTABLE_AFTER_DRAFT))}); "
                       "void it and run the period again")
    if invoice.status not in TRANSITIONS.get(before, set()):
        raise Conflict(f"{label} is {before}; it cannot become {invoice.status}")


def _check_line(session: Session, line: InvoiceLine) -> None:
    invoice = session.get(Invoice, line.invoice_id) if line.invoice_id is not None else None
    if invoice is not None and _committed_status(invoice) not in (None, "draft"):
        raise Conflict(f"invoice {invoice.id} is {invoice.status}; its lines never change")


@event.listens_for(Session, "before_flush")
def _guard(session: Session, _context, _instances) -> None:
    with session.no_autoflush:
        for obj in list(session.dirty) + list(session.deleted):
            if isinstance(obj, APPEND_ONLY) and (obj in session.deleted or session.is_modified(obj)):
                raise Conflict(f"{type(obj).__tablename__} is append-only; record a correcting entry instead")
        for obj in session.dirty:
            if isinstance(obj, Invoice) and session.is_modified(obj):
                _check_invoice(obj, deleted=False)
            elif isinstance(obj, InvoiceLine) and session.is_modified(obj):
                _check_line(session, obj)
        for obj in session.deleted:
            if isinstance(obj, Invoice):
                _check_invoice(obj, deleted=True)
            elif isinstance(obj, InvoiceLine):
                _check_line(session, obj)
        for obj in session.new:
            if isinstance(obj, InvoiceLine):
                _check_line(session, obj)
