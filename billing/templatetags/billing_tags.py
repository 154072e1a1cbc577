"""Formatting of billing values for people; the values themselves stay integers."""

from __future__ import annotations

from django import template

register = template.Library()

MICRO_PER_USD = 1_000_000


@register.filter
def usd(micro_usd: int | None) -> str:
    """Integer micro-USD as dollars with all six decimals: 1234 -> "$0.001234"."""
    if micro_usd is None or micro_usd == "":
        return ""
    try:
        value = int(micro_usd)
    except (TypeError, ValueError):
        return ""
    sign = "-" if value < 0 else ""
    dollars, micros = divmod(abs(value), MICRO_PER_USD)
    return f"{sign}${dollars:,}.{micros:06d}"
