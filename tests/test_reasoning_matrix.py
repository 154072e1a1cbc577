"""Reasoning through every client protocol and every upstream kind, with the real SDKs.

Each cell: the client asks for thinking its own way (OpenAI chat `reasoning_effort`,
Responses `reasoning`, Anthropic `thinking`, Gemini `thinking_config`), the fake
provider answers with reasoning, and the cell checks that the upstream got its own
thinking control, that the client got the reasoning text (and the signature, where
the provider signed it) in its own shape and the reasoning token count in its own
usage field, and that the usage record counts reasoning as output, priced as such.

Then tool loops with thinking: a signed thinking block (Claude) or a signed function
call (Gemini) goes out to each client and must come back to the provider exactly.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

import anthropic
import openai
import pytest
from google import genai
from google.genai import types as genai_types

from tests import fake_anthropic, fake_gemini, fake_responses
from tests.fake_upstream import DEFAULT_PROMPT_TOKENS, DEFAULT_REPLY
from tests.fixtures_gateway import MODEL_ID, expected_cost, wait_for_record

pytest_plugins = ["tests.fixtures_gateway"]

KINDS = ["openai", "openai-responses", "anthropic", "gemini"]
REASONING = "The user greets me, so I greet them back."
REASONING_TOKENS = 9
COMPLETION_TOKENS = 25  # the reply's tokens and the reasoning's
BUDGET = 2048  # what every client asks for: a budget of 2048 or the effort "low", the same thing in Beluga's tables
MAX_TOKENS = 8192
# An OpenAI reasoning model: Beluga sends `reasoning_effort` only to those.
OPENAI_REASONING_MODEL = "o4-mini"
WEATHER = {
    "name": "get_weather",
    "description": "Get current weather for a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
# The signature each upstream kind's fake puts on its reasoning, and OpenRouter's name for whose it is.
SIGNATURES = {
    "openai": None,
    "openai-responses": fake_responses.ENCRYPTED_CONTENT,
    "anthropic": fake_anthropic.SIGNATURE,
    "gemini": None,
}
FORMATS = {
    "openai": "unknown",
    "openai-responses": "openai-responses-v1",
    "anthropic": "anthropic-claude-v1",
    "gemini": "google-gemini-v1",
}
ORIGINS = {"openai-responses": "openai-responses", "anthropic": "anthropic", "gemini": "gemini"}
PROTOCOL_OF_KIND = {"openai": "openai.chat", "openai-responses": "openai.responses", "anthropic": "anthropic.messages"}


def thinking_control(kind: str, body: dict):
    """The thinking control the upstream received, in its own protocol."""
    if kind == "openai":
        return body.get("reasoning_effort")
    if kind == "openai-responses":
        return body.get("reasoning")
    if kind == "anthropic":
        return body.get("thinking")
    config = (body.get("generationConfig") or {}).get("thinkingConfig") or {}
    # Google takes JSON or proto names; google-genai sends these in snake_case.
    return {"".join(w.capitalize() if i else w for i, w in enumerate(k.split("_"))): v for k, v in config.items()}


EXPECTED_CONTROL = {
    "openai": "low",
    "openai-responses": {"effort": "low", "summary": "auto"},
    "anthropic": {"type": "enabled", "budget_tokens": BUDGET},
    "gemini": {"thinkingBudget": BUDGET, "includeThoughts": True},
}


@dataclass
class Seen:
    """What a client got: the answer, the reasoning, the signature it can send back, the reasoning tokens reported."""

    text: str
    reasoning: str
    signature: str | bytes | None
    reasoning_tokens: int | None  # None: the protocol has no field for it
    extra: dict


# --- one adapter per client protocol ---------------------------------------------------


class ChatClient:
    protocol = "openai.chat"

    def __init__(self, live, key):
        self.client = openai.OpenAI(base_url=live + "/v1", api_key=key, max_retries=0, timeout=20)

    def _args(self, messages, tools=False) -> dict:
        args = {"model": MODEL_ID, "messages": messages, "reasoning_effort": "low", "max_tokens": MAX_TOKENS}
        if tools:
            args["tools"] = [{"type": "function", "function": WEATHER}]
        return args

    def _complete(self, messages, *, stream: bool, tools=False):
        """The whole message, as the SDK has it: straight, or accumulated from the stream by the SDK's helper."""
        args = self._args(messages, tools)
        if not stream:
            r = self.client.chat.completions.create(**args)
            return r.choices[0].message, r.usage
        with self.client.chat.completions.stream(**args, stream_options={"include_usage": True}) as events:
            deltas = [event.chunk for event in events if event.type == "chunk"]
            final = events.get_final_completion()
        self.reasoning_chunks = [
            c.choices[0].delta.model_extra.get("reasoning_content") for c in deltas if c.choices and c.choices[0].delta
        ]
        return final.choices[0].message, final.usage

    def ask(self, *, stream: bool) -> Seen:
        message, usage = self._complete([{"role": "user", "content": "Say hello."}], stream=stream)
        extra = message.model_extra or {}
        details = extra.get("reasoning_details") or []
        signature = details[0].get("signature") if details else None
        if stream:
            assert [piece for piece in self.reasoning_chunks if piece], "no reasoning_content delta"
        return Seen(
            text=message.content,
            reasoning=extra.get("reasoning_content") or "",
            signature=signature,
            reasoning_tokens=usage.completion_tokens_details.reasoning_tokens,
            extra={"reasoning_details": details},
        )

    def tool_loop(self, *, stream: bool, between, drop_reasoning: bool = False):
        messages = [{"role": "user", "content": "Weather in Paris?"}]
        message, _ = self._complete(messages, stream=stream, tools=True)
        between()
        call = message.tool_calls[0]
        assert (call.function.name, json.loads(call.function.arguments)) == ("get_weather", {"city": "Paris"})
        sent = message.model_dump(exclude_none=True)
        if drop_reasoning:  # a client that keeps only what OpenAI defines
            sent = {"role": "assistant", "content": None, "tool_calls": sent["tool_calls"]}
        messages += [sent, {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 C"}]
        raw = self.client.chat.completions.with_raw_response.create(**self._args(messages, tools=True))
        return raw.parse().choices[0].message.content, raw.headers


class ResponsesClient:
    protocol = "openai.responses"

    def __init__(self, live, key):
        self.client = openai.OpenAI(base_url=live + "/v1", api_key=key, max_retries=0, timeout=20)

    def _create(self, input_, *, stream: bool, tools=False):
        args = {
            "model": MODEL_ID,
            "input": input_,
            "reasoning": {"effort": "low", "summary": "auto"},
            "max_output_tokens": MAX_TOKENS,
            "include": ["reasoning.encrypted_content"],  # as Codex asks, to send reasoning back statelessly
        }
        if tools:
            args["tools"] = [{"type": "function", **WEATHER}]
        if not stream:
            return self.client.responses.create(**args)
        events = list(self.client.responses.create(**args, stream=True))
        types = [e.type for e in events]
        assert "response.reasoning_summary_text.delta" in types, types
        deltas = "".join(e.delta for e in events if e.type == "response.reasoning_summary_text.delta")
        assert deltas == REASONING
        assert events[-1].type == "response.completed"
        return events[-1].response

    def ask(self, *, stream: bool) -> Seen:
        r = self._create("Say hello.", stream=stream)
        assert r.status == "completed"
        reasoning = [item for item in r.output if item.type == "reasoning"]
        assert len(reasoning) == 1, r.output
        item = reasoning[0]
        return Seen(
            text=r.output_text,
            reasoning="".join(s.text for s in item.summary),
            signature=item.encrypted_content,
            reasoning_tokens=r.usage.output_tokens_details.reasoning_tokens,
            extra={},
        )

    def tool_loop(self, *, stream: bool, between):
        asked = [{"role": "user", "content": "Weather in Paris?"}]
        r = self._create(asked, stream=stream, tools=True)
        between()
        call = next(item for item in r.output if item.type == "function_call")
        items = asked + [item.model_dump(exclude_none=True) for item in r.output]
        items.append({"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21 C"})
        return self._create(items, stream=stream, tools=True).output_text, None


class AnthropicClient:
    protocol = "anthropic.messages"

    def __init__(self, live, key):
        self.client = anthropic.Anthropic(base_url=live, api_key=key, max_retries=0, timeout=20)

    def _create(self, messages, *, stream: bool, tools=False):
        args = {
            "model": MODEL_ID,
            "max_tokens": MAX_TOKENS,
            "messages": messages,
            "thinking": {"type": "enabled", "budget_tokens": BUDGET},
        }
        if tools:
            args["tools"] = [
                {"name": WEATHER["name"], "description": WEATHER["description"], "input_schema": WEATHER["parameters"]}
            ]
        if not stream:
            return self.client.messages.create(**args)
        with self.client.messages.stream(**args) as events:
            deltas = [e.delta.type for e in events if e.type == "content_block_delta"]
            final = events.get_final_message()
        assert "thinking_delta" in deltas
        signed = any(b.type == "thinking" and b.signature for b in final.content)
        assert ("signature_delta" in deltas) == signed, deltas
        return final

    def ask(self, *, stream: bool) -> Seen:
        r = self._create([{"role": "user", "content": "Say hello."}], stream=stream)
        thinking = [b for b in r.content if b.type == "thinking"]
        assert len(thinking) == 1 and r.content[0].type == "thinking", r.content
        return Seen(
            text="".join(b.text for b in r.content if b.type == "text"),
            reasoning=thinking[0].thinking,
            signature=thinking[0].signature or None,
            reasoning_tokens=None,
            extra={},
        )

    def tool_loop(self, *, stream: bool, between):
        messages = [{"role": "user", "content": "Weather in Paris?"}]
        r = self._create(messages, stream=stream, tools=True)
        between()
        call = next(b for b in r.content if b.type == "tool_use")
        messages += [
            {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in r.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny, 21 C"}]},
        ]
        final = self._create(messages, stream=stream, tools=True)
        return "".join(b.text for b in final.content if b.type == "text"), None


class GeminiClient:
    protocol = "gemini"

    def __init__(self, live, key):
        self.client = genai.Client(api_key=key, http_options=genai_types.HttpOptions(base_url=live, timeout=20_000))

    def _config(self, tools=False):
        return genai_types.GenerateContentConfig(
            max_output_tokens=MAX_TOKENS,
            thinking_config=genai_types.ThinkingConfig(include_thoughts=True, thinking_budget=BUDGET),
            tools=[genai_types.Tool(function_declarations=[genai_types.FunctionDeclaration(**WEATHER)])]
            if tools
            else None,
        )

    def ask(self, *, stream: bool) -> Seen:
        if stream:
            chunks = list(
                self.client.models.generate_content_stream(model=MODEL_ID, contents="Say hello.", config=self._config())
            )
            parts = [p for c in chunks for p in c.candidates[0].content.parts]
            usage = chunks[-1].usage_metadata
        else:
            r = self.client.models.generate_content(model=MODEL_ID, contents="Say hello.", config=self._config())
            parts, usage = r.candidates[0].content.parts, r.usage_metadata
        thoughts = [p for p in parts if p.thought]
        signatures = [p.thought_signature for p in parts if p.thought_signature]
        assert len(signatures) <= 1, parts
        return Seen(
            text="".join(p.text or "" for p in parts if not p.thought),
            reasoning="".join(p.text for p in thoughts),
            signature=signatures[0] if signatures else None,
            reasoning_tokens=usage.thoughts_token_count or 0,
            extra={"signed_thought": bool(signatures) and thoughts[-1].thought_signature is not None},
        )

    def tool_loop(self, *, stream: bool, between):
        # The SDK's chat keeps the history (every streamed chunk's content) and sends it back.
        chat = self.client.chats.create(model=MODEL_ID, config=self._config(tools=True))
        send = chat.send_message_stream if stream else chat.send_message
        first = send("Weather in Paris?")
        chunks = list(first) if stream else [first]
        calls = [call for chunk in chunks for call in (chunk.function_calls or ())]
        assert [(c.name, c.args) for c in calls] == [("get_weather", {"city": "Paris"})]
        between()
        result = genai_types.Part.from_function_response(name="get_weather", response={"result": "sunny, 21 C"})
        answer = send(result)
        return "".join(c.text or "" for c in (list(answer) if stream else [answer])), None


CLIENTS = {
    "openai.chat": ChatClient,
    "openai.responses": ResponsesClient,
    "anthropic.messages": AnthropicClient,
    "gemini": GeminiClient,
}


# --- shared setup ------------------------------------------------------------------------


@pytest.fixture
def reasoning_route(route_to, fake_upstream):
    """`route_to(kind)`, with the fake answering with reasoning."""

    def make(kind: str):
        from catalog.selectors import catalog_cache_clear

        routed = route_to(kind)
        if kind == "openai":
            routed.route.upstream_model = OPENAI_REASONING_MODEL
            routed.route.save()
            catalog_cache_clear()
        fake_upstream.set(
            reasoning_text=REASONING, reasoning_tokens=REASONING_TOKENS, completion_tokens=COMPLETION_TOKENS
        )
        return routed

    return make


def is_passthrough(protocol: str, kind: str) -> bool:
    """The client speaks the upstream's protocol: the fast path or the same-protocol path, not translated."""
    return PROTOCOL_OF_KIND.get(kind, "gemini") == protocol


def model_requests(fake) -> list:
    return [r for r in fake.requests if not r.path.endswith("/count_tokens")]


# --- the matrix --------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("protocol", list(CLIENTS))
def test_reasoning_reaches_every_client_and_is_billed_as_output(
    protocol, kind, stream, live_api, raw_key, reasoning_route, fake_upstream
):
    reasoning_route(kind)
    seen = CLIENTS[protocol](live_api, raw_key).ask(stream=stream)

    received = model_requests(fake_upstream)
    assert len(received) == 1
    assert thinking_control(kind, received[0].json) == EXPECTED_CONTROL[kind]

    assert seen.text == DEFAULT_REPLY
    assert seen.reasoning == REASONING
    reported = 0 if kind == "anthropic" else REASONING_TOKENS  # Anthropic does not count thinking apart
    if seen.reasoning_tokens is not None:
        assert seen.reasoning_tokens == reported

    signature = SIGNATURES[kind]
    origin = ORIGINS.get(kind)
    if protocol == "openai.chat":
        if kind == "openai":  # the fast path: the provider's answer as it came
            assert seen.extra["reasoning_details"] == []
        else:
            [detail] = seen.extra["reasoning_details"]
            assert detail["type"] == "reasoning.text" and detail["text"] == REASONING
            assert (detail.get("signature"), detail["format"], detail["index"]) == (signature, FORMATS[kind], 0)
    elif protocol == "anthropic.messages":
        own = kind == "anthropic"
        assert seen.signature == (signature if own or signature is None else f"beluga-sig:{origin}:{signature}")
    elif protocol == "gemini":
        if signature is None:
            assert seen.signature is None
        else:  # another provider's signature, tagged, in base64 for google-genai, on the thought it signs
            assert seen.signature == f"beluga-sig:{origin}:{signature}".encode()
            assert seen.extra["signed_thought"]
    elif kind == "openai-responses":
        assert seen.signature == signature  # OpenAI's encrypted reasoning, as OpenAI sent it
    elif signature is not None:
        assert seen.signature.startswith("beluga1.")  # another provider's signature, sealed

    record = wait_for_record()
    assert (record.protocol, record.upstream_kind, record.stream, record.status_code) == (protocol, kind, stream, 200)
    assert (record.prompt_tokens, record.completion_tokens) == (DEFAULT_PROMPT_TOKENS, COMPLETION_TOKENS)
    assert record.reasoning_tokens == reported
    assert record.cost_micro_usd == expected_cost(DEFAULT_PROMPT_TOKENS, COMPLETION_TOKENS)
    assert not record.usage_estimated


# --- tool loops with thinking ------------------------------------------------------------


@pytest.fixture
def tool_loop_requests(reasoning_route, fake_upstream):
    """`tool_loop_requests(kind, call_id, client, stream)`: a weather tool loop with thinking through an
    upstream of `kind`; the two requests the upstream got (the call, then the result)."""

    def run(kind: str, call_id: str, client, stream: bool):
        reasoning_route(kind)
        fake_upstream.call_tool("get_weather", {"city": "Paris"}, call_id=call_id)
        answer, _ = client.tool_loop(stream=stream, between=lambda: fake_upstream.set(tool_calls=[]))
        assert answer == DEFAULT_REPLY
        return model_requests(fake_upstream)

    return run


def assistant_turn_sent_to_anthropic(body: dict) -> list[dict]:
    turns = [m for m in body["messages"] if m["role"] == "assistant"]
    assert len(turns) == 1, body["messages"]
    return turns[0]["content"]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("protocol", list(CLIENTS))
def test_claude_thinking_signature_survives_a_tool_loop(protocol, stream, live_api, raw_key, tool_loop_requests):
    """Anthropic wants the signed thinking block back, before the tool_use, exactly as it sent it."""
    first, second = tool_loop_requests("anthropic", "toolu_weather_1", CLIENTS[protocol](live_api, raw_key), stream)
    assert first.json["thinking"] == EXPECTED_CONTROL["anthropic"]
    blocks = assistant_turn_sent_to_anthropic(second.json)
    assert blocks[0] == {"type": "thinking", "thinking": REASONING, "signature": fake_anthropic.SIGNATURE}
    assert [b["type"] for b in blocks[1:]] == ["tool_use"]
    assert blocks[1]["id"] == "toolu_weather_1" and blocks[1]["input"] == {"city": "Paris"}


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("protocol", list(CLIENTS))
def test_gemini_call_signature_survives_a_tool_loop(protocol, stream, live_api, raw_key, tool_loop_requests):
    """Gemini 3 wants its thought signature back on the function call it signed, exactly as it sent it."""
    first, second = tool_loop_requests("gemini", "fc_weather_1", CLIENTS[protocol](live_api, raw_key), stream)
    assert thinking_control("gemini", first.json) == EXPECTED_CONTROL["gemini"]
    model_parts = [p for c in second.json["contents"] if c.get("role") == "model" for p in c["parts"]]
    calls = [p for p in model_parts if "functionCall" in p]
    assert len(calls) == 1, model_parts
    assert calls[0]["functionCall"]["name"] == "get_weather"
    assert calls[0]["thoughtSignature"] == fake_gemini.SIGNATURE
    assert "beluga-sig" not in second.raw()


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_chat_client_that_drops_the_reasoning_still_gets_an_answer_from_claude(
    stream, live_api, raw_key, reasoning_route, fake_upstream
):
    """A chat client that keeps only OpenAI's fields sends the tool call without its signed thinking. Anthropic
    refuses thinking on a turn whose tool_use lost its thinking block, so Beluga leaves thinking out for it."""
    reasoning_route("anthropic")
    fake_upstream.call_tool("get_weather", {"city": "Paris"}, call_id="toolu_weather_1")
    between = lambda: fake_upstream.set(tool_calls=[])  # noqa: E731
    answer, headers = ChatClient(live_api, raw_key).tool_loop(stream=stream, between=between, drop_reasoning=True)
    assert answer == DEFAULT_REPLY

    second = model_requests(fake_upstream)[-1].json
    assert [b["type"] for b in assistant_turn_sent_to_anthropic(second)] == ["tool_use"]
    assert "thinking" not in second
    assert "thinking" in headers.get("x-beluga-dropped-params", "").split(",")


# --- reading what a chat client sends back -----------------------------------------------


def test_chat_reasoning_details_of_another_provider_never_reach_claude(
    live_api, raw_key, reasoning_route, fake_upstream
):
    reasoning_route("anthropic")
    google_signature = base64.b64encode(b"signed by google").decode()
    history = [
        {"role": "user", "content": "Hi"},
        {
            "role": "assistant",
            "content": "Hello.",
            "reasoning_details": [
                {"type": "reasoning.text", "text": "Gemini thought.", "signature": google_signature},
                {"type": "reasoning.encrypted", "data": google_signature, "format": "google-gemini-v1", "index": 1},
                {"type": "reasoning.text", "text": "Claude thought.", "format": "anthropic-claude-v1", "index": 2},
            ],
        },
        {"role": "user", "content": "And now?"},
    ]
    client = openai.OpenAI(base_url=live_api + "/v1", api_key=raw_key, max_retries=0, timeout=20)
    client.chat.completions.create(model=MODEL_ID, messages=history)
    sent = model_requests(fake_upstream)[-1]
    assert "Hello." in sent.raw()
    assert google_signature not in sent.raw()
    assert "Gemini thought." not in sent.raw() and "Claude thought." not in sent.raw()  # unsigned: left out


@pytest.mark.parametrize(
    ("details", "param"),
    [
        ("thought", "messages[1].reasoning_details"),
        (["thought"], "messages[1].reasoning_details[0]"),
        ([{"text": "no type"}], "messages[1].reasoning_details[0]"),
        ([{"type": "reasoning.text", "text": 7}], "messages[1].reasoning_details[0].text"),
        ([{"type": "reasoning.text", "text": "a", "signature": {}}], "messages[1].reasoning_details[0].signature"),
        ([{"type": "reasoning.encrypted"}], "messages[1].reasoning_details[0].data"),
        ([{"type": "reasoning.summary", "summary": "a", "format": 1}], "messages[1].reasoning_details[0].format"),
        ([{"type": "reasoning.text", "text": "a", "index": "0"}], "messages[1].reasoning_details[0].index"),
    ],
)
def test_malformed_reasoning_details_are_refused_naming_the_param(client, raw_key, chat_route, details, param):
    from tests.fixtures_gateway import chat_body, error_of, post_chat

    messages = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello.", "reasoning_details": details},
        {"role": "user", "content": "And now?"},
    ]
    response = post_chat(client, raw_key, chat_body(messages=messages))
    assert response.status_code == 400
    assert error_of(response)["param"] == param


def test_chat_reasoning_details_are_read_in_order_with_their_signatures():
    """As a client sends them back: whole items, or every stream delta kept as it came (one `index` per block)."""
    from gateway.protocols import openai_chat
    from gateway.protocols.conversation import Text, Thinking, ToolCall

    call = {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    deltas = [
        {"type": "reasoning.text", "text": "Let me ", "index": 0},
        {"type": "reasoning.text", "text": "think.", "index": 0},
        {"type": "reasoning.text", "signature": "sig-1", "format": "anthropic-claude-v1", "index": 0},
        {"type": "reasoning.encrypted", "data": "redacted-1", "format": "anthropic-claude-v1", "index": 1},
        {"type": "reasoning.encrypted", "data": "c2ln", "format": "google-gemini-v1", "index": 2},
        {"type": "reasoning.unknown-kind", "index": 3},
    ]
    message = {"role": "assistant", "content": "On it.", "reasoning_content": "ignored", "tool_calls": [call]}
    body = {"model": "m", "messages": [{"role": "user", "content": "Hi"}, dict(message, reasoning_details=deltas)]}
    assert openai_chat.read_request(body).messages[1].parts == [
        Thinking("Let me think.", "sig-1", origin="anthropic"),
        Thinking(redacted_data="redacted-1", origin="anthropic"),
        Text("On it."),
        Thinking(signature="c2ln", origin="gemini"),  # Google's signs the call after it, not the text
        ToolCall(id="toolu_1", name="get_weather", arguments="{}"),
    ]
    body["messages"][1] = message  # no reasoning_details: the text, unsigned
    assert openai_chat.read_request(body).messages[1].parts[0] == Thinking("ignored")
