"""OpenAI's Responses API wire format for the fake upstream (POST .../responses).

What the real API sends, from the scripted Behaviour: a Response object, or its typed
SSE events (`event: <type>` and `data: <json>`, a sequence_number on each, counting from
0): response.created and response.in_progress, then each output item's events from
output_item.added to output_item.done — a reasoning item with a summary (word by word)
when `reasoning_text` is set, its encrypted_content only when the request includes
"reasoning.encrypted_content"; the text word by word; or, when the request offers tools
and the test scripts calls, function_call items whose arguments arrive in two deltas —
then response.completed (left out with `omit_done`). Usage as OpenAI counts it:
input_tokens include the cached_tokens, output_tokens include the reasoning_tokens.
"""

from __future__ import annotations

import json

from tests.fake_upstream import DEFAULT_ERROR_MESSAGES, ERROR_BODIES, Behaviour, words

RESPONSE_ID = "resp_0fake68c0ffee0001"
CREATED_AT = 1_760_000_000
# A Fernet token, as OpenAI's encrypted reasoning is.
ENCRYPTED_CONTENT = "gAAAAABpFakeEncryptedReasoning-0001_QmVsdWdhIGZha2UgcmVhc29uaW5nIHBheWxvYWQ="
REASONING_ID = "rs_0fake68c0ffee0001"
MESSAGE_ID = "msg_0fake68c0ffee0001"


def _call_id(index: int) -> str:
    return f"fc_0fake68c0ffee{index:04d}"


def _wants_tools(body: dict, b: Behaviour) -> bool:
    return bool(body.get("tools")) and bool(b.tool_calls) and body.get("tool_choice") != "none"


def _usage(b: Behaviour) -> dict:
    output = b.completion_tokens if b.completion_tokens is not None else len(words(b.reply_text))
    return {
        "input_tokens": b.prompt_tokens,
        "input_tokens_details": {"cached_tokens": b.cached_tokens},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": b.reasoning_tokens},
        "total_tokens": b.prompt_tokens + output,
    }


def _response(body: dict, b: Behaviour, *, status: str, output: list[dict], usage: dict | None) -> dict:
    """The Response object, echoing the request's settings as the real API does."""
    reasoning = body.get("reasoning") or {}
    return {
        "id": RESPONSE_ID,
        "object": "response",
        "created_at": CREATED_AT,
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "max_tool_calls": None,
        "model": body.get("model", ""),
        "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": None,
        "prompt_cache_key": body.get("prompt_cache_key"),
        "reasoning": {"effort": reasoning.get("effort", "medium"), "summary": reasoning.get("summary")},
        "safety_identifier": body.get("safety_identifier"),
        "service_tier": body.get("service_tier") or "default",
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": body.get("text") or {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_logprobs": 0,
        "top_p": body.get("top_p", 1.0),
        "truncation": "disabled",
        "usage": usage,
        "user": None,
        "metadata": body.get("metadata") or {},
    }


def _reasoning_item(body: dict, b: Behaviour, *, done: bool) -> dict:
    item = {"id": REASONING_ID, "type": "reasoning", "summary": []}
    if done:
        item["summary"] = [{"type": "summary_text", "text": b.reasoning_text}]
        wants = "reasoning.encrypted_content" in (body.get("include") or ())
        item["encrypted_content"] = ENCRYPTED_CONTENT if wants else None
    return item


def _output_text(text: str) -> dict:
    return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}


def _message_item(text: str, *, done: bool) -> dict:
    return {
        "id": MESSAGE_ID,
        "type": "message",
        "status": "completed" if done else "in_progress",
        "role": "assistant",
        "content": [_output_text(text)] if done else [],
    }


def _call_item(index: int, call, *, done: bool) -> dict:
    return {
        "id": _call_id(index),
        "type": "function_call",
        "status": "completed" if done else "in_progress",
        "arguments": call.arguments if done else "",
        "call_id": call.id,
        "name": call.name,
    }


