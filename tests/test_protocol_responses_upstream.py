"""OpenAI's Responses API, upstream side: requests for POST /responses, its answers and
event stream read back, errors, and the passthrough (a Responses client, a Responses upstream).

Answers come from tests/fake_responses.py, whose shapes the openai SDK's own pydantic
models accept; what the passthrough sends a client is read by the SDK itself from a
real HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import json

import openai
import orjson
import pytest
import requests
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from catalog.selectors import RouteTarget
from gateway.errors import InvalidRequest, RateLimited, UpstreamError
from gateway.protocols import anthropic_messages as am
from gateway.protocols import openai_responses as client_side
from gateway.protocols import openai_responses_upstream as upstream
from gateway.protocols.conversation import (
    Conversation,
    Finish,
    Image,
    Message,
    Reply,
    ReplyBuilder,
    ResponseFormat,
    Text,
    TextDelta,
    Thinking,
    ThinkingConfig,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolCallStart,
    ToolChoice,
    ToolResult,
    Usage,
    UsageReport,
)
from gateway.providers.http import iter_sse_data
from tests import fake_responses
from tests.canned_server import CannedServer
from tests.fake_upstream import DEFAULT_REPLY, Behaviour, words
from tests.fake_upstream import ToolCall as FakeToolCall
from tests.fixtures_gateway import route_target

SECRET = "sk-proj-route-secret-0123456789"
EVENT = TypeAdapter(ResponseStreamEvent)
PATH = "/v1/responses"
ENCRYPTED = fake_responses.ENCRYPTED_CONTENT
WEATHER = Tool("get_weather", "Weather for a city", {"type": "object", "properties": {"city": {"type": "string"}}})
WEATHER_JSON = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}


def route(base_url: str = "https://api.openai.com/v1", api_key: str = SECRET) -> RouteTarget:
    return route_target(kind="openai-responses", base_url=base_url, api_key=api_key, upstream_model="gpt-5-codex")


def convo(*messages: Message, **fields) -> Conversation:
    return Conversation(model="m", messages=list(messages) or [Message("user", [Text("Hi")])], **fields)


def sent(conversation: Conversation, *, stream: bool = False):
    request = upstream.build_request(conversation, route=route(), stream=stream)
    return request, orjson.loads(request.body)


def payloads(frames: list[bytes]) -> list[bytes]:
    """The `data:` payloads of SSE frames, as the gateway's SSE reader yields them."""
    return [line[6:].encode() for line in b"".join(frames).decode().split("\n") if line.startswith("data: ")]


def fake_payloads(b: Behaviour, body: dict) -> list[bytes]:
    return payloads(fake_responses.stream_frames(PATH, body, b))


def read_stream(data: list[bytes]) -> tuple[upstream.StreamReader, list, Reply]:
    reader = upstream.StreamReader()
    events = [event for payload in data for event in reader.feed(payload)]
    builder = ReplyBuilder()
    for event in events:
        builder.add(event)
    return reader, events, builder.result()


def event(kind: str, n: int = 0, **fields) -> bytes:
    return orjson.dumps({"type": kind, "sequence_number": n, **fields})


def finished(status: str = "completed", output: list | None = None, **fields) -> dict:
    """A Response object as the fake sends it, changed."""
    response = fake_responses.response({"model": "gpt-5-codex"}, Behaviour())
    response.update(status=status, **({"output": output} if output is not None else {}), **fields)
    return response


INCLUDE = {"include": ["reasoning.encrypted_content"]}
TOOLS = {"tools": [WEATHER_JSON]}
BEHAVIOURS = {
    "text": (Behaviour(), {}),
    "reasoning": (Behaviour(reasoning_text="Thinking it over", reasoning_tokens=4, cached_tokens=6), INCLUDE),
    "tools": (
        Behaviour(tool_calls=[FakeToolCall("get_weather", '{"city": "Paris"}'), FakeToolCall("noop", "{}", "c2")]),
        TOOLS,
    ),
    "no usage": (Behaviour(omit_usage=True), {}),
}


# --- build_request ---------------------------------------------------------------------


def test_build_request_posts_to_responses_with_the_route_credential():
    request, body = sent(convo(), stream=True)
    assert request.url == "https://api.openai.com/v1/responses"
    assert request.headers["Authorization"] == f"Bearer {SECRET}"
    assert request.headers["Accept"] == "text/event-stream"
    assert body["model"] == "gpt-5-codex" and body["stream"] is True
    unauthenticated = upstream.build_request(convo(), route=route(api_key=""), stream=False)
    assert "Authorization" not in unauthenticated.headers
    assert "stream" not in orjson.loads(unauthenticated.body)


