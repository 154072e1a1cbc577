"""What a call costs, in integer micro-USD, from the catalog's sale prices."""

from __future__ import annotations

from dataclasses import dataclass

from catalog.selectors import ModelInfo

TOKENS_PER_PRICE_UNIT = 1_000_000


@dataclass(frozen=True, slots=True)
class ChargedPrices:
    """The unit prices a call is charged at (micro-USD per 1M tokens), kept on its usage record."""

    input_per_1m: int = 0
    output_per_1m: int = 0
    cached_input_per_1m: int = 0
    cache_write_per_1m: int = 0


def charged_prices(model: ModelInfo) -> ChargedPrices:
    """The model's unit prices, a missing cache price read as the input price."""
    input_price = model.input_per_1m
    return ChargedPrices(
        input_per_1m=input_price,
        output_per_1m=model.output_per_1m,
        cached_input_per_1m=input_price if model.cached_input_per_1m is None else model.cached_input_per_1m,
        cache_write_per_1m=input_price if model.cache_write_per_1m is None else model.cache_write_per_1m,
    )


def token_cost(
    *, model: ModelInfo, input_tokens: int, output_tokens: int, cached_tokens: int = 0, cache_write_tokens: int = 0
) -> int:
    """Token cost, rounded up once per call to a whole micro-USD.

    Input tokens read from or written to the provider's prompt cache are priced
    at the model's cache prices when it has them (the input price otherwise);
    reasoning tokens are output tokens. Prices are per 1M tokens, so a call
    usually costs a fraction of a micro-USD per token; rounding the sum (not
    each part) up keeps the error under one micro-USD per call and never
    below the true price.
    """
    cached = min(cached_tokens, input_tokens)
    written = min(cache_write_tokens, input_tokens - cached)
    prices = charged_prices(model)
    numerator = (
        (input_tokens - cached - written) * prices.input_per_1m
        + cached * prices.cached_input_per_1m
        + written * prices.cache_write_per_1m
        + output_tokens * prices.output_per_1m
    )
    return -(-numerator // TOKENS_PER_PRICE_UNIT)


def max_token_cost(*, model: ModelInfo, input_tokens: int, output_tokens: int) -> int:
    """The most a call of this size can cost: every input token at the dearest input price.

    (Writing to a provider's prompt cache can cost more than plain input.)
    """
    prices = charged_prices(model)
    input_price = max(prices.input_per_1m, prices.cached_input_per_1m, prices.cache_write_per_1m)
    numerator = input_tokens * input_price + output_tokens * prices.output_per_1m
    return -(-numerator // TOKENS_PER_PRICE_UNIT)


def usd_text(micro_usd: int) -> str:
    """Micro-USD as an exact decimal string of dollars: 1234 -> "0.001234"."""
    sign = "-" if micro_usd < 0 else ""
    whole, fraction = divmod(abs(micro_usd), 1_000_000)
    return f"{sign}{whole}.{fraction:06d}"


def cost_fields(cost_micro_usd: int) -> dict:
    """The fields Beluga adds to a client protocol's usage object: `cost` in USD (exact text) and micro-USD."""
    return {"cost": usd_text(cost_micro_usd), "cost_micro_usd": cost_micro_usd}
