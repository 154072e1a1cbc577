"""OpenAI's Responses API, upstream side: Beluga calling POST {base_url}/responses for a
route of kind "openai-responses" (models OpenAI serves only there: gpt-5.x-codex,
gpt-5-pro, ...), and the same protocol on both sides (passthrough) when the client
speaks the Responses API too. openai_responses.py, the client side, re-exports these
names, so that the one protocol module offers both sides.

Choices made here:
- Stateless. Every request says `store: false`, a passthrough included: Beluga
  keeps no responses, and a response stored under Beluga's OpenAI account could be
  read back by anyone who learns its id. What needs a stored object
  (previous_response_id, conversation, prompt, background) is refused, in the
  client-side reader's words.
- Encrypted reasoning. `include: ["reasoning.encrypted_content"]` is always asked
  for: without a stored response it is the only way a reasoning model gets its
  reasoning back on the next turn (tool-call loops above all). It rides in
  `Thinking.signature` with `origin` PROTOCOL, which every client protocol carries
  back (see conversation.signature_out). Only thinking of that origin is sent back
  to OpenAI, as a reasoning item; thinking from other providers is left out.
- The end user's id goes as `safety_identifier` (`user` is deprecated), hashed
  (SHA-256, 64 hex characters) when longer than OpenAI's 64-character limit, as
  Claude Code's metadata.user_id is.
- Dropped and named: stop sequences and top_k (the API has neither), temperature and
  top_p unless at their defaults (the reasoning models this kind serves refuse
  them), and the chat-only extras (seed, penalties, logit_bias, logprobs, ...).
  A max_output_tokens below OpenAI's minimum of 16 is raised to 16 and named.
  n > 1 is refused.
"""

from __future__ import annotations

import hashlib
import time
import uuid

import orjson

from catalog.selectors import RouteTarget
from gateway.errors import ApiError, InvalidRequest
from gateway.protocols import UpstreamRequest
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
    with_cost_of,
)
from gateway.protocols.openai_chat import EFFORT_FOR_BUDGET
from gateway.protocols.variants import RequestSettings, settings_merged
from gateway.providers.openai import error_from_response

PROTOCOL = "openai-responses"  # Thinking.origin of the encrypted reasoning OpenAI made
ENCRYPTED_REASONING = "reasoning.encrypted_content"
MIN_OUTPUT_TOKENS = 16  # OpenAI refuses a smaller max_output_tokens
MAX_SAFETY_IDENTIFIER = 64
# Chat parameters in Conversation.openai_extra that the Responses API takes under the same name.
SAME_NAME_EXTRAS = frozenset(
    {
        "service_tier",
        "prompt_cache_key",
        "prompt_cache_retention",
        "prompt_cache_options",
        "safety_identifier",
        "metadata",
    }
)
# Events whose `response` object names the model.
LIFECYCLE_EVENTS = frozenset(
    {
        "response.created",
        "response.queued",
        "response.in_progress",
        "response.completed",
        "response.incomplete",
        "response.failed",
    }
)
INCOMPLETE_STOPS = {"max_output_tokens": LENGTH, "content_filter": CONTENT_FILTER}


# --- requests ------------------------------------------------------------------------


def _headers(route: RouteTarget, *, stream: bool) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream" if stream else "application/json"}
    if route.api_key:
        headers["Authorization"] = f"Bearer {route.api_key}"
    return headers


def _image(image: Image) -> dict:
    return {"type": "input_image", "image_url": image.data_url, "detail": image.detail or "auto"}


def _content_part(part, role: str) -> dict | None:
    """A part that belongs in a message item's content (None: it is an item of its own, or left out)."""
    if isinstance(part, Text):
        if not part.text:
            return None
        return {"type": "output_text" if role == "assistant" else "input_text", "text": part.text}
    if isinstance(part, Image) and role == "user":
        return _image(part)
    return None


def _item(part) -> dict | None:
    if isinstance(part, ToolCall):
        return {"type": "function_call", "call_id": part.id, "name": part.name, "arguments": part.arguments or "{}"}
    if isinstance(part, ToolResult):
        images = [item for item in part.content if isinstance(item, Image)]
        output: str | list = part.text
        if images:
            output = [
                {"type": "input_text", "text": item.text} if isinstance(item, Text) else _image(item)
                for item in part.content
            ]
        return {"type": "function_call_output", "call_id": part.call_id, "output": output}
    if isinstance(part, Thinking) and part.signature and part.origin == PROTOCOL:
        summary = [{"type": "summary_text", "text": part.text}] if part.text else []
        return {"type": "reasoning", "summary": summary, "encrypted_content": part.signature}
    return None


