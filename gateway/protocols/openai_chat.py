"""OpenAI Chat Completions, both sides: what OpenAI SDK clients send Beluga, and
what Beluga sends OpenAI and every OpenAI-compatible server.

When the client speaks this protocol and the route's upstream does too, the
pipeline forwards the validated body as it is (gateway/providers/openai.py,
fastest and exact); these functions are for every other pair.
"""

from __future__ import annotations

import re
import time

import orjson

from catalog.selectors import RouteTarget
from gateway.errors import ApiError, InvalidRequest
from gateway.protocols import UpstreamRequest
from gateway.protocols.conversation import (
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
    signs_next_part,
    with_cost_of,
)
from gateway.protocols.variants import RequestSettings, settings_merged
from gateway.providers.openai import error_from_response, usage_from
from gateway.streaming import DONE, stream_error_event
from gateway.validation import ChatRequest, validate_chat_request

# Parameters read into the Conversation's own fields; everything else in a
# request body is kept in `openai_extra` under its name.
_READ = frozenset(
    {
        "model",
        "messages",
        "stream",
        "stream_options",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "stop",
        "n",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        "reasoning_effort",
        "user",
    }
)
FINISH_REASONS = frozenset({"stop", "length", "tool_calls", "content_filter"})
# An OpenAI reasoning effort for a token budget from another protocol.
EFFORT_FOR_BUDGET = ((2048, "low"), (8192, "medium"))
# OpenAI's reasoning models refuse `max_tokens` (they take max_completion_tokens)
# and are the ones that take `reasoning_effort`; other OpenAI-compatible servers
# know only `max_tokens` and may refuse `reasoning_effort`.
REASONING_MODEL = re.compile(r"^(o\d|gpt-5(?!-chat)|gpt-oss)")
# OpenRouter's `reasoning_details[].format`, by Thinking.origin: it tells whose
# signature an item carries, so that it goes back only to that provider.
REASONING_FORMATS = {
    "anthropic": "anthropic-claude-v1",
    "gemini": "google-gemini-v1",
    "openai-responses": "openai-responses-v1",
}
UNKNOWN_FORMAT = "unknown"
ORIGINS = {value: origin for origin, value in REASONING_FORMATS.items()}


# --- client side -----------------------------------------------------------------


def read_request(body: object, *, model: str | None = None, stream: bool | None = None) -> Conversation:
    return conversation_from(validate_chat_request(body))


def _image_from(url: str, detail: str | None) -> Image:
    if url.startswith("data:"):
        header, _, data = url.partition(",")
        media_type = header[5:].split(";", 1)[0] or "image/png"
        if ";base64" in header:
            return Image(data=data, media_type=media_type, detail=detail)
    return Image(url=url, detail=detail)


def _text_of(content) -> str:
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content or () if part.get("type") in ("text", "refusal"))


def _user_parts(content, where: str) -> list:
    if isinstance(content, str):
        return [Text(content)]
    parts = []
    for j, part in enumerate(content):
        kind = part["type"]
        if kind == "text":
            parts.append(Text(part["text"]))
        elif kind == "image_url":
            image = part["image_url"]
            parts.append(_image_from(image["url"], image.get("detail")))
        else:
            raise InvalidRequest(
                f"Content parts of type '{kind}' can only be sent to models served over OpenAI's protocol.",
                param=f"{where}[{j}].type",
                code="unsupported_content",
            )
    return parts


