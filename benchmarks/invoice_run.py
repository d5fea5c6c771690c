"""Invoice run over a million usage events: bulk load, then the SQL aggregation run, on SQLite and PostgreSQL.

Loads N usage events (SQLite: executemany; PostgreSQL: COPY) for C customers on three plans
(graduated with free units, volume, package), 90 % of them in the billed month and the rest in
the months around it, then times `run_invoices` (the GROUP BY run that makes the drafts), its
re-run (drafts recomputed) and `revenue`. The baseline measured in the same run is the naive
way: fetch the month's events and add them up in a Python loop. Both must agree to the unit.

    .venv/bin/python benchmarks/invoice_run.py                        # 1 000 000 events, both backends
    .venv/bin/python benchmarks/invoice_run.py --events 200000 --backend sqlite
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path

import sqlalchemy as sa

from modelshop.billing.accounts import create_customer, create_plan
from modelshop.billing.invoices import run_invoices
from modelshop.billing.keys import create_key
from modelshop.billing.periods import parse_period
from modelshop.billing.plans import parse_plan
from modelshop.billing.revenue import revenue
from modelshop.billing.tables import UsageEvent
from modelshop.db import Database
from modelshop.settings import Settings

PERIOD = "2026-03"
PG_BASE = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
COLUMNS = ("request_id", "customer_id", "key_id", "model", "route", "requests", "tokens", "characters",
           "compute_us", "idempotency_key", "occurred_at")
PLANS = [
    {"code": "grad", "currency": "USD", "base_fee": "49.00",
     "charges": [{"metric": "requests", "model": "graduated", "free_units": 100,
                  "tiers": [{"up_to": 500, "unit_price": "0.002"}, {"up_to": None, "unit_price": "0.001"}]}]},
    {"code": "vol", "currency": "USD",
     "charges": [{"metric": "tokens", "model": "volume",
                  "tiers": [{"up_to": 10000, "unit_price": "0.0001"}, {"up_to": None, "unit_price": "0.00005"}]}]},
    {"code": "pack", "currency": "USD",
     "charges": [{"metric": "characters", "model": "package", "package_size": 10000, "package_price": "0.50"}]},
]


def setup(db: Database, customers: int) -> list[tuple[int, int]]:
    for p in PLANS:
        create_plan(db, parse_plan(p), actor="bench")
    pairs = []
    for i in range(customers):
        c = create_customer(db, f"customer {i}", PLANS[i % 3]["code"], actor="bench")
        pairs.append((c["id"], create_key(db, c["id"], actor="bench")["id"]))
    with db.session() as s:  # they signed up before the billed month
        s.execute(sa.text("update billing_customers set created_at = :t"),
                  {"t": dt.datetime(2026, 1, 1, tzinfo=dt.UTC)})
    return pairs


def events(pairs, n: int, seed: int = 0):
    """Rows of usage, chunk by chunk: 90 % inside PERIOD, the rest in February and April."""
    rng = random.Random(seed)
    start, end, _ = parse_period(PERIOD)
    span = (end - start).total_seconds()
    models = ["minilm:1", "minilm:2", "tfidf:1", "bert-zh:1"]
    chunk = []
    for i in range(n):
        customer_id, key_id = pairs[rng.randrange(len(pairs))]
        offset = rng.random() * span
        if rng.random() < 0.1:
            offset += span if rng.random() < 0.5 else -span
        chunk.append((uuid.UUID(int=rng.getrandbits(128)).hex, customer_id, key_id, models[i % 4], "/predict", 1,
                      rng.randrange(5, 300), rng.randrange(20, 1200), rng.randrange(500, 40000),
                      f"idem-{i}" if i % 3 == 0 else None, start + dt.timedelta(seconds=offset)))
        if len(chunk) == 100_000:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def bulk_load(db: Database, pairs, n: int) -> float:
    t0 = time.perf_counter()
    if db.engine.dialect.name == "postgresql":
        raw = db.engine.raw_connection()
        try:
            with raw.cursor() as cur, cur.copy(f"COPY billing_usage_events ({', '.join(COLUMNS)}) FROM STDIN") as cp:
                for chunk in events(pairs, n):
                    for row in chunk:
                        cp.write_row(row)
            raw.commit()
            with raw.cursor() as cur:
                cur.execute("ANALYZE billing_usage_events")
            raw.commit()
        finally:
            raw.close()
    else:
        table = UsageEvent.__table__
        for chunk in events(pairs, n):
            with db.engine.begin() as conn:
                conn.execute(sa.insert(table), [dict(zip(COLUMNS, row, strict=True)) for row in chunk])
        with db.engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    return time.perf_counter() - t0


def python_loop(db: Database) -> tuple[dict, float]:
    """The baseline: every event of the month fetched and summed in Python."""
    start, end, _ = parse_period(PERIOD)
    t0 = time.perf_counter()
    totals: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0])
    with db.engine.connect() as conn:
        rows = conn.execution_options(stream_results=True, yield_per=50_000).execute(
            sa.select(UsageEvent.customer_id, UsageEvent.requests, UsageEvent.tokens, UsageEvent.characters)
            .where(UsageEvent.occurred_at >= start, UsageEvent.occurred_at < end))
        for customer_id, r, t, c in rows:
            acc = totals[customer_id]
            acc[0] += r
            acc[1] += t
            acc[2] += c
    return totals, time.perf_counter() - t0


def bench(name: str, url: str, n: int, customers: int) -> dict:
    db = Database(url)
    db.migrate()
    pairs = setup(db, customers)
    load_s = bulk_load(db, pairs, n)
    with db.engine.connect() as conn:
        count = conn.execute(sa.select(sa.func.count()).select_from(UsageEvent.__table__)).scalar()
    assert count == n, (count, n)

    t0 = time.perf_counter()
    first = run_invoices(db, PERIOD, actor="bench")
    run_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    again = run_invoices(db, PERIOD, actor="bench")
    rerun_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    rev = revenue(db, PERIOD, Settings())
    revenue_s = time.perf_counter() - t0
    baseline, loop_s = python_loop(db)

    # the SQL run and the Python loop must agree, unit for unit
    by_customer = {i["customer_id"]: i for i in again["invoices"]}
    metric_of = {"requests": 0, "tokens": 1, "characters": 2}
    for cid, inv in by_customer.items():
        for ln in inv["lines"]:
            if ln["kind"] == "usage":
                assert int(ln["quantity"]) == baseline[cid][metric_of[ln["metric"]]], (cid, ln)
    assert first["created"] == len(pairs) and again["updated"] == len(pairs)
    in_period = sum(v[0] for v in baseline.values())
    db.dispose()
    return {"backend": name, "events": n, "in_period": in_period, "customers": len(pairs),
            "load_s": load_s, "load_rate": n / load_s, "run_s": run_s, "rerun_s": rerun_s,
            "revenue_s": revenue_s, "python_loop_s": loop_s, "total": rev["totals"][0]["revenue"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--customers", type=int, default=1000)
    ap.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    ap.add_argument("--pg-url", default=PG_BASE, help="PostgreSQL database; a fresh schema is made and dropped")
    args = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.backend in ("sqlite", "both"):
            results.append(bench("sqlite", f"sqlite:///{Path(tmp) / 'bench.db'}", args.events, args.customers))
    if args.backend in ("postgresql", "both"):
        admin = sa.create_engine(args.pg_url)
        schema = f"bench_{uuid.uuid4().hex[:10]}"
        with admin.begin() as c:
            c.execute(sa.text(f'create schema "{schema}"'))
        try:
            url = f"{args.pg_url}{'&' if '?' in args.pg_url else '?'}options=-csearch_path%3D{schema}"
            results.append(bench("postgresql", url, args.events, args.customers))
        finally:
            with admin.begin() as c:
                c.execute(sa.text(f'drop schema "{schema}" cascade'))
            admin.dispose()
    print(f"\ninvoice run over {args.events:,} usage events, {args.customers:,} customers, period {PERIOD}")
    print(f"{'backend':<11}{'load s':>8}{'events/s':>11}{'run s':>8}{'re-run s':>10}{'revenue s':>11}"
          f"{'py-loop s':>11}  events in period   revenue USD")
    for r in results:
        print(f"{r['backend']:<11}{r['load_s']:>8.1f}{r['load_rate']:>11,.0f}{r['run_s']:>8.2f}{r['rerun_s']:>10.2f}"
              f"{r['revenue_s']:>11.2f}{r['python_loop_s']:>11.2f}  {r['in_period']:>16,}   {r['total']:>11}")
    print("run/re-run: run_invoices (SQL GROUP BY + drafts); py-loop: the baseline that sums the month's "
          "events in Python (aggregation only, no drafts)")


if __name__ == "__main__":
    main()
