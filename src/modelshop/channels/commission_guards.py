"""Ledger rules in code, checked at flush time.

A commission entry never changes its amount, customer or invoice; only its status moves forward
(pending → approved → paid) and a paid one never changes again: corrections are new entries.
A commission rule never changes its terms (only active → ended), and a payout statement is
written once. The triggers of migration `channels_0002` refuse the same for SQL that bypasses
the ORM (bulk updates, a console); this guard gives the clear `Conflict` before any SQL is sent.
An attribution never changes or disappears silently: `attribution.rebind` marks its session
with `REBIND` before it moves one (and writes the audit entry in the same transaction).
"""

from __future__ import annotations

from sqlalchemy import event, inspect
from sqlalchemy.orm import Session

from modelshop.channels.tables import Attribution, Commission, CommissionRule, Payout
from modelshop.errors import Conflict

REBIND = "channels.rebind"  # session.info flag set by the one function allowed to move a binding
STATUS_FIELDS = {"status", "approved_at", "paid_at", "payout_id"}
FORWARD = {"pending": {"pending", "approved"}, "approved": {"approved", "paid"}, "paid": {"paid"}}
RULE_MUTABLE = {"status", "ended_at"}


def _committed(obj, attr: str):
    history = inspect(obj).attrs[attr].history
    if history.deleted:
        return history.deleted[0]
    return history.unchanged[0] if history.unchanged else getattr(obj, attr)


def _changed(obj) -> set[str]:
    return {a.key for a in inspect(obj).attrs if a.history.has_changes()}


def _check_commission(c: Commission, deleted: bool) -> None:
    if deleted:
        raise Conflict(f"commission entry {c.id} is part of the ledger and is never deleted; "
                       "record a correcting entry instead")
    changed = _changed(c)
    before = _committed(c, "status")
    if changed - STATUS_FIELDS:
        raise Conflict(f"commission entry {c.id} never changes ({', '.join(sorted(changed - STATUS_FIELDS))}); "
                       "record a correcting entry instead")
    if before == "paid" and changed:
        raise Conflict(f"commission entry {c.id} is paid and never changes; a clawback is a new negative entry")
    if c.status not in FORWARD.get(before, set()):
        raise Conflict(f"commission entry {c.id} is {before}; it cannot become {c.status}")
    if "approved_at" in changed and _committed(c, "approved_at") is not None:
        raise Conflict(f"commission entry {c.id} was approved at {_committed(c, 'approved_at').isoformat()}; "
                       "that never changes")


def _check_new_commission(c: Commission) -> None:
    if (c.status or "pending") != "pending" or c.approved_at or c.paid_at or c.payout_id:
        raise Conflict("a new commission entry starts pending; the commission job approves it and a payout "
                       "statement pays it")


def _check_rule(r: CommissionRule, deleted: bool) -> None:
    if deleted:
        raise Conflict(f"commission rule {r.id} is never deleted (what it earned refers to it); end it instead")
    changed = _changed(r) - RULE_MUTABLE
    if changed:
        raise Conflict(f"commission rule {r.id} never changes its terms ({', '.join(sorted(changed))}); "
                       "end it and create a new rule")
    before = _committed(r, "status")
    if before == "ended" and (r.status != "ended" or "ended_at" in _changed(r)):
        raise Conflict(f"commission rule {r.id} has ended; create a new rule instead of reopening it")


@event.listens_for(Session, "before_flush")
def _guard(session: Session, _context, _instances) -> None:
    for obj in list(session.dirty):
        if isinstance(obj, Commission) and session.is_modified(obj):
            _check_commission(obj, deleted=False)
        elif isinstance(obj, CommissionRule) and session.is_modified(obj):
            _check_rule(obj, deleted=False)
        elif isinstance(obj, Payout) and session.is_modified(obj):
            raise Conflict(f"payout statement {obj.id} is written once and never changes")
        elif isinstance(obj, Attribution) and session.is_modified(obj) and not session.info.get(REBIND):
            raise Conflict(f"the channel of customer {obj.customer_id} is bound once at signup; change it only "
                           "with `modelshop channels rebind` (an audited admin action)")
    for obj in session.new:
        if isinstance(obj, Commission):
            _check_new_commission(obj)
    for obj in session.deleted:
        if isinstance(obj, Commission):
            _check_commission(obj, deleted=True)
        elif isinstance(obj, CommissionRule):
            _check_rule(obj, deleted=True)
        elif isinstance(obj, Payout):
            raise Conflict(f"payout statement {obj.id} is written once and is never deleted")
        elif isinstance(obj, Attribution):
            raise Conflict(f"the channel binding of customer {obj.customer_id} is never deleted; rebind it instead")
