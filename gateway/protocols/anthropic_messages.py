"""Anthropic's Messages API (POST /v1/messages and /v1/messages/count_tokens), both sides.

Client side: what Anthropic SDKs and Claude Code send Beluga, validated as Anthropic
validates it (errors name the field the way Anthropic does: `messages.0.content.1.type`),
and Beluga's answers in Anthropic's shapes: the Message, the SSE event sequence, errors.
Unknown top-level fields are ignored, not refused: clients send new beta fields first.

Upstream side: Beluga calling Anthropic, or a server speaking its API, for a route of
kind "anthropic" (`base_url` without /v1, like the SDK's https://api.anthropic.com).

Choices made here:
- Overloaded: Beluga answers HTTP 503 with error type `overloaded_error`. Anthropic's own
  529 is outside HTTP's standard codes; its SDKs retry every 5xx alike.
- A thinking effort without a budget (OpenAI's reasoning_effort, adaptive thinking) is
  sent as a budget (EFFORT_BUDGETS), kept below max_tokens.
- Refused: server tools (web search, bash, text editor, ...), document/file blocks,
  n > 1, json_object output. A json_schema output is sent as `output_config.format`.
"""

from __future__ import annotations

import time

import orjson

from catalog.selectors import RouteTarget
from gateway.errors import ApiError, InvalidRequest, RateLimited, UpstreamError
from gateway.protocols import UpstreamRequest
from gateway.protocols.conversation import (
    CONTENT_FILTER,
    FOREIGN_SIGNATURE,
    LENGTH,
    STOP,
    TOOL_CALLS,
    Conversation,
    Finish,
    Image,
    Message,
    Reply,
    ResponseFormat,
    Start,
    StreamEvent,
    Text,
    TextDelta,
    Thinking,
    ThinkingConfig,
    ThinkingDelta,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolCallStart,
    ToolChoice,
    ToolResult,
    Usage,
    UsageReport,
    arguments_object,
    arguments_text,
    signature_in,
    signature_out,
)

PROTOCOL = "anthropic"  # Thinking.origin of signatures Anthropic made
ANTHROPIC_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096  # when the pipeline did not fill max_tokens (Anthropic requires one)
MIN_THINKING_BUDGET = 1024  # Anthropic's minimum budget_tokens
# Budgets for an effort without a budget; "medium" when neither is given.
EFFORT_BUDGETS = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 24576}
# Anthropic's effort levels beyond the representation's are read as "high".
EFFORTS_IN = {"low": "low", "medium": "medium", "high": "high", "xhigh": "high", "max": "high"}
IMAGE_MEDIA_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})

STOP_OUT = {STOP: "end_turn", LENGTH: "max_tokens", TOOL_CALLS: "tool_use", CONTENT_FILTER: "refusal"}
STOP_IN = {
    "end_turn": STOP,
    "stop_sequence": STOP,
    "pause_turn": STOP,
    "max_tokens": LENGTH,
    "model_context_window_exceeded": LENGTH,
    "tool_use": TOOL_CALLS,
    "refusal": CONTENT_FILTER,
}
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}
ACCOUNT_ERRORS = frozenset({"authentication_error", "permission_error", "billing_error"})  # Beluga's account, upstream


# --- client side: reading requests ------------------------------------------------


def _bad(where: str, problem: str) -> InvalidRequest:
    return InvalidRequest(f"{where}: {problem}", param=where)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _string(block: dict, key: str, where: str, *, empty: bool = True) -> str:
    value = block.get(key)
    if not isinstance(value, str) or (not empty and not value):
        raise _bad(f"{where}.{key}", "must be a non-empty string." if not empty else "must be a string.")
    return value


def read_request(body: object, *, model: str | None = None, stream: bool | None = None) -> Conversation:
    """Validate and read a Messages API request body."""
    return _read(body, model=model, stream=stream, counting=False)


def read_count_tokens_request(body: object) -> Conversation:
    """Read a POST /v1/messages/count_tokens body: a Messages request without max_tokens."""
    return _read(body, model=None, stream=None, counting=True)


def _read(body: object, *, model: str | None, stream: bool | None, counting: bool) -> Conversation:
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    model = model if model is not None else body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("model", "Field required (a model id string).")
    max_tokens = body.get("max_tokens")
    if max_tokens is None and not counting:
        raise _bad("max_tokens", "Field required (a positive integer).")
    if max_tokens is not None and (not _is_int(max_tokens) or max_tokens < 1):
        raise _bad("max_tokens", "must be a positive integer.")
    if stream is None:
        stream = body.get("stream", False)
        if stream is None:
            stream = False
        if not isinstance(stream, bool):
            raise _bad("stream", "must be a boolean.")
    conversation = Conversation(
        model=model,
        messages=_read_messages(body.get("messages")),
        system=_read_system(body.get("system")),
        tools=_read_tools(body.get("tools")),
        tool_choice=_read_tool_choice(body.get("tool_choice")),
        max_tokens=max_tokens,
        temperature=_read_number(body, "temperature", 0, 1),
        top_p=_read_number(body, "top_p", 0, 1),
        top_k=_read_top_k(body.get("top_k")),
        stop=_read_stop(body.get("stop_sequences")),
        response_format=_read_output_format(body.get("output_config")),
        thinking=_read_thinking(body),
        user=_read_user(body.get("metadata")),
        stream=stream,
    )
    for message in conversation.messages:
        for part in message.parts:
            if isinstance(part, ToolResult):
                part.name = conversation.tool_name_for(part.call_id)
    return conversation


