"""Token revenue through the channels, as request revenue: a reseller's wholesale discount takes its share of
token charges, partners earn their commission on token revenue, and the channel report counts it, with
the upstream cost of resold models in its margin (SQLite and PostgreSQL).

    Resell Co (reseller, 20 % discount, 10 % commission)
        Ann  plan resale, upstream gpt 1 M in + 1 M out   3.00 − 0.60 = 2.40   commission 0.24
        Ben  plan req, 10 requests of a classifier        1.00 − 0.20 = 0.80   commission 0.08
    Blogger (affiliate, 15 % commission)
        Cy   plan resale, upstream gpt 0.5 M in + 0.25 M out          1.00   commission 0.15
    gpt costs 0.15 / 0.60 per million upstream: Ann 0.75, Cy 0.075 + 0.15 = 0.225 → 0.23
"""

from __future__ import annotations

import asyncio
import uuid

from modelshop.billing import BillingGate, accounts, invoices
from modelshop.billing.keys import create_key
from modelshop.billing.plans import parse_plan
from modelshop.channels import analytics, attribution, commissions, partners
from modelshop.gate import Call, StoredReply, Units
from modelshop.llm.upstream import add_upstream, upstream_costs
from modelshop.registry import Registry
from tests.support import ACTOR, month_start, period, serve_call

M = 1_000_000
RESALE = {"code": "resale", "currency": "USD", "charges": [
    {"metric": "input_tokens", "model": "unit", "unit_price": "0.000001"},       # 1.00 per million
    {"metric": "output_tokens", "model": "unit", "unit_price": "0.000002"}]}     # 2.00 per million
REQ = {"code": "req", "currency": "USD", "charges": [{"metric": "requests", "model": "unit", "unit_price": "0.10"}]}


async def relay(gate, key: str, prompt: int, completion: int) -> None:
    """One call of upstream model gpt, metered as the gateway meters it."""
    request_id = uuid.uuid4().hex
    principal = await gate.authenticate(key)
    units = Units(1, prompt + completion, 0, prompt, completion)
    async with gate.metered(principal, "/v1/chat/completions", request_id=request_id) as m:
        await m.admit("gpt:1", units)
        await m.record(Call(request_id, "/v1/chat/completions", "gpt:1", units), StoredReply(200, b"{}", {}))


def _use(db, settings, ann_key: str, ben_key: str, cy_key: str) -> None:
    gate = BillingGate(settings, db)

    async def go():
        await relay(gate, ann_key, M, M)
        await relay(gate, cy_key, M // 2, M // 4)
        for _ in range(10):
            assert (await serve_call(gate, ben_key, "support:1", Units(1, 5, 20)))[0] == "ok"
        await gate.close()

    asyncio.run(go())


def test_discounts_commissions_and_the_channel_report_count_token_revenue(db, settings):
    add_upstream("gpt", "http://127.0.0.1:9/v1", "gpt-4o-mini", cost_input="0.15", cost_output="0.60",
                 settings=settings)
    for plan in (RESALE, REQ):
        accounts.create_plan(db, parse_plan(plan), actor=ACTOR)
    resell = partners.create_partner(db, "Resell Co", reseller_discount="20", actor=ACTOR)
    blog = partners.create_partner(db, "Blogger", kind="affiliate", actor=ACTOR)
    commissions.create_rule(db, resell["id"], "percent", percent="10", hold_days=0, actor=ACTOR)
    commissions.create_rule(db, blog["id"], "percent", percent="15", hold_days=0, actor=ACTOR)
    ann = partners.create_customer(db, resell["id"], "Ann", "resale", actor=ACTOR)
    ben = partners.create_customer(db, resell["id"], "Ben", "req", actor=ACTOR)
    cy = accounts.create_customer(db, "Cy", "resale", actor=ACTOR)
    attribution.bind_customer(db, settings, cy["id"], params={"ref": blog["channel"]["code"]})
    _use(db, settings, ann["key"]["key"], ben["key"]["key"], create_key(db, cy["id"], actor=ACTOR)["key"])

    run = invoices.run_invoices(db, period(0), actor=ACTOR)
    by_customer = {inv["customer_id"]: inv for inv in run["invoices"]}
    ann_inv, ben_inv, cy_inv = (by_customer[c] for c in (ann["customer"]["id"], ben["customer"]["id"], cy["id"]))
    assert [(ln["kind"], ln["metric"], ln["amount"]) for ln in ann_inv["lines"]] == [
        ("usage", "input_tokens", "1.00"), ("usage", "output_tokens", "2.00"), ("discount", None, "-0.60")]
    assert (ann_inv["subtotal"], ann_inv["discount"], ann_inv["total"]) == ("3.00", "0.60", "2.40")
    assert (ben_inv["subtotal"], ben_inv["discount"], ben_inv["total"]) == ("1.00", "0.20", "0.80")
    assert (cy_inv["discount"], cy_inv["total"]) == ("0.00", "1.00")
    for inv in (ann_inv, ben_inv, cy_inv):
        invoices.finalize(db, inv["id"], actor=ACTOR, now=month_start(1))
        invoices.pay(db, inv["id"], actor=ACTOR)

    assert commissions.run_commissions(db, actor=ACTOR)["accrual"] == 3
    earned = {(e["customer"], e["base"], e["rate_percent"], e["amount"])
              for e in commissions.list_commissions(db)["entries"]}
    assert earned == {("Ann", "2.40", "10.00", "0.24"), ("Ben", "0.80", "10.00", "0.08"),
                      ("Cy", "1.00", "15.00", "0.15")}

    quiet = settings.model_copy(update={"serving_cost_per_compute_second": {}})
    rates = upstream_costs(Registry.from_settings(settings))
    rows = {r["code"]: r for r in analytics.report(db, quiet, period(0), upstream_rates=rates)}
    figures = ("paying", "revenue", "serving_cost", "upstream_cost", "gross_margin", "commissions", "cost")
    assert {k: rows[resell["channel"]["code"]][k] for k in figures} == {
        "paying": 2, "revenue": "3.20", "serving_cost": "0.00", "upstream_cost": "0.75", "gross_margin": "2.45",
        "commissions": "0.32", "cost": "0.32"}
    assert {k: rows[blog["channel"]["code"]][k] for k in figures} == {
        "paying": 1, "revenue": "1.00", "serving_cost": "0.00", "upstream_cost": "0.23", "gross_margin": "0.77",
        "commissions": "0.15", "cost": "0.15"}
    assert rows[blog["channel"]["code"]]["roi"] == "4.13"                       # (0.77 − 0.15) ÷ 0.15
    # without the upstream rates the resold model's tokens cost nothing upstream
    plain = {r["code"]: r for r in analytics.report(db, quiet, period(0))}
    assert (plain[blog["channel"]["code"]]["upstream_cost"], plain[blog["channel"]["code"]]["gross_margin"]) == \
        ("0.00", "1.00")

    # the reseller sees its customers' token usage
    seen = partners.usage(db, resell["id"], period(0))
    assert (seen["totals"]["input_tokens"], seen["totals"]["output_tokens"], seen["totals"]["requests"]) == \
        (M, M, 11)
    assert [(c["customer"], c["output_tokens"]) for c in seen["customers"]] == [("Ann", M), ("Ben", 0)]
