"""Anthropic's Messages API wire format for the fake upstream (tests/fake_upstream.py dispatches here).

What the real API sends, from the scripted Behaviour: a Message object, or the SSE
sequence message_start, ping, content blocks (a signed thinking block when
`reasoning_text` is set; text word by word, or tool_use blocks whose input arrives
in two input_json_delta pieces), message_delta with the stop reason and the
cumulative usage, message_stop. Usage as Anthropic counts it: `input_tokens`
excludes the `cache_read_input_tokens` (Behaviour.cached_tokens).
"""

from __future__ import annotations

import json

from tests.fake_upstream import Behaviour, words

MESSAGE_ID = "msg_01FakeAnthropic0001"
SIGNATURE = "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
DEFAULT_ERROR_MESSAGES = {
    400: "messages.0.content: Input should be a valid list",
    401: "invalid x-api-key",
    403: "Your API key does not have permission to use the specified resource.",
    404: "model: claude-nonexistent",
    413: "Request exceeds the maximum allowed number of bytes.",
    429: "Number of request tokens has exceeded your per-minute rate limit.",
    500: "Internal server error",
    529: "Overloaded",
}


def _counting(path: str) -> bool:
    return path.split("?", 1)[0].rstrip("/").endswith("/count_tokens")


def _wants_tools(body: dict, b: Behaviour) -> bool:
    choice = body.get("tool_choice") or {}
    return bool(body.get("tools")) and bool(b.tool_calls) and choice.get("type") != "none"


def _usage(b: Behaviour) -> dict:
    output = b.completion_tokens if b.completion_tokens is not None else len(words(b.reply_text))
    return {
        "input_tokens": b.prompt_tokens - b.cached_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": b.cached_tokens,
        "output_tokens": output,
    }


def _content(body: dict, b: Behaviour) -> list[dict]:
    blocks = []
    if b.reasoning_text:
        blocks.append({"type": "thinking", "thinking": b.reasoning_text, "signature": SIGNATURE})
    if _wants_tools(body, b):
        blocks.extend(
            {"type": "tool_use", "id": t.id, "name": t.name, "input": json.loads(t.arguments)} for t in b.tool_calls
        )
    else:
        blocks.append({"type": "text", "text": b.reply_text, "citations": None})
    return blocks


def message(body: dict, b: Behaviour) -> dict:
    reply = {
        "id": MESSAGE_ID,
        "type": "message",
        "role": "assistant",
        "model": body.get("model", ""),
        "content": _content(body, b),
        "stop_reason": "tool_use" if _wants_tools(body, b) else "end_turn",
        "stop_sequence": None,
    }
    if not b.omit_usage:
        reply["usage"] = dict(_usage(b), service_tier="standard")
    return reply


def _frame(payload: dict) -> bytes:
    return b"event: %s\ndata: %s\n\n" % (payload["type"].encode(), json.dumps(payload, separators=(",", ":")).encode())


def _block(index: int, start: dict, deltas: list[dict]) -> list[dict]:
    return [
        {"type": "content_block_start", "index": index, "content_block": start},
        *({"type": "content_block_delta", "index": index, "delta": delta} for delta in deltas),
        {"type": "content_block_stop", "index": index},
    ]


def stream_events(body: dict, b: Behaviour) -> list[dict]:
    """Every event of one streamed reply, message_stop last."""
    start = message(body, b)
    start.update(content=[], stop_reason=None)
    if not b.omit_usage:
        start["usage"] = dict(start["usage"], output_tokens=1)
    events = [{"type": "message_start", "message": start}, {"type": "ping"}]
    index = 0
    if b.reasoning_text:
        deltas = [{"type": "thinking_delta", "thinking": w} for w in words(b.reasoning_text)]
        deltas.append({"type": "signature_delta", "signature": SIGNATURE})
        events += _block(index, {"type": "thinking", "thinking": "", "signature": ""}, deltas)
        index += 1
    if _wants_tools(body, b):
        for t in b.tool_calls:
            half = len(t.arguments) // 2
            pieces = [{"type": "input_json_delta", "partial_json": p} for p in (t.arguments[:half], t.arguments[half:])]
            events += _block(index, {"type": "tool_use", "id": t.id, "name": t.name, "input": {}}, pieces)
            index += 1
    else:
        deltas = [{"type": "text_delta", "text": w} for w in words(b.reply_text)]
        events += _block(index, {"type": "text", "text": ""}, deltas)
    delta = {"type": "message_delta", "delta": {"stop_reason": message(body, b)["stop_reason"], "stop_sequence": None}}
    if not b.omit_usage:
        delta["usage"] = _usage(b)  # cumulative, as the current API sends it
    events.append(delta)
    if not b.omit_done:
        events.append({"type": "message_stop"})
    return events


# --- the four functions every wire module offers ------------------------------------------


def is_stream(path: str, body: dict) -> bool:
    return not _counting(path) and bool(body.get("stream"))


def reply_json(path: str, body: dict, b: Behaviour) -> dict:
    if _counting(path):
        return {"input_tokens": b.prompt_tokens}
    return message(body, b)


def stream_frames(path: str, body: dict, b: Behaviour) -> list[bytes]:
    return [_frame(event) for event in stream_events(body, b)]


def error_json(status: int, b: Behaviour) -> dict:
    kind = ERROR_TYPES.get(status) or ("api_error" if status >= 500 else "invalid_request_error")
    message = b.error_message or DEFAULT_ERROR_MESSAGES.get(status, "Upstream error.")
    return {"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_011FakeAnthropic"}