def _read_number(body: dict, name: str, low: float, high: float) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if not _is_number(value) or not low <= value <= high:
        raise _bad(name, f"must be a number between {low:g} and {high:g}.")
    return value


def _read_top_k(value) -> int | None:
    if value is not None and (not _is_int(value) or value < 0):
        raise _bad("top_k", "must be a non-negative integer.")
    return value


def _read_stop(value) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _bad("stop_sequences", "must be an array of strings.")
    return list(value)


def _read_user(value) -> str | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _bad("metadata", "must be an object.")
    user = value.get("user_id")
    if user is not None and not isinstance(user, str):
        raise _bad("metadata.user_id", "must be a string.")
    return user or None


def _read_system(value) -> list[Text]:
    if value is None:
        return []
    if isinstance(value, str):
        return [Text(value)] if value else []
    if not isinstance(value, list):
        raise _bad("system", "must be a string or an array of text blocks.")
    parts = []
    for i, block in enumerate(value):
        where = f"system.{i}"
        if not isinstance(block, dict) or block.get("type") != "text":
            raise _bad(where, "must be a text block ({'type': 'text', 'text': ...}).")
        parts.append(Text(_string(block, "text", where)))
    return parts


def _read_messages(value) -> list[Message]:
    if value is None:
        raise _bad("messages", "Field required (an array of messages).")
    if not isinstance(value, list):
        raise _bad("messages", "must be an array of messages.")
    if not value:
        raise _bad("messages", "must contain at least one message.")
    messages = []
    for i, item in enumerate(value):
        where = f"messages.{i}"
        if not isinstance(item, dict):
            raise _bad(where, "must be an object with 'role' and 'content'.")
        role = item.get("role")
        if role not in ("user", "assistant"):
            raise _bad(f"{where}.role", "must be 'user' or 'assistant'.")
        content = item.get("content")
        if isinstance(content, str):
            parts = [Text(content)]
        elif isinstance(content, list):
            parts = [_read_block(block, role, f"{where}.content.{j}") for j, block in enumerate(content)]
        else:
            raise _bad(f"{where}.content", "must be a string or an array of content blocks.")
        messages.append(Message(role=role, parts=parts))
    return messages


def _only_in(role: str, allowed: str, kind: str, where: str) -> None:
    if role != allowed:
        raise _bad(f"{where}.type", f"'{kind}' blocks may only appear in {allowed} messages.")


def _read_block(block, role: str, where: str):
    if not isinstance(block, dict):
        raise _bad(where, "must be a content block object.")
    kind = block.get("type")
    if kind == "text":
        return Text(_string(block, "text", where))
    if kind == "image":
        return _read_image(block.get("source"), f"{where}.source")
    if kind == "tool_use":
        _only_in(role, "assistant", kind, where)
        tool_input = block.get("input", {})
        if not isinstance(tool_input, dict):
            raise _bad(f"{where}.input", "must be an object.")
        return ToolCall(
            id=_string(block, "id", where, empty=False),
            name=_string(block, "name", where, empty=False),
            arguments=arguments_text(tool_input),
        )
    if kind == "tool_result":
        _only_in(role, "user", kind, where)
        is_error = block.get("is_error", False)
        if not isinstance(is_error, bool):
            raise _bad(f"{where}.is_error", "must be a boolean.")
        return ToolResult(
            call_id=_string(block, "tool_use_id", where, empty=False),
            content=_read_result_content(block.get("content"), f"{where}.content"),
            is_error=is_error,
        )
    if kind == "thinking":
        _only_in(role, "assistant", kind, where)
        signature, origin = signature_in(_string(block, "signature", where), PROTOCOL)
        return Thinking(text=_string(block, "thinking", where), signature=signature, origin=origin)
    if kind == "redacted_thinking":
        _only_in(role, "assistant", kind, where)
        return Thinking(redacted_data=_string(block, "data", where), origin=PROTOCOL)
    if isinstance(kind, str):
        raise _bad(f"{where}.type", f"content blocks of type '{kind}' are not supported through Beluga for now.")
    raise _bad(f"{where}.type", "Field required (text, image, tool_use, tool_result, thinking, ...).")


def _read_image(source, where: str) -> Image:
    if not isinstance(source, dict):
        raise _bad(where, "Field required (an object with 'type' base64 or url).")
    kind = source.get("type")
    if kind == "base64":
        media_type = source.get("media_type")
        if media_type not in IMAGE_MEDIA_TYPES:
            raise _bad(f"{where}.media_type", f"must be one of {', '.join(sorted(IMAGE_MEDIA_TYPES))}.")
        return Image(data=_string(source, "data", where, empty=False), media_type=media_type)
    if kind == "url":
        return Image(url=_string(source, "url", where, empty=False))
    raise _bad(f"{where}.type", "image sources must be 'base64' or 'url' through Beluga.")


