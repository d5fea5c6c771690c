"""Pricing: a plan and a period's metered usage per model → invoice lines, each rounded once.

Pure functions on exact Decimals; no database here. A line's amount is computed exactly and
rounded to minor units only when the line is made (`money.to_minor`, ROUND_HALF_UP).

Usage comes per model NAME (`Usage`: name → metric → units), because a charge may name the
models it prices: per metric, a model's units go to the charge naming it, else to the metric's
charge without `models`, else to none (`charge_for`). Each charge is then priced on the sum of
its models' units, so free units and tiers count the usage of all the models it covers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from modelshop.billing.money import CONTEXT, exponent, round_half_up, to_minor
from modelshop.billing.plans import Charge, PlanSpec, Quota
from modelshop.gate import TokenPrices

Usage = Mapping[str, Mapping[str, int]]   # model NAME → metric → units


@dataclass(frozen=True)
class Line:
    kind: str                   # base_fee | usage | discount
    metric: str | None
    description: str
    quantity: Decimal
    unit_price: Decimal | None
    amount_minor: int
    models: tuple[str, ...] | None = None   # a usage line: the model names it priced; None: every model


def charge_for(plan: PlanSpec, metric: str, model: str) -> int | None:
    """Which of `plan.charges` (its index) prices `metric` for model NAME `model`: the charge naming
    the model, else the metric's charge without models, else None (not charged)."""
    general = None
    for i, c in enumerate(plan.charges):
        if c.metric == metric:
            if c.models is None:
                general = i
            elif model in c.models:
                return i
    return general


def charge_key(charge: Charge) -> str:
    """A name for what a charge counts, the same in every plan: "input_tokens@smollm2", "requests@*" (a
    charge without models)."""
    return f"{charge.metric}@{','.join(charge.models) if charge.models else '*'}"


def charge_models(plan: PlanSpec, index: int, usage: Usage) -> tuple[str, ...] | None:
    """The model names whose usage charge `index` prices: those it names; for a charge without models,
    None (every model) unless another charge of its metric names some, then the other models used."""
    charge = plan.charges[index]
    if charge.models is not None:
        return charge.models
    if not any(c.metric == charge.metric and c.models for c in plan.charges):
        return None
    return tuple(sorted(m for m, units in usage.items()
                        if units.get(charge.metric) and charge_for(plan, charge.metric, m) == index))


def charge_quantities(plan: PlanSpec, usage: Usage) -> list[int]:
    """The units each of `plan.charges` prices (in plan order)."""
    out = [0] * len(plan.charges)
    for model, units in usage.items():
        for metric, n in units.items():
            i = charge_for(plan, metric, model)
            if i is not None:
                out[i] += int(n)
    return out


def quota_used(quota: Quota, usage: Usage) -> int:
    """The units `quota` counts: its metric over the models it names (every model without `models`)."""
    return sum(int(units.get(quota.metric, 0)) for model, units in usage.items()
               if quota.models is None or model in quota.models)


