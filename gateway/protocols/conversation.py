"""One representation of a model call, whatever protocol it arrived in or leaves by.

Every protocol module (gateway/protocols/*.py) reads its own request shape
into a `Conversation` and writes a `Conversation` out as its own request; it
reads its own reply into a `Reply` (or a stream into `StreamEvent`s) and
writes those back out. Translating protocol A to protocol B is A's reader then
B's writer: N protocols, N modules, no code for a pair.

Conventions, fixed here so that every module agrees:

- Roles are "user" and "assistant". System text is `Conversation.system`.
  A tool's result is a `ToolResult` part in a "user" message (Anthropic's
  model); OpenAI's `role: tool` messages and Gemini's `functionResponse` parts
  are read into that and written back from it.
- A tool call's `arguments` is JSON text (an object), as OpenAI sends it.
  Protocols that carry an object (Anthropic `input`, Gemini `args`) dump it
  with `arguments_text` and load it with `arguments_object`.
- Every tool call has an id. Gemini may omit it: its reader makes one
  (`call_<n>`), and matches results to calls by name in order.
- Usage counts follow OpenAI: `input_tokens` is every prompt token, cached
  ones included; `cached_input_tokens` and `cache_write_tokens` are parts of
  it. `output_tokens` is every generated token, reasoning included;
  `reasoning_tokens` is part of it. Anthropic (input excludes cache reads and
  writes) and Gemini (candidates exclude thoughts) convert on the way in/out.
- Stop reasons are OpenAI's words: "stop", "length", "tool_calls",
  "content_filter"; `None` while unknown.
- Sampling values are stored as given, already validated by the reader;
  a writer drops what its protocol cannot express and names it in
  `dropped` (the pipeline sends `X-Beluga-Dropped-Params`), or raises
  `InvalidRequest` when dropping would change the meaning.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

STOP = "stop"
LENGTH = "length"
TOOL_CALLS = "tool_calls"
CONTENT_FILTER = "content_filter"


# --- content parts -------------------------------------------------------------


@dataclass(slots=True)
class Text:
    text: str


@dataclass(slots=True)
class Image:
    """An image given by URL (`url`) or inline (`data`: base64 text, with `media_type`)."""

    url: str | None = None
    data: str | None = None
    media_type: str | None = None
    detail: str | None = None  # OpenAI's "low" | "high" | "auto", kept for OpenAI upstreams

    @property
    def data_url(self) -> str:
        """The image as a URL an OpenAI upstream accepts (data: URL when inline)."""
        if self.data is not None:
            return f"data:{self.media_type or 'image/png'};base64,{self.data}"
        return self.url or ""


@dataclass(slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str = "{}"  # JSON text of an object


@dataclass(slots=True)
class ToolResult:
    call_id: str
    content: list[Text | Image] = field(default_factory=list)
    name: str | None = None  # Gemini needs it; readers fill it from the matching call when they can
    is_error: bool = False

    @property
    def text(self) -> str:
        return "".join(part.text for part in self.content if isinstance(part, Text))


@dataclass(slots=True)
class Thinking:
    """Reasoning the model showed. `signature` is Anthropic's, needed to send it back to Anthropic."""

    text: str = ""
    signature: str | None = None
    redacted_data: str | None = None  # Anthropic's redacted_thinking block, opaque
    # The protocol whose provider signed it ("anthropic", "gemini"): a signature
    # goes back only to a provider of that protocol (see signature_out).
    origin: str | None = None


Part = Text | Image | ToolCall | ToolResult | Thinking


@dataclass(slots=True)
class Message:
    role: Literal["user", "assistant"]
    parts: list[Part] = field(default_factory=list)


# --- the request ---------------------------------------------------------------


@dataclass(slots=True)
class Tool:
    name: str
    description: str = ""
    parameters: dict = field(default_factory=lambda: {"type": "object", "properties": {}})


@dataclass(slots=True)
class ToolChoice:
    mode: Literal["auto", "none", "required", "tool"] = "auto"
    name: str | None = None  # when mode == "tool"
    # False: at most one call (OpenAI parallel_tool_calls, Anthropic disable_parallel_tool_use).
    parallel: bool | None = None


@dataclass(slots=True)
class ResponseFormat:
    kind: Literal["text", "json_object", "json_schema"] = "text"
    schema: dict | None = None
    name: str | None = None
    strict: bool | None = None


