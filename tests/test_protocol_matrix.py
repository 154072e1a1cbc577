"""Every client protocol against every upstream kind, through the real SDKs.

Clients: the `openai` SDK (chat completions and responses), the `anthropic`
SDK and `google-genai`, each pointed at Beluga's live server. Upstreams: the
fake provider speaking OpenAI's, Anthropic's or Gemini's wire format. Each
cell checks the answer, the stream's exact event sequence, a tool call round
trip, an image, an upstream error in the client's own error shape, and what
was recorded and charged.
"""

from __future__ import annotations

import base64
import json

import anthropic
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types

from billing.models import UsageRecord
from tests import fake_gemini
from tests.fake_upstream import DEFAULT_PROMPT_TOKENS, DEFAULT_REPLY, words
from tests.fixtures_gateway import MODEL_ID, UPSTREAM_MODEL, expected_cost, wait_for_record

pytest_plugins = ["tests.fixtures_gateway"]

KINDS = ["openai", "openai-responses", "anthropic", "gemini"]
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=")
PNG_B64 = base64.b64encode(PNG).decode()
WEATHER = {
    "name": "get_weather",
    "description": "Get current weather for a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
REPLY_TOKENS = len(words(DEFAULT_REPLY))


# --- what each upstream kind received ---------------------------------------------


def upstream_request(fake):
    assert fake.requests, "nothing reached the upstream"
    return fake.requests[-1]


def assert_upstream_call(kind: str, fake, route) -> dict:
    """The upstream got its own wire format, the mapped model and Beluga's credential, never the customer's key."""
    received = upstream_request(fake)
    text = received.raw()
    assert "bapi_" not in text
    if kind in ("openai", "openai-responses"):
        assert received.path == ("/v1/chat/completions" if kind == "openai" else "/v1/responses")
        assert received.json["model"] == UPSTREAM_MODEL
        assert received.headers["authorization"] == f"Bearer {route.credential}"
    elif kind == "anthropic":
        assert received.path == "/v1/messages"
        assert received.json["model"] == UPSTREAM_MODEL
        assert received.headers["x-api-key"] == route.credential
        assert received.headers["anthropic-version"]
    else:
        assert received.path.split("?")[0] in (
            f"/v1beta/models/{UPSTREAM_MODEL}:generateContent",
            f"/v1beta/models/{UPSTREAM_MODEL}:streamGenerateContent",
        )
        assert received.headers["x-goog-api-key"] == route.credential
    return received.json


def upstream_tool_result(kind: str, body: dict) -> str:
    """The text of the tool result the upstream received, found in its own format."""
    if kind == "openai-responses":
        results = [
            item for item in body["input"] if item.get("type") in ("function_call_output", "custom_tool_call_output")
        ]
        assert results, body["input"]
        return str(results[-1]["output"])
    if kind == "openai":
        results = [m for m in body["messages"] if m["role"] == "tool"]
        assert results, body["messages"]
        return results[-1]["content"]
    if kind == "anthropic":
        blocks = [b for m in body["messages"] if isinstance(m["content"], list) for b in m["content"]]
        results = [b for b in blocks if b.get("type") == "tool_result"]
        assert results, body["messages"]
        content = results[-1]["content"]
        return content if isinstance(content, str) else "".join(c.get("text", "") for c in content)
    parts = [p for c in body["contents"] for p in c["parts"]]
    results = [p["functionResponse"] for p in parts if "functionResponse" in p]
    assert results, body["contents"]
    assert results[-1]["name"] == "get_weather"
    return str(results[-1]["response"])


def upstream_image(kind: str, body: dict) -> str:
    """The base64 data of the image the upstream received."""
    if kind == "openai-responses":
        parts = [p for item in body["input"] if isinstance(item.get("content"), list) for p in item["content"]]
        url = next(p["image_url"] for p in parts if p.get("type") == "input_image")
        assert url.startswith("data:image/png;base64,")
        return url.split(",", 1)[1]
    if kind == "openai":
        parts = [p for m in body["messages"] if isinstance(m.get("content"), list) for p in m["content"]]
        url = next(p["image_url"]["url"] for p in parts if p.get("type") == "image_url")
        assert url.startswith("data:image/png;base64,")
        return url.split(",", 1)[1]
    if kind == "anthropic":
        blocks = [b for m in body["messages"] if isinstance(m["content"], list) for b in m["content"]]
        source = next(b["source"] for b in blocks if b.get("type") == "image")
        assert source["type"] == "base64" and source["media_type"] == "image/png"
        return source["data"]
    parts = [p for c in body["contents"] for p in c["parts"]]
    inline = next(p.get("inlineData") or p.get("inline_data") for p in parts if "inlineData" in p or "inline_data" in p)
    assert (inline.get("mimeType") or inline.get("mime_type")) == "image/png"
    return inline["data"]


# --- one adapter per client protocol, each through its real SDK ----------------------


class OpenAIChatClient:
    protocol = "openai.chat"
    stop_words = {"stop": "stop", "tool_calls": "tool_calls"}

    def __init__(self, live, key):
        self.client = openai.OpenAI(base_url=live + "/v1", api_key=key, max_retries=0, timeout=20)

    def ask(self, content="Say hello."):
        r = self.client.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": content}])
        return (
            r.choices[0].message.content,
            r.choices[0].finish_reason,
            (r.usage.prompt_tokens, r.usage.completion_tokens),
        )

    def stream(self):
        chunks = list(
            self.client.chat.completions.create(
                model=MODEL_ID,
                messages=[{"role": "user", "content": "Say hello."}],
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        shape = []
        for chunk in chunks:
            if not chunk.choices:
                shape.append("usage")
                continue
            delta, finish = chunk.choices[0].delta, chunk.choices[0].finish_reason
            shape.append("role" if delta.role else ("finish" if finish else "content"))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        expected = ["role"] + ["content"] * REPLY_TOKENS + ["finish", "usage"]
        usage = chunks[-1].usage
        return shape, expected, text, (usage.prompt_tokens, usage.completion_tokens)

    def tool_call(self):
        messages = [{"role": "user", "content": "Weather in Paris?"}]
        r = self.client.chat.completions.create(
            model=MODEL_ID, messages=messages, tools=[{"type": "function", "function": WEATHER}]
        )
        call = r.choices[0].message.tool_calls[0]
        assert r.choices[0].finish_reason == "tool_calls"
        return call.function.name, call.function.arguments, call.id, messages, r.choices[0].message

    def tool_result(self, state, result):
        name, arguments, call_id, messages, message = state
        messages = messages + [
            message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call_id, "content": result},
        ]
        r = self.client.chat.completions.create(
            model=MODEL_ID, messages=messages, tools=[{"type": "function", "function": WEATHER}]
        )
        return r.choices[0].message.content

    def image(self):
        content = [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
        ]
        return self.ask(content)[0]

    def error_status(self):
        with pytest.raises(openai.APIStatusError) as caught:
            self.ask()
        body = caught.value.body
        assert set(body) >= {"message", "type", "code", "param"}, body
        return caught.value.status_code


class ResponsesClient(OpenAIChatClient):
    protocol = "openai.responses"

    def ask(self, content="Say hello."):
        if isinstance(content, str):
            r = self.client.responses.create(model=MODEL_ID, input=content)
        else:
            r = self.client.responses.create(model=MODEL_ID, input=[{"role": "user", "content": content}])
        assert r.status == "completed"
        return r.output_text, "stop", (r.usage.input_tokens, r.usage.output_tokens)

    def stream(self):
        events = list(self.client.responses.create(model=MODEL_ID, input="Say hello.", stream=True))
        shape = [e.type for e in events]
        expected = (
            ["response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"]
            + ["response.output_text.delta"] * REPLY_TOKENS
            + [
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.completed",
            ]
        )
        assert [e.sequence_number for e in events] == list(range(len(events)))
        final = events[-1].response
        return shape, expected, final.output_text, (final.usage.input_tokens, final.usage.output_tokens)

    def tool_call(self):
        tool = {"type": "function", **WEATHER}
        r = self.client.responses.create(model=MODEL_ID, input="Weather in Paris?", tools=[tool])
        call = next(item for item in r.output if item.type == "function_call")
        return call.name, call.arguments, call.call_id, tool, call

    def tool_result(self, state, result):
        name, arguments, call_id, tool, call = state
        items = [
            {"role": "user", "content": "Weather in Paris?"},
            {"type": "function_call", "call_id": call_id, "name": name, "arguments": arguments},
            {"type": "function_call_output", "call_id": call_id, "output": result},
        ]
        r = self.client.responses.create(model=MODEL_ID, input=items, tools=[tool])
        return r.output_text

    def image(self):
        content = [
            {"type": "input_text", "text": "What is this?"},
            {"type": "input_image", "image_url": f"data:image/png;base64,{PNG_B64}"},
        ]
        return self.ask(content)[0]


class AnthropicClient:
    protocol = "anthropic.messages"

    def __init__(self, live, key):
        self.client = anthropic.Anthropic(base_url=live, api_key=key, max_retries=0, timeout=20)

    def ask(self, content="Say hello."):
        r = self.client.messages.create(model=MODEL_ID, max_tokens=256, messages=[{"role": "user", "content": content}])
        text = "".join(b.text for b in r.content if b.type == "text")
        stop = {"end_turn": "stop", "tool_use": "tool_calls"}[r.stop_reason]
        return text, stop, (r.usage.input_tokens, r.usage.output_tokens)

    def stream(self):
        with self.client.messages.stream(
            model=MODEL_ID, max_tokens=256, messages=[{"role": "user", "content": "Say hello."}]
        ) as stream:
            shape = [event.type for event in stream if event.type in _ANTHROPIC_RAW_EVENTS]
            final = stream.get_final_message()
        expected = (
            ["message_start", "content_block_start"]
            + ["content_block_delta"] * REPLY_TOKENS
            + ["content_block_stop", "message_delta", "message_stop"]
        )
        text = "".join(b.text for b in final.content if b.type == "text")
        return shape, expected, text, (final.usage.input_tokens, final.usage.output_tokens)

    def tool_call(self):
        tool = {"name": WEATHER["name"], "description": WEATHER["description"], "input_schema": WEATHER["parameters"]}
        messages = [{"role": "user", "content": "Weather in Paris?"}]
        r = self.client.messages.create(model=MODEL_ID, max_tokens=256, messages=messages, tools=[tool])
        assert r.stop_reason == "tool_use"
        call = next(b for b in r.content if b.type == "tool_use")
        return call.name, json.dumps(call.input), call.id, (tool, messages, r.content)

    def tool_result(self, state, result):
        name, arguments, call_id, (tool, messages, content) = state
        messages = messages + [
            {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call_id, "content": result}]},
        ]
        r = self.client.messages.create(model=MODEL_ID, max_tokens=256, messages=messages, tools=[tool])
        return "".join(b.text for b in r.content if b.type == "text")

    def image(self):
        content = [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}},
            {"type": "text", "text": "What is this?"},
        ]
        return self.ask(content)[0]

    def error_status(self):
        with pytest.raises(anthropic.APIStatusError) as caught:
            self.ask()
        body = caught.value.body
        assert body["type"] == "error" and set(body["error"]) >= {"type", "message"}, body
        return caught.value.status_code