def test_every_request_is_stateless_and_asks_for_the_encrypted_reasoning():
    _, body = sent(convo())
    assert body["store"] is False
    assert body["include"] == ["reasoning.encrypted_content"]


def test_a_conversation_becomes_instructions_and_input_items_in_order():
    conversation = convo(
        Message(
            "user",
            [
                Text("What is in this picture?"),
                Image(data="aGVsbG8=", media_type="image/jpeg", detail="low"),
                Image(url="https://example.com/cat.png"),
            ],
        ),
        Message(
            "assistant",
            [
                Thinking("Anthropic's thoughts", signature="EqQBsig", origin="anthropic"),  # another provider's
                Thinking("Unsigned thoughts"),
                Thinking("Looked at it", signature=ENCRYPTED, origin=upstream.PROTOCOL),
                Text("A cat. "),
                Text("Checking the weather."),
                ToolCall("call_1", "get_weather", '{"city":"Oslo"}'),
                ToolCall("call_2", "get_weather", ""),
            ],
        ),
        Message(
            "user",
            [
                ToolResult("call_1", [Text("Sunny")]),
                ToolResult("call_2", [Text("A map:"), Image(url="https://example.com/map.png")]),
                Text("Thanks"),
            ],
        ),
        system=[Text("Be brief."), Text("Answer in English.")],
    )
    _, body = sent(conversation)
    assert body["instructions"] == "Be brief.\n\nAnswer in English."
    assert body["input"] == [
        {
            "type": "message",
            "role": "user",
            "content": [
                {"type": "input_text", "text": "What is in this picture?"},
                {"type": "input_image", "image_url": "data:image/jpeg;base64,aGVsbG8=", "detail": "low"},
                {"type": "input_image", "image_url": "https://example.com/cat.png", "detail": "auto"},
            ],
        },
        {
            "type": "reasoning",
            "summary": [{"type": "summary_text", "text": "Looked at it"}],
            "encrypted_content": ENCRYPTED,
        },
        {
            "type": "message",
            "role": "assistant",
            "content": [
                {"type": "output_text", "text": "A cat. "},
                {"type": "output_text", "text": "Checking the weather."},
            ],
        },
        {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city":"Oslo"}'},
        {"type": "function_call", "call_id": "call_2", "name": "get_weather", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "Sunny"},
        {
            "type": "function_call_output",
            "call_id": "call_2",
            "output": [
                {"type": "input_text", "text": "A map:"},
                {"type": "input_image", "image_url": "https://example.com/map.png", "detail": "auto"},
            ],
        },
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Thanks"}]},
    ]
    assert "instructions" not in sent(convo())[1]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        (None, {}),
        (ToolChoice(), {"tool_choice": "auto"}),
        (ToolChoice("none"), {"tool_choice": "none"}),
        (ToolChoice("required"), {"tool_choice": "required"}),
        (ToolChoice("tool", "get_weather"), {"tool_choice": {"type": "function", "name": "get_weather"}}),
        (ToolChoice(parallel=False), {"tool_choice": "auto", "parallel_tool_calls": False}),
    ],
)
def test_tools_and_tool_choice_are_sent(choice, expected):
    bare = Tool("ping", "", {"properties": {}})
    _, body = sent(convo(tools=[WEATHER, bare], tool_choice=choice))
    assert body["tools"] == [
        {**WEATHER_JSON, "strict": False},
        {
            "type": "function",
            "name": "ping",
            "description": "",
            "parameters": {"type": "object", "properties": {}},
            "strict": False,
        },
    ]
    assert {name: body[name] for name in ("tool_choice", "parallel_tool_calls") if name in body} == expected


@pytest.mark.parametrize(
    ("response_format", "expected"),
    [
        (ResponseFormat("json_object"), {"type": "json_object"}),
        (
            ResponseFormat("json_schema", schema={"type": "object"}, name="answer", strict=True),
            {"type": "json_schema", "name": "answer", "schema": {"type": "object"}, "strict": True},
        ),
        (ResponseFormat("json_schema"), {"type": "json_schema", "name": "response", "schema": {}}),
    ],
)
def test_response_formats_go_in_text_format(response_format, expected):
    _, body = sent(convo(response_format=response_format, openai_extra={"verbosity": "low"}))
    assert body["text"] == {"format": expected, "verbosity": "low"}
    assert "text" not in sent(convo())[1]


