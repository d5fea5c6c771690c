"""Money: exact `Decimal` amounts, integer minor units per currency, one rounding rule.

Floats never enter: amounts come in as strings or integers and are rounded once, ROUND_HALF_UP,
when a computed amount becomes an invoice line.
"""

from __future__ import annotations

import decimal
from decimal import ROUND_HALF_UP, Decimal

from modelshop.errors import ValidationError, did_you_mean

# ISO 4217 minor-unit exponents of the currencies a plan may use.
CURRENCIES: dict[str, int] = {
    "USD": 2, "EUR": 2, "GBP": 2, "CNY": 2, "HKD": 2, "TWD": 2, "SGD": 2, "AUD": 2, "CAD": 2,
    "NZD": 2, "CHF": 2, "SEK": 2, "NOK": 2, "DKK": 2, "PLN": 2, "CZK": 2, "INR": 2, "BRL": 2,
    "MXN": 2, "ZAR": 2, "AED": 2, "SAR": 2, "THB": 2, "MYR": 2, "IDR": 2, "PHP": 2, "TRY": 2,
    "JPY": 0, "KRW": 0, "VND": 0, "CLP": 0, "ISK": 0, "HUF": 2, "KWD": 3, "BHD": 3,
}

# Wide enough that no product of a quantity and a price is ever rounded before we round it.
CONTEXT = decimal.Context(prec=60, rounding=ROUND_HALF_UP, traps=[decimal.InvalidOperation])


def check_currency(code: str, where: str = "currency") -> str:
    if not isinstance(code, str) or code.upper() not in CURRENCIES:
        raise ValidationError(f'{where}: "{code}" is not a supported ISO 4217 currency'
                              f"{did_you_mean(str(code).upper(), CURRENCIES)}")
    return code.upper()


def exponent(currency: str) -> int:
    return CURRENCIES[currency]


def parse_decimal(value: object, where: str) -> Decimal:
    """A non-negative exact Decimal from a string or an integer; floats are refused (they are inexact)."""
    if isinstance(value, bool | float):
        raise ValidationError(f'{where}: {value!r} is a {type(value).__name__}; write amounts as strings, '
                              f'e.g. "{value}" (quoted), so they stay exact')
    if isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, str):
        try:
            result = Decimal(value.strip())
        except decimal.InvalidOperation:
            raise ValidationError(f'{where}: "{value}" is not a decimal number') from None
    elif isinstance(value, Decimal):
        result = value
    else:
        raise ValidationError(f"{where}: expected a decimal string, found {type(value).__name__}")
    if not result.is_finite() or result < 0:
        raise ValidationError(f'{where}: "{value}" must be a finite amount of zero or more')
    return result


def round_half_up(value: Decimal) -> int:
    """The one rounding rule: to a whole number, halves away from zero."""
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP, context=CONTEXT))


def to_minor(amount: Decimal, currency: str) -> int:
    """Round an exact amount once (ROUND_HALF_UP) to integer minor units of `currency`."""
    return round_half_up(CONTEXT.multiply(amount, Decimal(10) ** exponent(currency)))


def exact_minor(amount: object, currency: str, where: str) -> int:
    """Minor units of an amount that must not need rounding (a top-up, a flat fee)."""
    value = parse_decimal(amount, where)
    minor = CONTEXT.multiply(value, Decimal(10) ** exponent(currency))
    if minor != minor.to_integral_value():
        raise ValidationError(f'{where}: "{amount}" has more than {exponent(currency)} decimal places '
                              f"for {currency}")
    return int(minor)


def from_minor(minor: int, currency: str) -> Decimal:
    """Integer minor units → a Decimal with the currency's number of places."""
    places = exponent(currency)
    return (Decimal(minor).scaleb(-places)).quantize(Decimal(1).scaleb(-places))


def fmt(minor: int, currency: str) -> str:
    """Minor units as a decimal string, e.g. 1250 USD → "12.50"."""
    return str(from_minor(minor, currency))


def allocate(total: int, weights: list[int]) -> list[int]:
    """Split integer `total` in proportion to `weights` so that the parts sum exactly (largest remainder)."""
    if not weights:
        return []
    whole = sum(weights)
    if whole == 0:
        weights, whole = [1] * len(weights), len(weights)
    sign = -1 if total < 0 else 1
    quotas = [abs(total) * w for w in weights]
    parts = [q // whole for q in quotas]
    order = sorted(range(len(weights)), key=lambda i: (-(quotas[i] % whole), i))
    for i in order[: abs(total) - sum(parts)]:
        parts[i] += 1
    return [sign * p for p in parts]
