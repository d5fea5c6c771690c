"""Plan files are validated strictly (one-line errors naming the field) and priced exactly."""

from __future__ import annotations

from decimal import Decimal

import pytest

from modelshop.billing.accounts import create_plan, find_plan
from modelshop.billing.money import allocate, exact_minor, fmt, to_minor
from modelshop.billing.plans import PlanIn, load_plan_file, parse_plan
from modelshop.billing.pricing import charge_amount, discount_line, plan_lines
from modelshop.errors import NotFound, ValidationError
from tests.support import ACTOR, AUTH

BASE = {"code": "p", "currency": "USD", "interval": "month"}
PLAN_FIELDS = ("code", "name", "description", "currency", "interval", "base_fee", "charges", "quota", "prepaid")


def plan(**charge) -> dict:
    return {**BASE, "charges": [charge]}


BAD_PLANS = [
    ({**BASE, "chargez": []}, r'^chargez: unknown field \(did you mean "charges"\?\)'),
    ({**BASE, "currency": "USDD", "base_fee": "1"}, r'currency: "USDD" is not a supported ISO 4217 currency \(did you'),
    ({**BASE, "interval": "monthly", "base_fee": "1"},
     r'interval: "monthly" is not one of month, year \(did you mean "month"'),
    ({**BASE, "base_fee": 49.0}, r'base_fee: 49.0 is a float; write amounts as strings'),
    ({**BASE, "base_fee": "49.001"}, r'base_fee: "49.001" has more than 2 decimal places for USD'),
    ({**BASE, "base_fee": "1e999999999"}, r'base_fee: "1e999999999" is too large; amounts must be below 10\^15'),
    (plan(metric="request", model="unit", unit_price="1"), r'charges\[0\].metric: "request" .*did you mean "requests"'),
    (plan(metric="tokens", model="tiered", tiers=[]), r'charges\[0\].model: "tiered" is not one of'),
    (plan(metric="tokens", model="unit", unit_price=0.002), r'charges\[0\].unit_price: 0.002 is a float'),
    (plan(metric="tokens", model="unit", unit_price="abc"), r'charges\[0\].unit_price: "abc" is not a decimal'),
    (plan(metric="tokens", model="unit", unit_price="-1"), r'charges\[0\].unit_price: "-1" must be'),
    (plan(metric="tokens", model="unit", tiers=[{"up_to": None, "unit_price": "1"}]),
     r"charges\[0\].tiers: not used by a unit charge; a unit charge takes unit_price"),
    (plan(metric="tokens", model="graduated"), r"charges\[0\].tiers: required for a graduated charge"),
    (plan(metric="tokens", model="graduated", tiers=[{"up_to": 10, "unit_price": "1"}]),
     r"tiers\[0\].up_to: the last tier must be unbounded"),
    (plan(metric="tokens", model="volume", tiers=[{"up_to": 10, "unit_price": "1"}, {"up_to": 5, "unit_price": "1"},
                                                  {"up_to": None, "unit_price": "1"}]),
     r"charges\[0\].tiers\[1\].up_to: 5 must be greater than the previous tier's 10"),
    (plan(metric="tokens", model="volume",
          tiers=[{"up_to": None, "unit_price": "1"}, {"up_to": None, "unit_price": "1"}]),
     r"tiers\[0\].up_to: only the last tier may be unbounded"),
    (plan(metric="tokens", model="graduated", tiers=[{"upto": None, "unit_price": "1"}]),
     r'charges\[0\].tiers\[0\].upto: unknown field \(did you mean "up_to"\?\)'),
    (plan(metric="characters", model="package", package_size=0, package_price="1"),
     r"charges\[0\].package_size: expected a whole number of at least 1"),
    (plan(metric="tokens", model="unit", unit_price="1", free_units=-5), r"charges\[0\].free_units: expected a whole"),
    ({**BASE, "charges": [{"metric": "tokens", "model": "unit", "unit_price": "1"}] * 2},
     r'charges\[1\].metric: "tokens" is charged twice'),
    ({**BASE, "quota": {"metric": "requests", "limit": 10, "action": "deny"}}, r'quota.action: "deny" is not one of'),
    ({**BASE, "quota": {"metric": "requests"}}, r"quota.limit: required"),
    ({**BASE, "code": "Pro Plan", "base_fee": "1"}, r"code: 'Pro Plan' must be lower-case"),
    (BASE, r"plan has no charges, no base_fee and no quota"),
]