def _read_result_content(value, where: str) -> list[Text | Image]:
    if value is None:
        return []
    if isinstance(value, str):
        return [Text(value)] if value else []
    if not isinstance(value, list):
        raise _bad(where, "must be a string or an array of text and image blocks.")
    parts: list[Text | Image] = []
    for i, block in enumerate(value):
        here = f"{where}.{i}"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            parts.append(Text(_string(block, "text", here)))
        elif kind == "image":
            parts.append(_read_image(block.get("source"), f"{here}.source"))
        else:
            raise _bad(f"{here}.type", "tool results may hold text and image blocks through Beluga.")
    return parts


def _read_tools(value) -> list[Tool]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _bad("tools", "must be an array of tools.")
    tools = []
    for i, tool in enumerate(value):
        where = f"tools.{i}"
        if not isinstance(tool, dict):
            raise _bad(where, "must be an object.")
        kind = tool.get("type")
        if kind not in (None, "custom"):
            raise _bad(
                f"{where}.type",
                f"tool type '{kind}' is not supported through Beluga for now; "
                "only custom tools (name, description, input_schema) are.",
            )
        schema = tool.get("input_schema")
        if not isinstance(schema, dict):
            raise _bad(f"{where}.input_schema", "Field required (a JSON schema object).")
        description = tool.get("description", "")
        if description is not None and not isinstance(description, str):
            raise _bad(f"{where}.description", "must be a string.")
        name = _string(tool, "name", where, empty=False)
        tools.append(Tool(name=name, description=description or "", parameters=schema))
    return tools


def _read_tool_choice(value) -> ToolChoice | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _bad("tool_choice", "must be an object with 'type' auto, any, tool or none.")
    modes = {"auto": "auto", "any": "required", "tool": "tool", "none": "none"}
    kind = value.get("type")
    if kind not in modes:
        raise _bad("tool_choice.type", "must be 'auto', 'any', 'tool' or 'none'.")
    disable = value.get("disable_parallel_tool_use")
    if disable is not None and not isinstance(disable, bool):
        raise _bad("tool_choice.disable_parallel_tool_use", "must be a boolean.")
    name = _string(value, "name", "tool_choice", empty=False) if kind == "tool" else None
    return ToolChoice(mode=modes[kind], name=name, parallel=None if disable is None else not disable)


def _read_thinking(body: dict) -> ThinkingConfig | None:
    value = body.get("thinking")
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _bad("thinking", "must be an object with 'type'.")
    kind = value.get("type")
    shown = value.get("display") != "omitted"
    if kind == "disabled":
        return None
    if kind == "enabled":
        budget = value.get("budget_tokens")
        if not _is_int(budget) or budget < MIN_THINKING_BUDGET:
            raise _bad("thinking.budget_tokens", f"must be an integer of at least {MIN_THINKING_BUDGET}.")
        return ThinkingConfig(budget_tokens=budget, include_thoughts=shown)
    if kind == "adaptive":
        config = body.get("output_config")
        effort = config.get("effort") if isinstance(config, dict) else None
        if effort is not None and effort not in EFFORTS_IN:
            raise _bad("output_config.effort", f"must be one of {', '.join(EFFORTS_IN)}.")
        return ThinkingConfig(effort=EFFORTS_IN.get(effort), include_thoughts=shown)
    raise _bad("thinking.type", "must be 'enabled', 'adaptive' or 'disabled'.")


def _read_output_format(value) -> ResponseFormat | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _bad("output_config", "must be an object.")
    fmt = value.get("format")
    if fmt is None:
        return None
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema" or not isinstance(fmt.get("schema"), dict):
        raise _bad("output_config.format", "must be {'type': 'json_schema', 'schema': {...}}.")
    return ResponseFormat(kind="json_schema", schema=fmt["schema"], name="response", strict=True)


# --- client side: writing answers ------------------------------------------------------


def _message_id(request_id: str, fallback: str) -> str:
    if request_id:
        return "msg_" + request_id.removeprefix("req_")
    return fallback if fallback.startswith("msg_") else f"msg_{fallback}"


def _usage_out(usage: Usage | None) -> dict:
    usage = usage or Usage()
    return {
        "input_tokens": max(usage.input_tokens - usage.cached_input_tokens - usage.cache_write_tokens, 0),
        "cache_creation_input_tokens": usage.cache_write_tokens,
        "cache_read_input_tokens": usage.cached_input_tokens,
        "output_tokens": usage.output_tokens,
    }


def _stop_out(stop_reason: str | None, *, tool_calls: bool) -> str:
    if tool_calls and stop_reason in (None, STOP):
        return "tool_use"  # some OpenAI-compatible servers say "stop" after calling tools
    return STOP_OUT.get(stop_reason or STOP, "end_turn")


