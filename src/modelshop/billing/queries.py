"""Read-only questions the console and the storefront ask of billing's tables.

`web` holds no SQL: a page asks a named question here (or in `channels.queries`, for figures that
join channel tables) and gets plain values back, so the tables can change without a page knowing.
Each function is one short read in its own session; none writes.

May import: db, billing.tables.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select

from modelshop.billing.tables import ApiKey, Customer, UsageEvent
from modelshop.db import Database


def account_counts(db: Database) -> dict[str, int]:
    """How many customers there are and how many API keys are active (admin keys included)."""
    with db.session() as s:
        return {"customers": s.scalar(select(func.count()).select_from(Customer)),
                "keys": s.scalar(select(func.count()).select_from(ApiKey).where(ApiKey.status == "active"))}


def model_latency(db: Database, name: str, *, since: dt.datetime) -> dict:
    """The metered calls to any version of model `name` since `since`, and their mean compute time.

    Returns `{"calls": requests counted, "mean_ms": compute milliseconds per request, or None
    without calls}`. Versions are matched by the ledger's "NAME:VERSION" prefix, with `%` and `_`
    in the name taken literally.
    """
    with db.session() as s:
        us, n = s.execute(select(func.sum(UsageEvent.compute_us), func.sum(UsageEvent.requests)).where(
            UsageEvent.model.startswith(f"{name}:", autoescape=True), UsageEvent.occurred_at >= since)).one()
    n = int(n or 0)
    return {"calls": n, "mean_ms": int(us or 0) / n / 1000 if n else None}
