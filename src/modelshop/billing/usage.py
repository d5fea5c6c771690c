"""The usage ledger: writing batches of metered calls exactly once, and reading usage back.

A batch is one transaction: usage events, the idempotency records holding each first reply,
the monthly counters used by quota and wallet checks (per customer, and per customer and model
for plans whose charges name models) and the keys' last-used times. Each event carries every
metric of METRIC_COLUMNS: a generative call's input and output tokens beside its tokens, and whether
they were `estimated` (counted locally because the upstream that served the call sent no usage; the
reports show that part apart). A call whose (customer, Idempotency-Key) is already stored is a retry
and is not written again.

An Idempotency-Key names one request (Stripe's rule). Before any inference the key is *claimed*
(`claim`): a row under a unique constraint, in the database that holds the ledger, so every
replica sees it. Then, for the same customer and key:
    stored reply, same request            → that reply again, not metered again
    stored reply or claim, other request  → 422 (another method, path, query or body)
    claim of a call still under way       → 409, retry once it has finished
    claim expired (its server died)       → taken over by the new call
The transaction that writes the usage event and its reply deletes the claim; a call that fails
releases it (`release_claim`), so the client can retry.
"""

from __future__ import annotations

import datetime as dt
import hmac
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

from sqlalchemy import case, delete, func, insert, select, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from modelshop.billing.periods import parse_period, period_of
from modelshop.billing.tables import (
    ApiKey,
    IdempotencyClaim,
    IdempotencyRecord,
    UsageCounter,
    UsageEvent,
    UsageModelCounter,
)
from modelshop.db import Database
from modelshop.errors import Conflict, ValidationError

METRIC_COLUMNS = ("requests", "tokens", "characters", "input_tokens", "output_tokens")


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
    input_tokens: int = 0         # a generative call's prompt tokens (also in `tokens`)
    output_tokens: int = 0        # and the tokens it generated
    estimated: bool = False       # units counted locally (the upstream sent no usage), not reported
    idempotency_key: str | None = None
    status: int = 200
    body: bytes = b""
    headers: dict = field(default_factory=dict)
    fingerprint: str | None = None


def write_batch(db: Database, batch: list[Metered]) -> list[bool | Exception]:
    """Write a batch in one transaction; per item True (metered now), False (its Idempotency-Key was
    already used: the caller must send the stored reply), or the error that kept it out of the ledger.

    If the batch fails on a constraint, it is retried item by item so the others still commit. Only
    the idempotency constraint means "already metered"; any other integrity error is that item's
    error (the call fails with 500 and is not billed), never a silent "already metered".
    """
    try:
        with db.session() as s:
            return _write(s, batch)
    except IntegrityError:
        pass
    results: list[bool | Exception] = []
    for item in batch:
        try:
            with db.session() as s:
                results.extend(_write(s, [item]))
        except IntegrityError as e:
            results.append(False if item.idempotency_key and _key_used(db, item) else e)
    return results


def _key_used(db: Database, m: Metered) -> bool:
    return stored_reply(db, m.customer_id, m.idempotency_key) is not None


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
         "route": m.route, **{c: getattr(m, c) for c in METRIC_COLUMNS}, "compute_us": m.compute_us,
         "idempotency_key": m.idempotency_key, "occurred_at": m.occurred_at, "estimated": m.estimated}
        for m in fresh])
    replies = [m for m in fresh if m.idempotency_key]
    if replies:
        s.execute(insert(IdempotencyRecord), [
            {"customer_id": m.customer_id, "idempotency_key": m.idempotency_key, "route": m.route,
             "request_id": m.request_id, "status": m.status, "body": m.body, "headers": m.headers,
             "created_at": m.occurred_at, "fingerprint": m.fingerprint} for m in replies])
        # the reply is stored: the claims on these keys have done their job
        s.execute(delete(IdempotencyClaim).where(tuple_(IdempotencyClaim.customer_id, IdempotencyClaim.idempotency_key)
                                                 .in_([(m.customer_id, m.idempotency_key) for m in replies])))
    _add_to_counters(s, fresh)
    last_used: dict[int, dt.datetime] = {}
    for m in fresh:
        last_used[m.key_id] = max(m.occurred_at, last_used.get(m.key_id, m.occurred_at))
    for key_id, at in sorted(last_used.items()):
        s.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=at))
    return results


def _add_to_counters(s: Session, fresh: list[Metered]) -> None:
    """Add the batch to the month counters of each customer, and of each customer and model."""
    totals: dict[tuple[int, str], list[int]] = defaultdict(lambda: [0] * len(METRIC_COLUMNS))
    per_model: dict[tuple[int, str, str], list[int]] = defaultdict(lambda: [0] * len(METRIC_COLUMNS))
    for m in fresh:
        month = period_of(m.occurred_at, "month")
        for t in (totals[(m.customer_id, month)], per_model[(m.customer_id, month, m.model)]):
            for i, col in enumerate(METRIC_COLUMNS):
                t[i] += getattr(m, col)
    # sorted, so concurrent replicas lock counter rows in the same order (no deadlock)
    dialect = s.get_bind().dialect.name
    s.execute(_counter_upsert(dialect, UsageCounter),
              [{"customer_id": c, "month": month, **dict(zip(METRIC_COLUMNS, t, strict=True))}
               for (c, month), t in sorted(totals.items())])
    s.execute(_counter_upsert(dialect, UsageModelCounter),
              [{"customer_id": c, "month": month, "model": model, **dict(zip(METRIC_COLUMNS, t, strict=True))}
               for (c, month, model), t in sorted(per_model.items())])


