"""What a call costs, in integer micro-USD, from the catalog's sale prices."""

from __future__ import annotations

from catalog.selectors import ModelInfo

TOKENS_PER_PRICE_UNIT = 1_000_000


def chat_cost(*, model: ModelInfo, prompt_tokens: int, completion_tokens: int) -> int:
    """Token cost, rounded up once per call to a whole micro-USD.

    Prices are per 1M tokens, so a call usually costs a fraction of a
    micro-USD per token; rounding the sum (not each part) up keeps the error
    under one micro-USD per call and never below the true price.
    """
    numerator = prompt_tokens * model.input_per_1m + completion_tokens * model.output_per_1m
    return -(-numerator // TOKENS_PER_PRICE_UNIT)
