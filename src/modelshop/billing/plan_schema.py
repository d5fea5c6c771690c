"""What a plan file may say: pydantic models, also the body and OpenAPI schema of `POST /admin/plans`.

    PlanIn        code, name, description, currency, interval, base_fee, charges, quota, prepaid
    charges[]     one of four shapes, told apart by `model` (a discriminated union):
                  unit (unit_price) | graduated, volume (tiers) | package (package_size, package_price);
                  each may name `models` (model names, no version) to price only their usage
    TierIn        up_to (null: unbounded, the last tier only), unit_price
    QuotaIn       metric, limit, action, models

Per metric, each model's usage is priced by one charge: the charge naming that model, else the
metric's charge without `models` (which so prices "every other model"), else none. A model named
by two charges of one metric, or two charges of one metric without `models`, is refused.

Each field carries its own check, written to give the message of the old hand-written parser;
`PlanIn.model_validate` turns whatever pydantic collected into one line naming the field
(`charges[0].tiers[1].up_to: 5 must be greater than ...`, with "did you mean" for misspelt keys)
and raises it as the project's `ValidationError`. It raises that (not pydantic's error) so the
HTTP route, typed with `PlanIn`, answers with the same line as the CLI: FastAPI passes any error
but pydantic's own on to the server's one error handler.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, model_validator
from pydantic import ValidationError as PydanticError
from pydantic_core import PydanticCustomError

from modelshop.billing.money import check_currency, exact_minor, parse_decimal
from modelshop.errors import ValidationError, did_you_mean
from modelshop.registry import NAME_RE as MODEL_NAME_RE

METRICS = ("requests", "tokens", "characters", "input_tokens", "output_tokens")
PRICING_MODELS = ("unit", "graduated", "volume", "package")
INTERVALS = ("month", "year")
QUOTA_ACTIONS = ("block", "allow")
CODE_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


# --- one check per kind of field, each failing with the message the user reads -------------------

def _problem(message: str, at: str = "") -> PydanticCustomError:
    """A failed check; `at` locates it below the field it is attached to (e.g. "[1].up_to")."""
    return PydanticCustomError("plan", "{message}", {"message": message, "at": at})


def _unplaced(e: ValidationError) -> PydanticCustomError:
    # money's checks start their message with "where: "; pydantic knows where, so it is left out
    return _problem(e.message.removeprefix(": "))


MAX_AMOUNT = Decimal(10) ** 15  # times any count of units, still exact in the 60 digits money computes with


def _amount(value: object) -> Decimal:
    try:
        amount = parse_decimal(value, "")
    except ValidationError as e:
        raise _unplaced(e) from None
    if amount >= MAX_AMOUNT:
        raise _problem(f'"{value}" is too large; amounts must be below 10^15')
    return amount


def _currency(value: object) -> str:
    try:
        return check_currency(value, "")  # type: ignore[arg-type]
    except ValidationError as e:
        raise _unplaced(e) from None


def _code(value: object) -> str:
    if not isinstance(value, str) or not CODE_RE.match(value):
        raise _problem(f'{value!r} must be lower-case letters, digits, "-" or "_" (max 64), e.g. "pro"')
    return value


def _choice(choices: tuple[str, ...]):
    def check(value: object) -> object:
        if value not in choices:
            raise _problem(f'"{value}" is not one of {", ".join(choices)}{did_you_mean(str(value), choices)}')
        return value
    return check


def _count(minimum: int, nullable: bool = False):
    def check(value: object) -> object:
        if value is None and nullable:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise _problem(f"expected a whole number of at least {minimum}, found {value!r}")
        return value
    return check


def _text(value: object) -> object:
    if not isinstance(value, str):
        raise _problem(f"expected text, found {type(value).__name__}")
    return value


def _flag(value: object) -> object:
    if not isinstance(value, bool):
        raise _problem(f"expected true or false, found {value!r}")
    return value


def _list_of(what: str, empty_ok: bool):
    def check(value: object) -> object:
        if value is None and empty_ok:
            return []
        if not isinstance(value, list) or not (value or empty_ok):
            raise _problem(f"expected a {'' if empty_ok else 'non-empty '}list of {what}")
        return value
    return check


def _model_names(value: object) -> object:
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        raise _problem('expected a non-empty list of model names, e.g. ["smollm2"] (leave it out for every model)')
    for i, name in enumerate(value):
        if not isinstance(name, str):
            raise _problem(f"expected a model name (text), found {type(name).__name__}", at=f"[{i}]")
        if ":" in name and MODEL_NAME_RE.match(name.partition(":")[0]):
            raise _problem(f'"{name}": name the model without its version ("{name.partition(":")[0]}"); '
                           "a charge applies to every version", at=f"[{i}]")
        if not MODEL_NAME_RE.match(name):
            raise _problem(f'"{name}" is not a model name (letters, digits, "_", "." or "-", max 100)', at=f"[{i}]")
        if name in value[:i]:
            raise _problem(f'"{name}" is named twice', at=f"[{i}]")
    return value


Amount = Annotated[Decimal, BeforeValidator(_amount), WithJsonSchema(
    {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?$", "examples": ["0.002"],
     "description": "a decimal amount written as a string, so it stays exact (floats are refused)"})]
Metric = Annotated[Literal[METRICS], BeforeValidator(_choice(METRICS))]
Text = Annotated[str, BeforeValidator(_text)]
Models = Annotated[list[str] | None, BeforeValidator(_model_names), Field(
    description="model names (no version) this applies to; leave it out for every model")]


def _tier_order(tiers: list[TierIn]) -> list[TierIn]:
    previous = 0
    for i, t in enumerate(tiers):
        if t.up_to is None and i < len(tiers) - 1:
            raise _problem("only the last tier may be unbounded (null)", at=f"[{i}].up_to")
        if t.up_to is not None:
            if t.up_to <= previous:
                raise _problem(f"{t.up_to} must be greater than the previous tier's {previous}", at=f"[{i}].up_to")
            previous = t.up_to
    if tiers[-1].up_to is not None:
        raise _problem("the last tier must be unbounded (up_to: null) so every quantity has a price",
                       at=f"[{len(tiers) - 1}].up_to")
    return tiers


# --- the shapes ----------------------------------------------------------------------------------

class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TierIn(_Strict):
    up_to: Annotated[Annotated[int, Field(ge=1)] | None, BeforeValidator(_count(1, nullable=True))] = Field(
        None, description="inclusive upper bound of the tier; null: no bound (the last tier)")
    unit_price: Amount = Field(description="price of each unit in this tier")


Tiers = Annotated[list[TierIn], BeforeValidator(_list_of("{up_to, unit_price}", empty_ok=False)),
                  AfterValidator(_tier_order), Field(min_length=1)]


class _Charge(_Strict):
    metric: Metric = Field(description=f"one of {', '.join(METRICS)} (what is counted)")
    free_units: Annotated[int, BeforeValidator(_count(0)), Field(ge=0)] = Field(
        0, description="units per period before the price applies")
    models: Models = None


class UnitChargeIn(_Charge):
    """Every billable unit at one price (pay as you go)."""
    model: Literal["unit"]
    unit_price: Amount


class GraduatedChargeIn(_Charge):
    """Each tier prices the units that fall inside it."""
    model: Literal["graduated"]
    tiers: Tiers


class VolumeChargeIn(_Charge):
    """The tier the whole quantity reaches prices every unit."""
    model: Literal["volume"]
    tiers: Tiers


class PackageChargeIn(_Charge):
    """A price per started package of `package_size` units."""
    model: Literal["package"]
    package_size: Annotated[int, BeforeValidator(_count(1)), Field(ge=1)]
    package_price: Amount


CHARGE_SHAPES: dict[str, type[_Charge]] = {"unit": UnitChargeIn, "graduated": GraduatedChargeIn,
                                           "volume": VolumeChargeIn, "package": PackageChargeIn}
ChargeIn = Annotated[UnitChargeIn | GraduatedChargeIn | VolumeChargeIn | PackageChargeIn,
                     Field(discriminator="model")]


class QuotaIn(_Strict):
    metric: Metric = Field("requests", description="what the limit counts")
    limit: Annotated[int, BeforeValidator(_count(0)), Field(ge=0)] = Field(
        description="the number of units allowed per billing period")
    action: Annotated[Literal[QUOTA_ACTIONS], BeforeValidator(_choice(QUOTA_ACTIONS))] = Field(
        "block", description="over the limit: block (402) or allow (and bill the overage)")
    models: Models = None


class PlanIn(_Strict):
    """A plan as written in a plan file (YAML or JSON) or sent to `POST /admin/plans`."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"code": "pro", "name": "Pro", "currency": "USD", "interval": "month", "base_fee": "49.00",
         "charges": [{"metric": "tokens", "model": "graduated", "free_units": 100000,
                      "tiers": [{"up_to": 1000000, "unit_price": "0.00002"},
                                {"up_to": None, "unit_price": "0.00001"}]},
                     {"metric": "input_tokens", "model": "unit", "unit_price": "0.0000002", "models": ["smollm2"]},
                     {"metric": "output_tokens", "model": "unit", "unit_price": "0.0000006", "models": ["smollm2"]}],
         "quota": {"metric": "requests", "limit": 1000000, "action": "allow"}}]})

    code: Annotated[str, BeforeValidator(_code)] = Field(
        description='lower-case letters, digits, "-" or "_" (max 64), e.g. "pro"')
    name: Text = Field("", description="shown to customers; default: the code")
    description: Text = ""
    currency: Annotated[str, BeforeValidator(_currency)] = Field(description='ISO 4217 code, e.g. "USD"')
    interval: Annotated[Literal[INTERVALS], BeforeValidator(_choice(INTERVALS))] = "month"
    base_fee: Amount | None = Field(None, description="flat fee per period")
    charges: Annotated[list[ChargeIn], BeforeValidator(_list_of("charges", empty_ok=True))] = Field(
        default_factory=list, description="per metric, at most one for each model and one without models")
    quota: QuotaIn | None = None
    prepaid: Annotated[bool, BeforeValidator(_flag)] = Field(
        False, description="usage draws on the customer's prepaid credits")

    @model_validator(mode="after")
    def _whole_plan(self) -> PlanIn:
        if self.base_fee is not None:
            try:
                exact_minor(self.base_fee, self.currency, "base_fee")
            except ValidationError as e:
                raise _problem(e.message) from None
        seen: set[tuple[str, str | None]] = set()
        for i, c in enumerate(self.charges):
            for name in c.models or [None]:
                if (c.metric, name) not in seen:
                    seen.add((c.metric, name))
                elif name is None:
                    raise _problem(f'"{c.metric}" is charged twice; use one charge per metric (or name the '
                                   "models each applies to)", at=f"charges[{i}].metric")
                else:
                    raise _problem(f'"{c.metric}" of model "{name}" is charged twice; name each model in one '
                                   f"{c.metric} charge", at=f"charges[{i}].models")
        if not self.charges and self.base_fee is None and self.quota is None:
            raise _problem("plan has no charges, no base_fee and no quota; a free tier needs at least a quota")
        return self

    @model_validator(mode="wrap")
    @classmethod
    def _one_line(cls, data: Any, handler) -> PlanIn:
        try:
            return handler(data)
        except PydanticError as e:
            raise ValidationError(describe(e.errors())) from None


