"""Plan files: a plan written in YAML or JSON, validated strictly, and the spec the billing code uses.

A plan is a currency, a billing interval, an optional flat `base_fee`, priced `charges` per
metric (unit, graduated, volume or package), an optional `quota` and `prepaid` flag. A charge
(or the quota) may name `models`: then it counts only their usage, so one plan prices each
generative model's input and output tokens its own way (see `plan_schema` for which charge
prices a model's usage, and `pricing` for the sums):

    free tier       quota, no prices           pay-as-you-go   one `unit` charge
    subscription    base_fee + free_units + overage tiers     prepaid   `prepaid: true`

What a file may say is the pydantic model `PlanIn` (`plan_schema`), also the typed body of
`POST /admin/plans`. Every error is one line naming the field (`charges[0].tiers[1].unit_price: ...`),
with a did-you-mean for misspelt keys. Prices are exact Decimals from strings; floats are refused.
The validated model becomes a `PlanSpec`; `PlanSpec.to_dict()` is the canonical form stored with
each plan version.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import yaml

from modelshop.billing.plan_schema import (  # noqa: F401 - the plan vocabulary, importable from here too
    CHARGE_KEYS,
    INTERVALS,
    METRICS,
    MODEL_FIELDS,
    PLAN_KEYS,
    PRICING_MODELS,
    QUOTA_ACTIONS,
    QUOTA_KEYS,
    TIER_KEYS,
    PlanIn,
)
from modelshop.errors import ValidationError


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
    models: tuple[str, ...] | None = None     # model names it prices; None: every model no other charge names


@dataclass(frozen=True)
class Quota:
    metric: str
    limit: int
    action: str = "block"
    models: tuple[str, ...] | None = None     # model names whose usage it counts; None: every model


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
            if self.quota.models:
                out["quota"]["models"] = list(self.quota.models)
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
    if c.models:
        d["models"] = list(c.models)
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
    return spec_of(PlanIn.model_validate(data))


def spec_of(plan: PlanIn) -> PlanSpec:
    """The spec of a validated plan."""
    return PlanSpec(code=plan.code, name=plan.name or plan.code, description=plan.description,
                    currency=plan.currency, interval=plan.interval, base_fee=plan.base_fee,
                    charges=tuple(_charge(c) for c in plan.charges),
                    quota=Quota(plan.quota.metric, plan.quota.limit, plan.quota.action,
                                _names(plan.quota.models)) if plan.quota else None,
                    prepaid=plan.prepaid)


def _charge(c) -> Charge:
    fields = {name: getattr(c, name) for name in MODEL_FIELDS[c.model]}
    if "tiers" in fields:
        fields["tiers"] = tuple(Tier(t.up_to, t.unit_price) for t in fields["tiers"])
    return Charge(c.metric, c.model, c.free_units, **fields, models=_names(c.models))


def _names(models: list[str] | None) -> tuple[str, ...] | None:
    return tuple(models) if models else None