def _thinking_in(message: dict) -> list[Thinking]:
    """An assistant message's reasoning: its `reasoning_details` (signed, in order), else its reasoning text.

    Items a client kept from every stream delta (several with one `index`) are
    joined into the block they came from.
    """
    details = message.get("reasoning_details")
    if not details:
        reasoning = message.get("reasoning_content") or message.get("reasoning")
        return [Thinking(reasoning)] if isinstance(reasoning, str) and reasoning else []
    parts: list[Thinking] = []
    previous_index = None
    for detail in details:
        kind, index = detail.get("type"), detail.get("index")
        origin = ORIGINS.get(detail.get("format"))
        if kind in ("reasoning.text", "reasoning.summary"):
            text = detail.get("text" if kind == "reasoning.text" else "summary") or ""
            signature = detail.get("signature") or None
            last = parts[-1] if parts else None
            joins = last is not None and last.signature is None and last.redacted_data is None
            if joins and index is not None and index == previous_index:
                last.text += text
                last.signature = signature
                last.origin = last.origin or origin
            else:
                parts.append(Thinking(text, signature, origin=origin))
        elif kind == "reasoning.encrypted":
            # Anthropic's redacted thinking, or a signature that came without thinking text (Gemini's on a call).
            if origin == "anthropic":
                parts.append(Thinking(redacted_data=detail["data"], origin=origin))
            else:
                parts.append(Thinking(signature=detail["data"], origin=origin))
        else:
            continue  # another kind of item: nothing Beluga can send back
        previous_index = index
    return [part for part in parts if part.text or part.signature or part.redacted_data is not None]


def conversation_from(chat: ChatRequest) -> Conversation:
    """The validated chat request as a Conversation (for an upstream of another protocol)."""
    body = chat.body
    conversation = Conversation(model=chat.model, messages=[], stream=chat.stream, include_usage=chat.include_usage)
    messages = conversation.messages

    def append(role: str, parts: list) -> None:
        if messages and messages[-1].role == role:
            messages[-1].parts.extend(parts)
        else:
            messages.append(Message(role=role, parts=parts))

    for i, message in enumerate(body["messages"]):
        role = message["role"]
        content = message.get("content")
        if role in ("system", "developer"):
            conversation.system.append(Text(_text_of(content)))
        elif role == "user":
            append("user", _user_parts(content, f"messages[{i}].content"))
        elif role == "assistant":
            thinking = _thinking_in(message)
            calls = message.get("tool_calls") or ()
            # Google's bare signature signs the part after it: the first function call of the turn,
            # when there is one (its text comes first in a chat message, the signature went after it).
            parts: list = []
            signs_call: list = []
            for part in thinking:
                (signs_call if calls and signs_next_part(part) else parts).append(part)
            text = _text_of(content) if content is not None else ""
            if text:
                parts.append(Text(text))
            parts.extend(signs_call)
            for call in calls:
                function = call.get("function") or {}
                parts.append(
                    ToolCall(
                        id=str(call.get("id") or ""),
                        name=str(function.get("name") or ""),
                        arguments=function.get("arguments") or "{}",
                    )
                )
            legacy = message.get("function_call")
            if isinstance(legacy, dict):
                parts.append(
                    ToolCall(
                        id=f"call_{legacy.get('name', '')}",
                        name=str(legacy.get("name") or ""),
                        arguments=legacy.get("arguments") or "{}",
                    )
                )
            append("assistant", parts)
        else:  # tool / function: a result, carried in a user turn
            call_id = message.get("tool_call_id") or f"call_{message.get('name', '')}"
            result = ToolResult(
                call_id=call_id,
                content=[Text(_text_of(content))],
                name=message.get("name") or conversation.tool_name_for(call_id),
            )
            append("user", [result])

    for i, tool in enumerate(body.get("tools") or ()):
        if tool["type"] != "function":
            raise InvalidRequest(
                "Custom (free-form) tools can only be sent to models served over OpenAI's protocol.",
                param=f"tools[{i}].type",
                code="unsupported_tool",
            )
        function = tool["function"]
        conversation.tools.append(
            Tool(
                name=function["name"],
                description=function.get("description") or "",
                parameters=function.get("parameters") or {"type": "object", "properties": {}},
            )
        )
    choice = body.get("tool_choice")
    if isinstance(choice, str):
        conversation.tool_choice = ToolChoice(mode=choice)
    elif isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        conversation.tool_choice = ToolChoice(mode="tool", name=name) if name else ToolChoice()
    if body.get("parallel_tool_calls") is False:
        conversation.tool_choice = conversation.tool_choice or ToolChoice()
        conversation.tool_choice.parallel = False

    conversation.max_tokens = chat.max_tokens
    conversation.temperature = body.get("temperature")
    conversation.top_p = body.get("top_p")
    stop = body.get("stop")
    conversation.stop = [stop] if isinstance(stop, str) else list(stop or ())
    conversation.n = body.get("n") or 1
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema"):
        spec = fmt.get("json_schema") or {}
        conversation.response_format = ResponseFormat(
            kind=fmt["type"], schema=spec.get("schema"), name=spec.get("name"), strict=spec.get("strict")
        )
    effort = body.get("reasoning_effort")
    if effort == "none":
        conversation.thinking = ThinkingConfig.off()
    elif isinstance(effort, str):
        conversation.thinking = ThinkingConfig(effort="high" if effort == "xhigh" else effort)
    conversation.user = body.get("user")
    conversation.openai_extra = {k: v for k, v in body.items() if k not in _READ}
    return conversation


