"""The usage ledger: writing batches of metered calls exactly once, and reading usage back.

A batch is one transaction: usage events, the idempotency records holding each first reply,
the monthly counters used by quota checks and the keys' last-used times. A call whose
(customer, Idempotency-Key) is already stored is a retry and is not written again.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from modelshop.billing.periods import parse_period, period_of
from modelshop.billing.tables import ApiKey, IdempotencyRecord, UsageCounter, UsageEvent
from modelshop.db import Database
from modelshop.errors import ValidationError

METRIC_COLUMNS = ("requests", "tokens", "characters")


@dataclass
class Metered:
    """One successful call to record, with the reply to store when it carries an Idempotency-Key."""

    customer_id: int
    key_id: int
    request_id: str
    route: str
    model: str
    requests: int
    tokens: int
    characters: int
    compute_us: int
    occurred_at: dt.datetime
    idempotency_key: str | None = None
    status: int = 200
    body: bytes = b""
    headers: dict = field(default_factory=dict)


def write_batch(db: Database, batch: list[Metered]) -> list[bool]:
    """Write a batch in one transaction; per item True (metered now) or False (a retry, already metered).

    If another replica stored one of the keys meanwhile, the batch is retried item by item so the
    others still commit.
    """
    try:
        with db.session() as s:
            return _write(s, batch)
    except IntegrityError:
        if len(batch) == 1:
            return [False]
    results = []
    for item in batch:
        try:
            with db.session() as s:
                results.extend(_write(s, [item]))
        except IntegrityError:
            results.append(False)
    return results


def _write(s: Session, batch: list[Metered]) -> list[bool]:
    keyed = [m for m in batch if m.idempotency_key]
    seen: set[tuple[int, str]] = set()
    if keyed:
        q = select(IdempotencyRecord.customer_id, IdempotencyRecord.idempotency_key).where(
            IdempotencyRecord.customer_id.in_({m.customer_id for m in keyed}),
            IdempotencyRecord.idempotency_key.in_({m.idempotency_key for m in keyed}))
        seen = {(c, k) for c, k in s.execute(q)}
    fresh, results = [], []
    for m in batch:
        ident = (m.customer_id, m.idempotency_key)
        if m.idempotency_key and ident in seen:
            results.append(False)
            continue
        if m.idempotency_key:
            seen.add(ident)
        fresh.append(m)
        results.append(True)
    if not fresh:
        return results
    s.execute(insert(UsageEvent), [
        {"request_id": m.request_id, "customer_id": m.customer_id, "key_id": m.key_id, "model": m.model,
         "route": m.route, "requests": m.requests, "tokens": m.tokens, "characters": m.characters,
         "compute_us": m.compute_us, "idempotency_key": m.idempotency_key, "occurred_at": m.occurred_at}
        for m in fresh])
    replies = [m for m in fresh if m.idempotency_key]
    if replies:
        s.execute(insert(IdempotencyRecord), [
            {"customer_id": m.customer_id, "idempotency_key": m.idempotency_key, "route": m.route,
             "request_id": m.request_id, "status": m.status, "body": m.body, "headers": m.headers,
             "created_at": m.occurred_at} for m in replies])
    _add_to_counters(s, fresh)
    last_used: dict[int, dt.datetime] = {}
    for m in fresh:
        last_used[m.key_id] = max(m.occurred_at, last_used.get(m.key_id, m.occurred_at))
    for key_id, at in sorted(last_used.items()):
        s.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=at))
    return results


def _add_to_counters(s: Session, fresh: list[Metered]) -> None:
    totals: dict[tuple[int, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for m in fresh:
        t = totals[(m.customer_id, period_of(m.occurred_at, "month"))]
        t[0] += m.requests
        t[1] += m.tokens
        t[2] += m.characters
    # sorted, so concurrent replicas lock counter rows in the same order (no deadlock)
    rows = [{"customer_id": c, "month": month, "requests": r, "tokens": t, "characters": ch}
            for (c, month), (r, t, ch) in sorted(totals.items())]
    s.execute(_counter_upsert(s.get_bind().dialect.name), rows)


_UPSERTS: dict[str, object] = {}


def _counter_upsert(dialect: str):
    """Add to a customer's month counters, creating the row if need be: one statement per dialect,
    built once (so it is compiled once and cached, not rebuilt with its values for every batch)."""
    stmt = _UPSERTS.get(dialect)
    if stmt is None:
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as upsert
        else:
            from sqlalchemy.dialects.sqlite import insert as upsert
        table = UsageCounter.__table__
        base = upsert(table)
        stmt = _UPSERTS[dialect] = base.on_conflict_do_update(
            index_elements=["customer_id", "month"],
            set_={col: table.c[col] + base.excluded[col] for col in METRIC_COLUMNS})
    return stmt


def stored_reply(db: Database, customer_id: int, idempotency_key: str) -> IdempotencyRecord | None:
    with db.session() as s:
        return s.scalars(select(IdempotencyRecord).where(IdempotencyRecord.customer_id == customer_id,
                                                         IdempotencyRecord.idempotency_key == idempotency_key)
                         ).first()


def month_totals(s: Session, customer_id: int, months: list[str]) -> dict[str, int]:
    """Units used by a customer over these calendar months, from the counters (one indexed read)."""
    row = s.execute(select(*(func.coalesce(func.sum(getattr(UsageCounter, c)), 0) for c in METRIC_COLUMNS))
                    .where(UsageCounter.customer_id == customer_id, UsageCounter.month.in_(months))).one()
    return dict(zip(METRIC_COLUMNS, (int(v) for v in row), strict=True))


def usage_by_model(s: Session, start: dt.datetime, end: dt.datetime, customer_id: int | None = None) -> list:
    """(customer_id, model, requests, tokens, characters, compute_us) per customer and model, in SQL."""
    q = (select(UsageEvent.customer_id, UsageEvent.model, func.sum(UsageEvent.requests),
                func.sum(UsageEvent.tokens), func.sum(UsageEvent.characters), func.sum(UsageEvent.compute_us))
         .where(UsageEvent.occurred_at >= start, UsageEvent.occurred_at < end)
         .group_by(UsageEvent.customer_id, UsageEvent.model)
         .order_by(UsageEvent.customer_id, UsageEvent.model))
    if customer_id is not None:
        q = q.where(UsageEvent.customer_id == customer_id)
    # PostgreSQL sums BIGINT into NUMERIC: bring every total back to int
    return [(c, m, *(int(v or 0) for v in sums)) for c, m, *sums in s.execute(q)]


def usage_summary(db: Database, *, customer_id: int | None = None, period: str | None = None,
                  now: dt.datetime | None = None) -> dict:
    """Units and compute time per customer and model over a period (default: this month)."""
    period = period or period_of(now or dt.datetime.now(dt.UTC), "month")
    start, end, _ = parse_period(period)
    with db.session() as s:
        rows = usage_by_model(s, start, end, customer_id)
    by_model = [{"customer_id": c, "model": m, "requests": r, "tokens": t, "characters": ch,
                 "compute_seconds": str(Decimal(us).scaleb(-6))} for c, m, r, t, ch, us in rows]
    totals = {col: sum(row[col] for row in by_model) for col in METRIC_COLUMNS}
    return {"period": period, "customer_id": customer_id, "totals": totals, "by_model": by_model}


def check_idempotency_key(key: str | None) -> str | None:
    if key is None or key == "":
        return None
    if len(key) > 255 or not key.isprintable():
        raise ValidationError("Idempotency-Key must be at most 255 printable characters")
    return key