_UPSERTS: dict[tuple[str, str], object] = {}


def _counter_upsert(dialect: str, counter) -> object:
    """Add to a counter row, creating it if need be: one statement per dialect and counter table,
    built once (so it is compiled once and cached, not rebuilt with its values for every batch)."""
    stmt = _UPSERTS.get((dialect, counter.__tablename__))
    if stmt is None:
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as upsert
        else:
            from sqlalchemy.dialects.sqlite import insert as upsert
        table = counter.__table__
        base = upsert(table)
        stmt = _UPSERTS[(dialect, counter.__tablename__)] = base.on_conflict_do_update(
            index_elements=[c.name for c in table.primary_key.columns],
            set_={col: table.c[col] + base.excluded[col] for col in METRIC_COLUMNS})
    return stmt


def stored_reply(db: Database, customer_id: int, idempotency_key: str) -> IdempotencyRecord | None:
    with db.session() as s:
        return _record(s, customer_id, idempotency_key)


@dataclass(frozen=True)
class Claim:
    """An Idempotency-Key this request holds until its reply is stored or it fails."""

    customer_id: int
    idempotency_key: str
    request_id: str


def claim(db: Database, customer_id: int, idempotency_key: str, *, route: str, fingerprint: str,
          request_id: str, now: dt.datetime, ttl_s: float) -> Claim | IdempotencyRecord:
    """Take the key for this request, or return the stored reply of the same earlier request.

    Raises ValidationError (422) when the key was used for another request, Conflict (409) while a
    call holding it is still under way.
    """
    expires = now + dt.timedelta(seconds=ttl_s)
    mine = Claim(customer_id, idempotency_key, request_id)
    try:
        with db.session() as s:
            s.execute(insert(IdempotencyClaim).values(
                customer_id=customer_id, idempotency_key=idempotency_key, route=route, fingerprint=fingerprint,
                request_id=request_id, claimed_at=now, expires_at=expires))
            # a call that stored its reply (and deleted its claim) since: its reply, not a second run
            record = _record(s, customer_id, idempotency_key)
            if record is not None:
                _same_request(record.route, record.fingerprint, route, fingerprint)
                s.expunge(record)     # keeps what it loaded through the rollback of our claim
                s.rollback()
                return record
            return mine
    except IntegrityError:
        pass
    with db.session() as s:
        record = _record(s, customer_id, idempotency_key)
        if record is not None:
            _same_request(record.route, record.fingerprint, route, fingerprint)
            return record
        held = s.scalars(select(IdempotencyClaim).where(IdempotencyClaim.customer_id == customer_id,
                                                        IdempotencyClaim.idempotency_key == idempotency_key)
                         ).first()
        if held is None:   # released between our insert and this read: try once more from the start
            return claim(db, customer_id, idempotency_key, route=route, fingerprint=fingerprint,
                         request_id=request_id, now=now, ttl_s=ttl_s)
        _same_request(held.route, held.fingerprint, route, fingerprint)
        if held.expires_at > now:
            wait = (held.expires_at - now).total_seconds()
            raise Conflict(f"a request with this Idempotency-Key is still in progress (since "
                           f"{held.claimed_at:%H:%M:%SZ}); retry when it has finished (at most {wait:.0f} s) "
                           "to get its reply", retry_after=1)
        # its server died mid-call: compare-and-set, so of two callers taking it over only one wins
        taken = s.execute(update(IdempotencyClaim).where(
            IdempotencyClaim.id == held.id, IdempotencyClaim.request_id == held.request_id).values(
            request_id=request_id, claimed_at=now, expires_at=expires)).rowcount
        if taken != 1:
            raise Conflict("a request with this Idempotency-Key is in progress; retry when it has finished",
                           retry_after=1)
        return mine


def release_claim(db: Database, held: Claim) -> None:
    """Give the key back after a failed call (only the claimant's own claim is deleted)."""
    with db.session() as s:
        s.execute(delete(IdempotencyClaim).where(IdempotencyClaim.customer_id == held.customer_id,
                                                 IdempotencyClaim.idempotency_key == held.idempotency_key,
                                                 IdempotencyClaim.request_id == held.request_id))


def _record(s: Session, customer_id: int, idempotency_key: str) -> IdempotencyRecord | None:
    return s.scalars(select(IdempotencyRecord).where(IdempotencyRecord.customer_id == customer_id,
                                                     IdempotencyRecord.idempotency_key == idempotency_key)).first()


def _same_request(first_route: str, first_fingerprint: str | None, route: str, fingerprint: str) -> None:
    if first_route != route:
        raise ValidationError(f"Idempotency-Key was first used on {first_route}, not {route}; "
                              "use a new key for a new request")
    if first_fingerprint is not None and not hmac.compare_digest(first_fingerprint, fingerprint):
        raise ValidationError("Idempotency-Key was first used with another request (method, path, model or "
                              "body differ); send the same request to get its reply, or use a new key")


