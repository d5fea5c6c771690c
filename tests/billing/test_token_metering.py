"""Generative calls through the gate, metered per token and priced per model: the ledger keeps what
was generated (not the max_tokens admitted), usage totals, invoice lines per model, revenue per
model, a prepaid wallet and a quota that concurrent admissions never overshoot (on one replica and
on two sharing a Redis), the usage and revenue commands."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid

import sqlalchemy as sa

from modelshop.billing import BillingGate
from modelshop.billing.accounts import create_customer, create_plan
from modelshop.billing.invoices import finalize, run_invoices
from modelshop.billing.keys import create_key
from modelshop.billing.periods import parse_period
from modelshop.billing.plans import parse_plan
from modelshop.billing.revenue import revenue
from modelshop.billing.tables import UsageEvent
from modelshop.billing.usage import model_month_totals, month_totals, usage_summary
from modelshop.billing.wallet import topup
from modelshop.errors import ModelshopError
from modelshop.gate import Call, StoredReply, Units
from tests.billing.token_plans import GEN, OTHER_IN, SMOL_IN, SMOL_OUT
from tests.support import ACTOR, serve_call

NOW = dt.datetime(2026, 3, 10, 12, tzinfo=dt.UTC)
PERIOD = "2026-03"
CHAT = "/v1/chat/completions"


async def generate(gate, key: str, model: str, prompt: int, max_tokens: int, produced: int | None = None,
                   pause: float = 0.0):
    """One chat completion as the routes meter it: admitted with prompt + max_tokens, recorded with what was
    generated. "ok", or the error's status code."""
    produced = max_tokens if produced is None else produced
    request_id = uuid.uuid4().hex
    try:
        principal = await gate.authenticate(key)
        async with gate.metered(principal, CHAT, request_id=request_id) as m:
            await m.admit(model, Units(1, prompt + max_tokens, 0, prompt, max_tokens))
            await asyncio.sleep(pause)
            await m.record(Call(request_id, CHAT, model, Units(1, prompt + produced, 0, prompt, produced),
                                inference_seconds=0.5), StoredReply(200, b"{}", {}))
        return "ok"
    except ModelshopError as e:
        return e.status_code


def customer(db, plan: dict, name: str = "Gen", since: dt.datetime = NOW - dt.timedelta(days=30)) -> tuple[dict, str]:
    """A customer on a new `plan` (since before PERIOD, so its base fee is due) and its key."""
    create_plan(db, parse_plan(plan), actor=ACTOR)
    c = create_customer(db, name, plan["code"], actor=ACTOR)
    with db.session() as s:
        s.execute(sa.text("update billing_customers set created_at = :t where id = :i"), {"t": since, "i": c["id"]})
    return c, create_key(db, c["id"], actor=ACTOR)["key"]


def run(gate, *calls) -> list:
    """The calls at once (one event loop), then the gate closed."""
    async def go():
        out = await asyncio.gather(*calls)
        await gate.close()
        return out

    return asyncio.run(go())


def in_turn(gate, *calls) -> list:
    """The calls one after another, then the gate closed."""
    async def go():
        out = [await call for call in calls]
        await gate.close()
        return out

    return asyncio.run(go())


def test_the_ledger_keeps_what_was_generated_and_the_holds_go_back(db, settings):
    plan = {"code": "pre", "currency": "USD", "prepaid": True, "charges": [SMOL_IN, SMOL_OUT],
            "quota": {"metric": "output_tokens", "limit": 10_000, "models": ["smollm2"]}}
    c, key = customer(db, plan)
    topup(db, c["id"], "5.00", actor=ACTOR)
    gate = BillingGate(settings, db, clock=lambda: NOW)
    generated, classified = run(gate, generate(gate, key, "smollm2:1", 12, 1000, produced=7),
                                serve_call(gate, key, "support:1", Units(1, 30, 90)))
    assert generated == "ok" and classified[0] == "ok"
    with db.session() as s:
        rows = s.execute(sa.select(UsageEvent.model, UsageEvent.tokens, UsageEvent.input_tokens,
                                   UsageEvent.output_tokens).order_by(UsageEvent.model)).all()
        assert [tuple(r) for r in rows] == [("smollm2:1", 19, 12, 7), ("support:1", 30, 0, 0)]
        assert month_totals(s, c["id"], [PERIOD]) == {"requests": 2, "tokens": 49, "characters": 90,
                                                     "input_tokens": 12, "output_tokens": 7}
        assert model_month_totals(s, c["id"], [PERIOD]) == {
            "smollm2": {"requests": 1, "tokens": 19, "characters": 0, "input_tokens": 12, "output_tokens": 7},
            "support": {"requests": 1, "tokens": 30, "characters": 90, "input_tokens": 0, "output_tokens": 0}}
    assert gate.limiter._held == {}                     # the 1000 tokens held at admission were given back
    summary = usage_summary(db, customer_id=c["id"], period=PERIOD)
    assert summary["totals"] == {"requests": 2, "tokens": 49, "characters": 90, "input_tokens": 12,
                                 "output_tokens": 7}
    assert [(r["model"], r["input_tokens"], r["output_tokens"]) for r in summary["by_model"]] == \
        [("smollm2:1", 12, 7), ("support:1", 0, 0)]