# The raw SSE events (the SDK's stream also yields its own derived events such as `text`).
_ANTHROPIC_RAW_EVENTS = {
    "message_start",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
}


class GeminiClient:
    protocol = "gemini"

    def __init__(self, live, key):
        self.client = genai.Client(api_key=key, http_options=genai_types.HttpOptions(base_url=live, timeout=20_000))

    def ask(self, content="Say hello."):
        r = self.client.models.generate_content(model=MODEL_ID, contents=content)
        finish = r.candidates[0].finish_reason
        assert finish == genai_types.FinishReason.STOP
        usage = r.usage_metadata
        output = (usage.candidates_token_count or 0) + (usage.thoughts_token_count or 0)
        return r.text, "stop", (usage.prompt_token_count, output)

    def stream(self):
        chunks = list(self.client.models.generate_content_stream(model=MODEL_ID, contents="Say hello."))
        shape = ["text" if c.candidates[0].content and c.candidates[0].content.parts else "empty" for c in chunks]
        assert chunks[-1].candidates[0].finish_reason == genai_types.FinishReason.STOP
        expected = ["text"] * len(chunks)
        assert len(chunks) >= REPLY_TOKENS
        text = "".join(c.text or "" for c in chunks)
        usage = chunks[-1].usage_metadata
        return shape, expected, text, (usage.prompt_token_count, usage.candidates_token_count)

    def _tools(self):
        return [genai_types.Tool(function_declarations=[genai_types.FunctionDeclaration(**WEATHER)])]

    def tool_call(self):
        config = genai_types.GenerateContentConfig(tools=self._tools())
        r = self.client.models.generate_content(model=MODEL_ID, contents="Weather in Paris?", config=config)
        call = r.function_calls[0]
        return call.name, json.dumps(call.args), call.id, (config, r.candidates[0].content)

    def tool_result(self, state, result):
        name, arguments, call_id, (config, model_content) = state
        contents = [
            genai_types.Content(role="user", parts=[genai_types.Part(text="Weather in Paris?")]),
            model_content,
            genai_types.Content(
                role="user",
                parts=[genai_types.Part.from_function_response(name=name, response={"result": result})],
            ),
        ]
        r = self.client.models.generate_content(model=MODEL_ID, contents=contents, config=config)
        return r.text

    def image(self):
        contents = [genai_types.Part.from_bytes(data=PNG, mime_type="image/png"), "What is this?"]
        return self.ask(contents)[0]

    def error_status(self):
        with pytest.raises(genai_errors.APIError) as caught:
            self.ask()
        details = caught.value.details
        assert set(details["error"]) >= {"code", "message", "status"}, details
        return caught.value.code