def charge_amount(charge: Charge, quantity: int) -> tuple[Decimal, str, Decimal | None]:
    """The exact amount of `quantity` units under `charge`, a description, and the unit price if single."""
    billable = max(0, quantity - charge.free_units)
    free = f"{min(quantity, charge.free_units):,} free, " if charge.free_units else ""
    mul = CONTEXT.multiply
    if charge.model == "unit":
        assert charge.unit_price is not None
        return mul(charge.unit_price, billable), f"{free}{billable:,} @ {charge.unit_price:f}", charge.unit_price
    if charge.model == "package":
        assert charge.package_size and charge.package_price is not None
        packages = -(-billable // charge.package_size)
        return (mul(charge.package_price, packages),
                f"{free}{packages:,} × {charge.package_size:,} @ {charge.package_price:f}", None)
    if charge.model == "volume":
        for tier in charge.tiers:
            if tier.up_to is None or billable <= tier.up_to:
                return mul(tier.unit_price, billable), f"{free}{billable:,} @ {tier.unit_price:f} (volume)", \
                    tier.unit_price
    # graduated: each unit priced by the tier it falls in
    total, parts, lower = Decimal(0), [], 0
    for tier in charge.tiers:
        upper = billable if tier.up_to is None else min(billable, tier.up_to)
        n = max(0, upper - lower)
        if n:
            total = CONTEXT.add(total, mul(tier.unit_price, n))
            parts.append(f"{n:,} @ {tier.unit_price:f}")
        if tier.up_to is None or billable <= tier.up_to:
            break
        lower = tier.up_to
    return total, free + (", ".join(parts) or "0 billable"), None


def first_unit_price(charge: Charge) -> Decimal:
    """The price of a charge's first billable unit (a package's price spread over its units)."""
    if charge.model == "unit":
        assert charge.unit_price is not None
        return charge.unit_price
    if charge.model == "package":
        assert charge.package_size and charge.package_price is not None
        return CONTEXT.divide(charge.package_price, Decimal(charge.package_size))
    return charge.tiers[0].unit_price


# what a generative call's input and output tokens are charged under: their own metric, and `tokens`
# (every token a model reads or writes, a generative call's input + output)
TOKEN_METRICS = {"input": ("input_tokens", "tokens"), "output": ("output_tokens", "tokens")}
MILLION = Decimal(1_000_000)


def per_million(plan: PlanSpec, model: str, metrics: Sequence[str]) -> Decimal | None:
    """What one million tokens of model NAME `model` cost at the first billable unit's price, summed over
    the charges of `metrics` that price its usage; None when none does."""
    prices = [first_unit_price(plan.charges[i]) for m in metrics if (i := charge_for(plan, m, model)) is not None]
    return None if not prices else CONTEXT.multiply(sum(prices, Decimal(0)), MILLION)


def decimal_text(value: Decimal, currency: str) -> str:
    """An exact amount as text with at least the currency's places: 0.2 USD → "0.20", 0.0375 → "0.0375"."""
    value, places = value.normalize(context=CONTEXT), exponent(currency)
    if -value.as_tuple().exponent < places:
        value = value.quantize(Decimal(1).scaleb(-places), context=CONTEXT)
    return f"{value:f}"


def token_prices(plan: PlanSpec, model: str) -> TokenPrices | None:
    """The plan's price per million input and output tokens of model NAME `model` (a charge on `tokens`
    prices both; graduated and volume charges at their first tier); None when it charges neither."""
    found = {side: per_million(plan, model, metrics) for side, metrics in TOKEN_METRICS.items()}
    if all(v is None for v in found.values()):
        return None
    text = {side: None if v is None else decimal_text(v, plan.currency) for side, v in found.items()}
    return TokenPrices(currency=plan.currency, input_per_million=text["input"], output_per_million=text["output"])


def plan_lines(plan: PlanSpec, usage: Usage, *, base_fee: bool = True, extra: Sequence[int] = ()) -> list[Line]:
    """One line for the base fee (when due) and one per charge, in plan order. `extra`: units per
    charge on top of `usage` (the calls under way, for the wallet check)."""
    lines = []
    if plan.base_fee is not None and base_fee:
        lines.append(Line("base_fee", None, f"{plan.name} base fee ({plan.interval})", Decimal(1),
                          plan.base_fee, to_minor(plan.base_fee, plan.currency)))
    quantities = charge_quantities(plan, usage)
    for i, charge in enumerate(plan.charges):
        quantity = quantities[i] + (extra[i] if i < len(extra) else 0)
        models = charge_models(plan, i, usage)
        amount, detail, unit_price = charge_amount(charge, quantity)
        lines.append(Line("usage", charge.metric, f"{charge.metric} ({charge.model}{_which(charge, models)}): {detail}",
                          Decimal(quantity), unit_price, to_minor(amount, plan.currency), models))
    return lines


def _which(charge: Charge, models: tuple[str, ...] | None) -> str:
    if charge.models:
        return ", " + ", ".join(charge.models)
    return "" if models is None else ", other models"


def discount_line(subtotal_minor: int, discount_bp: int, reseller: str) -> Line | None:
    """The reseller's wholesale discount on the subtotal, rounded once; None without a discount."""
    if not discount_bp or subtotal_minor <= 0:
        return None
    percent = Decimal(discount_bp).scaleb(-2)
    amount = round_half_up(CONTEXT.multiply(Decimal(subtotal_minor), percent).scaleb(-2))  # minor units already
    return Line("discount", None, f"reseller {reseller}: {percent.normalize():f}% wholesale discount",
                percent, None, -amount)


def usage_charges_minor(plan: PlanSpec, usage: Usage, extra: Sequence[int] = ()) -> int:
    """What a period's usage so far costs (base fee excluded; `extra` as in `plan_lines`): the prepaid
    balance check."""
    return sum(line.amount_minor for line in plan_lines(plan, usage, base_fee=False, extra=extra))