@pytest.mark.parametrize(
    ("thinking", "expected"),
    [
        (ThinkingConfig(effort="high"), {"effort": "high", "summary": "auto"}),
        (ThinkingConfig(effort="minimal", include_thoughts=False), {"effort": "minimal"}),
        (ThinkingConfig(budget_tokens=1024), {"effort": "low", "summary": "auto"}),
        (ThinkingConfig(budget_tokens=8192), {"effort": "medium", "summary": "auto"}),
        (ThinkingConfig(budget_tokens=32000), {"effort": "high", "summary": "auto"}),
        (ThinkingConfig(), {"summary": "auto"}),
    ],
)
def test_reasoning_effort_comes_from_the_effort_or_the_chat_apis_budget_table(thinking, expected):
    assert sent(convo(thinking=thinking))[1]["reasoning"] == expected
    assert "reasoning" not in sent(convo())[1]
    assert "reasoning" not in sent(convo(thinking=ThinkingConfig(budget_tokens=0)))[1]


def test_the_end_user_goes_as_safety_identifier_hashed_when_longer_than_openai_takes():
    assert sent(convo(user="user-42"))[1]["safety_identifier"] == "user-42"
    claude_code = "user_" + "a" * 64 + "_account_00000000-0000-0000-0000-000000000000_session_1"
    identifier = sent(convo(user=claude_code))[1]["safety_identifier"]
    assert len(identifier) == 64 and identifier != claude_code[:64]
    assert "user" not in sent(convo(user="user-42"))[1]


def test_what_the_responses_api_cannot_honour_is_dropped_and_named():
    extra = {
        "seed": 7,
        "presence_penalty": 0.5,
        "frequency_penalty": 0.5,
        "logit_bias": {"50256": -100},
        "logprobs": True,
        "top_logprobs": 3,
        "store": True,
        "service_tier": "flex",
        "prompt_cache_key": "repo-1",
        "prompt_cache_retention": "24h",
        "metadata": {"team": "a"},
    }
    conversation = convo(stop=["END"], top_k=40, temperature=0.2, top_p=0.5, max_tokens=5, openai_extra=extra)
    request, body = sent(conversation)
    assert sorted(request.dropped) == sorted(
        [
            "stop",
            "top_k",
            "temperature",
            "top_p",
            "max_tokens",
            "seed",
            "presence_penalty",
            "frequency_penalty",
            "logit_bias",
            "logprobs",
            "top_logprobs",
            "store",
        ]
    )
    for name in ("stop", "top_k", "temperature", "top_p", "seed", "logprobs", "top_logprobs"):
        assert name not in body
    assert body["max_output_tokens"] == 16  # OpenAI's minimum
    assert (body["service_tier"], body["prompt_cache_key"], body["prompt_cache_retention"]) == ("flex", "repo-1", "24h")
    assert body["metadata"] == {"team": "a"} and body["store"] is False


def test_default_sampling_values_and_a_large_enough_limit_are_sent_quietly():
    request, body = sent(convo(temperature=1, top_p=1, max_tokens=4000, openai_extra={"store": False}))
    assert request.dropped == []
    assert body["max_output_tokens"] == 4000 and "temperature" not in body and "top_p" not in body


def test_several_answers_are_refused():
    with pytest.raises(InvalidRequest) as caught:
        sent(convo(n=2))
    assert caught.value.param == "n"


def test_a_codex_request_read_by_the_client_side_goes_upstream_alike():
    codex = {
        "model": "gpt-5-codex",
        "instructions": "You are Codex.",
        "input": [
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "Sandbox: on."}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "List files."}]},
            {"type": "function_call", "call_id": "call_a", "name": "shell", "arguments": '{"command":["ls"]}'},
            {"type": "function_call_output", "call_id": "call_a", "output": "README.md"},
        ],
        "tools": [{"type": "function", "name": "shell", "description": "Run", "parameters": {"type": "object"}}],
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "reasoning": {"effort": "high", "summary": "auto"},
        "text": {"verbosity": "low"},
        "max_output_tokens": 2000,
        "prompt_cache_key": "session-1",
        "stream": True,
    }
    request = upstream.build_request(client_side.read_request(codex), route=route(), stream=True)
    body = orjson.loads(request.body)
    assert request.dropped == []
    assert body["instructions"] == "You are Codex.\n\nSandbox: on."
    assert body["input"] == [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "List files."}]},
        codex["input"][2],
        codex["input"][3],
    ]
    assert body["tools"] == [{**codex["tools"][0], "strict": False}]
    for name in ("tool_choice", "parallel_tool_calls", "reasoning", "text", "max_output_tokens", "prompt_cache_key"):
        assert body[name] == codex[name], name


# --- read_reply ----------------------------------------------------------------------------