def _reply_block(part: Text | ToolCall | Thinking) -> dict | None:
    if isinstance(part, Text):
        return {"type": "text", "text": part.text} if part.text else None
    if isinstance(part, ToolCall):
        return {"type": "tool_use", "id": part.id, "name": part.name, "input": arguments_object(part.arguments)}
    if part.redacted_data is not None:
        return {"type": "redacted_thinking", "data": part.redacted_data}
    return {"type": "thinking", "thinking": part.text, "signature": signature_out(part, PROTOCOL) or ""}


def write_reply(reply: Reply, *, model: str, request_id: str, conversation: Conversation | None = None) -> dict:
    """The Message object for a whole answer, under the public model id."""
    return {
        "id": _message_id(request_id, reply.id),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [block for part in reply.parts if (block := _reply_block(part)) is not None],
        "stop_reason": _stop_out(reply.stop_reason, tool_calls=bool(reply.tool_calls)),
        "stop_sequence": None,  # the representation does not say which sequence matched
        "usage": _usage_out(reply.usage),
    }


def write_count_tokens(input_tokens: int) -> dict:
    return {"input_tokens": input_tokens}


def _frame(payload: dict) -> bytes:
    return b"event: " + payload["type"].encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


class StreamWriter:
    """Stream events as Anthropic's SSE sequence.

    message_start and a ping first; then content blocks, each opened with
    content_block_start, grown by deltas and ended with content_block_stop (a
    new block whenever the kind changes; each tool call and each signed thinking
    block is its own); then message_delta (stop reason, usage) and message_stop.
    """

    content_type = "text/event-stream"

    def __init__(self, *, model: str, request_id: str, conversation: Conversation) -> None:
        self.model = model
        self.message_id = _message_id(request_id, "")
        self.conversation = conversation
        self._started = False
        self._closed = False
        self._open: str | None = None  # "text", "thinking", "tool:<n>" while a block is open
        self._index = -1  # the open block's index
        self._next = 0
        self._tool_blocks: dict[int, int] = {}  # tool call index -> block index
        self._stop_reason: str | None = None
        self._usage: Usage | None = None

    def write(self, event: StreamEvent) -> bytes:
        out: list[bytes] = []
        self._start(out)
        if isinstance(event, TextDelta):
            if event.text:
                self._enter("text", {"type": "text", "text": ""}, out)
                self._delta({"type": "text_delta", "text": event.text}, out)
        elif isinstance(event, ThinkingDelta):
            self._thinking(event, out)
        elif isinstance(event, ToolCallStart):
            block = {"type": "tool_use", "id": event.id, "name": event.name, "input": {}}
            self._enter(f"tool:{event.index}", block, out)
            self._tool_blocks[event.index] = self._index
        elif isinstance(event, ToolCallDelta):
            index = self._tool_blocks.get(event.index)
            if index is not None and event.arguments:
                # Anthropic SDKs find the block by index, so a late fragment still lands in its call.
                delta = {"type": "input_json_delta", "partial_json": event.arguments}
                out.append(_frame({"type": "content_block_delta", "index": index, "delta": delta}))
        elif isinstance(event, Finish):
            self._stop_reason = event.stop_reason
        elif isinstance(event, UsageReport):
            self._usage = event.usage
        return b"".join(out)

    def close(self, *, error: str | None = None) -> bytes:
        if self._closed:
            return b""
        self._closed = True
        out: list[bytes] = []
        self._start(out)
        self._stop(out)
        if error is not None:
            # Anthropic ends a broken stream with an `error` event instead of message_delta/message_stop.
            out.append(_frame({"type": "error", "error": {"type": "api_error", "message": error}}))
            return b"".join(out)
        usage = _usage_out(self._usage) if self._usage is not None else {"output_tokens": 0}
        stop_reason = _stop_out(self._stop_reason, tool_calls=bool(self._tool_blocks))
        delta = {"stop_reason": stop_reason, "stop_sequence": None}
        out.append(_frame({"type": "message_delta", "delta": delta, "usage": usage}))
        out.append(_frame({"type": "message_stop"}))
        return b"".join(out)

    def _start(self, out: list[bytes]) -> None:
        if self._started:
            return
        self._started = True
        message = {
            "id": self.message_id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            # Input is not known yet: message_delta carries the real counts at the end.
            "usage": {
                "input_tokens": 0,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "output_tokens": 1,
            },
        }
        out.append(_frame({"type": "message_start", "message": message}))
        out.append(_frame({"type": "ping"}))

    def _enter(self, kind: str, block: dict, out: list[bytes]) -> None:
        if self._open == kind:
            return
        self._stop(out)
        self._open, self._index = kind, self._next
        self._next += 1
        out.append(_frame({"type": "content_block_start", "index": self._index, "content_block": block}))

    def _stop(self, out: list[bytes]) -> None:
        if self._open is not None:
            out.append(_frame({"type": "content_block_stop", "index": self._index}))
            self._open = None

    def _delta(self, delta: dict, out: list[bytes]) -> None:
        out.append(_frame({"type": "content_block_delta", "index": self._index, "delta": delta}))

    def _thinking(self, event: ThinkingDelta, out: list[bytes]) -> None:
        if event.redacted_data is not None:
            self._enter("redacted", {"type": "redacted_thinking", "data": event.redacted_data}, out)
            self._stop(out)
            return
        if event.text or event.signature:
            self._enter("thinking", {"type": "thinking", "thinking": "", "signature": ""}, out)
        if event.text:
            self._delta({"type": "thinking_delta", "thinking": event.text}, out)
        if event.signature:
            self._delta({"type": "signature_delta", "signature": signature_out(event, PROTOCOL)}, out)
            self._stop(out)  # a signature ends its block; more thinking is a new block