def _sums(columns) -> tuple:
    return tuple(func.coalesce(func.sum(c), 0) for c in columns)


def month_totals(s: Session, customer_id: int, months: list[str]) -> dict[str, int]:
    """Units used by a customer over these calendar months, from the counters (one indexed read)."""
    row = s.execute(select(*_sums(getattr(UsageCounter, c) for c in METRIC_COLUMNS))
                    .where(UsageCounter.customer_id == customer_id, UsageCounter.month.in_(months))).one()
    return dict(zip(METRIC_COLUMNS, (int(v) for v in row), strict=True))


def model_month_totals(s: Session, customer_id: int, months: list[str]) -> dict[str, dict[str, int]]:
    """Units used by a customer over these calendar months per model NAME (versions summed), from the
    per-model counters: what a plan whose charges or quota name models is checked against."""
    q = (select(UsageModelCounter.model, *_sums(getattr(UsageModelCounter, c) for c in METRIC_COLUMNS))
         .where(UsageModelCounter.customer_id == customer_id, UsageModelCounter.month.in_(months))
         .group_by(UsageModelCounter.model))
    out: dict[str, dict[str, int]] = {}
    for model, *sums in s.execute(q):
        into = out.setdefault(model_name(model), dict.fromkeys(METRIC_COLUMNS, 0))
        for col, v in zip(METRIC_COLUMNS, sums, strict=True):
            into[col] += int(v)
    return out


def model_name(model: str) -> str:
    """The NAME of a ledger's "NAME:VERSION" (what plan charges and quotas name)."""
    return model.partition(":")[0]


def usage_by_model(s: Session, start: dt.datetime, end: dt.datetime, customer_id: int | None = None) -> list[dict]:
    """Per customer and model ("NAME:VERSION") over [start, end): customer_id, model, every metric of
    METRIC_COLUMNS and compute_us, and `estimated` (metric → the part of it that was estimated), summed
    in SQL, ordered by customer and model."""
    summed = (*METRIC_COLUMNS, "compute_us")
    q = (select(UsageEvent.customer_id, UsageEvent.model,
                *(func.sum(getattr(UsageEvent, c)) for c in summed),
                *(func.sum(case((UsageEvent.estimated, getattr(UsageEvent, c)), else_=0)) for c in METRIC_COLUMNS))
         .where(UsageEvent.occurred_at >= start, UsageEvent.occurred_at < end)
         .group_by(UsageEvent.customer_id, UsageEvent.model)
         .order_by(UsageEvent.customer_id, UsageEvent.model))
    if customer_id is not None:
        q = q.where(UsageEvent.customer_id == customer_id)
    # PostgreSQL sums BIGINT into NUMERIC: bring every total back to int
    out = []
    for c, m, *sums in s.execute(q):
        measured, estimated = sums[:len(summed)], sums[len(summed):]
        out.append({"customer_id": c, "model": m, **{k: int(v or 0) for k, v in zip(summed, measured, strict=True)},
                    "estimated": {k: int(v or 0) for k, v in zip(METRIC_COLUMNS, estimated, strict=True)}})
    return out


def by_name(rows: list[dict]) -> dict[int, dict[str, dict[str, int]]]:
    """`usage_by_model` rows as customer → model NAME → metric → units (versions of a model summed)."""
    out: dict[int, dict[str, dict[str, int]]] = {}
    for row in rows:
        into = out.setdefault(row["customer_id"], {}).setdefault(model_name(row["model"]),
                                                                 dict.fromkeys(METRIC_COLUMNS, 0))
        for col in METRIC_COLUMNS:
            into[col] += row[col]
    return out


def usage_summary(db: Database, *, customer_id: int | None = None, period: str | None = None,
                  now: dt.datetime | None = None) -> dict:
    """Units and compute time per customer and model over a period (default: this month); `totals` has
    every metric (requests, tokens, characters, input_tokens, output_tokens), `estimated` the part of
    each that was counted locally rather than reported by the upstream (also in every `by_model` row)."""
    period = period or period_of(now or dt.datetime.now(dt.UTC), "month")
    start, end, _ = parse_period(period)
    with db.session() as s:
        rows = usage_by_model(s, start, end, customer_id)
    by_model = [{**{k: v for k, v in r.items() if k != "compute_us"},
                 "compute_seconds": str(Decimal(r["compute_us"]).scaleb(-6))} for r in rows]
    totals = {col: sum(row[col] for row in by_model) for col in METRIC_COLUMNS}
    estimated = {col: sum(row["estimated"][col] for row in by_model) for col in METRIC_COLUMNS}
    return {"period": period, "customer_id": customer_id, "totals": totals, "estimated": estimated,
            "by_model": by_model}


def check_idempotency_key(key: str | None) -> str | None:
    if key is None or key == "":
        return None
    if len(key) > 255 or not key.isprintable():
        raise ValidationError("Idempotency-Key must be at most 255 printable characters")
    return key