def _input(messages: list[Message]) -> list[dict]:
    """Messages as input items, in order: text and images gather into message items between the others."""
    items: list[dict] = []
    for message in messages:
        content: list[dict] = []
        for part in message.parts:
            block = _content_part(part, message.role)
            if block is not None:
                content.append(block)
                continue
            item = _item(part)
            if item is None:
                continue
            if content:
                items.append({"type": "message", "role": message.role, "content": content})
                content = []
            items.append(item)
        if content:
            items.append({"type": "message", "role": message.role, "content": content})
    return items


def _tool_choice(conversation: Conversation, body: dict) -> None:
    choice = conversation.tool_choice
    if choice is None:
        return
    if choice.mode == "tool":
        body["tool_choice"] = {"type": "function", "name": choice.name}
    elif choice.mode != "auto" or conversation.tools:
        body["tool_choice"] = choice.mode
    if choice.parallel is False and conversation.tools:
        body["parallel_tool_calls"] = False


def _reasoning(thinking: ThinkingConfig | None) -> dict | None:
    if thinking is None or (thinking.budget_tokens == 0 and not thinking.effort):
        return None  # a zero budget (Gemini's way) asks for no reasoning: the model's default then
    effort = thinking.effort
    if effort is None and thinking.budget_tokens is not None:
        effort = next((effort for limit, effort in EFFORT_FOR_BUDGET if thinking.budget_tokens <= limit), "high")
    reasoning = {"effort": effort} if effort else {}
    if thinking.include_thoughts:
        reasoning["summary"] = "auto"
    return reasoning or None


def _safety_identifier(user: str) -> str:
    if len(user) <= MAX_SAFETY_IDENTIFIER:
        return user
    return hashlib.sha256(user.encode()).hexdigest()


def build_request(conversation: Conversation, *, route: RouteTarget, stream: bool) -> UpstreamRequest:
    """POST {base_url}/responses with the route's model and credential (see the module doc for what is dropped)."""
    if conversation.n > 1:
        raise InvalidRequest("n: this model returns one answer per request; n must be 1.", param="n")
    dropped: list[str] = []
    body: dict = {"model": route.upstream_model}
    if conversation.system_text:
        body["instructions"] = conversation.system_text
    body["input"] = _input(conversation.messages)
    if conversation.tools:
        body["tools"] = [
            {
                "type": "function",
                "name": tool.name,
                "description": tool.description,
                "parameters": tool.parameters if "type" in tool.parameters else {"type": "object", **tool.parameters},
                "strict": False,
            }
            for tool in conversation.tools
        ]
    _tool_choice(conversation, body)
    if conversation.max_tokens is not None:
        body["max_output_tokens"] = max(conversation.max_tokens, MIN_OUTPUT_TOKENS)
        if conversation.max_tokens < MIN_OUTPUT_TOKENS:
            dropped.append("max_tokens")
    for name, default in (("temperature", 1), ("top_p", 1)):
        value = getattr(conversation, name)
        if value is not None and value != default:
            dropped.append(name)
    if conversation.top_k is not None:
        dropped.append("top_k")
    if conversation.stop:
        dropped.append("stop")
    text: dict = {}
    fmt = conversation.response_format
    if fmt is not None and fmt.kind == "json_object":
        text["format"] = {"type": "json_object"}
    elif fmt is not None and fmt.kind == "json_schema":
        text["format"] = {"type": "json_schema", "name": fmt.name or "response", "schema": fmt.schema or {}}
        if fmt.strict is not None:
            text["format"]["strict"] = fmt.strict
    extra = dict(conversation.openai_extra)
    verbosity = extra.pop("verbosity", None)
    if verbosity is not None:
        text["verbosity"] = verbosity  # the chat API's top-level parameter
    if text:
        body["text"] = text
    reasoning = _reasoning(conversation.thinking)
    if reasoning is not None:
        body["reasoning"] = reasoning
    if conversation.user:
        body["safety_identifier"] = _safety_identifier(conversation.user)
    for name, value in extra.items():
        if name in SAME_NAME_EXTRAS:
            body[name] = value
        elif not (name == "store" and not value):
            dropped.append(name)
    body["store"] = False
    body["include"] = [ENCRYPTED_REASONING]
    if stream:
        body["stream"] = True
    return UpstreamRequest(
        url=f"{route.base_url}/responses",
        headers=_headers(route, stream=stream),
        body=orjson.dumps(body),
        dropped=dropped,
    )


# --- answers ---------------------------------------------------------------------------