MIXED = {**GEN, "base_fee": "1.00",
         "charges": [*GEN["charges"], {"metric": "requests", "model": "unit", "unit_price": "0.001",
                                       "models": ["support"]}]}


def test_invoice_lines_price_each_model_s_tokens_by_its_own_charge(db, settings):
    c, key = customer(db, MIXED)
    gate = BillingGate(settings, db, clock=lambda: NOW)
    M = 1_000_000
    run(gate, generate(gate, key, "smollm2:1", 3 * M // 2, M // 2), generate(gate, key, "smollm2:2", M // 2, M // 2),
        generate(gate, key, "qwen:2", M // 2, 3 * M // 2),
        *(serve_call(gate, key, "support:1", Units(1, 40, 100)) for _ in range(10)))
    (draft,) = run_invoices(db, PERIOD, actor=ACTOR)["invoices"]
    usage_lines = [(ln["metric"], ln["models"], ln["quantity"], ln["amount"]) for ln in draft["lines"][1:]]
    assert usage_lines == [
        ("input_tokens", ["smollm2"], "2000000", "0.40"),       # both versions of smollm2, at 0.20/M
        ("output_tokens", ["smollm2"], "1000000", "0.60"),
        ("input_tokens", ["qwen"], "500000", "0.50"),           # qwen at the other models' 1.00/M
        ("output_tokens", ["qwen"], "1500000", "2.50"),         # graduated: 1 M × 2.00/M + 0.5 M × 1.00/M
        ("requests", ["support"], "10", "0.01")]                # the classifier's 400 tokens are not charged
    assert draft["lines"][0]["kind"] == "base_fee" and draft["total"] == "5.01"
    inv = finalize(db, draft["id"], actor=ACTOR, now=parse_period(PERIOD)[1])
    assert inv["total"] == "5.01" and [ln["models"] for ln in inv["lines"]] == [None] + [u[1] for u in usage_lines]
    # a finalised invoice never changes: a second run leaves it as it was
    assert run_invoices(db, PERIOD, actor=ACTOR)["unchanged"] == 1

    r = revenue(db, PERIOD, settings.model_copy(update={"serving_cost_per_compute_second": {"*": "0.01"}}))
    by_model = {row["model"]: row for row in r["by_model"]}
    # token lines go to the models they priced (split by their share of the metric); the 1.00 base fee by
    # requests (13 in all: 1 each for the three generations, 10 for support)
    assert {m: row["revenue"] for m, row in by_model.items()} == {
        "smollm2:1": "0.68", "smollm2:2": "0.47", "qwen:2": "3.08", "support:1": "0.78"}
    assert by_model["qwen:2"]["upstream_cost"] == "0.00" and by_model["qwen:2"]["serving_cost"] == "0.01"
    assert by_model["qwen:2"]["margin"] == "3.07"
    assert (by_model["qwen:2"]["input_tokens"], by_model["qwen:2"]["output_tokens"]) == (M // 2, 3 * M // 2)
    (cust,) = r["by_customer"]
    assert (cust["customer_id"], cust["revenue"], cust["input_tokens"], cust["output_tokens"]) == \
        (c["id"], "5.01", 5 * M // 2, 5 * M // 2)
    assert r["totals"][0]["revenue"] == "5.01" and r["totals"][0]["upstream_cost"] == "0.00"


def test_revenue_leaves_a_place_for_upstream_cost(sqlite_db, settings):
    c, key = customer(sqlite_db, GEN)
    gate = BillingGate(settings, sqlite_db, clock=lambda: NOW)
    run(gate, generate(gate, key, "qwen:2", 1_000_000, 1_000_000))
    run_invoices(sqlite_db, PERIOD, actor=ACTOR)
    no_compute = settings.model_copy(update={"serving_cost_per_compute_second": {}})
    r = revenue(sqlite_db, PERIOD, no_compute, upstream_rates={"qwen": ("0.15", "0.60")})
    (row,) = r["by_model"]
    # 1.00 + 2.00 billed; 0.15 + 0.60 paid upstream
    assert (row["revenue"], row["upstream_cost"], row["serving_cost"], row["margin"], row["margin_percent"]) == \
        ("3.00", "0.75", "0.00", "2.25", "75.0")


PREPAID = {"code": "pre", "currency": "USD", "prepaid": True, "charges": [
    {"metric": "input_tokens", "model": "unit", "unit_price": "0.0001", "models": ["smollm2"]},
    {"metric": "output_tokens", "model": "unit", "unit_price": "0.001", "models": ["smollm2"]},
    {"metric": "requests", "model": "unit", "unit_price": "0.05"}]}   # 0.05 a call of any model


def test_concurrent_generations_never_overdraw_a_prepaid_wallet(db, settings):
    c, key = customer(db, PREPAID)
    topup(db, c["id"], "0.35", actor=ACTOR)
    gate = BillingGate(settings, db, clock=lambda: NOW)
    # each: 100 prompt tokens (0.01) + 90 generated (0.09) + the request (0.05) = 0.15; one by one,
    # 2 get in (0.30), the 3rd would take the balance below zero (0.45 > 0.35)
    assert in_turn(gate, *(generate(gate, key, "smollm2:1", 100, 90) for _ in range(4))) == ["ok"] * 2 + [402] * 2
    d, key2 = customer(db, {**PREPAID, "code": "pre2"}, name="Dee")
    topup(db, d["id"], "0.35", actor=ACTOR)
    gate = BillingGate(settings, db, clock=lambda: NOW)
    outcomes = run(gate, *(generate(gate, key2, "smollm2:1", 100, 90) for _ in range(20)))
    assert outcomes.count("ok") == 2 and outcomes.count(402) == 18     # as many as one by one, not 20


def test_calls_under_way_count_at_the_tokens_they_may_generate(db, settings):
    """Admitted with max_tokens 400 (0.40 each at most), recorded with 90: while under way each counts at
    0.46, so fewer get in at once than one by one would, never more."""
    c, key = customer(db, PREPAID)
    topup(db, c["id"], "1.00", actor=ACTOR)
    gate = BillingGate(settings, db, clock=lambda: NOW)
    outcomes = run(gate, *(generate(gate, key, "smollm2:1", 100, 400, produced=90, pause=0.05) for _ in range(20)))
    admitted = outcomes.count("ok")
    assert 1 <= admitted <= 3 and outcomes.count(402) == 20 - admitted   # one by one: 0.15 each, 7 fit
    with db.session() as s:
        spent = s.execute(sa.select(sa.func.sum(UsageEvent.output_tokens))).scalar()
    assert spent == 90 * admitted


def test_mixed_models_under_way_never_overdraw_the_wallet(db, settings):
    """Calls of smollm2 (0.15) and of another model (0.05 a request) at once: whatever order they were
    admitted in, what they spent together stays within the balance."""
    c, key = customer(db, PREPAID)
    topup(db, c["id"], "0.50", actor=ACTOR)
    gate = BillingGate(settings, db, clock=lambda: NOW)
    calls = [generate(gate, key, "smollm2:1", 100, 90, pause=0.01) if i % 2 else
             generate(gate, key, "qwen:1", 100, 90, pause=0.01) for i in range(16)]
    outcomes = run(gate, *calls)
    cost = [15 if i % 2 else 5 for i in range(16)]
    spent = [c for c, o in zip(cost, outcomes, strict=True) if o == "ok"]
    assert spent and sum(spent) <= 50 and 402 in outcomes                # never below zero


def test_two_replicas_sharing_a_redis_never_overdraw_a_wallet(db, settings, redis_url):
    shared = settings.model_copy(update={"redis_url": redis_url, "rate_limit_prefix": f"test-{uuid.uuid4().hex}"})
    c, key = customer(db, PREPAID)
    topup(db, c["id"], "0.35", actor=ACTOR)
    a, b = BillingGate(shared, db, clock=lambda: NOW), BillingGate(shared, db, clock=lambda: NOW)

    async def go():
        out = await asyncio.gather(*(generate(a if i % 2 else b, key, "smollm2:1", 100, 90, pause=0.01)
                                     for i in range(20)))
        await a.close()
        await b.close()
        return out

    outcomes = asyncio.run(go())
    assert 1 <= outcomes.count("ok") <= 3 and outcomes.count(402) == 20 - outcomes.count("ok")


def test_a_quota_that_names_a_model_counts_only_its_tokens(db, settings):
    plan = {"code": "free-gen", "currency": "USD",
            "quota": {"metric": "output_tokens", "limit": 250, "models": ["smollm2"]}}
    c, key = customer(db, plan)
    gate = BillingGate(settings, db, clock=lambda: NOW)
    assert run(gate, *(generate(gate, key, "smollm2:1", 10, 100) for _ in range(10))).count("ok") == 2
    gate = BillingGate(settings, db, clock=lambda: NOW)
    later = asyncio.run(generate(gate, key, "smollm2:2", 10, 100))
    other = asyncio.run(generate(gate, key, "qwen:1", 10, 100_000))    # another model: not counted, not blocked
    assert (later, other) == (402, "ok")
    gate = BillingGate(settings, db, clock=lambda: NOW)

    async def refused():
        principal = await gate.authenticate(key)
        try:
            await gate.admit(principal, "smollm2:1", Units(1, 110, 0, 10, 100))
        except ModelshopError as e:
            return e

    e = asyncio.run(refused())
    assert "quota of 250 output_tokens of smollm2 per month reached (200 used)" in e.message
    assert e.extra["used"] == 200 and e.status_code == 402


def test_usage_and_revenue_commands_show_tokens(settings, capsys):
    from modelshop.cli import main
    from modelshop.db import get_database

    db = get_database(settings)
    now = dt.datetime.now(dt.UTC)
    c, key = customer(db, GEN, since=now - dt.timedelta(hours=1))
    gate = BillingGate(settings, db, clock=lambda: now)
    run(gate, generate(gate, key, "smollm2:1", 30, 12))
    main(["usage", "--customer", str(c["id"]), "--json"])
    usage = json.loads(capsys.readouterr().out)
    assert usage["totals"] == {"requests": 1, "tokens": 42, "characters": 0, "input_tokens": 30, "output_tokens": 12}
    main(["usage", "--customer", str(c["id"])])
    assert "30 in / 12 out tokens" in capsys.readouterr().out
    period = usage["period"]
    run_invoices(db, period, actor=ACTOR)
    main(["revenue", "--period", period, "--json"])
    (row,) = json.loads(capsys.readouterr().out)["by_model"]
    assert (row["model"], row["input_tokens"], row["output_tokens"], row["upstream_cost"]) == \
        ("smollm2:1", 30, 12, "0.00")
    main(["revenue", "--period", period])
    assert "upstream 0.00" in capsys.readouterr().out


def test_plans_that_name_no_models_keep_reading_one_counter_row(db, settings):
    """A plan priced on requests alone is checked against the customer's month counter, as before."""
    c, key = customer(db, {"code": "pp", "currency": "USD", "prepaid": True, "charges": [OTHER_IN]})
    topup(db, c["id"], "0.02", actor=ACTOR)
    gate = BillingGate(settings, db, clock=lambda: NOW)
    # 10 000 input tokens at 1.00/M = 0.01 a call: 0 and 0.01 spent before the first two, 0.02 before the third
    assert in_turn(gate, *(generate(gate, key, "smollm2:1", 10_000, 1) for _ in range(3))) == ["ok", "ok", 402]
    with db.session() as s:
        assert month_totals(s, c["id"], [PERIOD])["input_tokens"] == 20_000


def test_reserve_many_holds_in_every_bucket_in_one_step(redis_url):
    from modelshop.billing.limits import LocalLimiter, RedisLimiter

    async def go(limiter):
        try:
            first = await limiter.reserve_many([("h:a", "x", 2), ("h:b", "x", 0)], 30)
            second = await limiter.reserve_many([("h:a", "y", 0), ("h:b", "y", 5), ("h:c", "y", 1)], 30)
            await limiter.release("h:b", "y", 5)
            third = await limiter.reserve_many([("h:b", "z", 1)], 30)
            return first, second, third, await limiter.reserve_many([], 30)
        finally:
            await limiter.close()

    for limiter in (LocalLimiter(), RedisLimiter(redis_url, f"test-{uuid.uuid4().hex}")):
        assert asyncio.run(go(limiter)) == ([2, 0], [2, 5, 1], [1], [])


def test_token_usage_for_the_console(db, settings):
    from modelshop.billing.queries import token_usage

    c, key = customer(db, GEN)
    gate = BillingGate(settings, db, clock=lambda: NOW)
    in_turn(gate, generate(gate, key, "smollm2:1", 30, 12), generate(gate, key, "qwen:1", 5, 40),
            serve_call(gate, key, "support:1", Units(1, 9, 9)))
    got = token_usage(db, PERIOD)
    none_estimated = {"estimated_calls": 0, "estimated_input_tokens": 0, "estimated_output_tokens": 0}
    assert got["by_model"] == [
        {"model": "qwen:1", "calls": 1, "input_tokens": 5, "output_tokens": 40, **none_estimated},
        {"model": "smollm2:1", "calls": 1, "input_tokens": 30, "output_tokens": 12, **none_estimated}]
    assert [(r["customer"], r["model"]) for r in got["by_customer"]] == [("Gen", "qwen:1"), ("Gen", "smollm2:1")]
    assert got["totals"] == {"calls": 2, "input_tokens": 35, "output_tokens": 52, **none_estimated}
    assert token_usage(db, "2026-02")["by_model"] == []
