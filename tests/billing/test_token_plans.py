"""Plans priced per token and per model: input_tokens and output_tokens metrics, charges (and quotas)
that name models, which charge prices a model's usage, prices per million tokens for a customer
(`BillingGate.token_prices`) and for the storefront (`queries.token_price_list`)."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from modelshop.billing import BillingGate, queries
from modelshop.billing.accounts import create_customer, create_plan
from modelshop.billing.keys import create_key
from modelshop.billing.plans import parse_plan
from modelshop.billing.pricing import charge_for, plan_lines, token_prices, usage_charges_minor
from modelshop.errors import ValidationError
from modelshop.gate import Principal, TokenPrices
from tests.billing.token_plans import BASE, GEN, OTHER_IN, OTHER_OUT, SMOL_IN, SMOL_OUT
from tests.support import ACTOR


def with_charges(*charges, **plan) -> dict:
    return {**BASE, **plan, "charges": list(charges)}


BAD = [
    (with_charges({**SMOL_IN, "models": []}), r"^charges\[0\].models: expected a non-empty list of model names"),
    (with_charges({**SMOL_IN, "models": "smollm2"}), r"^charges\[0\].models: expected a non-empty list"),
    (with_charges({**SMOL_IN, "models": ["smollm2", 7]}), r"^charges\[0\].models\[1\]: expected a model name"),
    (with_charges({**SMOL_IN, "models": ["smollm2:3"]}),
     r'^charges\[0\].models\[0\]: "smollm2:3": name the model without its version \("smollm2"\)'),
    (with_charges({**SMOL_IN, "models": ["small llm"]}), r'^charges\[0\].models\[0\]: "small llm" is not a model'),
    (with_charges({**SMOL_IN, "models": ["a", "a"]}), r'^charges\[0\].models\[1\]: "a" is named twice'),
    (with_charges(SMOL_IN, {**SMOL_IN, "models": ["qwen", "smollm2"]}),
     r'^charges\[1\].models: "input_tokens" of model "smollm2" is charged twice'),
    (with_charges(OTHER_IN, OTHER_IN), r'^charges\[1\].metric: "input_tokens" is charged twice'),
    (with_charges({**SMOL_IN, "modles": ["smollm2"]}), r'^charges\[0\].modles: unknown field \(did you mean "models"'),
    (with_charges({**SMOL_IN, "metric": "input_token"}), r'did you mean "input_tokens"'),
    ({**BASE, "quota": {"metric": "output_tokens", "limit": 5, "models": []}}, r"^quota.models: expected a non-empty"),
]


@pytest.mark.parametrize("data, message", BAD)
def test_bad_model_lists_get_one_line_naming_the_field(data, message):
    with pytest.raises(ValidationError, match=message) as e:
        parse_plan(data)
    assert "\n" not in e.value.message


def test_models_are_kept_in_the_canonical_form_and_plans_without_them_are_unchanged():
    spec = parse_plan({**GEN, "quota": {"metric": "output_tokens", "limit": 9, "models": ["smollm2"]}})
    d = spec.to_dict()
    assert d["charges"][0]["models"] == ["smollm2"] and "models" not in d["charges"][2]
    assert d["quota"] == {"metric": "output_tokens", "limit": 9, "action": "block", "models": ["smollm2"]}
    assert parse_plan(d) == spec
    old = {**BASE, "charges": [{"metric": "requests", "model": "unit", "unit_price": "0.01"}]}
    assert parse_plan(old).to_dict()["charges"] == [{"metric": "requests", "model": "unit", "unit_price": "0.01"}]


def test_a_model_s_usage_goes_to_the_charge_naming_it_else_to_the_general_one():
    spec = parse_plan(GEN)
    assert [charge_for(spec, "input_tokens", m) for m in ("smollm2", "qwen")] == [0, 2]
    assert [charge_for(spec, "output_tokens", m) for m in ("smollm2", "qwen")] == [1, 3]
    assert charge_for(spec, "requests", "smollm2") is None
    only = parse_plan(with_charges(SMOL_IN))
    assert charge_for(only, "input_tokens", "qwen") is None        # no general charge: qwen's input is free


def test_a_charge_limited_to_one_model_does_not_price_another_s_usage():
    spec = parse_plan(GEN)
    usage = {"smollm2": {"input_tokens": 2_000_000, "output_tokens": 1_000_000},
             "qwen": {"input_tokens": 500_000, "output_tokens": 1_500_000},
             "support": {"requests": 10, "tokens": 400}}
    lines = plan_lines(spec, usage)
    assert [(ln.metric, ln.models, ln.quantity, ln.amount_minor) for ln in lines] == [
        ("input_tokens", ("smollm2",), 2_000_000, 40),              # 2 M × 0.20/M
        ("output_tokens", ("smollm2",), 1_000_000, 60),             # 1 M × 0.60/M
        ("input_tokens", ("qwen",), 500_000, 50),                   # qwen's at the general 1.00/M, not 0.20
        ("output_tokens", ("qwen",), 1_500_000, 250)]               # 1 M × 2.00/M + 0.5 M × 1.00/M
    assert lines[0].description == "input_tokens (unit, smollm2): 2,000,000 @ 0.0000002"
    assert lines[2].description == "input_tokens (unit, other models): 500,000 @ 0.000001"
    # without the smollm2 charges, the general ones price smollm2 too
    general = plan_lines(parse_plan(with_charges(OTHER_IN, OTHER_OUT)), usage)
    assert [(ln.models, ln.amount_minor) for ln in general] == [(None, 250), (None, 350)]   # 2.5 M: 2.00 + 1.50
    assert usage_charges_minor(spec, usage) == 400
    # units under way (for the wallet check) are added to the charges they fall under
    assert usage_charges_minor(spec, usage, [0, 0, 0, 500_000]) == 450


def test_token_prices_per_million():
    assert token_prices(parse_plan(GEN), "smollm2") == TokenPrices("USD", "0.20", "0.60")
    assert token_prices(parse_plan(GEN), "qwen") == TokenPrices("USD", "1.00", "2.00")    # graduated: first tier
    assert token_prices(parse_plan(with_charges(SMOL_OUT)), "smollm2") == TokenPrices("USD", None, "0.60")
    assert token_prices(parse_plan(with_charges(SMOL_OUT)), "qwen") is None
    requests_only = with_charges({"metric": "requests", "model": "unit", "unit_price": "0.01"})
    assert token_prices(parse_plan(requests_only), "smollm2") is None
    # a charge on every token prices both sides, on top of the side's own charge
    both = with_charges({"metric": "tokens", "model": "unit", "unit_price": "0.00002"}, SMOL_IN)
    assert token_prices(parse_plan(both), "smollm2") == TokenPrices("USD", "20.20", "20.00")
    yen = {"code": "jp", "currency": "JPY", "charges": [
        {"metric": "output_tokens", "model": "package", "package_size": 1000, "package_price": "3"},
        {"metric": "input_tokens", "model": "volume", "tiers": [{"up_to": 10, "unit_price": "0.00125"},
                                                                  {"up_to": None, "unit_price": "0.001"}]}]}
    assert token_prices(parse_plan(yen), "smollm2") == TokenPrices("JPY", "1250", "3000")


def test_the_gate_s_token_prices_are_the_caller_s_plan_s(db, settings):
    create_plan(db, parse_plan(GEN), actor=ACTOR)
    create_plan(db, parse_plan({**with_charges(SMOL_OUT), "code": "cheap"}), actor=ACTOR)
    gen = create_key(db, create_customer(db, "Gen", "gen", actor=ACTOR)["id"], actor=ACTOR)["key"]
    cheap = create_key(db, create_customer(db, "Cheap", "cheap", actor=ACTOR)["id"], actor=ACTOR)["key"]
    gate = BillingGate(settings, db)

    async def go():
        a, b = await gate.authenticate(gen), await gate.authenticate(cheap)
        out = [await gate.token_prices(a, "smollm2"), await gate.token_prices(a, "smollm2:3"),
               await gate.token_prices(a, "qwen"), await gate.token_prices(b, "smollm2"),
               await gate.token_prices(b, "qwen"), await gate.token_prices(Principal(kind="admin"), "smollm2")]
        await gate.close()
        return out

    assert asyncio.run(go()) == [TokenPrices("USD", "0.20", "0.60"), TokenPrices("USD", "0.20", "0.60"),
                                 TokenPrices("USD", "1.00", "2.00"), TokenPrices("USD", None, "0.60"), None, None]


def test_the_storefront_s_token_price_list(db):
    create_plan(db, parse_plan(GEN), actor=ACTOR)
    create_plan(db, parse_plan({**GEN, "code": "agen", "currency": "EUR",
                                "charges": [SMOL_IN, SMOL_OUT]}), actor=ACTOR)
    create_plan(db, parse_plan(with_charges({"metric": "requests", "model": "unit", "unit_price": "1"},
                                            code="basic")), actor=ACTOR)
    # a newer version of gen: only the latest counts
    create_plan(db, parse_plan({**GEN, "charges": [{**SMOL_IN, "unit_price": "0.0000001"}, OTHER_OUT]}), actor=ACTOR)
    rows = queries.token_price_list(db)
    assert rows == [
        {"plan": "agen", "model": "smollm2", "currency": "EUR", "input_per_million": "0.20",
         "output_per_million": "0.60"},
        {"plan": "gen", "model": "smollm2", "currency": "USD", "input_per_million": "0.10",
         "output_per_million": "2.00"},                                  # its output at the general price
        {"plan": "gen", "model": None, "currency": "USD", "input_per_million": None, "output_per_million": "2.00"}]
    assert [r["plan"] for r in queries.token_price_list(db, codes=["gen", "basic"])] == ["gen", "gen"]
    assert queries.token_price_list(db, codes=["basic"]) == []
    assert all(Decimal(r["output_per_million"]) > 0 for r in rows)