@pytest.mark.parametrize("data, message", BAD_PLANS)
def test_bad_plans_get_one_line_naming_the_field(data, message):
    with pytest.raises(ValidationError, match=message) as e:
        parse_plan(data)
    assert "\n" not in e.value.message


def test_plan_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "pro.yaml"
    bad.write_text("code: pro\ncurrency: USD\nbase_fee: 49.00\n")
    with pytest.raises(ValidationError,
                       match=r'^pro.yaml: base_fee: 49.0 is a float; write amounts as strings, e.g. "49.0"'):
        load_plan_file(bad)
    good = tmp_path / "pro.json"
    good.write_text('{"code": "pro", "currency": "eur", "base_fee": "49.00"}')
    spec = load_plan_file(good)
    assert spec.currency == "EUR" and spec.base_fee == Decimal("49.00") and spec.interval == "month"


def test_pricing_models_are_exact():
    grad = parse_plan(plan(metric="tokens", model="graduated", free_units=100,
                           tiers=[{"up_to": 1000, "unit_price": "0.01"}, {"up_to": 2000, "unit_price": "0.005"},
                                  {"up_to": None, "unit_price": "0.001"}])).charges[0]
    assert charge_amount(grad, 50)[0] == 0
    assert charge_amount(grad, 1100)[0] == Decimal("10.00")                # 1 000 billable, all in tier 1
    assert charge_amount(grad, 2600)[0] == Decimal("10") + Decimal("5") + Decimal("0.5")
    vol = parse_plan(plan(metric="tokens", model="volume",
                          tiers=[{"up_to": 1000, "unit_price": "0.01"},
                                 {"up_to": None, "unit_price": "0.004"}])).charges[0]
    assert charge_amount(vol, 1000)[0] == Decimal("10.00")
    assert charge_amount(vol, 1001)[0] == Decimal("4.004")                 # every unit at the second tier's price
    pack = parse_plan(plan(metric="characters", model="package", package_size=1000, package_price="0.75")).charges[0]
    assert charge_amount(pack, 0)[0] == 0
    assert charge_amount(pack, 1)[0] == Decimal("0.75")
    assert charge_amount(pack, 2001)[0] == Decimal("2.25")
    unit = parse_plan(plan(metric="requests", model="unit", unit_price="0.0000001")).charges[0]
    assert charge_amount(unit, 10**12)[0] == Decimal("100000")


def test_rounding_once_per_line_half_up():
    spec = parse_plan({**BASE, "currency": "JPY", "base_fee": "500",
                       "charges": [{"metric": "requests", "model": "unit", "unit_price": "0.5"}]})
    lines = plan_lines(spec, {"m": {"requests": 3}})                       # 1.5 yen → 2 (half up)
    assert [ln.amount_minor for ln in lines] == [500, 2]
    assert to_minor(Decimal("0.005"), "USD") == 1 and to_minor(Decimal("0.00499"), "USD") == 0
    assert to_minor(Decimal("1.0005"), "KWD") == 1001                       # three minor digits
    assert discount_line(4650, 1500, "r").amount_minor == -698              # 6.975 → 6.98
    assert fmt(-698, "USD") == "-6.98" and fmt(500, "JPY") == "500"
    with pytest.raises(ValidationError, match="float"):
        exact_minor(1.1, "USD", "amount")
    assert allocate(100, [1, 1, 1]) == [34, 33, 33] and sum(allocate(-7, [3, 0, 5])) == -7