def error_body(error: ApiError, *, request_id: str | None = None) -> tuple[int, dict]:
    """Status and Anthropic-shaped body: {"type": "error", "error": {"type", "message"}, "request_id"}."""
    status = error.status
    kind = ERROR_TYPES.get(status) or ("api_error" if status >= 500 else "invalid_request_error")
    body: dict = {"type": "error", "error": {"type": kind, "message": error.message}}
    if request_id:
        body["request_id"] = request_id
    return status, body


# --- upstream side: requests --------------------------------------------------------------


def _headers(route: RouteTarget, *, stream: bool) -> dict[str, str]:
    headers = {
        "anthropic-version": ANTHROPIC_VERSION,
        "content-type": "application/json",
        "accept": "text/event-stream" if stream else "application/json",
    }
    if route.api_key:
        headers["x-api-key"] = route.api_key
    return headers


def _image_out(image: Image) -> dict:
    if image.data is not None:
        source = {"type": "base64", "media_type": image.media_type or "image/png", "data": image.data}
    elif (image.url or "").startswith("data:") and ";base64," in (image.url or ""):
        head, data = image.url.split(",", 1)  # data:<media type>;base64,<data>
        source = {"type": "base64", "media_type": head[5:].split(";", 1)[0] or "image/png", "data": data}
    else:
        source = {"type": "url", "url": image.url or ""}
    return {"type": "image", "source": source}


def _block_out(part) -> dict | None:
    if isinstance(part, Text):
        return {"type": "text", "text": part.text} if part.text else None  # Anthropic refuses empty text
    if isinstance(part, Image):
        return _image_out(part)
    if isinstance(part, ToolCall):
        return {"type": "tool_use", "id": part.id, "name": part.name, "input": arguments_object(part.arguments)}
    if isinstance(part, ToolResult):
        block: dict = {"type": "tool_result", "tool_use_id": part.call_id}
        content = [b for p in part.content if (b := _block_out(p)) is not None]
        if content:
            block["content"] = content
        if part.is_error:
            block["is_error"] = True
        return block
    if isinstance(part, Thinking):
        # Anthropic verifies thinking it is given back: unsigned thinking (from another provider) is left out.
        if part.redacted_data is not None:
            return {"type": "redacted_thinking", "data": part.redacted_data}
        if part.signature and part.origin == PROTOCOL:  # another provider's signature: Anthropic would refuse it
            return {"type": "thinking", "thinking": part.text, "signature": part.signature}
    return None


def _messages_out(messages: list[Message]) -> list[dict]:
    out: list[dict] = []
    for message in messages:
        blocks = [block for part in message.parts if (block := _block_out(part)) is not None]
        if not blocks:
            continue
        if out and out[-1]["role"] == message.role:  # Anthropic wants roles to alternate
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": message.role, "content": blocks})
    for message in out:
        if message["role"] == "user":  # tool results must lead their user message
            message["content"].sort(key=lambda block: block["type"] != "tool_result")
    return out


def _tool_choice_out(conversation: Conversation) -> dict | None:
    choice = conversation.tool_choice
    if not conversation.tools or choice is None:
        return None
    out: dict = {"type": {"auto": "auto", "none": "none", "required": "any", "tool": "tool"}[choice.mode]}
    if choice.mode == "tool":
        out["name"] = choice.name
    if choice.parallel is False and choice.mode != "none":
        out["disable_parallel_tool_use"] = True
    return out


def _thinking_out(thinking: ThinkingConfig, max_tokens: int, dropped: list[str]) -> dict | None:
    """Anthropic's thinking config: a budget of at least 1024 and below max_tokens."""
    budget = thinking.budget_tokens
    if budget is None:
        wanted = EFFORT_BUDGETS.get(thinking.effort or "medium", EFFORT_BUDGETS["medium"])
        budget = max(min(wanted, max_tokens - MIN_THINKING_BUDGET), MIN_THINKING_BUDGET)  # leave room to answer
    elif budget <= 0:
        return None  # a zero budget (Gemini's way) means no thinking
    else:
        budget = max(budget, MIN_THINKING_BUDGET)
        if budget >= max_tokens and max_tokens - 1 >= MIN_THINKING_BUDGET:
            budget = max_tokens - 1
            dropped.append("thinking.budget_tokens")
    if budget >= max_tokens:
        dropped.append("thinking")  # max_tokens leaves no room for Anthropic's minimum budget
        return None
    return {"type": "enabled", "budget_tokens": budget}


