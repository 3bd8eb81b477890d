"""Money (金额) as exact minor units (分 / cents): the stores keep integers, never floats.

``to_minor(Decimal("12.34"), "CNY") == 1234``; ``from_minor(1234, "CNY") == Decimal("12.34")``.
Amounts are rounded half-up to the currency's minor unit when they come in.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

#: ISO 4217 currencies without a minor unit (everything else here has two decimals).
_ZERO_DECIMALS = frozenset({"JPY", "KRW", "VND", "CLP", "ISK"})


def decimals(currency: str) -> int:
    return 0 if currency.upper() in _ZERO_DECIMALS else 2


def parse_amount(value: object) -> Decimal:
    """A money amount from JSON (number or numeric string); raises ValueError naming the value."""
    if isinstance(value, bool) or value is None:
        raise ValueError(f"not an amount: {value!r}")
    try:
        d = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise ValueError(f"not an amount: {value!r}") from None
    if not d.is_finite():
        raise ValueError(f"not an amount: {value!r}")
    return d


def to_minor(amount: Decimal | int | str, currency: str) -> int:
    d = amount if isinstance(amount, Decimal) else parse_amount(amount)
    scale = Decimal(10) ** decimals(currency)
    return int((d * scale).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def from_minor(minor: int, currency: str) -> Decimal:
    places = decimals(currency)
    return (Decimal(minor) / (Decimal(10) ** places)).quantize(Decimal(1).scaleb(-places))