def _int(value) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def usage_in(usage: object) -> Usage | None:
    """The Responses usage object (input includes cached tokens, output includes reasoning, as the representation's)."""
    if not isinstance(usage, dict) or not isinstance(usage.get("input_tokens"), int):
        return None
    if not isinstance(usage.get("output_tokens"), int):
        return None
    input_details = usage.get("input_tokens_details")
    output_details = usage.get("output_tokens_details")
    return Usage(
        input_tokens=usage["input_tokens"],
        output_tokens=usage["output_tokens"],
        cached_input_tokens=_int(input_details.get("cached_tokens")) if isinstance(input_details, dict) else 0,
        reasoning_tokens=_int(output_details.get("reasoning_tokens")) if isinstance(output_details, dict) else 0,
    )


def _stop_reason(response: dict, *, calls: bool, refused: bool) -> str:
    if response.get("status") == "incomplete":
        details = response.get("incomplete_details")
        reason = details.get("reason") if isinstance(details, dict) else None
        return INCOMPLETE_STOPS.get(reason, LENGTH)
    if calls:
        return TOOL_CALLS
    return CONTENT_FILTER if refused else STOP


def _reasoning_text(item: dict) -> str:
    """A reasoning item's summary (else its raw reasoning text, which open models send)."""
    for key, kinds in (("summary", ("summary_text",)), ("content", ("reasoning_text", "text"))):
        texts = [
            part["text"]
            for part in item.get(key) or ()
            if isinstance(part, dict) and part.get("type") in kinds and isinstance(part.get("text"), str)
        ]
        if texts:
            return "\n\n".join(texts)
    return ""


def _encrypted(item: dict) -> str | None:
    value = item.get("encrypted_content")
    return value if isinstance(value, str) and value else None


def read_reply(data: object) -> Reply:
    """A Response object as a Reply. Raises ValueError when it is not one, or is one that failed."""
    if not isinstance(data, dict) or not isinstance(data.get("output"), list) or data.get("error"):
        raise ValueError("not a Responses API response")
    if data.get("status") in ("failed", "cancelled", "queued", "in_progress"):
        raise ValueError(f"the response is {data['status']}")
    parts: list[Text | ToolCall | Thinking] = []
    refused = False
    for item in data["output"]:
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "message":
            for block in item.get("content") or ():
                if not isinstance(block, dict):
                    continue
                if block.get("type") == "output_text" and isinstance(block.get("text"), str):
                    parts.append(Text(block["text"]))
                elif block.get("type") == "refusal" and isinstance(block.get("refusal"), str):
                    parts.append(Text(block["refusal"]))
                    refused = True
        elif kind == "function_call":
            call_id, name = str(item.get("call_id") or ""), str(item.get("name") or "")
            parts.append(ToolCall(id=call_id, name=name, arguments=item.get("arguments") or "{}"))
        elif kind == "reasoning":
            text, signature = _reasoning_text(item), _encrypted(item)
            if text or signature:
                parts.append(Thinking(text=text, signature=signature, origin=PROTOCOL))
        # Hosted tools' items (web_search_call, ...) are not part of the representation.
    calls = any(isinstance(part, ToolCall) for part in parts)
    return Reply(
        id=str(data.get("id") or ""),
        model=str(data.get("model") or ""),
        parts=parts,
        stop_reason=_stop_reason(data, calls=calls, refused=refused),
        usage=usage_in(data.get("usage")),
        created=_int(data.get("created_at")) or int(time.time()),
    )


