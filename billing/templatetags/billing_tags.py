"""Formatting of billing values for people; the values themselves stay integers."""

from __future__ import annotations

from django import template

register = template.Library()

MICRO_PER_USD = 1_000_000


def _micro(value) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


@register.filter
def usd(micro_usd: int | None) -> str:
    """Integer micro-USD as dollars with all six decimals: 1234 -> "$0.001234"."""
    value = _micro(micro_usd)
    if value is None:
        return ""
    sign = "-" if value < 0 else ""
    dollars, micros = divmod(abs(value), MICRO_PER_USD)
    return f"{sign}${dollars:,}.{micros:06d}"


@register.filter
def usd_signed(micro_usd: int | None) -> str:
    """Like `usd`, with a plus sign on positive amounts (changes to a balance): "+$1.000000"."""
    value = _micro(micro_usd)
    if value is None:
        return ""
    return ("+" if value > 0 else "") + usd(value)


@register.filter
def usd_short(micro_usd: int | None) -> str:
    """Dollars with the decimals that matter, at least cents: 50_000_000 -> "$50.00", 1234 -> "$0.001234"."""
    text = usd(micro_usd)
    if not text:
        return ""
    whole, fraction = text.split(".")
    return f"{whole}.{fraction.rstrip('0').ljust(2, '0')}"


@register.filter
def usd_input(micro_usd: int | None) -> str:
    """Micro-USD as a plain decimal for a form field: 5_250_000 -> "5.25" (no sign of $, no commas)."""
    return usd_short(micro_usd).replace("$", "").replace(",", "")