def _usage_json(usage: Usage) -> dict:
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_input_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


def _completion_id(request_id: str) -> str:
    return f"chatcmpl-{request_id.replace('-', '')}"


def _format(origin: str | None) -> str:
    return REASONING_FORMATS.get(origin or "", UNKNOWN_FORMAT)


def _encrypted(data: str, origin: str | None, index: int) -> dict:
    return {"type": "reasoning.encrypted", "data": data, "format": _format(origin), "index": index}


def _reasoning_detail(part: Thinking, index: int) -> dict:
    """A Thinking part as an OpenRouter `reasoning_details` item, its signature as the provider made it."""
    if part.redacted_data is not None:
        return _encrypted(part.redacted_data, part.origin or "anthropic", index)  # only Anthropic redacts
    if part.signature and not part.text and part.origin != "anthropic":
        return _encrypted(part.signature, part.origin, index)
    return {
        "type": "reasoning.text",
        "text": part.text,
        "signature": part.signature,
        "format": _format(part.origin),
        "index": index,
    }


def write_reply(reply: Reply, *, model: str, request_id: str, conversation: Conversation | None = None) -> dict:
    calls = reply.tool_calls
    message: dict = {"role": "assistant", "content": reply.text if reply.text or not calls else None, "refusal": None}
    thinking = [part for part in reply.parts if isinstance(part, Thinking)]
    text = "".join(part.text for part in thinking)
    if text:
        message["reasoning_content"] = text  # DeepSeek's field, which most chat clients show
    blocks = [part for part in thinking if part.text or part.signature or part.redacted_data is not None]
    if blocks:
        # OpenRouter's field: the signed blocks, which a client sends back to continue a tool loop.
        message["reasoning_details"] = [_reasoning_detail(part, index) for index, part in enumerate(blocks)]
    if calls:
        message["tool_calls"] = [
            {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
            for call in calls
        ]
    body = {
        "id": _completion_id(request_id),
        "object": "chat.completion",
        "created": reply.created or int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": reply.stop_reason or "stop"}],
    }
    if reply.usage is not None:
        body["usage"] = _usage_json(reply.usage)
    return body


class StreamWriter:
    """IR stream events as `chat.completion.chunk` events, then `[DONE]`."""

    content_type = "text/event-stream"

    def __init__(self, *, model: str, request_id: str, conversation: Conversation, cost_of=None) -> None:
        self.include_usage = conversation.include_usage
        self.cost_of = cost_of  # Usage -> the cost fields added to the usage chunk
        self.base = {
            "id": _completion_id(request_id),
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
        }
        self.started = False
        self.usage: Usage | None = None
        self.finished = False
        self._details = 0  # reasoning_details items sent
        self._block: int | None = None  # the index of the thinking block being streamed, until its end
        self._block_text = False
        self._format_sent = False

    def _chunk(self, delta: dict, finish: str | None = None) -> bytes:
        chunk = dict(self.base, choices=[{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}])
        if self.include_usage:
            chunk["usage"] = None
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    def _start(self) -> bytes:
        if self.started:
            return b""
        self.started = True
        return self._chunk({"role": "assistant", "content": ""})

    def write(self, event: StreamEvent) -> bytes:
        if isinstance(event, UsageReport):
            self.usage = event.usage
            return b""
        out = self._start()
        if isinstance(event, Start):
            return out
        if isinstance(event, ThinkingDelta):
            return out + self._thinking(event)
        self._block = None  # anything else ends a thinking block
        if isinstance(event, TextDelta):
            return out + self._chunk({"content": event.text})
        if isinstance(event, ToolCallStart):
            call = {
                "index": event.index,
                "id": event.id,
                "type": "function",
                "function": {"name": event.name, "arguments": ""},
            }
            return out + self._chunk({"tool_calls": [call]})
        if isinstance(event, ToolCallDelta):
            return out + self._chunk(
                {"tool_calls": [{"index": event.index, "function": {"arguments": event.arguments}}]}
            )
        if isinstance(event, Finish):
            self.finished = True
            return out + self._chunk({}, event.stop_reason)
        return out

    def _thinking(self, event: ThinkingDelta) -> bytes:
        """Reasoning text as `reasoning_content`, and each block as one `reasoning_details` item.

        The deltas of an item share its `index`, and `format` is sent once, when
        known (Anthropic's comes with the signature at the block's end): the
        OpenAI SDK's stream accumulator merges items by index and joins strings.
        """
        if event.redacted_data is not None:
            self._block = None
            item = _encrypted(event.redacted_data, event.origin or "anthropic", self._next_detail())
            return self._chunk({"reasoning_details": [item]})
        if signs_next_part(event):
            self._block = None
            return self._chunk({"reasoning_details": [_encrypted(event.signature, event.origin, self._next_detail())]})
        if not event.text and not event.signature:
            return b""
        if self._block is None:
            self._block, self._block_text, self._format_sent = self._next_detail(), False, False
        item: dict = {"type": "reasoning.text", "index": self._block}
        delta: dict = {}
        if event.text:
            delta["reasoning_content"] = event.text
            item["text"] = event.text
            self._block_text = True
        if event.origin and not self._format_sent:
            item["format"] = _format(event.origin)
            self._format_sent = True
        if event.signature:
            if not self._block_text and event.origin != "anthropic":
                item = _encrypted(event.signature, event.origin, self._block)
            else:
                item["signature"] = event.signature
            self._block = None  # a signature ends its block
        delta["reasoning_details"] = [item]
        return self._chunk(delta)

    def _next_detail(self) -> int:
        self._details += 1
        return self._details - 1

    def close(self, *, error: str | None = None) -> bytes:
        out = self._start()
        if error is not None:
            return out + stream_error_event(error) + DONE
        if not self.finished:
            out += self._chunk({}, "stop")
        if self.include_usage and self.usage is not None:
            chunk = dict(self.base, choices=[], usage=with_cost_of(_usage_json(self.usage), self.usage, self.cost_of))
            out += b"data: " + orjson.dumps(chunk) + b"\n\n"
        return out + DONE


def error_body(error: ApiError) -> tuple[int, dict]:
    return error.status, error.body()


# --- upstream side ---------------------------------------------------------------


def _content_json(parts: list) -> str | list:
    if all(isinstance(part, Text) for part in parts):
        return "".join(part.text for part in parts)
    out = []
    for part in parts:
        if isinstance(part, Text):
            out.append({"type": "text", "text": part.text})
        elif isinstance(part, Image):
            image = {"url": part.data_url}
            if part.detail:
                image["detail"] = part.detail
            out.append({"type": "image_url", "image_url": image})
    return out


def _messages_json(conversation: Conversation) -> list[dict]:
    messages: list[dict] = []
    if conversation.system:
        messages.append({"role": "system", "content": conversation.system_text})
    for message in conversation.messages:
        if message.role == "assistant":
            text = "".join(part.text for part in message.parts if isinstance(part, Text))
            calls = [part for part in message.parts if isinstance(part, ToolCall)]
            out: dict = {"role": "assistant", "content": text or None}
            if calls:
                out["tool_calls"] = [
                    {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
                    for call in calls
                ]
            elif not text:
                out["content"] = ""
            messages.append(out)
            continue
        pending: list = []
        for part in message.parts:
            if isinstance(part, ToolResult):
                if pending:
                    messages.append({"role": "user", "content": _content_json(pending)})
                    pending = []
                # OpenAI's tool messages carry text only.
                messages.append({"role": "tool", "tool_call_id": part.call_id, "content": part.text})
            elif isinstance(part, (Text, Image)):
                pending.append(part)
        if pending:
            messages.append({"role": "user", "content": _content_json(pending)})
    return messages


def settings_into_body(
    body: dict, defaults: RequestSettings, overrides: RequestSettings, *, route: RouteTarget, dropped: list[str]
) -> None:
    """A model's request settings (gateway/protocols/variants.py) in an OpenAI chat request the client
    wrote itself (the fast path): a default where the body lacks the field, an override over it.

    OpenAI's reasoning models take an effort (a budget becomes one, as
    build_request does it) and `max_completion_tokens`; other OpenAI-compatible
    servers take `max_tokens`, and are not sent thinking (named in `dropped`).
    Off is the model's lowest effort."""

    def client_sets(name: str) -> bool:
        if name == "thinking":
            return "reasoning_effort" in body
        if name == "max_tokens":
            return "max_tokens" in body or "max_completion_tokens" in body
        return name in body

    merged = settings_merged(defaults, overrides, client_sets=client_sets)
    reasoning_model = bool(REASONING_MODEL.match(route.upstream_model))
    for name, value in merged.items():
        if name == "top_k":
            dropped.append("top_k")  # Chat Completions has no top_k
        elif name == "max_tokens":
            body.pop("max_tokens", None)
            body.pop("max_completion_tokens", None)
            body["max_completion_tokens" if reasoning_model else "max_tokens"] = value
        elif name != "thinking":
            body[name] = value
        else:
            body.pop("reasoning_effort", None)
            if not (value.effort or value.budget_tokens or value.is_off):
                continue  # on at the model's own amount: its default
            if not reasoning_model:
                dropped.append("thinking")
            else:
                body["reasoning_effort"] = _effort_of(value, route.upstream_model)


# The least reasoning each family takes: OpenAI's reasoning models cannot all turn it off.
_LOWEST_EFFORTS = ((re.compile(r"^gpt-5\.\d"), "none"), (re.compile(r"^gpt-5"), "minimal"))


def _effort_of(thinking: ThinkingConfig, model: str) -> str:
    """An OpenAI reasoning effort for a thinking config with an effort or a budget, or off (the
    model's lowest: none from gpt-5.1, minimal on gpt-5, low on the o-series and gpt-oss)."""
    if thinking.is_off:
        return next((effort for family, effort in _LOWEST_EFFORTS if family.match(model)), "low")
    effort = thinking.effort or next(
        (effort for limit, effort in EFFORT_FOR_BUDGET if thinking.budget_tokens <= limit), "high"
    )
    if effort == "minimal" and not model.startswith("gpt-5"):
        return "low"  # minimal is gpt-5's own
    return effort


def build_request(conversation: Conversation, *, route: RouteTarget, stream: bool) -> UpstreamRequest:
    body: dict = {"model": route.upstream_model, "messages": _messages_json(conversation)}
    dropped: list[str] = []
    reasoning_model = bool(REASONING_MODEL.match(route.upstream_model))
    if conversation.max_tokens is not None:
        body["max_completion_tokens" if reasoning_model else "max_tokens"] = conversation.max_tokens
    for name in ("temperature", "top_p"):
        value = getattr(conversation, name)
        if value is not None:
            body[name] = value
    if conversation.top_k is not None:
        dropped.append("top_k")
    if conversation.stop:
        body["stop"] = conversation.stop[:4]
        if len(conversation.stop) > 4:
            dropped.append("stop")
    if conversation.n != 1:
        body["n"] = conversation.n
    if conversation.tools:
        body["tools"] = [
            {
                "type": "function",
                "function": {"name": tool.name, "description": tool.description, "parameters": tool.parameters},
            }
            for tool in conversation.tools
        ]
    choice = conversation.tool_choice
    if choice is not None:
        if choice.mode == "tool":
            body["tool_choice"] = {"type": "function", "function": {"name": choice.name}}
        elif choice.mode != "auto" or conversation.tools:
            body["tool_choice"] = choice.mode
        if choice.parallel is False and conversation.tools:
            body["parallel_tool_calls"] = False
    fmt = conversation.response_format
    if fmt is not None and fmt.kind == "json_object":
        body["response_format"] = {"type": "json_object"}
    elif fmt is not None and fmt.kind == "json_schema":
        spec: dict = {"name": fmt.name or "response", "schema": fmt.schema or {}}
        if fmt.strict is not None:
            spec["strict"] = fmt.strict
        body["response_format"] = {"type": "json_schema", "json_schema": spec}
    thinking = conversation.thinking
    if thinking is not None and (thinking.effort or thinking.budget_tokens):
        if not reasoning_model:
            dropped.append("thinking")
        else:
            body["reasoning_effort"] = _effort_of(thinking, route.upstream_model)
    elif thinking is not None and thinking.is_off and reasoning_model:
        body["reasoning_effort"] = _effort_of(thinking, route.upstream_model)
    if conversation.user:
        body["user"] = conversation.user
    body.update(conversation.openai_extra)
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream" if stream else "application/json"}
    if route.api_key:
        headers["Authorization"] = f"Bearer {route.api_key}"
    return UpstreamRequest(
        url=f"{route.base_url}/chat/completions", headers=headers, body=orjson.dumps(body), dropped=dropped
    )


read_usage = usage_from


def _finish(value) -> str | None:
    if value is None:
        return None
    if value == "function_call":
        return "tool_calls"
    return value if value in FINISH_REASONS else "stop"


def read_reply(data: object) -> Reply:
    if not isinstance(data, dict) or not isinstance(data.get("choices"), list) or not data["choices"]:
        raise ValueError("not a chat completion")
    choice = data["choices"][0]
    message = choice.get("message") if isinstance(choice, dict) else None
    if not isinstance(message, dict):
        raise ValueError("a choice without a message")
    reply = Reply(
        id=str(data.get("id") or ""), model=str(data.get("model") or ""), created=int(data.get("created") or 0)
    )
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if isinstance(reasoning, str) and reasoning:
        reply.parts.append(Thinking(reasoning))
    content = message.get("content")
    if isinstance(content, str) and content:
        reply.parts.append(Text(content))
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        reply.parts.append(
            ToolCall(
                id=str(call.get("id") or ""),
                name=str(function.get("name") or ""),
                arguments=function.get("arguments") or "{}",
            )
        )
    reply.stop_reason = _finish(choice.get("finish_reason")) or "stop"
    reply.usage = read_usage(data)
    return reply


class StreamReader:
    def __init__(self) -> None:
        self.ended = False
        self.error: str | None = None
        self.started = False
        self._calls: dict[int, int] = {}  # upstream tool_calls index -> IR index

    def feed(self, data: bytes) -> list[StreamEvent]:
        if data == b"[DONE]":
            self.ended = True
            return []
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            return []
        if not isinstance(chunk, dict):
            return []
        events: list[StreamEvent] = []
        if "error" in chunk and not chunk.get("choices"):
            error = chunk["error"]
            self.error = str(error.get("message") if isinstance(error, dict) else error) or "upstream error"
            return events
        if not self.started:
            self.started = True
            events.append(Start(id=str(chunk.get("id") or ""), model=str(chunk.get("model") or "")))
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if isinstance(reasoning, str) and reasoning:
                events.append(ThinkingDelta(reasoning))
            text = delta.get("content")
            if isinstance(text, str) and text:
                events.append(TextDelta(text))
            for call in delta.get("tool_calls") or ():
                position = call.get("index", 0)
                function = call.get("function") or {}
                if position not in self._calls:
                    self._calls[position] = len(self._calls)
                    events.append(
                        ToolCallStart(
                            index=self._calls[position],
                            id=str(call.get("id") or ""),
                            name=str(function.get("name") or ""),
                        )
                    )
                arguments = function.get("arguments")
                if arguments:
                    events.append(ToolCallDelta(index=self._calls[position], arguments=arguments))
            finish = _finish(choice.get("finish_reason"))
            if finish:
                events.append(Finish(finish))
        usage = read_usage(chunk)
        if usage is not None:
            events.append(UsageReport(usage))
        return events


def read_error(*, route: RouteTarget, status: int, content: bytes, headers) -> ApiError:
    return error_from_response(route=route, status=status, content=content, headers=headers)