CLIENTS = {
    "openai.chat": OpenAIChatClient,
    "openai.responses": ResponsesClient,
    "anthropic.messages": AnthropicClient,
    "gemini": GeminiClient,
}


@pytest.fixture(params=KINDS)
def kind(request):
    return request.param


@pytest.fixture(params=list(CLIENTS))
def client(request, live_api, raw_key):
    return CLIENTS[request.param](live_api, raw_key)


@pytest.fixture
def routed(route_to, kind):
    return route_to(kind)


def last_record() -> UsageRecord:
    """The live server writes a call's record once it sent the answer (and a stream's once it ended): wait for it."""
    return wait_for_record()


# --- the matrix ------------------------------------------------------------------------


def test_plain_answer(client, kind, routed, fake_upstream):
    text, stop, usage = client.ask()
    assert text == DEFAULT_REPLY
    assert stop == "stop"
    assert usage == (DEFAULT_PROMPT_TOKENS, REPLY_TOKENS)
    assert_upstream_call(kind, fake_upstream, routed)
    record = last_record()
    assert (record.protocol, record.upstream_kind, record.status_code) == (client.protocol, kind, 200)
    assert (record.prompt_tokens, record.completion_tokens) == (DEFAULT_PROMPT_TOKENS, REPLY_TOKENS)
    assert record.cost_micro_usd == expected_cost(DEFAULT_PROMPT_TOKENS, REPLY_TOKENS)
    assert not record.usage_estimated