@dataclass(slots=True)
class ThinkingConfig:
    """Extended reasoning: a token budget (Anthropic, Gemini) or an effort (OpenAI).

    `Conversation.thinking` is None when the client did not say; `ThinkingConfig.off()`
    when it turned thinking off (OpenAI effort "none", Anthropic "disabled", Gemini
    budget 0). Writers send no thinking for either; defaults apply to None only.
    """

    budget_tokens: int | None = None
    effort: Literal["minimal", "low", "medium", "high"] | None = None
    include_thoughts: bool = True

    @classmethod
    def off(cls) -> ThinkingConfig:
        return cls(budget_tokens=0, effort=None, include_thoughts=False)

    @property
    def is_off(self) -> bool:
        return self.budget_tokens == 0 and self.effort is None


@dataclass(slots=True)
class Conversation:
    model: str
    messages: list[Message]
    system: list[Text] = field(default_factory=list)
    tools: list[Tool] = field(default_factory=list)
    tool_choice: ToolChoice | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: list[str] = field(default_factory=list)
    n: int = 1
    response_format: ResponseFormat | None = None
    thinking: ThinkingConfig | None = None
    user: str | None = None  # end-user id (OpenAI user / Anthropic metadata.user_id)
    stream: bool = False
    include_usage: bool = False  # OpenAI chat clients: send the usage chunk in the stream (stream_options)
    # What the client's reader ignored (parameters, tools, items), by name; the
    # pipeline reports them in X-Beluga-Dropped-Params with the upstream writer's.
    dropped: list[str] = field(default_factory=list)
    # OpenAI chat parameters no other protocol has (seed, presence_penalty,
    # frequency_penalty, logit_bias, logprobs, top_logprobs, service_tier,
    # and unknown extras), by their OpenAI names. The OpenAI writer sends
    # them; other writers report them dropped.
    openai_extra: dict[str, Any] = field(default_factory=dict)

    @property
    def system_text(self) -> str:
        return "\n\n".join(part.text for part in self.system)

    def tool_name_for(self, call_id: str) -> str | None:
        """The name of the earlier tool call `call_id` (for protocols whose results carry names)."""
        for message in self.messages:
            for part in message.parts:
                if isinstance(part, ToolCall) and part.id == call_id:
                    return part.name
        return None


# --- the reply -----------------------------------------------------------------


