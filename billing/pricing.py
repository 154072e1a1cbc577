"""What a call costs, in integer micro-USD, from the catalog's sale prices."""

from __future__ import annotations

import re
from dataclasses import dataclass

from catalog.selectors import ModelInfo

TOKENS_PER_PRICE_UNIT = 1_000_000
_SIZE_OPTION = re.compile(r"^\d+(x|:)\d+$")


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


# --- media: priced per unit, not per token -------------------------------------


@dataclass(frozen=True, slots=True)
class MediaCharge:
    """What a media call is charged: `units` of `unit` at `unit_price`, `cost` in all.

    unit_price is the catalog's price as charged: micro-USD per image, per
    second of video, per 1M characters (speech) or per minute (transcription).
    """

    unit: str  # "image", "video_second", "character" or "audio_second"
    units: int
    unit_price: int
    cost: int


# The divisor of each unit's price: per image and per video second as they are,
# per 1M characters, per minute of audio (counted in seconds).
MEDIA_PRICE_DIVISORS = {"image": 1, "video_second": 1, "character": 1_000_000, "audio_second": 60}


def media_charge(unit: str, units: int, unit_price: int) -> MediaCharge:
    """`units` of `unit` at `unit_price`, rounded up once to a whole micro-USD, as token prices are."""
    units = max(0, int(units))
    return MediaCharge(unit, units, unit_price, -(-units * unit_price // MEDIA_PRICE_DIVISORS[unit]))


def image_unit_price(model: ModelInfo, *, size: str = "", quality: str = "") -> int:
    """The per-image price for these options: "size/quality", then size, then quality, else per_image."""
    by_option = model.per_image_by_option
    for option in (f"{size}/{quality}", size, quality):
        price = by_option.get(option)
        if isinstance(price, int) and not isinstance(price, bool):
            return price
    return model.per_image


def _is_size(option: str) -> bool:
    return bool(_SIZE_OPTION.match(option))


def image_unit_price_max(model: ModelInfo, *, size: str = "") -> int:
    """The dearest per-image price at this size, whatever the quality: the hold when the
    upstream picks the quality itself (`auto`), charged afterwards at the quality it reports."""
    prices = [model.per_image]
    for option, price in model.per_image_by_option.items():
        head, slash, _ = option.partition("/")
        if (slash and head == size) or (not slash and (option == size or not _is_size(option))):
            prices.append(price)
    return max(prices)


def image_charge(model: ModelInfo, *, images: int, size: str = "", quality: str = "") -> MediaCharge:
    return media_charge("image", images, image_unit_price(model, size=size, quality=quality))


def video_charge(model: ModelInfo, *, seconds: int) -> MediaCharge:
    return media_charge("video_second", seconds, model.per_video_second)


def speech_charge(model: ModelInfo, *, characters: int) -> MediaCharge:
    return media_charge("character", characters, model.per_1m_chars)


def transcription_charge(model: ModelInfo, *, seconds: float) -> MediaCharge:
    """Per minute of audio, counted in whole seconds (a started second counts)."""
    return media_charge("audio_second", max(0, int(-(-seconds // 1))), model.per_minute)


def usd_text(micro_usd: int) -> str:
    """Micro-USD as an exact decimal string of dollars: 1234 -> "0.001234"."""
    sign = "-" if micro_usd < 0 else ""
    whole, fraction = divmod(abs(micro_usd), 1_000_000)
    return f"{sign}{whole}.{fraction:06d}"


def cost_fields(cost_micro_usd: int) -> dict:
    """The fields Beluga adds to a client protocol's usage object: `cost` in USD (exact text) and micro-USD."""
    return {"cost": usd_text(cost_micro_usd), "cost_micro_usd": cost_micro_usd}
