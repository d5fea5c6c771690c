"""Pricing: a plan and a period's metered quantities → invoice lines, each rounded once.

Pure functions on exact Decimals; no database here. A line's amount is computed exactly and
rounded to minor units only when the line is made (`money.to_minor`, ROUND_HALF_UP).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from modelshop.billing.money import CONTEXT, round_half_up, to_minor
from modelshop.billing.plans import Charge, PlanSpec


@dataclass(frozen=True)
class Line:
    kind: str                   # base_fee | usage | discount
    metric: str | None
    description: str
    quantity: Decimal
    unit_price: Decimal | None
    amount_minor: int


def charge_amount(charge: Charge, quantity: int) -> tuple[Decimal, str, Decimal | None]:
    """The exact amount of `quantity` units under `charge`, a description, and the unit price if single."""
    billable = max(0, quantity - charge.free_units)
    free = f"{min(quantity, charge.free_units):,} free, " if charge.free_units else ""
    mul = CONTEXT.multiply
    if charge.model == "unit":
        assert charge.unit_price is not None
        return mul(charge.unit_price, billable), f"{free}{billable:,} @ {charge.unit_price}", charge.unit_price
    if charge.model == "package":
        assert charge.package_size and charge.package_price is not None
        packages = -(-billable // charge.package_size)
        return (mul(charge.package_price, packages),
                f"{free}{packages:,} × {charge.package_size:,} @ {charge.package_price}", None)
    if charge.model == "volume":
        for tier in charge.tiers:
            if tier.up_to is None or billable <= tier.up_to:
                return mul(tier.unit_price, billable), f"{free}{billable:,} @ {tier.unit_price} (volume)", \
                    tier.unit_price
    # graduated: each unit priced by the tier it falls in
    total, parts, lower = Decimal(0), [], 0
    for tier in charge.tiers:
        upper = billable if tier.up_to is None else min(billable, tier.up_to)
        n = max(0, upper - lower)
        if n:
            total = CONTEXT.add(total, mul(tier.unit_price, n))
            parts.append(f"{n:,} @ {tier.unit_price}")
        if tier.up_to is None or billable <= tier.up_to:
            break
        lower = tier.up_to
    return total, free + (", ".join(parts) or "0 billable"), None


def plan_lines(plan: PlanSpec, quantities: dict[str, int], *, base_fee: bool = True) -> list[Line]:
    """One line for the base fee (when due) and one per charge, in plan order."""
    lines = []
    if plan.base_fee is not None and base_fee:
        lines.append(Line("base_fee", None, f"{plan.name} base fee ({plan.interval})", Decimal(1),
                          plan.base_fee, to_minor(plan.base_fee, plan.currency)))
    for charge in plan.charges:
        quantity = int(quantities.get(charge.metric, 0))
        amount, detail, unit_price = charge_amount(charge, quantity)
        lines.append(Line("usage", charge.metric, f"{charge.metric} ({charge.model}): {detail}",
                          Decimal(quantity), unit_price, to_minor(amount, plan.currency)))
    return lines


def discount_line(subtotal_minor: int, discount_bp: int, reseller: str) -> Line | None:
    """The reseller's wholesale discount on the subtotal, rounded once; None without a discount."""
    if not discount_bp or subtotal_minor <= 0:
        return None
    percent = Decimal(discount_bp).scaleb(-2)
    amount = round_half_up(CONTEXT.multiply(Decimal(subtotal_minor), percent).scaleb(-2))  # minor units already
    return Line("discount", None, f"reseller {reseller}: {percent.normalize():f}% wholesale discount",
                percent, None, -amount)


def usage_charges_minor(plan: PlanSpec, quantities: dict[str, int]) -> int:
    """What a period's usage so far costs (base fee excluded): the prepaid balance check."""
    return sum(line.amount_minor for line in plan_lines(plan, quantities, base_fee=False))