def test_streamed_answer(client, kind, routed, fake_upstream):
    shape, expected, text, usage = client.stream()
    assert shape == expected
    assert text == DEFAULT_REPLY
    assert usage[0] == DEFAULT_PROMPT_TOKENS
    assert_upstream_call(kind, fake_upstream, routed)
    record = last_record()
    assert (record.protocol, record.upstream_kind, record.stream, record.status_code) == (
        client.protocol,
        kind,
        True,
        200,
    )
    assert (record.prompt_tokens, record.completion_tokens) == (DEFAULT_PROMPT_TOKENS, REPLY_TOKENS)
    assert record.cost_micro_usd == expected_cost(DEFAULT_PROMPT_TOKENS, REPLY_TOKENS)


def test_tool_call_round_trip(client, kind, routed, fake_upstream):
    fake_upstream.call_tool("get_weather", {"city": "Paris"}, call_id="call_weather_1")
    state = client.tool_call()
    name, arguments = state[0], state[1]
    assert name == "get_weather"
    assert json.loads(arguments) == {"city": "Paris"}
    sent = assert_upstream_call(kind, fake_upstream, routed)
    assert "get_weather" in str(sent)

    fake_upstream.set(tool_calls=[])
    fake_upstream.reply("It is sunny in Paris.")
    final = client.tool_result(state, "sunny, 21 C")
    assert final == "It is sunny in Paris."
    assert "sunny, 21 C" in upstream_tool_result(kind, upstream_request(fake_upstream).json)


