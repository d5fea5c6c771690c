"""Invoices: immutable once finalised (code and database), void → credit note, quotas per billing period,
revenue, audit; finalisations at once take gapless numbers. The wallet's part: test_wallet.py."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from decimal import Decimal

import pytest
import sqlalchemy as sa

from modelshop.billing import BillingGate
from modelshop.billing.accounts import create_customer
from modelshop.billing.audit import entries
from modelshop.billing.invoices import finalize, get_invoice, pay, run_invoices, void
from modelshop.billing.keys import create_key
from modelshop.billing.periods import parse_period
from modelshop.billing.revenue import revenue
from modelshop.billing.tables import Invoice, InvoiceLine, UsageEvent
from modelshop.billing.wallet import wallet
from modelshop.db import utcnow
from modelshop.errors import Conflict, QuotaExceeded, ValidationError
from modelshop.gate import Units
from tests.support import ACTOR, make_plans, serve_call

NOW = dt.datetime(2026, 3, 10, 12, tzinfo=dt.UTC)   # events of these tests happen in March 2026
PERIOD = "2026-03"


def _metered(db, settings, plan: str, calls: list[Units], *, model: str = "minilm:1", now=NOW):
    """A customer on `plan` who made `calls` (through the gate) in PERIOD; returns (customer, results)."""
    customer = create_customer(db, f"{plan}-customer", plan, actor=ACTOR)
    key = create_key(db, customer["id"], actor=ACTOR)["key"]
    with db.session() as s:   # back-date the customer so the base fee of March is due
        s.execute(sa.text("update billing_customers set created_at = :t where id = :i"),
                  {"t": NOW - dt.timedelta(days=30), "i": customer["id"]})
    gate = BillingGate(settings, db, clock=lambda: now)

    async def go():
        out = [await serve_call(gate, key, model, u) for u in calls]
        await gate.close()
        return out

    return customer, asyncio.run(go())


def test_finalised_invoice_never_changes(db, plan_files, settings):
    make_plans(db, plan_files, "grad")
    customer, _ = _metered(db, settings, "grad", [Units()] * 120)
    draft = run_invoices(db, PERIOD, actor=ACTOR)["invoices"][0]
    assert draft["total"] == "13.50"        # 10.00 + (120 - 50 free) × 0.05003 = 3.5021 → 3.50
    inv = finalize(db, draft["id"], actor=ACTOR, now=parse_period(PERIOD)[1])
    assert inv["status"] == "finalised" and inv["number"] == "INV-000001"

    # in code: the ORM guard refuses any change to a finalised invoice or its lines
    with pytest.raises(Conflict, match="never changes"), db.session() as s:
        s.get(Invoice, inv["id"]).total_minor = 1
    with pytest.raises(Conflict, match="lines never change"), db.session() as s:
        line = s.scalars(sa.select(InvoiceLine).where(InvoiceLine.invoice_id == inv["id"])).first()
        line.amount_minor = 0
    with pytest.raises(Conflict, match="append-only"), db.session() as s:
        s.delete(s.scalars(sa.select(UsageEvent)).first())
    # in the database: triggers refuse the same through plain SQL
    for sql in (f"update billing_invoices set total_minor = 1 where id = {inv['id']}",
                f"update billing_invoices set status = 'draft' where id = {inv['id']}",
                f"delete from billing_invoice_lines where invoice_id = {inv['id']}",
                f"delete from billing_invoices where id = {inv['id']}",
                "update billing_usage_events set tokens = 0",
                "delete from billing_audit_log"):
        with pytest.raises(sa.exc.DBAPIError, match="never changes|append-only"), db.engine.begin() as c:
            c.execute(sa.text(sql))

    assert run_invoices(db, PERIOD, actor=ACTOR)["unchanged"] == 1
    assert get_invoice(db, inv["id"]) == inv
    with pytest.raises(Conflict, match="only a draft can be finalised"):
        finalize(db, inv["id"], actor=ACTOR, now=parse_period(PERIOD)[1])

    paid = pay(db, inv["id"], actor=ACTOR, reference="wire 42")
    assert paid["status"] == "paid" and paid["total"] == inv["total"]
    voided = void(db, inv["id"], reason="billed the wrong plan", actor=ACTOR)
    assert voided["status"] == "void"
    assert voided["credit_note"] == {"number": "CN-000001", "amount": "13.50", "to_wallet": "13.50",
                                     "reason": "billed the wrong plan"}
    assert wallet(db, customer["id"])["balance"] == "13.50"     # a paid, voided invoice comes back as credit
    with pytest.raises(Conflict, match="only a finalised or paid invoice"):
        void(db, inv["id"], reason="again", actor=ACTOR)

    rerun = run_invoices(db, PERIOD, actor=ACTOR)               # after a void the period is billed afresh
    assert rerun["created"] == 1 and rerun["invoices"][0]["id"] != inv["id"]
    assert rerun["invoices"][0]["credits_applied"] == "13.50" and rerun["invoices"][0]["total"] == "0.00"
    second = finalize(db, rerun["invoices"][0]["id"], actor=ACTOR, now=parse_period(PERIOD)[1])
    assert second["number"] == "INV-000002" and second["status"] == "paid"     # covered by credits
    assert wallet(db, customer["id"])["balance"] == "0.00"
    actions = [e["action"] for e in entries(db, limit=100)]
    for action in ("plan.create", "customer.create", "key.create", "invoice.run", "invoice.finalize",
                   "invoice.pay", "invoice.void"):
        assert action in actions


def test_open_period_cannot_be_finalised(sqlite_db, plan_files, settings):
    make_plans(sqlite_db, plan_files, "grad")
    now = utcnow()
    _metered(sqlite_db, settings, "grad", [Units()], now=now)
    draft = run_invoices(sqlite_db, f"{now:%Y-%m}", actor=ACTOR)["invoices"][0]
    with pytest.raises(ValidationError, match="is still open until"):
        finalize(sqlite_db, draft["id"], actor=ACTOR)


def test_free_tier_quota_blocks_with_402(sqlite_db, plan_files, settings):
    make_plans(sqlite_db, plan_files, "free")
    _, results = _metered(sqlite_db, settings, "free", [Units()] * 7)
    assert [r[0] for r in results] == ["ok"] * 5 + [402, 402]
    error = results[-1][1]
    assert isinstance(error, QuotaExceeded) and error.error_type == "quota_exceeded"
    assert "quota of 5 requests per month reached (5 used); it resets at 2026-04-01T00:00:00Z" in error.message
    assert error.extra["limit"] == 5


def test_revenue_and_margin_by_model_and_customer(sqlite_db, plan_files, settings):
    settings.serving_cost_per_compute_second = {"*": Decimal("0.02"), "bert": Decimal("0.1")}
    settings.serving_cost_per_1k_tokens = {"bert:2": Decimal("0.5")}
    make_plans(sqlite_db, plan_files, "vol")
    c1, _ = _metered(sqlite_db, settings, "vol", [Units(1, 600, 0)] * 2, model="bert:2")   # 1 200 tokens
    c2, _ = _metered(sqlite_db, settings, "vol", [Units(1, 300, 0)] * 1, model="tfidf:1")  # 300 tokens
    invoices = run_invoices(sqlite_db, PERIOD, actor=ACTOR)["invoices"]
    assert [i["total"] for i in invoices] == ["1.04", "0.30"]   # 1 200 × 0.00087 = 1.044; 300 × 0.001
    r = revenue(sqlite_db, PERIOD, settings)
    by_model = {row["model"]: row for row in r["by_model"]}
    # bert:2: 2 calls × 0.0125 s × 0.1 = 0.0025, + 1.2k tokens × 0.5 = 0.60 → 0.6025 → 0.60
    assert (by_model["bert:2"]["revenue"], by_model["bert:2"]["serving_cost"], by_model["bert:2"]["margin"]) == \
        ("1.04", "0.60", "0.44")
    # tfidf:1: the "*" rate: 0.0125 s × 0.02 = 0.00025 → 0.00
    assert (by_model["tfidf:1"]["revenue"], by_model["tfidf:1"]["serving_cost"]) == ("0.30", "0.00")
    assert [row["customer_id"] for row in r["by_customer"]] == [c1["id"], c2["id"]]
    assert r["totals"][0]["revenue"] == "1.34" and r["totals"][0]["margin"] == "0.74"
    assert r["invoices"] == {"draft": 2}


def test_yearly_plans_are_billed_per_year(sqlite_db, settings, tmp_path):
    from modelshop.billing.accounts import create_plan
    from modelshop.billing.plans import parse_plan

    create_plan(sqlite_db, parse_plan({"code": "annual", "currency": "EUR", "interval": "year", "base_fee": "480.00",
                                       "quota": {"metric": "requests", "limit": 3}}), actor=ACTOR)
    customer, results = _metered(sqlite_db, settings, "annual", [Units()] * 4)
    assert [r[0] for r in results] == ["ok"] * 3 + [402]
    assert "per year reached" in results[-1][1].message and "2027-01-01T00:00:00Z" in results[-1][1].message
    assert run_invoices(sqlite_db, PERIOD, actor=ACTOR)["invoices"] == []      # not a monthly customer
    (inv,) = run_invoices(sqlite_db, "2026", actor=ACTOR)["invoices"]
    assert (inv["customer_id"], inv["period"], inv["currency"], inv["total"]) == \
        (customer["id"], "2026", "EUR", "480.00")


def test_one_open_invoice_per_customer_and_period(db, plan_files, settings):
    make_plans(db, plan_files, "grad")
    customer, _ = _metered(db, settings, "grad", [Units()])
    (draft,) = run_invoices(db, PERIOD, actor=ACTOR)["invoices"]
    with pytest.raises(sa.exc.IntegrityError), db.session() as s:    # what a racing second run would do
        s.add(Invoice(customer_id=customer["id"], plan_id=1, period=PERIOD, currency="USD", status="draft",
                      created_at=utcnow()))
    assert run_invoices(db, PERIOD, actor=ACTOR)["invoices"][0]["id"] == draft["id"]


def test_concurrent_finalisations_take_gapless_distinct_numbers(db, plan_files):
    n = 6
    make_plans(db, plan_files, "grad")
    drafts = []
    for i in range(n):
        c = create_customer(db, f"C{i}", "grad", actor=ACTOR)
        with db.session() as s:
            s.execute(sa.text("update billing_customers set created_at = :t where id = :i"),
                      {"t": dt.datetime(2026, 1, 1, tzinfo=dt.UTC), "i": c["id"]})
        drafts.append(run_invoices(db, "2026-02", customer_id=c["id"], actor=ACTOR)["invoices"][0]["id"])
    start = threading.Barrier(n)
    out: list = [None] * n

    def go(i: int) -> None:
        start.wait()
        try:
            out[i] = finalize(db, drafts[i], actor=ACTOR, now=dt.datetime(2026, 3, 1, tzinfo=dt.UTC))["number"]
        except Exception as e:  # asserted below
            out[i] = e

    threads = [threading.Thread(target=go, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(out) == [f"INV-{k:06d}" for k in range(1, n + 1)], out
