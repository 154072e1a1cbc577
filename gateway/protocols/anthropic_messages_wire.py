"""Anthropic's Messages API, what its client side (anthropic_messages.py) and its upstream
side (anthropic_messages_upstream.py) both use.
"""

from __future__ import annotations

import orjson

from gateway.errors import InvalidRequest

PROTOCOL = "anthropic"  # Thinking.origin of signatures Anthropic made
MIN_THINKING_BUDGET = 1024  # Anthropic's minimum budget_tokens


def _bad(where: str, problem: str) -> InvalidRequest:
    return InvalidRequest(f"{where}: {problem}", param=where)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _frame(payload: dict) -> bytes:
    return b"event: " + payload["type"].encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"