def output(body: dict, b: Behaviour) -> list[dict]:
    items = [_reasoning_item(body, b, done=True)] if b.reasoning_text else []
    if _wants_tools(body, b):
        items += [_call_item(i, call, done=True) for i, call in enumerate(b.tool_calls)]
    else:
        items.append(_message_item(b.reply_text, done=True))
    return items


def response(body: dict, b: Behaviour) -> dict:
    usage = None if b.omit_usage else _usage(b)
    return _response(body, b, status="completed", output=output(body, b), usage=usage)


def stream_events(body: dict, b: Behaviour) -> list[dict]:
    """Every event of one streamed reply, in order, without sequence numbers."""
    started = _response(body, b, status="in_progress", output=[], usage=None)
    events: list[dict] = [
        {"type": "response.created", "response": started},
        {"type": "response.in_progress", "response": started},
    ]
    index = 0

    def item_events(added: dict, middle: list[dict], done: dict) -> None:
        nonlocal index
        events.append({"type": "response.output_item.added", "output_index": index, "item": added})
        events.extend({**event, "output_index": index} for event in middle)
        events.append({"type": "response.output_item.done", "output_index": index, "item": done})
        index += 1

    if b.reasoning_text:
        where = {"item_id": REASONING_ID, "summary_index": 0}
        middle = [{"type": "response.reasoning_summary_part.added", **where, "part": _summary("")}]
        middle += [
            {"type": "response.reasoning_summary_text.delta", **where, "delta": w} for w in words(b.reasoning_text)
        ]
        middle += [
            {"type": "response.reasoning_summary_text.done", **where, "text": b.reasoning_text},
            {"type": "response.reasoning_summary_part.done", **where, "part": _summary(b.reasoning_text)},
        ]
        item_events(_reasoning_item(body, b, done=False), middle, _reasoning_item(body, b, done=True))
    if _wants_tools(body, b):
        for i, call in enumerate(b.tool_calls):
            half = len(call.arguments) // 2
            where = {"item_id": _call_id(i)}
            middle = [
                {"type": "response.function_call_arguments.delta", **where, "delta": piece}
                for piece in (call.arguments[:half], call.arguments[half:])
            ]
            done = {"type": "response.function_call_arguments.done", **where, "name": call.name}
            middle.append({**done, "arguments": call.arguments})
            item_events(_call_item(i, call, done=False), middle, _call_item(i, call, done=True))
    else:
        where = {"item_id": MESSAGE_ID, "content_index": 0}
        middle = [{"type": "response.content_part.added", **where, "part": _output_text("")}]
        middle += [
            {"type": "response.output_text.delta", **where, "delta": w, "logprobs": []} for w in words(b.reply_text)
        ]
        middle += [
            {"type": "response.output_text.done", **where, "text": b.reply_text, "logprobs": []},
            {"type": "response.content_part.done", **where, "part": _output_text(b.reply_text)},
        ]
        item_events(_message_item("", done=False), middle, _message_item(b.reply_text, done=True))
    if not b.omit_done:
        events.append({"type": "response.completed", "response": response(body, b)})
    return events


def _summary(text: str) -> dict:
    return {"type": "summary_text", "text": text}


def _frame(event: dict) -> bytes:
    data = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
    return f"event: {event['type']}\ndata: {data}\n\n".encode()


# --- the four functions every wire module offers ------------------------------------------


def is_stream(path: str, body: dict) -> bool:
    return bool(body.get("stream"))


def reply_json(path: str, body: dict, b: Behaviour) -> dict:
    return response(body, b)


def stream_frames(path: str, body: dict, b: Behaviour) -> list[bytes]:
    return [_frame({**event, "sequence_number": n}) for n, event in enumerate(stream_events(body, b))]


def error_json(status: int, b: Behaviour) -> dict:
    kind, code = ERROR_BODIES.get(status, ("server_error", None))
    default = "Invalid value for 'input': the upstream refused this request." if status == 400 else None
    message = b.error_message or default or DEFAULT_ERROR_MESSAGES.get(status, "Upstream error.")
    return {"error": {"message": message, "type": kind, "param": "input" if status == 400 else None, "code": code}}