class StreamReader:
    """The Responses API's typed events (one `data:` payload at a time) as stream events.

    Tool calls are numbered from 0 among the function calls alone; argument
    deltas find theirs by item_id (else output_index). A reasoning item's
    encrypted content arrives whole with its `response.output_item.done`, sent
    on as the thinking's signature, as Anthropic's arrives at its block's end.
    """

    def __init__(self) -> None:
        self.ended = False
        self.error: str | None = None
        self._calls: dict[tuple, int] = {}  # ("item", item_id) and ("output", output_index) -> tool call index
        self._count = 0
        self._streamed: set[int] = set()  # tool calls whose arguments arrived as deltas
        self._refused = False

    def feed(self, data: bytes) -> list[StreamEvent]:
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            return []
        if not isinstance(event, dict):
            return []
        kind = event.get("type")
        if kind == "response.output_text.delta" or kind == "response.refusal.delta":
            self._refused = self._refused or kind == "response.refusal.delta"
            return [TextDelta(event["delta"])] if isinstance(event.get("delta"), str) and event["delta"] else []
        if kind in ("response.reasoning_summary_text.delta", "response.reasoning_text.delta"):
            delta = event.get("delta")
            return [ThinkingDelta(delta, origin=PROTOCOL)] if isinstance(delta, str) and delta else []
        if kind == "response.function_call_arguments.delta":
            return self._arguments(event)
        if kind == "response.reasoning_summary_part.added" and _int(event.get("summary_index")) > 0:
            return [ThinkingDelta("\n\n", origin=PROTOCOL)]  # as read_reply joins the parts of a summary
        if kind == "response.output_item.added":
            return self._item_added(event)
        if kind == "response.output_item.done":
            return self._item_done(event)
        response = event.get("response") if isinstance(event.get("response"), dict) else {}
        if kind == "response.created":
            return [Start(id=str(response.get("id") or ""), model=str(response.get("model") or ""))]
        if kind in ("response.completed", "response.incomplete"):
            self.ended = True
            events: list[StreamEvent] = [Finish(_stop_reason(response, calls=self._count > 0, refused=self._refused))]
            usage = usage_in(response.get("usage"))
            if usage is not None:
                events.append(UsageReport(usage))
            return events
        if kind == "response.failed":
            error = response.get("error") if isinstance(response.get("error"), dict) else {}
            self.error = str(error.get("message") or error.get("code") or "The response failed.")
        elif kind == "error":
            self.error = str(event.get("message") or event.get("code") or "The model provider reported an error.")
        return []  # in_progress, content parts, *.done events, and event types added later

    def _item_added(self, event: dict) -> list[StreamEvent]:
        item = event.get("item")
        if not isinstance(item, dict) or item.get("type") != "function_call":
            return []
        index, self._count = self._count, self._count + 1
        self._calls[("item", item.get("id"))] = index
        self._calls[("output", event.get("output_index"))] = index
        return [ToolCallStart(index, str(item.get("call_id") or ""), str(item.get("name") or ""))]

    def _index(self, event: dict) -> int | None:
        index = self._calls.get(("item", event.get("item_id")))
        return index if index is not None else self._calls.get(("output", event.get("output_index")))

    def _arguments(self, event: dict) -> list[StreamEvent]:
        index, delta = self._index(event), event.get("delta")
        if index is None or not isinstance(delta, str) or not delta:
            return []
        self._streamed.add(index)
        return [ToolCallDelta(index, delta)]

    def _item_done(self, event: dict) -> list[StreamEvent]:
        item = event.get("item")
        if not isinstance(item, dict):
            return []
        if item.get("type") == "reasoning":
            signature = _encrypted(item)
            return [ThinkingDelta(signature=signature, origin=PROTOCOL)] if signature else []
        if item.get("type") == "function_call":
            # A server that sends the arguments only whole still gets them through.
            index = self._calls.get(("item", item.get("id")))
            arguments = item.get("arguments")
            if index is not None and index not in self._streamed and isinstance(arguments, str) and arguments:
                self._streamed.add(index)
                return [ToolCallDelta(index, arguments)]
        return []


def read_error(*, route: RouteTarget, status: int, content: bytes, headers) -> ApiError:
    """OpenAI's error shape, as the chat API's: the same mapping, but a 404 is the request's (an
    unknown previous response or item), not the route's."""
    return error_from_response(
        route=route, status=status, content=content, headers=headers, not_found_is_the_request=True
    )


# --- same protocol both sides: the client's request forwarded as it is -------------------
# Codex and the OpenAI SDKs send what the Conversation does not carry (custom
# tools with grammars, hosted tools, OpenAI's own encrypted reasoning, include
# lists); to a Responses upstream their request goes as sent but for the model
# and `store`, and the answer comes back as sent but for the model.


def _client_side():
    """This protocol's client side, whose checks and shapes the passthrough reuses.

    Imported when first needed: it re-exports this module's names, so a module
    import here would be circular.
    """
    from gateway.protocols import openai_responses

    return openai_responses