def test_read_reply_reads_reasoning_text_and_usage():
    b, extra = BEHAVIOURS["reasoning"]
    reply = upstream.read_reply(fake_responses.reply_json(PATH, {"model": "gpt-5-codex", **extra}, b))
    assert reply.id == fake_responses.RESPONSE_ID and reply.model == "gpt-5-codex"
    assert reply.parts == [
        Thinking("Thinking it over", signature=ENCRYPTED, origin=upstream.PROTOCOL),
        Text(DEFAULT_REPLY),
    ]
    assert reply.stop_reason == "stop" and reply.created == fake_responses.CREATED_AT
    assert reply.usage == Usage(
        input_tokens=17, output_tokens=len(words(DEFAULT_REPLY)), cached_input_tokens=6, reasoning_tokens=4
    )


def test_read_reply_reads_function_calls_as_tool_calls():
    b, extra = BEHAVIOURS["tools"]
    reply = upstream.read_reply(fake_responses.reply_json(PATH, {"model": "m", **extra}, b))
    assert reply.parts == [
        ToolCall("call_fake_0001", "get_weather", '{"city": "Paris"}'),
        ToolCall("c2", "noop", "{}"),
    ]
    assert reply.stop_reason == "tool_calls"


def test_reasoning_without_encrypted_content_is_thinking_without_a_signature():
    reply = upstream.read_reply(fake_responses.reply_json(PATH, {"model": "m"}, Behaviour(reasoning_text="Hmm")))
    assert reply.parts[0] == Thinking("Hmm", origin=upstream.PROTOCOL)


@pytest.mark.parametrize(
    ("response", "stop_reason", "text"),
    [
        (finished("incomplete", incomplete_details={"reason": "max_output_tokens"}), "length", DEFAULT_REPLY),
        (finished("incomplete", incomplete_details={"reason": "content_filter"}), "content_filter", DEFAULT_REPLY),
        (
            finished(
                output=[
                    {
                        "id": "msg_1",
                        "type": "message",
                        "status": "completed",
                        "role": "assistant",
                        "content": [{"type": "refusal", "refusal": "I can't help with that."}],
                    }
                ]
            ),
            "content_filter",
            "I can't help with that.",
        ),
        (
            finished(
                output=[
                    {"id": "ws_1", "type": "web_search_call", "status": "completed", "action": {"type": "search"}},
                    {
                        "id": "rs_1",
                        "type": "reasoning",
                        "summary": [],
                        "content": [{"type": "reasoning_text", "text": "raw"}],
                    },
                ]
            ),
            "stop",
            "",
        ),
    ],
)
def test_read_reply_maps_the_status_to_a_stop_reason(response, stop_reason, text):
    reply = upstream.read_reply(response)
    assert (reply.stop_reason, reply.text) == (stop_reason, text)


@pytest.mark.parametrize(
    "data",
    [
        [],
        {"object": "response"},
        {"error": {"message": "boom"}, "output": []},
        finished("failed", error={"code": "server_error", "message": "boom"}),
        finished("in_progress"),
    ],
)
def test_read_reply_refuses_what_is_not_a_finished_response(data):
    with pytest.raises(ValueError):
        upstream.read_reply(data)


def test_read_reply_without_usage_says_so():
    b, extra = BEHAVIOURS["no usage"]
    assert upstream.read_reply(fake_responses.reply_json(PATH, {"model": "m", **extra}, b)).usage is None


# --- StreamReader --------------------------------------------------------------------------


@pytest.mark.parametrize("name", BEHAVIOURS)
def test_a_stream_adds_up_to_the_reply_read_whole(name):
    b, extra = BEHAVIOURS[name]
    body = {"model": "gpt-5-codex", "stream": True, **extra}
    reader, events, streamed = read_stream(fake_payloads(b, body))
    whole = upstream.read_reply(fake_responses.reply_json(PATH, body, b))
    assert reader.ended and reader.error is None
    assert (streamed.id, streamed.model) == (whole.id, whole.model)
    assert (streamed.parts, streamed.stop_reason, streamed.usage) == (whole.parts, whole.stop_reason, whole.usage)


def test_a_text_stream_is_read_word_by_word():
    _, events, _ = read_stream(fake_payloads(Behaviour(reply_text="One two three"), {"model": "m"}))
    assert [e for e in events if isinstance(e, TextDelta)] == [TextDelta("One"), TextDelta(" two"), TextDelta(" three")]
    assert isinstance(events[-2], Finish) and isinstance(events[-1], UsageReport)


