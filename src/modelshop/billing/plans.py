"""Plan files: strict parsing and validation of a plan written in YAML or JSON.

A plan is a currency, a billing interval, an optional flat `base_fee`, priced `charges` per
metric (unit, graduated, volume or package), an optional `quota` and `prepaid` flag:

    free tier       quota, no prices           pay-as-you-go   one `unit` charge
    subscription    base_fee + free_units + overage tiers     prepaid   `prepaid: true`

Every error is one line naming the field (`charges[0].tiers[1].unit_price: ...`), with a
did-you-mean for misspelt keys. Prices are exact Decimals from strings; floats are refused.
`PlanSpec.to_dict()` is the canonical form stored with each plan version.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import yaml

from modelshop.billing.money import check_currency, exact_minor, parse_decimal
from modelshop.errors import ValidationError, did_you_mean

METRICS = ("requests", "tokens", "characters")
PRICING_MODELS = ("unit", "graduated", "volume", "package")
INTERVALS = ("month", "year")
QUOTA_ACTIONS = ("block", "allow")
CODE_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")

PLAN_KEYS = ("code", "name", "description", "currency", "interval", "base_fee", "charges", "quota", "prepaid")
CHARGE_KEYS = ("metric", "model", "free_units", "tiers", "unit_price", "package_size", "package_price")
TIER_KEYS = ("up_to", "unit_price")
QUOTA_KEYS = ("metric", "limit", "action")
# which price fields each pricing model takes (beyond metric, model, free_units)
MODEL_FIELDS = {"unit": ("unit_price",), "graduated": ("tiers",), "volume": ("tiers",),
                "package": ("package_size", "package_price")}


@dataclass(frozen=True)
class Tier:
    up_to: int | None           # inclusive upper bound of this tier; None: no bound (the last tier)
    unit_price: Decimal


@dataclass(frozen=True)
class Charge:
    metric: str
    model: str
    free_units: int = 0
    tiers: tuple[Tier, ...] = ()
    unit_price: Decimal | None = None
    package_size: int | None = None
    package_price: Decimal | None = None


@dataclass(frozen=True)
class Quota:
    metric: str
    limit: int
    action: str = "block"


@dataclass(frozen=True)
class PlanSpec:
    code: str
    currency: str
    interval: str
    name: str = ""
    description: str = ""
    base_fee: Decimal | None = None
    charges: tuple[Charge, ...] = ()
    quota: Quota | None = None
    prepaid: bool = False

    def to_dict(self) -> dict:
        """The canonical JSON form: prices as strings, absent options left out."""
        out: dict = {"code": self.code, "name": self.name, "currency": self.currency, "interval": self.interval}
        if self.description:
            out["description"] = self.description
        if self.base_fee is not None:
            out["base_fee"] = str(self.base_fee)
        out["charges"] = [_charge_dict(c) for c in self.charges]
        if self.quota:
            out["quota"] = {"metric": self.quota.metric, "limit": self.quota.limit, "action": self.quota.action}
        out["prepaid"] = self.prepaid
        return out


def _charge_dict(c: Charge) -> dict:
    d: dict = {"metric": c.metric, "model": c.model}
    if c.free_units:
        d["free_units"] = c.free_units
    if c.tiers:
        d["tiers"] = [{"up_to": t.up_to, "unit_price": str(t.unit_price)} for t in c.tiers]
    if c.unit_price is not None:
        d["unit_price"] = str(c.unit_price)
    if c.package_size is not None:
        d["package_size"] = c.package_size
        d["package_price"] = str(c.package_price)
    return d


def load_plan_file(path: str | Path) -> PlanSpec:
    """Read and validate a plan from a .yaml/.yml/.json file."""
    path = Path(path)
    if not path.is_file():
        raise ValidationError(f"plan file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as e:
        first = str(e).strip().splitlines()[0]
        raise ValidationError(f"{path.name}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {first}") \
            from None
    try:
        return parse_plan(data)
    except ValidationError as e:
        raise ValidationError(f"{path.name}: {e.message}") from None


def parse_plan(data: object) -> PlanSpec:
    """Validate a plan given as a mapping (from YAML, JSON or an HTTP body)."""
    d = _mapping(data, "plan", PLAN_KEYS)
    code = d.get("code")
    if not isinstance(code, str) or not CODE_RE.match(code):
        raise ValidationError(f'code: {code!r} must be lower-case letters, digits, "-" or "_" (max 64), e.g. "pro"')
    if "currency" not in d:
        raise ValidationError('currency: required, e.g. "USD"')
    currency = check_currency(d["currency"])
    interval = d.get("interval", "month")
    _choice(interval, INTERVALS, "interval")
    base_fee = None
    if d.get("base_fee") is not None:
        base_fee = parse_decimal(d["base_fee"], "base_fee")
        exact_minor(base_fee, currency, "base_fee")
    raw_charges = d.get("charges") or []
    if not isinstance(raw_charges, list):
        raise ValidationError("charges: expected a list of charges")
    charges = tuple(_charge(c, f"charges[{i}]") for i, c in enumerate(raw_charges))
    seen: set[str] = set()
    for i, c in enumerate(charges):
        if c.metric in seen:
            raise ValidationError(f'charges[{i}].metric: "{c.metric}" is charged twice; use one charge per metric')
        seen.add(c.metric)
    quota = _quota(d["quota"]) if d.get("quota") is not None else None
    prepaid = d.get("prepaid", False)
    if not isinstance(prepaid, bool):
        raise ValidationError(f"prepaid: expected true or false, found {prepaid!r}")
    for key in ("name", "description"):
        if key in d and not isinstance(d[key], str):
            raise ValidationError(f"{key}: expected text, found {type(d[key]).__name__}")
    if not charges and base_fee is None and quota is None:
        raise ValidationError("plan has no charges, no base_fee and no quota; a free tier needs at least a quota")
    return PlanSpec(code=code, name=d.get("name") or code, description=d.get("description") or "",
                    currency=currency, interval=interval, base_fee=base_fee, charges=charges,
                    quota=quota, prepaid=prepaid)


def _mapping(data: object, where: str, allowed: tuple[str, ...]) -> dict:
    if not isinstance(data, dict):
        raise ValidationError(f"{where}: expected a mapping of fields, found {type(data).__name__}")
    for key in data:
        if key not in allowed:
            prefix = "" if where == "plan" else f"{where}."
            raise ValidationError(f'{prefix}{key}: unknown field{did_you_mean(str(key), allowed)}; '
                                  f"allowed: {', '.join(allowed)}")
    return data


def _choice(value: object, choices: tuple[str, ...], where: str) -> str:
    if value not in choices:
        raise ValidationError(f'{where}: "{value}" is not one of {", ".join(choices)}'
                              f"{did_you_mean(str(value), choices)}")
    return value  # type: ignore[return-value]


def _count(value: object, where: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValidationError(f"{where}: expected a whole number of at least {minimum}, found {value!r}")
    return value


def _charge(raw: object, where: str) -> Charge:
    d = _mapping(raw, where, CHARGE_KEYS)
    metric = _choice(d.get("metric"), METRICS, f"{where}.metric")
    model = _choice(d.get("model"), PRICING_MODELS, f"{where}.model")
    for key in set(CHARGE_KEYS) - {"metric", "model", "free_units"}:
        if key in d and key not in MODEL_FIELDS[model]:
            raise ValidationError(f"{where}.{key}: not used by a {model} charge; a {model} charge takes "
                                  f"{' and '.join(MODEL_FIELDS[model])}")
    for key in MODEL_FIELDS[model]:
        if d.get(key) is None:
            raise ValidationError(f"{where}.{key}: required for a {model} charge")
    free = _count(d.get("free_units", 0), f"{where}.free_units")
    if model == "unit":
        return Charge(metric, model, free, unit_price=parse_decimal(d["unit_price"], f"{where}.unit_price"))
    if model == "package":
        return Charge(metric, model, free, package_size=_count(d["package_size"], f"{where}.package_size", 1),
                      package_price=parse_decimal(d["package_price"], f"{where}.package_price"))
    tiers_raw = d["tiers"]
    if not isinstance(tiers_raw, list) or not tiers_raw:
        raise ValidationError(f"{where}.tiers: expected a non-empty list of {{up_to, unit_price}}")
    tiers = []
    previous = 0
    for i, t in enumerate(tiers_raw):
        tw = f"{where}.tiers[{i}]"
        td = _mapping(t, tw, TIER_KEYS)
        if "unit_price" not in td:
            raise ValidationError(f"{tw}.unit_price: required")
        up_to = td.get("up_to")
        last = i == len(tiers_raw) - 1
        if up_to is None and not last:
            raise ValidationError(f"{tw}.up_to: only the last tier may be unbounded (null)")
        if up_to is not None:
            _count(up_to, f"{tw}.up_to", 1)
            if up_to <= previous:
                raise ValidationError(f"{tw}.up_to: {up_to} must be greater than the previous tier's {previous}")
            previous = up_to
        elif not last:
            raise ValidationError(f"{tw}.up_to: only the last tier may be unbounded")
        tiers.append(Tier(up_to, parse_decimal(td["unit_price"], f"{tw}.unit_price")))
    if tiers[-1].up_to is not None:
        raise ValidationError(f"{where}.tiers[{len(tiers) - 1}].up_to: the last tier must be unbounded "
                              "(up_to: null) so every quantity has a price")
    return Charge(metric, model, free, tiers=tuple(tiers))


def _quota(raw: object) -> Quota:
    d = _mapping(raw, "quota", QUOTA_KEYS)
    metric = _choice(d.get("metric", "requests"), METRICS, "quota.metric")
    if "limit" not in d:
        raise ValidationError("quota.limit: required, the number of units allowed per billing period")
    limit = _count(d["limit"], "quota.limit")
    action = _choice(d.get("action", "block"), QUOTA_ACTIONS, "quota.action")
    return Quota(metric, limit, action)