def passthrough_check(body: object) -> bool:
    """The little Beluga itself needs from a request it forwards; returns whether it streams."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_type")
    client = _client_side()
    # The client-side reader checks model, stream and what needs a stored object, in its own words.
    checked = {name: body[name] for name in ("model", "stream", *client.STATEFUL, "background") if name in body}
    client.read_request({**checked, "input": "-"})
    if body.get("input") is None:
        raise client._missing("input")
    return bool(body.get("stream"))


def _unsealed(item: object) -> object:
    """A reasoning item Beluga's client side wrote: OpenAI's own payload back in place, else the item left out.

    A conversation that reached this model through another route may carry
    reasoning items sealed by Beluga (openai_responses.SEALED); OpenAI cannot read
    those. The item ids are Beluga's too, unknown to OpenAI, so they go.
    """
    if not isinstance(item, dict) or item.get("type") != "reasoning":
        return item
    content, client = item.get("encrypted_content"), _client_side()
    if not isinstance(content, str) or not content.startswith(client.SEALED):
        return item
    signature, _, origin = client._unseal(content)
    if not signature or origin != PROTOCOL:
        return None
    return {key: value for key, value in item.items() if key != "id"} | {"encrypted_content": signature}


def settings_into_body(
    body: dict, defaults: RequestSettings, overrides: RequestSettings, *, route: RouteTarget, dropped: list[str]
) -> None:
    """A model's request settings (gateway/protocols/variants.py) in a Responses request the client wrote
    itself: a default where the body lacks the field, an override over it."""
    names = {"thinking": "reasoning", "max_tokens": "max_output_tokens", "temperature": "temperature"}
    names |= {"top_p": "top_p", "top_k": None}
    merged = settings_merged(defaults, overrides, client_sets=lambda name: names[name] in body)
    for name, value in merged.items():
        if name == "top_k":
            dropped.append("top_k")  # the Responses API has no top_k
        elif name != "thinking":
            body[names[name]] = value
        elif (reasoning := _reasoning(value)) is not None:
            body["reasoning"] = reasoning
        else:
            body.pop("reasoning", None)


def passthrough_request(body: dict, *, route: RouteTarget, stream: bool, client_headers: dict) -> UpstreamRequest:
    """The body as sent, for the route's model, never stored; only the route's credential goes."""
    outbound = {**body, "model": route.upstream_model, "store": False}
    if isinstance(body.get("input"), list):
        items = [_unsealed(item) for item in body["input"]]
        outbound["input"] = [item for item in items if item is not None]
    dropped: list[str] = []
    if isinstance(body.get("tools"), list):
        # Hosted tools (web search, file search, code interpreter, ...) run on
        # Beluga's OpenAI account, unpriced, and file search would reach its
        # vector stores: left out, as on translated calls.
        outbound["tools"] = []
        for tool in body["tools"]:
            kind = tool.get("type") if isinstance(tool, dict) else None
            if kind in ("function", "custom"):
                outbound["tools"].append(tool)
            else:
                dropped.append(f"tools.{kind}")
        if not outbound["tools"]:
            del outbound["tools"]
            outbound.pop("tool_choice", None)
    return UpstreamRequest(
        url=f"{route.base_url}/responses",
        headers=_headers(route, stream=stream),
        body=orjson.dumps(outbound),
        dropped=dropped,
    )


def passthrough_reply(data: dict, *, model: str) -> dict:
    data["model"] = model
    return data


def _frame(kind: str, data: bytes) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n"


class PassthroughFramer:
    """The upstream's events re-framed for the client, the model renamed in each Response object they carry."""

    content_type = "text/event-stream"

    def __init__(self, *, model: str, cost_of=None, **_options) -> None:
        self.model = model
        self.cost_of = cost_of  # Usage -> the cost fields, added to the final Response's usage
        self.sequence = -1  # the upstream's last sequence_number
        self.response: dict | None = None  # the latest Response object seen, for a failure event

    def frame(self, data: bytes, usage: Usage | None = None) -> bytes:
        """`usage`: what the stream reported so far (read from this and the earlier events)."""
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            return b""
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            return b""
        kind = event["type"]
        sequence = event.get("sequence_number")
        if isinstance(sequence, int):
            self.sequence = max(self.sequence, sequence)
        response = event.get("response")
        if kind in LIFECYCLE_EVENTS and isinstance(response, dict):
            response["model"] = self.model
            if isinstance(response.get("usage"), dict) and usage is not None and kind != "response.created":
                with_cost_of(response["usage"], usage, self.cost_of)
            self.response = response
            return _frame(kind, orjson.dumps(event))
        return _frame(kind, data)

    def close(self, *, error: str | None = None) -> bytes:
        """Nothing after the upstream's own end; a `response.failed` when it broke off (`error`)."""
        if error is None:
            return b""
        failure = {"code": "server_error", "message": error}
        if self.response is not None:
            response = {**self.response, "status": "failed", "error": failure, "usage": None}
        else:
            client = _client_side()
            response = client._response(
                request_id=f"req_{uuid.uuid4().hex}",
                model=self.model,
                created_at=int(time.time()),
                status="failed",
                output=[],
                usage=None,
                echo=client._echo(None),
                error=failure,
            )
        self.sequence += 1
        event = {"type": "response.failed", "sequence_number": self.sequence, "response": response}
        return _frame("response.failed", orjson.dumps(event))