def test_function_calls_are_numbered_from_zero_whatever_came_before():
    call = {"type": "function_call", "status": "in_progress", "arguments": ""}
    stream = [
        event("response.output_item.added", 1, output_index=0, item={"id": "rs_1", "type": "reasoning", "summary": []}),
        event("response.output_item.added", 2, output_index=1, item={"id": "msg_1", "type": "message", "content": []}),
        event("response.output_text.delta", 3, item_id="msg_1", output_index=1, content_index=0, delta="Let me."),
        event(
            "response.output_item.added", 4, output_index=2, item={**call, "id": "fc_a", "call_id": "c_a", "name": "a"}
        ),
        event(
            "response.output_item.added", 5, output_index=3, item={**call, "id": "fc_b", "call_id": "c_b", "name": "b"}
        ),
        event("response.function_call_arguments.delta", 6, item_id="fc_b", output_index=3, delta='{"x":'),
        event("response.function_call_arguments.delta", 7, output_index=2, delta="{}"),  # no item_id: by position
        event("response.function_call_arguments.delta", 8, item_id="fc_b", output_index=3, delta="1}"),
        event("response.function_call_arguments.delta", 9, item_id="fc_unknown", output_index=9, delta="lost"),
    ]
    _, events, reply = read_stream(stream)
    assert events == [
        TextDelta("Let me."),
        ToolCallStart(0, "c_a", "a"),
        ToolCallStart(1, "c_b", "b"),
        ToolCallDelta(1, '{"x":'),
        ToolCallDelta(0, "{}"),
        ToolCallDelta(1, "1}"),
    ]
    assert reply.tool_calls == [ToolCall("c_a", "a", "{}"), ToolCall("c_b", "b", '{"x":1}')]


def test_arguments_sent_only_with_the_finished_item_still_arrive():
    item = {"id": "fc_a", "type": "function_call", "call_id": "c_a", "name": "a", "arguments": ""}
    stream = [
        event("response.output_item.added", 0, output_index=0, item=item),
        event("response.output_item.done", 1, output_index=0, item={**item, "arguments": '{"q":1}'}),
    ]
    assert read_stream(stream)[1] == [ToolCallStart(0, "c_a", "a"), ToolCallDelta(0, '{"q":1}')]


def test_summary_parts_are_joined_as_the_whole_reply_joins_them():
    where = {"item_id": "rs_1", "output_index": 0}
    stream = [
        event("response.reasoning_summary_part.added", 0, **where, summary_index=0),
        event("response.reasoning_summary_text.delta", 1, **where, summary_index=0, delta="First."),
        event("response.reasoning_summary_part.added", 2, **where, summary_index=1),
        event("response.reasoning_summary_text.delta", 3, **where, summary_index=1, delta="Second."),
        event("response.reasoning_text.delta", 4, **where, content_index=0, delta=" Raw."),
    ]
    assert read_stream(stream)[2].parts == [Thinking("First.\n\nSecond. Raw.", origin=upstream.PROTOCOL)]


def test_a_stream_cut_before_response_completed_has_not_ended():
    reader, events, _ = read_stream(fake_payloads(Behaviour(omit_done=True), {"model": "m"}))
    assert not reader.ended and reader.error is None
    assert not any(isinstance(e, (Finish, UsageReport)) for e in events)


def test_a_stream_without_usage_still_finishes():
    reader, events, reply = read_stream(fake_payloads(Behaviour(omit_usage=True), {"model": "m"}))
    assert reader.ended and events[-1] == Finish("stop") and reply.usage is None


def test_an_incomplete_stream_finishes_with_length():
    response = finished("incomplete", incomplete_details={"reason": "max_output_tokens"})
    reader, events, _ = read_stream([event("response.incomplete", 5, response=response)])
    assert reader.ended and events[0] == Finish("length")


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (
            event("error", 3, code="server_error", message="The server had an error.", param=None),
            "The server had an error.",
        ),
        (
            event("response.failed", 4, response=finished("failed", error={"code": "server_error", "message": "Oops"})),
            "Oops",
        ),
        (event("response.failed", 4, response=finished("failed", error=None)), "The response failed."),
    ],
)
def test_errors_in_the_stream_are_reported(payload, message):
    reader, events, _ = read_stream([payload])
    assert (reader.error, events, reader.ended) == (message, [], False)


def test_unreadable_and_unknown_events_are_ignored():
    reader, events, _ = read_stream([b"", b"not json", b"[1]", event("response.web_search_call.searching", 1)])
    assert events == [] and reader.error is None


# --- the fake speaks the real API ---------------------------------------------------------


@pytest.mark.parametrize("name", BEHAVIOURS)
def test_the_fakes_events_and_responses_are_what_the_sdk_models_accept(name):
    b, extra = BEHAVIOURS[name]
    body = {"model": "gpt-5-codex", "stream": True, **extra}
    frames = fake_responses.stream_frames(PATH, body, b)
    for n, frame in enumerate(frames):
        head, data = frame.decode().removesuffix("\n\n").split("\n")
        parsed = EVENT.validate_json(data.removeprefix("data: "))
        assert head == f"event: {parsed.type}" and parsed.sequence_number == n
    Response.model_validate(fake_responses.reply_json(PATH, body, b))
    assert fake_responses.is_stream(PATH, body) and not fake_responses.is_stream(PATH, {"model": "m"})