# the price fields each pricing model takes (beyond metric, model, free_units)
MODEL_FIELDS = {model: tuple(f for f in shape.model_fields if f not in _Charge.model_fields and f != "model")
                for model, shape in CHARGE_SHAPES.items()}
PLAN_KEYS = tuple(PlanIn.model_fields)
CHARGE_KEYS = ("metric", "model", "free_units", "models", *dict.fromkeys(f for fs in MODEL_FIELDS.values() for f in fs))
TIER_KEYS = tuple(TierIn.model_fields)
QUOTA_KEYS = tuple(QuotaIn.model_fields)


# --- pydantic's errors as one line ---------------------------------------------------------------

def describe(errors: list[dict]) -> str:
    """The one error the user sees: an unknown field first (a misspelt key also leaves its
    real name missing), else the first in field order."""
    first = min(errors, key=lambda e: e["type"] not in ("extra_forbidden", "invalid_key"))
    if first["type"] == "invalid_key":  # a key that is not text (YAML's `5: x`) is unknown too
        first = {**first, "type": "extra_forbidden", "loc": (*first["loc"][:-1], str(first["loc"][-1]))}
    path, shape = _place(first["loc"])
    kind, ctx, given = first["type"], first.get("ctx") or {}, first.get("input")
    if kind == "plan":
        at = ctx.get("at", "")
        path = path + at if at.startswith("[") or not path else f"{path}.{at}" if at else path
        return f"{path}: {ctx['message']}" if path else ctx["message"]
    field = path.rpartition(".")[2].partition("[")[0]
    if kind == "extra_forbidden":
        parent = path.rpartition(".")[0]
        if shape in MODEL_FIELDS and field in CHARGE_KEYS:
            return (f"{path}: not used by a {shape} charge; a {shape} charge takes "
                    f"{' and '.join(MODEL_FIELDS[shape])}")
        allowed = _KEYS[_owner(parent, shape)]
        return f"{path}: unknown field{did_you_mean(field, allowed)}; allowed: {', '.join(allowed)}"
    if kind == "missing":
        if shape in MODEL_FIELDS and field in MODEL_FIELDS[shape]:
            return f"{path}: required for a {shape} charge"
        hint = _hint(_owner(path.rpartition(".")[0], shape), field)
        return f"{path}: required" + (f", {hint}" if hint else "")
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        tag = given.get("model") if isinstance(given, dict) else None
        found = f'"{tag}" is not one of' if kind == "union_tag_invalid" else "required, one of"
        return f"{path}.model: {found} {', '.join(PRICING_MODELS)}{did_you_mean(str(tag), PRICING_MODELS)}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"{path or 'plan'}: expected a mapping of fields, found {type(given).__name__}"
    return f"{path or 'plan'}: {first['msg']}"


