"""Ledger rules in code, checked at flush time.

A commission entry never changes its amount, customer or invoice; only its status moves forward
(pending → approved → paid) and a paid one never changes again: corrections are new entries.
An attribution never changes or disappears silently: `attribution.rebind` marks its session
with `REBIND` before it moves one (and writes the audit entry in the same transaction).
"""

from __future__ import annotations

from sqlalchemy import event, inspect
from sqlalchemy.orm import Session

from modelshop.channels.tables import Attribution, Commission
from modelshop.errors import Conflict

REBIND = "channels.rebind"  # session.info flag set by the one function allowed to move a binding
STATUS_FIELDS = {"status", "approved_at", "paid_at", "payout_id"}
FORWARD = {"pending": {"pending", "approved"}, "approved": {"approved", "paid"}, "paid": {"paid"}}


def _committed(obj, attr: str):
    history = inspect(obj).attrs[attr].history
    if history.deleted:
        return history.deleted[0]
    return history.unchanged[0] if history.unchanged else getattr(obj, attr)


def _check_commission(c: Commission, deleted: bool) -> None:
    if deleted:
        raise Conflict(f"commission entry {c.id} is part of the ledger and is never deleted; "
                       "record a correcting entry instead")
    changed = {a.key for a in inspect(c).attrs if a.history.has_changes()}
    before = _committed(c, "status")
    if changed - STATUS_FIELDS:
        raise Conflict(f"commission entry {c.id} never changes ({', '.join(sorted(changed - STATUS_FIELDS))}); "
                       "record a correcting entry instead")
    if before == "paid" and changed:
        raise Conflict(f"commission entry {c.id} is paid and never changes; a clawback is a new negative entry")
    if c.status not in FORWARD.get(before, set()):
        raise Conflict(f"commission entry {c.id} is {before}; it cannot become {c.status}")


@event.listens_for(Session, "before_flush")
def _guard(session: Session, _context, _instances) -> None:
    for obj in list(session.dirty):
        if isinstance(obj, Commission) and session.is_modified(obj):
            _check_commission(obj, deleted=False)
        elif isinstance(obj, Attribution) and session.is_modified(obj) and not session.info.get(REBIND):
            raise Conflict(f"the channel of customer {obj.customer_id} is bound once at signup; change it only "
                           "with `modelshop channels rebind` (an audited admin action)")
    for obj in session.deleted:
        if isinstance(obj, Commission):
            _check_commission(obj, deleted=True)
        elif isinstance(obj, Attribution):
            raise Conflict(f"the channel binding of customer {obj.customer_id} is never deleted; rebind it instead")