def test_the_fakes_errors_are_in_openais_shape():
    assert fake_responses.error_json(400, Behaviour())["error"]["param"] == "input"
    assert fake_responses.error_json(429, Behaviour(error_message="Slow down"))["error"] == {
        "message": "Slow down",
        "type": "requests",
        "param": None,
        "code": "rate_limit_exceeded",
    }


# --- read_error ---------------------------------------------------------------------------


def upstream_error(status: int, message: str = "m", headers=None, **error):
    content = json.dumps({"error": {"message": message, "type": "invalid_request_error", **error}}).encode()
    return upstream.read_error(route=route(), status=status, content=content, headers=headers or {})


def test_a_refused_request_passes_openais_words_on():
    error = upstream_error(400, "Invalid 'input[0].content': empty.", param="input[0].content", code="empty")
    assert isinstance(error, InvalidRequest)
    assert (error.message, error.param, error.code) == (
        "Invalid 'input[0].content': empty.",
        "input[0].content",
        "empty",
    )


def test_the_routes_credential_never_reaches_the_client():
    error = upstream_error(400, f"Bad key {SECRET} in request")
    assert SECRET not in error.message and "***" in error.message
    refused = upstream_error(401, f"Incorrect API key provided: {SECRET}")
    assert isinstance(refused, UpstreamError) and refused.status == 502 and SECRET not in refused.message


@pytest.mark.parametrize(("status", "expected"), [(500, 502), (503, 503), (502, 502)])
def test_provider_failures_become_upstream_errors(status, expected):
    error = upstream_error(status)
    assert isinstance(error, UpstreamError) and error.status == expected


def test_rate_limits_pass_retry_after_on():
    error = upstream_error(429, headers={"Retry-After": "7"})
    assert isinstance(error, RateLimited) and error.headers == {"Retry-After": "7"}


# --- passthrough --------------------------------------------------------------------------


CODEX_BODY = {
    "model": "codex-public",
    "instructions": "You are Codex.",
    "input": [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Patch it."}]},
        {"type": "reasoning", "summary": [], "encrypted_content": ENCRYPTED},
    ],
    "tools": [
        {"type": "custom", "name": "apply_patch", "format": {"type": "grammar", "syntax": "lark", "definition": "x"}},
        {"type": "web_search"},
    ],
    "include": ["reasoning.encrypted_content"],
    "reasoning": {"effort": "high", "summary": "auto"},
    "store": True,
    "stream": True,
}


def test_passthrough_check_returns_the_stream_flag():
    assert upstream.passthrough_check(CODEX_BODY) is True
    assert upstream.passthrough_check({"model": "m", "input": "hi"}) is False


@pytest.mark.parametrize(
    "changes",
    [
        {"previous_response_id": "resp_1"},
        {"conversation": "conv_1"},
        {"prompt": {"id": "pmpt_1"}},
        {"background": True},
        {"model": None},
        {"model": 5},
        {"stream": "yes"},
    ],
)
def test_passthrough_check_refuses_in_the_client_side_readers_words(changes):
    body = {k: v for k, v in {**CODEX_BODY, **changes}.items() if v is not None}
    with pytest.raises(InvalidRequest) as forwarded:
        upstream.passthrough_check(body)
    with pytest.raises(InvalidRequest) as translated:
        client_side.read_request(body)
    assert (forwarded.value.message, forwarded.value.param) == (translated.value.message, translated.value.param)


def test_passthrough_check_needs_an_object_with_input():
    with pytest.raises(InvalidRequest):
        upstream.passthrough_check([])
    with pytest.raises(InvalidRequest) as caught:
        upstream.passthrough_check({"model": "m"})
    assert caught.value.param == "input"


def test_a_passthrough_request_goes_as_sent_but_for_the_model_and_store():
    request = upstream.passthrough_request(
        CODEX_BODY, route=route(), stream=True, client_headers={"authorization": "Bearer bapi_customer"}
    )
    assert request.url == "https://api.openai.com/v1/responses"
    assert request.headers["Authorization"] == f"Bearer {SECRET}"
    hosted = [tool for tool in CODEX_BODY["tools"] if tool["type"] not in ("function", "custom")]
    kept = [tool for tool in CODEX_BODY["tools"] if tool["type"] in ("function", "custom")]
    assert hosted, "Codex sends a hosted web_search tool"
    # Hosted tools would run on Beluga's OpenAI account, unpriced: left out and named.
    assert orjson.loads(request.body) == {**CODEX_BODY, "model": "gpt-5-codex", "store": False, "tools": kept}
    assert request.dropped == [f"tools.{tool['type']}" for tool in hosted]


