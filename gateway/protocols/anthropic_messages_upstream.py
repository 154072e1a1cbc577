"""Anthropic's Messages API, upstream side: Beluga calling Anthropic, or a server speaking
its API, for a route of kind "anthropic", and the same protocol on both sides
(passthrough). anthropic_messages.py, the client side, re-exports these names, so that
the one protocol module offers both sides.
"""

from __future__ import annotations

import time

import orjson

from catalog.selectors import RouteTarget
from gateway.errors import ApiError, InvalidRequest, RateLimited, UpstreamError
from gateway.protocols import UpstreamRequest
from gateway.protocols.anthropic_messages_wire import MIN_THINKING_BUDGET, PROTOCOL, _bad, _frame, _is_int
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
    Start,
    StreamEvent,
    Text,
    TextDelta,
    Thinking,
    ThinkingConfig,
    ThinkingDelta,
    ToolCall,
    ToolCallDelta,
    ToolCallStart,
    ToolResult,
    Usage,
    UsageReport,
    arguments_object,
    arguments_text,
    with_cost_of,
)
from gateway.protocols.variants import SAMPLING, RequestSettings, settings_merged

ANTHROPIC_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096  # when the pipeline did not fill max_tokens (Anthropic requires one)
# Budgets for an effort without a budget; "medium" when neither is given.
EFFORT_BUDGETS = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 24576}
STOP_IN = {
    "end_turn": STOP,
    "stop_sequence": STOP,
    "pause_turn": STOP,
    "max_tokens": LENGTH,
    "model_context_window_exceeded": LENGTH,
    "tool_use": TOOL_CALLS,
    "refusal": CONTENT_FILTER,
}
ACCOUNT_ERRORS = frozenset({"authentication_error", "permission_error", "billing_error"})  # Beluga's account, upstream


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
        if part.redacted_data is not None and part.origin == PROTOCOL:
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


def _thinking_for(thinking: ThinkingConfig, body: dict, dropped: list[str]) -> dict | None:
    """The request's thinking config, or None (and why, in `dropped`) where Anthropic would refuse it."""
    if thinking.is_off:
        return None
    tool_choice = body.get("tool_choice")
    if isinstance(tool_choice, dict) and tool_choice.get("type") in ("any", "tool"):
        dropped.append("thinking")  # Anthropic refuses thinking with a forced tool; the tool wins
        return None
    out = _thinking_out(thinking, body["max_tokens"], dropped)
    if out is not None and _tool_turn_unsigned(body["messages"]):
        # With thinking on, Anthropic wants the turn's signed thinking back before its tool calls;
        # a client that did not keep it (or got it from another provider) continues without thinking.
        dropped.append("thinking")
        return None
    return out


def _tool_turn_unsigned(messages: list) -> bool:
    """Whether the last assistant message calls tools without starting with (signed) thinking."""
    last = next((m for m in reversed(messages) if isinstance(m, dict) and m.get("role") == "assistant"), None)
    content = last.get("content") if last is not None else None
    if not isinstance(content, list) or not content:
        return False
    calls = any(isinstance(block, dict) and block.get("type") == "tool_use" for block in content)
    first = content[0].get("type") if isinstance(content[0], dict) else None
    return calls and first not in ("thinking", "redacted_thinking")


def _sampling_with_thinking(temperature, top_p, top_k, dropped: list[str]):
    """Sampling values Anthropic takes with thinking on: temperature 1 only, no top_k, top_p from 0.95."""
    if temperature is not None and temperature != 1:
        temperature = None
        dropped.append("temperature")
    if top_k is not None:
        top_k = None
        dropped.append("top_k")
    if top_p is not None and top_p < 0.95:
        top_p = 0.95
        dropped.append("top_p")
    return temperature, top_p, top_k


def settings_into_body(
    body: dict, defaults: RequestSettings, overrides: RequestSettings, *, route: RouteTarget, dropped: list[str]
) -> None:
    """A model's request settings (gateway/protocols/variants.py) in an Anthropic request the client
    wrote itself: a default where the client's body lacks the field, an override over it."""
    merged = settings_merged(defaults, overrides, client_sets=lambda name: name in body)  # the same names
    if not merged:
        return
    for name in SAMPLING:
        if name in merged:
            body[name] = merged[name]
    thinking = merged.get("thinking")
    client_thinking = body.get("thinking")
    if thinking is None and "max_tokens" in merged and isinstance(client_thinking, dict):
        budget = client_thinking.get("budget_tokens")
        if client_thinking.get("type") == "enabled" and _is_int(budget) and budget >= body["max_tokens"]:
            thinking = ThinkingConfig(budget_tokens=budget)  # the client's budget, under the model's new cap
    if thinking is not None:
        body.pop("thinking", None)
        written = _thinking_for(thinking, body, dropped)
        if written is not None:
            body["thinking"] = written
    if isinstance(body.get("thinking"), dict) and body["thinking"].get("type") in ("enabled", "adaptive"):
        sampling = _sampling_with_thinking(body.get("temperature"), body.get("top_p"), body.get("top_k"), dropped)
        for name, value in zip(("temperature", "top_p", "top_k"), sampling, strict=True):
            if value is None:
                body.pop(name, None)
            else:
                body[name] = value


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
        thinking = _thinking_for(conversation.thinking, body, dropped)
    temperature, top_p, top_k = conversation.temperature, conversation.top_p, conversation.top_k
    if thinking is not None:
        body["thinking"] = thinking
        temperature, top_p, top_k = _sampling_with_thinking(temperature, top_p, top_k, dropped)
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
            return [ThinkingDelta(redacted_data=str(block.get("data") or ""), origin=PROTOCOL)]
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
    """The upstream's events re-framed for the client, the model renamed in message_start,
    the call's cost added to message_delta's usage (`cost_of`: Usage -> the cost fields)."""

    content_type = "text/event-stream"

    def __init__(self, *, model: str, cost_of=None, **_options) -> None:
        self.model = model
        self.cost_of = cost_of

    def frame(self, data: bytes, usage: Usage | None = None) -> bytes:
        """`usage`: what the stream reported so far (read from this and the earlier events)."""
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            return b""
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            return b""
        if event["type"] == "message_start" and isinstance(event.get("message"), dict):
            event["message"]["model"] = self.model
            return _frame(event)
        if event["type"] == "message_delta" and isinstance(event.get("usage"), dict) and usage is not None:
            with_cost_of(event["usage"], usage, self.cost_of)
            return _frame(event)
        return b"event: " + event["type"].encode() + b"\ndata: " + data + b"\n\n"

    def close(self, *, error: str | None = None) -> bytes:
        if error is None:
            return b""
        return _frame({"type": "error", "error": {"type": "api_error", "message": error}})
