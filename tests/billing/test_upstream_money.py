"""The money side of resold upstream models: usage the gateway had to count itself is marked `estimated`
and shown apart (usage totals, revenue rows, the console's token figures); revenue takes the upstream
costs of the registered upstream models, so margin per model and customer is real, and a model sold
below its cost gets a negative margin and a warning; the `revenue` and `usage` commands and the admin
API say the same.

Prices, per million tokens (input / output):

    plan resale   every model 1.00 / 2.00         plan cheap   every model 0.10 / 0.20
    upstream gpt      costs 0.15 / 0.60           upstream pricey  costs 3.00 / 4.00

    Ann (resale)  gpt     1 M / 1 M       revenue 3.00   upstream 0.75   margin  2.25
                  pricey  1 M / 0.5 M     revenue 2.00   upstream 5.00   margin -3.00   (estimated)
    Bob (cheap)   gpt     1 M / 1 M       revenue 0.30   upstream 0.75   margin -0.45
    gpt overall:  revenue 3.30, upstream 1.50, margin 1.80 — but sold below its cost to Bob
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid

import sqlalchemy as sa
from fastapi.testclient import TestClient

from modelshop.billing import BillingGate
from modelshop.billing.accounts import create_customer, create_plan
from modelshop.billing.invoices import run_invoices
from modelshop.billing.keys import create_key
from modelshop.billing.plans import parse_plan
from modelshop.billing.queries import token_usage
from modelshop.billing.revenue import revenue
from modelshop.billing.tables import UsageEvent
from modelshop.billing.usage import usage_summary
from modelshop.gate import Call, StoredReply, Units
from modelshop.llm.upstream import add_upstream, upstream_costs
from modelshop.registry import Registry
from tests.support import ACTOR, AUTH

NOW = dt.datetime(2026, 3, 10, 12, tzinfo=dt.UTC)
PERIOD = "2026-03"
CHAT = "/v1/chat/completions"
M = 1_000_000


def _plan(code: str, per_input: str, per_output: str) -> dict:
    return {"code": code, "currency": "USD", "charges": [
        {"metric": "input_tokens", "model": "unit", "unit_price": per_input},
        {"metric": "output_tokens", "model": "unit", "unit_price": per_output}]}


RESALE, CHEAP = _plan("resale", "0.000001", "0.000002"), _plan("cheap", "0.0000001", "0.0000002")


def customer(db, plan: dict, name: str, since: dt.datetime = NOW - dt.timedelta(days=30)) -> tuple[int, str]:
    """A customer on `plan` (created now unless it exists) and a key."""
    create_plan(db, parse_plan(plan), actor=ACTOR)
    c = create_customer(db, name, plan["code"], actor=ACTOR)
    with db.session() as s:
        s.execute(sa.text("update billing_customers set created_at = :t where id = :i"), {"t": since, "i": c["id"]})
    return c["id"], create_key(db, c["id"], actor=ACTOR)["key"]


async def relay(gate, key: str, model: str, prompt: int, completion: int, *, estimated: bool = False) -> None:
    """One call as the gateway meters it: admitted, then recorded with the usage it found (or counted)."""
    request_id = uuid.uuid4().hex
    principal = await gate.authenticate(key)
    async with gate.metered(principal, CHAT, request_id=request_id) as m:
        await m.admit(model, Units(1, prompt + completion, 0, prompt, completion))
        call = Call(request_id, CHAT, model, Units(1, prompt + completion, 0, prompt, completion),
                    extra={"estimated": True} if estimated else {})
        await m.record(call, StoredReply(200, b"{}", {}))


def calls(gate, *coros) -> None:
    async def go():
        for c in coros:
            await c
        await gate.close()

    asyncio.run(go())


def world(db, settings, now: dt.datetime = NOW) -> dict[str, int]:
    """Ann and Bob's calls of the module docstring, invoiced; the two upstream models registered."""
    add_upstream("gpt", "http://127.0.0.1:9/v1", "gpt-4o-mini", cost_input="0.15", cost_output="0.60",
                 settings=settings)
    add_upstream("pricey", "http://127.0.0.1:9/v1", "big-model", cost_input="3.00", cost_output="4.00",
                 settings=settings)
    since = now - dt.timedelta(days=30)
    ann, ann_key = customer(db, RESALE, "Ann", since)
    bob, bob_key = customer(db, CHEAP, "Bob", since)
    gate = BillingGate(settings, db, clock=lambda: now)
    calls(gate, relay(gate, ann_key, "gpt:1", M, M), relay(gate, ann_key, "pricey:1", M, M // 2, estimated=True),
          relay(gate, bob_key, "gpt:1", M, M))
    run_invoices(db, now.strftime("%Y-%m"), actor=ACTOR)
    return {"ann": ann, "bob": bob}


def no_serving_cost(settings):
    return settings.model_copy(update={"serving_cost_per_compute_second": {}, "serving_cost_per_1k_tokens": {}})


def test_estimated_usage_is_kept_and_shown_apart(db, settings):
    ids = world(db, settings)
    with db.session() as s:
        rows = s.execute(sa.select(UsageEvent.model, UsageEvent.customer_id, UsageEvent.estimated)
                         .order_by(UsageEvent.id)).all()
    assert [tuple(r) for r in rows] == [("gpt:1", ids["ann"], False), ("pricey:1", ids["ann"], True),
                                        ("gpt:1", ids["bob"], False)]

    ann = usage_summary(db, customer_id=ids["ann"], period=PERIOD)
    assert ann["totals"] == {"requests": 2, "tokens": 7 * M // 2, "characters": 0, "input_tokens": 2 * M,
                             "output_tokens": 3 * M // 2}
    assert ann["estimated"] == {"requests": 1, "tokens": 3 * M // 2, "characters": 0, "input_tokens": M,
                                "output_tokens": M // 2}
    assert [(r["model"], r["estimated"]["input_tokens"]) for r in ann["by_model"]] == [("gpt:1", 0), ("pricey:1", M)]
    assert usage_summary(db, customer_id=ids["bob"], period=PERIOD)["estimated"] == dict.fromkeys(
        ("requests", "tokens", "characters", "input_tokens", "output_tokens"), 0)

    r = revenue(db, PERIOD, no_serving_cost(settings))
    by_model = {row["model"]: row for row in r["by_model"]}
    assert (by_model["pricey:1"]["estimated_tokens"], by_model["pricey:1"]["estimated_input_tokens"],
            by_model["pricey:1"]["estimated_output_tokens"]) == (3 * M // 2, M, M // 2)
    assert by_model["gpt:1"]["estimated_tokens"] == 0
    assert {row["customer"]: row["estimated_output_tokens"] for row in r["by_customer"]} == {"Ann": M // 2, "Bob": 0}
    assert r["totals"][0]["estimated_tokens"] == 3 * M // 2

    console = token_usage(db, PERIOD)
    assert [(m["model"], m["estimated_calls"], m["estimated_input_tokens"], m["estimated_output_tokens"])
            for m in console["by_model"]] == [("gpt:1", 0, 0, 0), ("pricey:1", 1, M, M // 2)]
    assert console["totals"] == {"calls": 3, "input_tokens": 3 * M, "output_tokens": 5 * M // 2, "estimated_calls": 1,
                                 "estimated_input_tokens": M, "estimated_output_tokens": M // 2}


def test_revenue_with_the_registered_upstream_costs(db, settings):
    ids = world(db, settings)
    rates = upstream_costs(Registry.from_settings(settings))
    r = revenue(db, PERIOD, no_serving_cost(settings), upstream_rates=rates)
    by_model = {row["model"]: row for row in r["by_model"]}
    figures = ("revenue", "upstream_cost", "serving_cost", "margin", "margin_percent")
    assert {m: tuple(row[f] for f in figures) for m, row in by_model.items()} == {
        "gpt:1": ("3.30", "1.50", "0.00", "1.80", "54.5"),
        "pricey:1": ("2.00", "5.00", "0.00", "-3.00", "-150.0")}
    by_customer = {row["customer_id"]: tuple(row[f] for f in figures) for row in r["by_customer"]}
    assert by_customer == {ids["ann"]: ("5.00", "5.75", "0.00", "-0.75", "-15.0"),
                           ids["bob"]: ("0.30", "0.75", "0.00", "-0.45", "-150.0")}
    assert tuple(r["totals"][0][f] for f in figures) == ("5.30", "6.50", "0.00", "-1.20", "-22.6")

    # pricey loses money on the whole; gpt makes money, but not on Bob's plan
    assert [(w["model"], w["customers"], w["revenue"], w["upstream_cost"], w["margin"]) for w in r["warnings"]] == [
        ("gpt:1", [ids["bob"]], "0.30", "0.75", "-0.45"), ("pricey:1", [ids["ann"]], "2.00", "5.00", "-3.00")]
    assert r["warnings"][0]["message"].startswith(f"gpt:1 is sold below its cost to customer {ids['bob']} in 2026-03")
    assert r["warnings"][1]["message"].startswith("pricey:1 is sold below its cost in 2026-03: revenue 2.00 USD")

    # serving cost counts too, and without upstream rates an upstream model costs nothing upstream
    served = settings.model_copy(update={"serving_cost_per_compute_second": {},
                                         "serving_cost_per_1k_tokens": {"gpt": "0.00001"}})
    gpt = next(row for row in revenue(db, PERIOD, served, upstream_rates=rates)["by_model"] if row["model"] == "gpt:1")
    assert (gpt["serving_cost"], gpt["margin"]) == ("0.04", "1.76")      # 4 M tokens at 0.00001 per 1,000
    bare = revenue(db, PERIOD, no_serving_cost(settings))
    assert {row["model"]: row["upstream_cost"] for row in bare["by_model"]} == {"gpt:1": "0.00", "pricey:1": "0.00"}
    assert bare["warnings"] == []


def test_revenue_and_usage_commands(settings, capsys):
    from modelshop.cli import main
    from modelshop.db import get_database

    now = dt.datetime.now(dt.UTC)
    settings = no_serving_cost(settings)
    ids = world(get_database(settings), settings, now)
    period = now.strftime("%Y-%m")
    main(["revenue", "--period", period, "--json"])
    r = json.loads(capsys.readouterr().out)
    by_model = {row["model"]: (row["upstream_cost"], row["margin"]) for row in r["by_model"]}
    # the default serving-cost rates may add cents; the upstream costs are the registered ones
    assert by_model["gpt:1"][0] == "1.50" and by_model["pricey:1"][0] == "5.00"
    assert by_model["pricey:1"][1].startswith("-")
    assert [w["model"] for w in r["warnings"]] == ["gpt:1", "pricey:1"]
    main(["revenue", "--period", period])
    out = capsys.readouterr()
    assert "warning: pricey:1 is sold below its cost" in out.err and "upstream 5.00" in out.out
    assert "1500000 tokens estimated" in out.out

    main(["usage", "--customer", str(ids["ann"]), "--json"])
    usage = json.loads(capsys.readouterr().out)
    assert usage["estimated"]["input_tokens"] == M and usage["estimated"]["output_tokens"] == M // 2
    main(["usage", "--customer", str(ids["ann"])])
    assert "(1000000 in / 500000 out estimated, 1 calls)" in capsys.readouterr().out


def test_admin_revenue_route_has_upstream_costs(admin_settings):
    from modelshop.db import get_database
    from modelshop.platform import build_app

    settings = no_serving_cost(admin_settings)
    db = get_database(settings)
    now = dt.datetime.now(dt.UTC)
    world(db, settings, now)
    app = build_app(settings, gate=BillingGate(settings, db))
    with TestClient(app) as client:
        r = client.get(f"/admin/revenue?period={now:%Y-%m}", headers=AUTH).json()
    assert {row["model"]: row["upstream_cost"] for row in r["by_model"]} == {"gpt:1": "1.50", "pricey:1": "5.00"}
    assert [w["model"] for w in r["warnings"]] == ["gpt:1", "pricey:1"]