def test_reasoning_beluga_sealed_goes_back_to_openai_unsealed_and_other_providers_is_left_out():
    ours = Thinking("Mine", signature=ENCRYPTED, origin=upstream.PROTOCOL)
    anthropic = Thinking("Theirs", signature="EqQBsig", origin="anthropic")
    written = client_side.write_reply(
        Reply(id="x", model="m", parts=[ours, anthropic, Text("Done")], stop_reason="stop"),
        model="codex-public",
        request_id="req_0123",
    )
    sealed_ours, sealed_theirs, message = written["output"]
    assert sealed_ours["encrypted_content"].startswith(client_side.SEALED)
    body = {"model": "codex-public", "input": [*written["output"], {"role": "user", "content": "Go on."}]}
    forwarded = orjson.loads(upstream.passthrough_request(body, route=route(), stream=False, client_headers={}).body)
    assert forwarded["input"] == [
        {"type": "reasoning", "summary": sealed_ours["summary"], "encrypted_content": ENCRYPTED},
        message,
        {"role": "user", "content": "Go on."},
    ]


def test_passthrough_reply_renames_the_model():
    data = fake_responses.reply_json(PATH, {"model": "gpt-5-codex"}, Behaviour())
    assert upstream.passthrough_reply(data, model="codex-public")["model"] == "codex-public"


def framed(b: Behaviour, body: dict, *, model: str = "codex-public", error: str | None = None, cut: int | None = None):
    framer = upstream.PassthroughFramer(model=model)
    data = fake_payloads(b, {"model": "gpt-5-codex", **body})[:cut]
    return b"".join(framer.frame(payload) for payload in data) + framer.close(error=error)


def events_of(raw: bytes) -> list:
    frames = raw.decode().split("\n\n")
    assert frames[-1] == ""
    out = []
    for frame in frames[:-1]:
        head, data = frame.split("\n")
        parsed = EVENT.validate_json(data.removeprefix("data: "))
        assert head == f"event: {parsed.type}"
        out.append(parsed)
    return out


def test_the_framer_renames_the_model_in_each_response_and_forwards_the_rest_as_sent():
    b, extra = BEHAVIOURS["reasoning"]
    raw = framed(b, extra)
    events = events_of(raw)
    upstream_frames = fake_responses.stream_frames(PATH, {"model": "gpt-5-codex", **extra}, b)
    assert len(events) == len(upstream_frames)
    assert all(e.response.model == "codex-public" for e in events if hasattr(e, "response"))
    assert b"gpt-5-codex" not in raw
    unchanged = [f for f in upstream_frames if b'"response":' not in f]
    assert all(frame in raw for frame in unchanged)
    assert upstream.PassthroughFramer(model="x").frame(b"not json") == b""


def test_the_framer_fails_the_response_after_the_upstreams_last_event():
    raw = framed(Behaviour(), {}, cut=6, error="The model provider ended the stream early.")
    events = events_of(raw)
    assert [e.sequence_number for e in events] == list(range(7))
    failed = events[-1]
    assert failed.type == "response.failed" and failed.response.status == "failed"
    assert failed.response.error.message == "The model provider ended the stream early."
    assert failed.response.model == "codex-public" and failed.response.id == fake_responses.RESPONSE_ID
    assert framed(Behaviour(), {}, error=None).endswith(b"\n\n")
    assert upstream.PassthroughFramer(model="x").close() == b""


def test_the_framer_fails_a_response_the_upstream_never_started():
    (failed,) = events_of(upstream.PassthroughFramer(model="codex-public").close(error="Broken."))
    assert (failed.sequence_number, failed.response.status, failed.response.model) == (0, "failed", "codex-public")


# --- interop: OpenAI's encrypted reasoning survives a turn through any client protocol ------------


def test_encrypted_reasoning_comes_back_through_a_responses_client():
    b, extra = BEHAVIOURS["reasoning"]
    reply = upstream.read_reply(fake_responses.reply_json(PATH, {"model": "m", **extra}, b))
    written = client_side.write_reply(reply, model="codex-public", request_id="req_1")
    next_turn = client_side.read_request(
        {"model": "codex-public", "input": [*written["output"], {"role": "user", "content": "And?"}]}
    )
    _, body = sent(next_turn)
    assert body["input"][0] == {
        "type": "reasoning",
        "summary": [{"type": "summary_text", "text": "Thinking it over"}],
        "encrypted_content": ENCRYPTED,
    }