def _body(conversation: Conversation, *, model: str, dropped: list[str]) -> dict:
    if conversation.n > 1:
        raise InvalidRequest("n: this model returns one answer per request; n must be 1.", param="n")
    response_format = conversation.response_format
    if response_format is not None and response_format.kind == "json_object":
        raise InvalidRequest(
            "response_format: this model has no JSON mode; use a json_schema response format instead.",
            param="response_format",
        )
    dropped.extend(conversation.openai_extra)
    max_tokens = conversation.max_tokens or DEFAULT_MAX_TOKENS
    body: dict = {"model": model, "max_tokens": max_tokens, "messages": _messages_out(conversation.messages)}
    system = [{"type": "text", "text": part.text} for part in conversation.system if part.text]
    if system:
        body["system"] = system
    if conversation.tools:
        body["tools"] = [
            {
                "name": tool.name,
                **({"description": tool.description} if tool.description else {}),
                "input_schema": tool.parameters if "type" in tool.parameters else {"type": "object", **tool.parameters},
            }
            for tool in conversation.tools
        ]
    tool_choice = _tool_choice_out(conversation)
    if tool_choice is not None:
        body["tool_choice"] = tool_choice
    if conversation.stop:
        body["stop_sequences"] = list(conversation.stop)
    thinking = None
    if conversation.thinking is not None:
        if tool_choice is not None and tool_choice["type"] in ("any", "tool"):
            dropped.append("thinking")  # Anthropic refuses thinking with a forced tool; the tool wins
        else:
            thinking = _thinking_out(conversation.thinking, max_tokens, dropped)
    temperature, top_p, top_k = conversation.temperature, conversation.top_p, conversation.top_k
    if thinking is not None:
        body["thinking"] = thinking
        # With thinking Anthropic accepts temperature 1 only, no top_k, and top_p from 0.95.
        if temperature is not None and temperature != 1:
            temperature = None
            dropped.append("temperature")
        if top_k is not None:
            top_k = None
            dropped.append("top_k")
        if top_p is not None and top_p < 0.95:
            top_p = 0.95
            dropped.append("top_p")
    if temperature is not None and temperature > 1:
        temperature = 1
        dropped.append("temperature")
    if temperature is not None and top_p is not None and top_p >= 1:
        top_p = None  # a no-op top_p; recent models refuse temperature and top_p together
    for name, value in (("temperature", temperature), ("top_p", top_p), ("top_k", top_k)):
        if value is not None:
            body[name] = value
    if conversation.user:
        body["metadata"] = {"user_id": conversation.user}
    if response_format is not None and response_format.kind == "json_schema":
        body["output_config"] = {"format": {"type": "json_schema", "schema": response_format.schema or {}}}
    return body


def build_request(conversation: Conversation, *, route: RouteTarget, stream: bool) -> UpstreamRequest:
    """POST {base_url}/v1/messages with the route's model and credential."""
    dropped: list[str] = []
    body = _body(conversation, model=route.upstream_model, dropped=dropped)
    if stream:
        body["stream"] = True
    return UpstreamRequest(
        url=f"{route.base_url}/v1/messages",
        headers=_headers(route, stream=stream),
        body=orjson.dumps(body),
        dropped=dropped,
    )


COUNT_TOKENS_FIELDS = ("model", "messages", "system", "tools", "tool_choice", "thinking")


def count_tokens_request(conversation: Conversation, *, route: RouteTarget) -> UpstreamRequest:
    """POST {base_url}/v1/messages/count_tokens: the same conversation, without generation settings."""
    body = _body(conversation, model=route.upstream_model, dropped=[])
    body = {name: body[name] for name in COUNT_TOKENS_FIELDS if name in body}
    return UpstreamRequest(
        url=f"{route.base_url}/v1/messages/count_tokens",
        headers=_headers(route, stream=False),
        body=orjson.dumps(body),
    )


# --- upstream side: answers ---------------------------------------------------------------


def usage_in(usage: object) -> Usage:
    """Anthropic usage (input excludes cache reads and writes) in the representation's terms."""
    usage = usage if isinstance(usage, dict) else {}

    def count(name: str) -> int:
        value = usage.get(name)
        return value if _is_int(value) else 0

    cache_read, cache_write = count("cache_read_input_tokens"), count("cache_creation_input_tokens")
    return Usage(
        input_tokens=count("input_tokens") + cache_read + cache_write,
        output_tokens=count("output_tokens"),
        cached_input_tokens=cache_read,
        cache_write_tokens=cache_write,
    )


def read_reply(data: object) -> Reply:
    """A Message object as a Reply. Raises ValueError when it is not one."""
    if not isinstance(data, dict) or data.get("type") == "error" or not isinstance(data.get("content"), list):
        raise ValueError("not an Anthropic message")
    parts: list[Text | ToolCall | Thinking] = []
    for block in data["content"]:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text" and isinstance(block.get("text"), str):
            parts.append(Text(block["text"]))
        elif kind == "tool_use":
            call_id, name = str(block.get("id") or ""), str(block.get("name") or "")
            parts.append(ToolCall(id=call_id, name=name, arguments=arguments_text(block.get("input"))))
        elif kind == "thinking":
            parts.append(
                Thinking(
                    text=str(block.get("thinking") or ""), signature=block.get("signature") or None, origin=PROTOCOL
                )
            )
        elif kind == "redacted_thinking":
            parts.append(Thinking(redacted_data=str(block.get("data") or ""), origin=PROTOCOL))
        # Server tool blocks (web search results, ...) are not part of the representation.
    stop_reason = data.get("stop_reason")
    return Reply(
        id=str(data.get("id") or ""),
        model=str(data.get("model") or ""),
        parts=parts,
        stop_reason=STOP_IN.get(stop_reason, STOP) if isinstance(stop_reason, str) else None,
        usage=usage_in(data["usage"]) if isinstance(data.get("usage"), dict) else None,
        created=int(time.time()),
    )