def _place(loc: tuple) -> tuple[str, str | None]:
    """`charges[0].tiers[1].up_to` from pydantic's location, without the union's tag, and that tag."""
    parts: list[str] = []
    shape = None
    for i, x in enumerate(loc):
        if i >= 2 and loc[i - 2] == "charges" and isinstance(loc[i - 1], int) and x in CHARGE_SHAPES:
            shape = x
            continue
        parts.append(f"[{x}]" if isinstance(x, int) else f".{x}")
    return "".join(parts).lstrip("."), shape


def _owner(parent: str, shape: str | None) -> str:
    """Which object a path's parent is: plan, charge, tier or quota."""
    last = parent.rpartition(".")[2]
    if last.startswith("tiers["):
        return "tier"
    if last.startswith("charges["):
        return "charge"
    return "quota" if last == "quota" else "plan"


_KEYS = {"plan": PLAN_KEYS, "charge": CHARGE_KEYS, "tier": TIER_KEYS, "quota": QUOTA_KEYS}
_SHAPE_OF = {"plan": PlanIn, "charge": UnitChargeIn, "tier": TierIn, "quota": QuotaIn}


def _hint(owner: str, field: str) -> str:
    info = _SHAPE_OF[owner].model_fields.get(field)
    return (info.description or "") if info else ""