def test_encrypted_reasoning_comes_back_through_an_anthropic_client():
    b, extra = BEHAVIOURS["reasoning"]
    _, _, reply = read_stream(fake_payloads(b, {"model": "m", **extra}))
    message = am.write_reply(reply, model="claude-public", request_id="req_1")
    next_turn = am.read_request(
        {
            "model": "claude-public",
            "max_tokens": 100,
            "messages": [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": message["content"]},
                {"role": "user", "content": "And?"},
            ],
        }
    )
    _, body = sent(next_turn)
    reasoning = [item for item in body["input"] if item["type"] == "reasoning"]
    assert [item["encrypted_content"] for item in reasoning] == [ENCRYPTED]


# --- over HTTP: the fake upstream and the openai SDK -----------------------------------------------


@pytest.fixture
def responses_upstream(fake_upstream):
    """The fake upstream: paths ending /responses speak tests/fake_responses.py."""
    return fake_upstream


def test_build_request_read_reply_and_stream_reader_against_the_fake_upstream(responses_upstream):
    responses_upstream.reply("One two three", prompt_tokens=9)
    target = route(base_url=responses_upstream.base_url)
    request = upstream.build_request(convo(), route=target, stream=True)
    with requests.post(request.url, data=request.body, headers=request.headers, stream=True, timeout=5) as response:
        reader, _, reply = read_stream(list(iter_sse_data(response)))
    assert reader.ended and reply.text == "One two three" and reply.usage == Usage(input_tokens=9, output_tokens=3)
    received = responses_upstream.requests[-1]
    assert received.path == "/v1/responses" and received.headers["authorization"] == f"Bearer {SECRET}"

    request = upstream.build_request(convo(), route=target, stream=False)
    response = requests.post(request.url, data=request.body, headers=request.headers, timeout=5)
    assert upstream.read_reply(response.json()).text == "One two three"

    responses_upstream.fail_with(429)
    response = requests.post(request.url, data=request.body, headers=request.headers, timeout=5)
    error = upstream.read_error(
        route=target, status=response.status_code, content=response.content, headers=response.headers
    )
    assert isinstance(error, RateLimited)


@pytest.fixture
def canned():
    """A server on 127.0.0.1 answering every POST with `server.answer` = (status, content type, bytes)."""
    with CannedServer() as server:
        yield server, openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="x", max_retries=0)


def test_the_sdk_reads_a_forwarded_stream(canned):
    server, client = canned
    b, extra = BEHAVIOURS["reasoning"]
    server.answer = (200, "text/event-stream", framed(b, extra))
    events = list(client.responses.create(model="codex-public", input="hi", stream=True))
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == DEFAULT_REPLY
    with client.responses.stream(model="codex-public", input="hi") as stream:
        final = stream.get_final_response()
    assert (final.model, final.output_text) == ("codex-public", DEFAULT_REPLY)
    assert final.output[0].type == "reasoning" and final.output[0].encrypted_content == ENCRYPTED
    assert (final.usage.input_tokens_details.cached_tokens, final.usage.output_tokens_details.reasoning_tokens) == (
        6,
        4,
    )


def test_the_sdk_reads_a_forwarded_function_call_stream(canned):
    server, client = canned
    b, extra = BEHAVIOURS["tools"]
    server.answer = (200, "text/event-stream", framed(b, extra))
    with client.responses.stream(model="codex-public", input="weather?") as stream:
        deltas = [e.delta for e in stream if e.type == "response.function_call_arguments.delta"]
        final = stream.get_final_response()
    assert deltas == ['{"city":', ' "Paris"}', "{", "}"]
    assert [(c.call_id, c.name, c.arguments) for c in final.output] == [
        ("call_fake_0001", "get_weather", '{"city": "Paris"}'),
        ("c2", "noop", "{}"),
    ]


def test_the_sdk_sees_the_response_fail_when_the_upstream_broke_off(canned):
    server, client = canned
    server.answer = (200, "text/event-stream", framed(Behaviour(), {}, cut=5, error="The connection broke."))
    events = list(client.responses.create(model="codex-public", input="hi", stream=True))
    assert events[-1].type == "response.failed" and events[-1].response.error.message == "The connection broke."
    assert [e.sequence_number for e in events] == list(range(6))


def test_the_sdk_reads_a_forwarded_whole_response(canned):
    server, client = canned
    b, extra = BEHAVIOURS["tools"]
    data = fake_responses.reply_json(PATH, {"model": "gpt-5-codex", **extra}, b)
    server.answer = (200, "application/json", orjson.dumps(upstream.passthrough_reply(data, model="codex-public")))
    response = client.responses.create(model="codex-public", input="weather?")
    assert response.model == "codex-public" and response.status == "completed"
    assert [item.type for item in response.output] == ["function_call", "function_call"]
    assert response.usage.input_tokens == 17