def test_a_changed_plan_is_a_new_version(sqlite_db, plan_files):
    spec = load_plan_file(plan_files["grad"])
    first = create_plan(sqlite_db, spec, actor=ACTOR)
    same = create_plan(sqlite_db, spec, actor=ACTOR)
    assert first["created"] and not same["created"] and same["id"] == first["id"]
    changed = parse_plan({**spec.to_dict(), "base_fee": "12.00"})
    second = create_plan(sqlite_db, changed, actor=ACTOR)
    assert (second["version"], second["spec"]["base_fee"]) == (2, "12.00")
    with sqlite_db.session() as s:
        assert find_plan(s, "grad").version == 2 and find_plan(s, "grad", 1).spec["base_fee"] == "10.00"
        with pytest.raises(NotFound, match='plan "gard" does not exist \\(did you mean "grad"\\?\\)'):
            find_plan(s, "gard")


@pytest.mark.parametrize("data, message", [
    ({"currency": "USD", "base_fee": "1"}, r'^code: required, lower-case letters, digits, "-" or "_"'),
    ({"code": "p", "base_fee": "1"}, r'^currency: required, ISO 4217 code, e.g. "USD"$'),
    (plan(metric="tokens"), r"^charges\[0\].model: required, one of unit, graduated, volume, package$"),
    (plan(model="unit", unit_price="1"), r"^charges\[0\].metric: required, one of requests, tokens, characters"),
    (plan(metric="tokens", model="unit", unit_prise="1"), r'unit_prise: unknown field \(did you mean "unit_price"'),
    (plan(metric="tokens", model="package", package_size=10), r"^charges\[0\].package_price: required for a package"),
    ({**BASE, "quota": "lots"}, r"^quota: expected a mapping of fields, found str$"),
    ({**BASE, "charges": ["x"]}, r"^charges\[0\]: expected a mapping of fields, found str$"),
    ({**BASE, "charges": "x"}, r"^charges: expected a list of charges$"),
    ({**BASE, 5: 1, "base_fee": "1"}, r"^5: unknown field; allowed: code, name"),
    ([1], r"^plan: expected a mapping of fields, found list$"),
])
def test_what_pydantic_finds_is_one_line_too(data, message):
    with pytest.raises(ValidationError, match=message):
        PlanIn.model_validate(data)


def test_the_plans_route_is_typed_and_answers_the_cli_s_one_line(admin_settings):
    """POST /admin/plans takes PlanIn: OpenAPI shows the plan file's schema, and a bad plan gets the
    same line the CLI prints (not FastAPI's list of errors)."""
    from fastapi.testclient import TestClient

    from modelshop.billing import BillingGate
    from modelshop.platform import build_app

    app = build_app(admin_settings, gate=BillingGate(admin_settings))
    schema = app.openapi()
    body = schema["paths"]["/admin/plans"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/PlanIn"}
    parts = schema["components"]["schemas"]
    assert set(parts["PlanIn"]["properties"]) == set(PLAN_FIELDS)
    assert set(parts["PlanIn"]["required"]) == {"code", "currency"}
    charges = parts["PlanIn"]["properties"]["charges"]["items"]
    assert charges["discriminator"]["propertyName"] == "model"
    assert set(charges["discriminator"]["mapping"]) == {"unit", "graduated", "volume", "package"}
    assert parts["GraduatedChargeIn"]["properties"]["tiers"]["items"] == {"$ref": "#/components/schemas/TierIn"}
    assert parts["UnitChargeIn"]["properties"]["unit_price"]["type"] == "string"  # amounts are strings
    with TestClient(app) as client:
        for data, _ in BAD_PLANS:
            r = client.post("/admin/plans", json=data, headers=AUTH)
            with pytest.raises(ValidationError) as e:
                parse_plan(data)
            assert (r.status_code, r.json()) == (422, {"error": e.value.message, "error_type": "validation"})
        r = client.post("/admin/plans", json=[1], headers=AUTH)
        assert (r.status_code, r.json()["error"]) == (422, "plan: expected a mapping of fields, found list")
        assert client.post("/admin/plans", json={"code": "Bad Code"}).status_code == 401  # no key: not judged
        good = plan(metric="tokens", model="unit", unit_price="0.002")
        r = client.post("/admin/plans", json=good, headers=AUTH)
        assert r.status_code == 201 and r.json()["spec"] == parse_plan(good).to_dict()