def read_count_tokens(data: object) -> int:
    """The input_tokens of a count_tokens answer. Raises ValueError when it has none."""
    value = data.get("input_tokens") if isinstance(data, dict) else None
    if not _is_int(value):
        raise ValueError("not a count_tokens answer")
    return value


class StreamReader:
    """Anthropic's SSE events (one `data:` payload at a time) as stream events.

    Each UsageReport is the whole usage so far (message_start's counts updated by
    message_delta's cumulative ones), sent with the Finish of message_delta so that
    a stream cut before message_stop still reports what it used.
    """

    def __init__(self) -> None:
        self.ended = False
        self.error: str | None = None
        self._usage: dict = {}
        self._tools: dict[int, int] = {}  # content block index -> tool call index

    @property
    def usage_so_far(self) -> Usage | None:
        """What the stream has reported up to now (message_start gives the input): for a stream cut short."""
        return usage_in(self._usage) if self._usage else None

    def feed(self, data: bytes) -> list[StreamEvent]:
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            return []
        if not isinstance(event, dict):
            return []
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message") if isinstance(event.get("message"), dict) else {}
            self._merge_usage(message.get("usage"))
            return [Start(id=str(message.get("id") or ""), model=str(message.get("model") or ""))]
        if kind == "content_block_start":
            return self._block_start(event.get("index"), event.get("content_block"))
        if kind == "content_block_delta":
            return self._block_delta(event.get("index"), event.get("delta"))
        if kind == "message_delta":
            events: list[StreamEvent] = []
            delta = event.get("delta") if isinstance(event.get("delta"), dict) else {}
            if isinstance(delta.get("stop_reason"), str):
                events.append(Finish(STOP_IN.get(delta["stop_reason"], STOP)))
            self._merge_usage(event.get("usage"))
            if self._usage:
                events.append(UsageReport(usage_in(self._usage)))
            return events
        if kind == "message_stop":
            self.ended = True
        elif kind == "error":
            error = event.get("error") if isinstance(event.get("error"), dict) else {}
            self.error = str(error.get("message") or error.get("type") or "The model provider reported an error.")
        return []  # ping, content_block_stop, and event types added later

    def _merge_usage(self, usage: object) -> None:
        if isinstance(usage, dict):
            self._usage.update({name: value for name, value in usage.items() if _is_int(value)})

    def _block_start(self, index: object, block: object) -> list[StreamEvent]:
        if not isinstance(block, dict):
            return []
        kind = block.get("type")
        if kind == "text" and block.get("text"):
            return [TextDelta(str(block["text"]))]
        if kind == "tool_use" and isinstance(index, int):
            tool_index = len(self._tools)
            self._tools[index] = tool_index
            call_id, name = str(block.get("id") or ""), str(block.get("name") or "")
            events: list[StreamEvent] = [ToolCallStart(tool_index, call_id, name)]
            if isinstance(block.get("input"), dict) and block["input"]:
                events.append(ToolCallDelta(tool_index, arguments_text(block["input"])))
            return events
        if kind == "thinking" and (block.get("thinking") or block.get("signature")):
            return [ThinkingDelta(str(block.get("thinking") or ""), block.get("signature") or None, origin=PROTOCOL)]
        if kind == "redacted_thinking":
            return [ThinkingDelta(redacted_data=str(block.get("data") or ""))]
        return []

    def _block_delta(self, index: object, delta: object) -> list[StreamEvent]:
        if not isinstance(delta, dict):
            return []
        kind = delta.get("type")
        if kind == "text_delta" and delta.get("text"):
            return [TextDelta(str(delta["text"]))]
        if kind == "input_json_delta" and delta.get("partial_json") and index in self._tools:
            return [ToolCallDelta(self._tools[index], str(delta["partial_json"]))]
        if kind == "thinking_delta" and delta.get("thinking"):
            return [ThinkingDelta(text=str(delta["thinking"]))]
        if kind == "signature_delta" and delta.get("signature"):
            return [ThinkingDelta(signature=str(delta["signature"]), origin=PROTOCOL)]
        return []


# --- upstream side: errors -------------------------------------------------------------------


def _header(headers, name: str) -> str | None:
    value = headers.get(name) if headers is not None else None
    if value is None and headers is not None:
        value = next((v for k, v in headers.items() if k.lower() == name.lower()), None)
    return value