@dataclass(slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0  # part of input_tokens, read from the provider's prompt cache
    cache_write_tokens: int = 0  # part of input_tokens, written to the prompt cache (Anthropic)
    reasoning_tokens: int = 0  # part of output_tokens


@dataclass(slots=True)
class Reply:
    """A whole (non-streamed) answer: the assistant's parts, why it stopped, what it used."""

    id: str
    model: str
    parts: list[Text | ToolCall | Thinking] = field(default_factory=list)
    stop_reason: str | None = None
    usage: Usage | None = None  # None when the upstream did not say
    created: int = 0  # epoch seconds

    @property
    def text(self) -> str:
        return "".join(part.text for part in self.parts if isinstance(part, Text))

    @property
    def tool_calls(self) -> list[ToolCall]:
        return [part for part in self.parts if isinstance(part, ToolCall)]

    @property
    def output_chars(self) -> int:
        """Characters generated (text, thinking, tool arguments), for estimates without usage."""
        total = 0
        for part in self.parts:
            if isinstance(part, Text):
                total += len(part.text)
            elif isinstance(part, Thinking):
                total += len(part.text)
            elif isinstance(part, ToolCall):
                total += len(part.arguments)
        return total


# --- streams -------------------------------------------------------------------
# A stream reader turns each upstream event into zero or more of these; a
# stream writer turns each of these into zero or more client events. Content
# arrives in order: text and thinking deltas, and tool calls (each one started,
# then its argument fragments). `index` numbers the tool calls of the reply
# from 0, whatever else came before.


@dataclass(slots=True)
class Start:
    id: str = ""
    model: str = ""


@dataclass(slots=True)
class TextDelta:
    text: str


@dataclass(slots=True)
class ThinkingDelta:
    text: str = ""
    signature: str | None = None  # Anthropic sends the signature once, at the block's end
    redacted_data: str | None = None
    origin: str | None = None  # as Thinking.origin


@dataclass(slots=True)
class ToolCallStart:
    index: int
    id: str
    name: str


@dataclass(slots=True)
class ToolCallDelta:
    index: int
    arguments: str  # a fragment of the JSON text


@dataclass(slots=True)
class Finish:
    stop_reason: str


@dataclass(slots=True)
class UsageReport:
    usage: Usage


StreamEvent = Start | TextDelta | ThinkingDelta | ToolCallStart | ToolCallDelta | Finish | UsageReport


def with_cost_of(usage_json: dict, usage: Usage, cost_of) -> dict:
    """A protocol's usage object with the call's cost added: `cost_of(usage)` gives the fields (the pipeline's)."""
    if cost_of is not None:
        usage_json.update(cost_of(usage))
    return usage_json


class ReplyBuilder:
    """Accumulates stream events into the Reply they add up to.

    Writers that must repeat the whole answer at the end (the Responses API's
    `response.completed`) and the pipeline (usage, delivered characters) use it.
    """

    def __init__(self, *, id: str = "", model: str = "") -> None:  # noqa: A002 - the protocols' word
        self.reply = Reply(id=id, model=model)
        self._calls: dict[int, ToolCall] = {}

    def add(self, event: StreamEvent) -> None:
        reply = self.reply
        parts = reply.parts
        if isinstance(event, TextDelta):
            if parts and isinstance(parts[-1], Text):
                parts[-1].text += event.text
            else:
                parts.append(Text(event.text))
        elif isinstance(event, ThinkingDelta):
            if parts and isinstance(parts[-1], Thinking) and parts[-1].signature is None and not signs_next_part(event):
                last = parts[-1]
                last.text += event.text
                if event.signature:
                    last.signature = event.signature
                if event.redacted_data:
                    last.redacted_data = event.redacted_data
                last.origin = last.origin or event.origin
            else:
                parts.append(Thinking(event.text, event.signature, event.redacted_data, event.origin))
        elif isinstance(event, ToolCallStart):
            call = ToolCall(id=event.id, name=event.name, arguments="")
            self._calls[event.index] = call
            parts.append(call)
        elif isinstance(event, ToolCallDelta):
            call = self._calls.get(event.index)
            if call is not None:
                call.arguments += event.arguments
        elif isinstance(event, Finish):
            reply.stop_reason = event.stop_reason
        elif isinstance(event, UsageReport):
            reply.usage = event.usage
        elif isinstance(event, Start):
            reply.id = reply.id or event.id
            reply.model = reply.model or event.model

    def result(self) -> Reply:
        for call in self._calls.values():
            if not call.arguments:
                call.arguments = "{}"
        return self.reply


# --- helpers shared by the protocol modules --------------------------------------


def arguments_object(arguments: str) -> dict:
    """A tool call's JSON text as the object Anthropic and Gemini want ({} when it is not one)."""
    try:
        value = orjson.loads(arguments or "{}")
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def arguments_text(value: Any) -> str:
    """An object (Anthropic input, Gemini args) as JSON text."""
    return orjson.dumps(value if value is not None else {}).decode()


# Thinking signatures are a provider's own: Anthropic refuses Gemini's and the
# reverse. A client of protocol A may be handed a signature from a provider of
# protocol B (a conversation that changed models); it is tagged on the way out
# so that, when the client sends it back, Beluga knows whose it is.
FOREIGN_SIGNATURE = "beluga-sig:"


def signature_out(part: Thinking | ThinkingDelta, protocol: str) -> str | None:
    """The signature as a client of `protocol` carries it: tagged when another protocol's provider made it."""
    if not part.signature:
        return None
    if part.origin in (None, protocol):
        return part.signature
    return f"{FOREIGN_SIGNATURE}{part.origin}:{part.signature}"


# Google signs the part after its signature (a function call, text), not the thoughts before it: its
# signature without thinking text is a block of its own. Anthropic's and OpenAI's end the block they sign.
SIGNS_NEXT_PART = frozenset({"gemini"})


def signs_next_part(part: Thinking | ThinkingDelta) -> bool:
    """A signature that is a block of its own: it came without text from a provider that signs what follows."""
    return bool(part.signature) and not part.text and part.origin in SIGNS_NEXT_PART


def signature_in(signature: str | None, protocol: str) -> tuple[str | None, str | None]:
    """(signature, origin) of a signature a client of `protocol` sent back."""
    if not signature:
        return None, None
    if signature.startswith(FOREIGN_SIGNATURE):
        origin, _, original = signature[len(FOREIGN_SIGNATURE) :].partition(":")
        return original or None, origin or None
    return signature, protocol
