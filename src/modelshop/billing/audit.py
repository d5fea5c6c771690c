"""The audit log of admin actions: written in the same transaction as the action it records."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from modelshop.billing.tables import AuditEntry
from modelshop.db import Database, utcnow


def log(s: Session, actor: str, action: str, entity: str, entity_id: object, **detail: object) -> None:
    """Append one entry; `detail` must never contain a key (callers pass prefixes only)."""
    s.add(AuditEntry(at=utcnow(), actor=actor, action=action, entity=entity, entity_id=str(entity_id),
                     detail={k: v for k, v in detail.items() if v is not None}))


def entries(db: Database, *, entity: str | None = None, entity_id: object = None,
            limit: int = 100) -> list[dict]:
    """The newest entries first, optionally for one entity."""
    q = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if entity:
        q = q.where(AuditEntry.entity == entity)
    if entity_id is not None:
        q = q.where(AuditEntry.entity_id == str(entity_id))
    with db.session() as s:
        return [{"id": e.id, "at": e.at.isoformat(), "actor": e.actor, "action": e.action, "entity": e.entity,
                 "entity_id": e.entity_id, "detail": e.detail} for e in s.scalars(q)]