def read_error(*, route: RouteTarget, status: int, content: bytes, headers) -> ApiError:
    """What the client should see for Anthropic's non-200 answer (never Beluga's credential)."""
    message, kind = "", None
    try:
        data = orjson.loads(content)
    except orjson.JSONDecodeError:
        data = None
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        message, kind = str(error.get("message") or ""), error.get("type")
    if route.api_key and route.api_key in message:
        message = message.replace(route.api_key, "***")
    if status == 429:
        retry_after = _header(headers, "Retry-After")
        return RateLimited(
            "The model provider is rate limiting requests; retry shortly." + (f" ({message})" if message else ""),
            code="upstream_rate_limited",
            headers={"Retry-After": retry_after} if retry_after else {},
        )
    if status == 529 or kind == "overloaded_error":
        retry_after = _header(headers, "Retry-After")
        return UpstreamError(
            "The model provider is overloaded; retry shortly.",
            status=503,
            code="upstream_overloaded",
            headers={"Retry-After": retry_after} if retry_after else {},
        )
    if status in (401, 402, 403) or kind in ACCOUNT_ERRORS or "credit balance" in message.lower():
        # Beluga's own account with the provider failed (Anthropic reports a low credit balance
        # as a 400): not the caller's fault, and the message may describe the credential.
        return UpstreamError("The model provider refused Beluga's credentials.", status=502)
    if status in (400, 404, 409, 413, 422):
        # The request itself was refused: Anthropic's words help the caller fix it.
        return InvalidRequest(
            message or f"The model provider rejected the request (HTTP {status}).", status=413 if status == 413 else 400
        )
    if status in (408, 504):
        return UpstreamError("The model provider timed out.", status=502, code="upstream_timeout")
    if status >= 500:
        return UpstreamError(
            f"The model provider failed (HTTP {status}); retry shortly.", status=503 if status == 503 else 502
        )
    return UpstreamError(f"Unexpected answer from the model provider (HTTP {status}).", status=502)


# --- same protocol both sides: the client's request forwarded as it is ------------------
# Claude Code and the Anthropic SDK send what the Conversation does not carry
# (cache_control, server tools, documents, betas); to an Anthropic upstream
# their request goes unchanged but for the model, and the answer comes back
# unchanged but for the model. Beluga reads it on the way for usage.

PASSTHROUGH_HEADERS = ("anthropic-version", "anthropic-beta")


def passthrough_check(body: object) -> bool:
    """The little Beluga itself needs from a request it forwards; returns whether it streams."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise _bad("model", "is required")
    if not _is_int(body.get("max_tokens")) or body["max_tokens"] < 1:
        raise _bad("max_tokens", "is required and must be a positive integer")
    if not isinstance(body.get("messages"), list) or not body["messages"]:
        raise _bad("messages", "must be a non-empty array")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise _bad("stream", "must be a boolean")
    return stream


def passthrough_request(body: dict, *, route: RouteTarget, stream: bool, client_headers: dict) -> UpstreamRequest:
    headers = _headers(route, stream=stream)
    for name in PASSTHROUGH_HEADERS:
        if client_headers.get(name):
            headers[name] = client_headers[name]
    payload = {**body, "model": route.upstream_model, "messages": [_own_thinking_only(m) for m in body["messages"]]}
    dropped: list[str] = []
    if isinstance(body.get("tools"), list):
        # Server tools (web search, web fetch, code execution) run on Beluga's
        # Anthropic account and are billed to it per use, which Beluga does not
        # price yet: left out and named, as on translated calls where they are refused.
        payload["tools"] = [tool for tool in body["tools"] if not _is_server_tool(tool)]
        dropped = [f"tools.{tool.get('type')}" for tool in body["tools"] if _is_server_tool(tool)]
        if not payload["tools"]:
            del payload["tools"]
            payload.pop("tool_choice", None)
    return UpstreamRequest(
        url=f"{route.base_url}/v1/messages", headers=headers, body=orjson.dumps(payload), dropped=dropped
    )


def _is_server_tool(tool) -> bool:
    return isinstance(tool, dict) and tool.get("type") not in (None, "custom")


def _own_thinking_only(message):
    """Thinking another provider signed (tagged by signature_out) would be refused: it is left out."""
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, list):
        return message
    kept = [
        block
        for block in content
        if not (
            isinstance(block, dict)
            and block.get("type") == "thinking"
            and str(block.get("signature") or "").startswith(FOREIGN_SIGNATURE)
        )
    ]
    return message if len(kept) == len(content) else {**message, "content": kept}


def passthrough_reply(data: dict, *, model: str) -> dict:
    data["model"] = model
    return data


class PassthroughFramer:
    """The upstream's events re-framed for the client, the model renamed in message_start."""

    content_type = "text/event-stream"

    def __init__(self, *, model: str, **_options) -> None:
        self.model = model

    def frame(self, data: bytes) -> bytes:
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            return b""
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            return b""
        if event["type"] == "message_start" and isinstance(event.get("message"), dict):
            event["message"]["model"] = self.model
            return _frame(event)
        return b"event: " + event["type"].encode() + b"\ndata: " + data + b"\n\n"

    def close(self, *, error: str | None = None) -> bytes:
        if error is None:
            return b""
        return _frame({"type": "error", "error": {"type": "api_error", "message": error}})