def test_image_input(client, kind, routed, fake_upstream):
    assert client.image() == DEFAULT_REPLY
    body = assert_upstream_call(kind, fake_upstream, routed)
    assert base64.b64decode(upstream_image(kind, body)) == PNG


@pytest.mark.parametrize("status", [429, 500])
def test_upstream_error_in_the_clients_shape(client, kind, routed, fake_upstream, status):
    fake_upstream.fail_with(status)
    got = client.error_status()
    assert got == (429 if status == 429 else 502)
    record = last_record()
    assert (record.protocol, record.upstream_kind, record.status_code) == (client.protocol, kind, got)
    assert record.cost_micro_usd == 0


def test_thinking_signed_by_one_provider_never_reaches_another(live_api, raw_key, route_to, fake_upstream):
    """Claude signs thinking; the same conversation continued on a Gemini model must not send Google that signature,
    and sent back to Claude it must arrive as Anthropic signed it."""
    fake_upstream.set(reasoning_text="Thinking it over.", reasoning_tokens=3)
    route = route_to("anthropic")
    client = anthropic.Anthropic(base_url=live_api, api_key=raw_key, max_retries=0, timeout=20)
    first = client.messages.create(model=MODEL_ID, max_tokens=256, messages=[{"role": "user", "content": "Hi"}])
    thinking = next(b for b in first.content if b.type == "thinking")
    history = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {"role": "user", "content": "And now?"},
    ]
    route.update_upstream(kind="gemini", base_url=fake_upstream.base_url.removesuffix("/v1"))
    client.messages.create(model=MODEL_ID, max_tokens=256, messages=history)
    assert thinking.signature not in upstream_request(fake_upstream).raw()
    route.update_upstream(kind="anthropic")
    client.messages.create(model=MODEL_ID, max_tokens=256, messages=history)
    sent = [b for m in upstream_request(fake_upstream).json["messages"] for b in m["content"] if isinstance(b, dict)]
    assert {"type": "thinking", "thinking": thinking.thinking, "signature": thinking.signature} in sent


def test_gemini_signed_thinking_given_to_claude_clients_is_left_out_for_anthropic(
    live_api, raw_key, route_to, fake_upstream
):
    fake_upstream.call_tool("get_weather", {"city": "Paris"})  # Gemini signs a step's first function call
    route = route_to("gemini")
    client = anthropic.Anthropic(base_url=live_api, api_key=raw_key, max_retries=0, timeout=20)
    tool = {"name": WEATHER["name"], "description": WEATHER["description"], "input_schema": WEATHER["parameters"]}
    asked = [{"role": "user", "content": "Weather in Paris?"}]
    first = client.messages.create(model=MODEL_ID, max_tokens=256, messages=asked, tools=[tool])
    signed = [b for b in first.content if b.type == "thinking" and b.signature]
    assert signed and all(b.signature.startswith("beluga-sig:gemini:") for b in signed), first.content
    call = next(b for b in first.content if b.type == "tool_use")
    history = asked + [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}]},
    ]
    fake_upstream.set(tool_calls=[])
    route.update_upstream(kind="anthropic", base_url=fake_upstream.base_url.removesuffix("/v1"))
    client.messages.create(model=MODEL_ID, max_tokens=256, messages=history, tools=[tool])
    assert "beluga-sig" not in upstream_request(fake_upstream).raw()
    route.update_upstream(kind="gemini")
    client.messages.create(model=MODEL_ID, max_tokens=256, messages=history, tools=[tool])
    assert fake_gemini.SIGNATURE in upstream_request(fake_upstream).raw()  # back to Google as Google signed it
