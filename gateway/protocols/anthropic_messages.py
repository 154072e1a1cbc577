"""Anthropic's Messages API (POST /v1/messages and /v1/messages/count_tokens), both sides.

Client side: what Anthropic SDKs and Claude Code send Beluga, validated as Anthropic
validates it (errors name the field the way Anthropic does: `messages.0.content.1.type`),
and Beluga's answers in Anthropic's shapes: the Message, the SSE event sequence, errors.
Unknown top-level fields are ignored, not refused: clients send new beta fields first.

Upstream side: Beluga calling Anthropic, or a server speaking its API, for a route of
kind "anthropic" (`base_url` without /v1, like the SDK's https://api.anthropic.com).
It lives in anthropic_messages_upstream.py, whose names this module re-exports;
what both sides use is in anthropic_messages_wire.py.

Choices made here:
- Overloaded: Beluga answers HTTP 503 with error type `overloaded_error`. Anthropic's own
  529 is outside HTTP's standard codes; its SDKs retry every 5xx alike.
- A thinking effort without a budget (OpenAI's reasoning_effort, adaptive thinking) is
  sent as a budget (EFFORT_BUDGETS, upstream side), kept below max_tokens.
- Refused: server tools (web search, bash, text editor, ...), document/file blocks,
  n > 1, json_object output. A json_schema output is sent as `output_config.format`.
"""

from __future__ import annotations

from gateway.errors import ApiError, InvalidRequest
from gateway.protocols.anthropic_messages_wire import MIN_THINKING_BUDGET, PROTOCOL, _bad, _frame, _is_int
from gateway.protocols.conversation import (
    CONTENT_FILTER,
    LENGTH,
    STOP,
    TOOL_CALLS,
    Conversation,
    Finish,
    Image,
    Message,
    Reply,
    ResponseFormat,
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
    signs_next_part,
    with_cost_of,
)

# Anthropic's effort levels beyond the representation's are read as "high".
EFFORTS_IN = {"low": "low", "medium": "medium", "high": "high", "xhigh": "high", "max": "high"}
IMAGE_MEDIA_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})

STOP_OUT = {STOP: "end_turn", LENGTH: "max_tokens", TOOL_CALLS: "tool_use", CONTENT_FILTER: "refusal"}
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


# --- client side: reading requests ------------------------------------------------


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
        return ThinkingConfig.off()
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


class StreamWriter:
    """Stream events as Anthropic's SSE sequence.

    message_start and a ping first; then content blocks, each opened with
    content_block_start, grown by deltas and ended with content_block_stop (a
    new block whenever the kind changes; each tool call and each signed thinking
    block is its own); then message_delta (stop reason, usage) and message_stop.
    """

    content_type = "text/event-stream"

    def __init__(self, *, model: str, request_id: str, conversation: Conversation, cost_of=None) -> None:
        self.cost_of = cost_of  # Usage -> the cost fields added to message_delta's usage
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
        usage = {"output_tokens": 0}
        if self._usage is not None:
            usage = with_cost_of(_usage_out(self._usage), self._usage, self.cost_of)
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
        if signs_next_part(event):
            self._stop(out)  # Google's signature for what follows: a block of its own, not the thoughts' end
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
    if status == 503:
        # Anthropic's own status for "temporarily overloaded, retry": Claude Code and the SDKs back off on it.
        status = 529
    body: dict = {"type": "error", "error": {"type": kind, "message": error.message}}
    if request_id:
        body["request_id"] = request_id
    return status, body


# The upstream side (an upstream of kind `anthropic`), kept in its own file for size.
from gateway.protocols.anthropic_messages_upstream import (  # noqa: E402
    DEFAULT_MAX_TOKENS,
    PassthroughFramer,
    StreamReader,
    build_request,
    count_tokens_request,
    passthrough_check,
    passthrough_reply,
    passthrough_request,
    read_count_tokens,
    read_error,
    read_reply,
)

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "PassthroughFramer",
    "StreamReader",
    "StreamWriter",
    "build_request",
    "count_tokens_request",
    "error_body",
    "passthrough_check",
    "passthrough_reply",
    "passthrough_request",
    "read_count_tokens",
    "read_count_tokens_request",
    "read_error",
    "read_reply",
    "read_request",
    "write_count_tokens",
    "write_reply",
]
