"""Display helpers for the dashboard."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from django import template

register = template.Library()

CENT = Decimal("0.01")
COST_QUANTUM = Decimal("0.00000001")  # costs are kept to 1e-8 EUR


def eur_format(value: Decimal | float | str | None) -> str:
    """EUR amount for people: cents from one cent up; below that the significant digits
    (a single call often costs a few millionths of a euro, which must not read as 0.00)."""
    if value is None:
        return "0.00"
    try:
        amount = Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        return "0.00"
    if amount == 0 or abs(amount) >= CENT:
        return str(amount.quantize(CENT, rounding=ROUND_HALF_UP))
    small = amount.quantize(COST_QUANTUM, rounding=ROUND_HALF_UP).normalize()
    return f"{small:f}"


@register.filter
def eur(value: Decimal | float | str | None) -> str:
    return eur_format(value)
