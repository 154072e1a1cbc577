"""The Anthropic Messages protocol module: both sides, against the fake upstream and the anthropic SDK."""

from __future__ import annotations

import json

import anthropic
import orjson
import pytest
import requests
from requests.structures import CaseInsensitiveDict

from catalog.selectors import RouteTarget
from gateway.errors import ApiError, InvalidRequest, RateLimited, UpstreamError
from gateway.protocols import anthropic_messages as am
from gateway.protocols.conversation import (
    Conversation,
    Finish,
    Image,
    Message,
    Reply,
    ReplyBuilder,
    ResponseFormat,
    Start,
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
)
from gateway.providers.http import iter_sse_data
from tests import fake_anthropic
from tests.canned_server import CannedServer
from tests.fake_upstream import Behaviour
from tests.fake_upstream import ToolCall as FakeToolCall
from tests.fixtures_gateway import route_target

SECRET = "sk-ant-route-secret-0123456789"


def route(base_url: str = "https://api.anthropic.com", api_key: str = SECRET) -> RouteTarget:
    return route_target(kind="anthropic", base_url=base_url, api_key=api_key, upstream_model="claude-upstream-1")


def body(**overrides) -> dict:
    base = {"model": "claude-public", "max_tokens": 1024, "messages": [{"role": "user", "content": "Hello"}]}
    base.update(overrides)
    return base


def sent(conversation: Conversation, *, stream: bool = False, target: RouteTarget | None = None):
    request = am.build_request(conversation, route=target or route(), stream=stream)
    return request, orjson.loads(request.body)


def convo(*messages: Message, **fields) -> Conversation:
    return Conversation(model="m", messages=list(messages) or [Message("user", [Text("Hi")])], **fields)


def events_of(raw: bytes) -> list[tuple[str, dict]]:
    """(event name, data) of each SSE frame; the name must equal the data's type, as Anthropic sends."""
    assert raw.endswith(b"\n\n")
    out = []
    for frame in raw.decode().split("\n\n")[:-1]:
        name_line, data_line = frame.split("\n")
        name, data = name_line.removeprefix("event: "), json.loads(data_line.removeprefix("data: "))
        assert data["type"] == name
        out.append((name, data))
    return out


def types_of(raw: bytes) -> list[str]:
    return [name for name, _ in events_of(raw)]


def write_all(events, *, error: str | None = None, model: str = "claude-public") -> bytes:
    writer = am.StreamWriter(model=model, request_id="req_abc123", conversation=convo())
    return b"".join(writer.write(event) for event in events) + writer.close(error=error)


def fake_payloads(b: Behaviour, request_body: dict) -> list[bytes]:
    """The `data:` payloads of the fake's stream, as the gateway's SSE reader yields them."""
    raw = b"".join(fake_anthropic.stream_frames("/v1/messages", request_body, b))
    return [line[6:].encode() for line in raw.decode().split("\n") if line.startswith("data: ")]


def read_stream(payloads: list[bytes]) -> tuple[am.StreamReader, list, Reply]:
    reader = am.StreamReader()
    events = [event for payload in payloads for event in reader.feed(payload)]
    builder = ReplyBuilder()
    for event in events:
        builder.add(event)
    return reader, events, builder.result()


WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


# --- client side: validation --------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "param"),
    [
        ({"model": None}, "model"),
        ({"model": 42}, "model"),
        ({"max_tokens": None}, "max_tokens"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": "100"}, "max_tokens"),
        ({"max_tokens": True}, "max_tokens"),
        ({"messages": None}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": "hi"}, "messages"),
        ({"messages": [{"role": "system", "content": "hi"}]}, "messages.0.role"),
        ({"messages": [{"role": "user", "content": 7}]}, "messages.0.content"),
        ({"messages": [{"role": "user", "content": [{"type": "text"}]}]}, "messages.0.content.0.text"),
        ({"messages": [{"role": "user", "content": [{"text": "no type"}]}]}, "messages.0.content.0.type"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image", "source": {"type": "base64", "media_type": "image/bmp", "data": "AAA"}}
                        ],
                    }
                ]
            },
            "messages.0.content.0.source.media_type",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}]}
                ]
            },
            "messages.0.content.0.source.type",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "tool_use", "id": "t", "name": "n", "input": {}}]}]},
            "messages.0.content.0.type",
        ),
        (
            {
                "messages": [
                    {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "n", "input": []}]}
                ]
            },
            "messages.0.content.0.input",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "tool_result", "tool_use_id": "t", "content": [{"type": "document"}]}],
                    }
                ]
            },
            "messages.0.content.0.content.0.type",
        ),
        (
            {"messages": [{"role": "assistant", "content": [{"type": "thinking", "thinking": "hm"}]}]},
            "messages.0.content.0.signature",
        ),
        ({"system": 5}, "system"),
        ({"system": [{"type": "image"}]}, "system.0"),
        ({"tools": [{"name": "x"}]}, "tools.0.input_schema"),
        ({"tools": [{"input_schema": {"type": "object"}}]}, "tools.0.name"),
        ({"tool_choice": {"type": "sometimes"}}, "tool_choice.type"),
        ({"tool_choice": {"type": "tool"}}, "tool_choice.name"),
        ({"tool_choice": "auto"}, "tool_choice"),
        ({"temperature": 1.5}, "temperature"),
        ({"top_p": -0.1}, "top_p"),
        ({"top_k": 2.5}, "top_k"),
        ({"stop_sequences": "END"}, "stop_sequences"),
        ({"metadata": {"user_id": 5}}, "metadata.user_id"),
        ({"thinking": {"type": "enabled", "budget_tokens": 100}}, "thinking.budget_tokens"),
        ({"thinking": {"type": "on"}}, "thinking.type"),
        ({"thinking": {"type": "adaptive"}, "output_config": {"effort": "extreme"}}, "output_config.effort"),
        ({"output_config": {"format": {"type": "json_object"}}}, "output_config.format"),
        ({"stream": "yes"}, "stream"),
    ],
)
def test_invalid_requests_name_the_parameter(changes, param):
    request = {key: value for key, value in body(**changes).items() if value is not None}
    with pytest.raises(InvalidRequest) as caught:
        am.read_request(request)
    assert caught.value.param == param
    assert caught.value.message.startswith(f"{param}: ")


def test_a_body_that_is_not_an_object_is_refused():
    with pytest.raises(InvalidRequest, match="JSON object"):
        am.read_request([1, 2])


@pytest.mark.parametrize("tool_type", ["web_search_20250305", "bash_20250124", "text_editor_20250728"])
def test_server_tools_are_refused_as_not_supported_for_now(tool_type):
    with pytest.raises(InvalidRequest) as caught:
        am.read_request(body(tools=[{"type": tool_type, "name": "x"}]))
    assert caught.value.param == "tools.0.type"
    assert f"'{tool_type}' is not supported through Beluga for now" in caught.value.message


def test_document_blocks_are_refused_as_not_supported_for_now():
    document = {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "x"}}
    with pytest.raises(InvalidRequest, match="'document' are not supported through Beluga"):
        am.read_request(body(messages=[{"role": "user", "content": [document]}]))


# --- client side: reading ---------------------------------------------------------------------


def test_a_full_request_is_read_into_the_conversation():
    request = body(
        system=[
            {"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "Be kind."},
        ],
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?", "cache_control": {"type": "ephemeral"}},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "Let me look.", "signature": "sig-1"},
                    {"type": "redacted_thinking", "data": "opaque"},
                    {"type": "text", "text": "Checking the weather."},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C", "is_error": False},
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_1",
                        "content": [{"type": "text", "text": "again"}],
                        "is_error": True,
                    },
                ],
            },
        ],
        tools=[WEATHER_TOOL],
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
        stop_sequences=["END"],
        temperature=0.5,
        top_p=0.9,
        top_k=40,
        metadata={"user_id": "user-7"},
        thinking={"type": "enabled", "budget_tokens": 2048},
        stream=True,
        container="ignored",  # an unknown top-level field: ignored, not refused
        betas_future_field={"x": 1},
    )
    conversation = am.read_request(request)
    assert conversation.model == "claude-public"
    assert conversation.max_tokens == 1024
    assert conversation.stream is True
    assert [part.text for part in conversation.system] == ["Be brief.", "Be kind."]
    user, assistant, results = conversation.messages
    assert user.parts == [
        Text("What is this?"),
        Image(data="iVBOR", media_type="image/png"),
        Image(url="https://example.com/cat.jpg"),
    ]
    assert assistant.parts == [
        Thinking("Let me look.", "sig-1", origin="anthropic"),
        Thinking(redacted_data="opaque", origin="anthropic"),
        Text("Checking the weather."),
        ToolCall("toolu_1", "get_weather", '{"city":"Paris"}'),
    ]
    assert results.parts == [
        ToolResult("toolu_1", [Text("18C")], name="get_weather"),
        ToolResult("toolu_1", [Text("again")], name="get_weather", is_error=True),
    ]
    assert conversation.tools == [Tool("get_weather", "Weather for a city", WEATHER_TOOL["input_schema"])]
    assert conversation.tool_choice == ToolChoice(mode="required", parallel=False)
    assert conversation.stop == ["END"]
    assert (conversation.temperature, conversation.top_p, conversation.top_k) == (0.5, 0.9, 40)
    assert conversation.user == "user-7"
    assert conversation.thinking == ThinkingConfig(budget_tokens=2048)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"thinking": {"type": "disabled"}}, ThinkingConfig.off()),  # said off: not the same as said nothing
        ({"thinking": {"type": "adaptive"}}, ThinkingConfig()),
        ({"thinking": {"type": "adaptive"}, "output_config": {"effort": "low"}}, ThinkingConfig(effort="low")),
        ({"thinking": {"type": "adaptive"}, "output_config": {"effort": "max"}}, ThinkingConfig(effort="high")),
        ({"thinking": {"type": "adaptive", "display": "omitted"}}, ThinkingConfig(include_thoughts=False)),
    ],
)
def test_thinking_modes_are_read(fields, expected):
    assert am.read_request(body(**fields)).thinking == expected


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, ToolChoice(mode="auto")),
        ({"type": "none"}, ToolChoice(mode="none")),
        ({"type": "tool", "name": "get_weather"}, ToolChoice(mode="tool", name="get_weather")),
        ({"type": "auto", "disable_parallel_tool_use": False}, ToolChoice(mode="auto", parallel=True)),
    ],
)
def test_tool_choice_is_read(choice, expected):
    assert am.read_request(body(tools=[WEATHER_TOOL], tool_choice=choice)).tool_choice == expected


def test_output_config_json_schema_is_read_as_a_response_format():
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    conversation = am.read_request(body(output_config={"format": {"type": "json_schema", "schema": schema}}))
    assert conversation.response_format == ResponseFormat(
        kind="json_schema", schema=schema, name="response", strict=True
    )


def test_model_and_stream_given_by_the_caller_win():
    conversation = am.read_request(body(stream=False), model="from-url", stream=True)
    assert (conversation.model, conversation.stream) == ("from-url", True)


def test_count_tokens_requests_need_no_max_tokens():
    request = body(tools=[WEATHER_TOOL])
    del request["max_tokens"]
    conversation = am.read_count_tokens_request(request)
    assert conversation.max_tokens is None
    assert conversation.tools[0].name == "get_weather"
    with pytest.raises(InvalidRequest) as caught:
        am.read_request(request)
    assert caught.value.param == "max_tokens"


# --- client side: writing ------------------------------------------------------------------------


def test_write_reply_is_an_anthropic_message():
    reply = Reply(
        id="chatcmpl-upstream",
        model="upstream-model",
        parts=[
            Thinking("Hmm.", "sig-9"),
            Thinking(redacted_data="opaque"),
            Text("Let me check."),
            ToolCall("toolu_1", "get_weather", '{"city": "Paris"}'),
        ],
        stop_reason="tool_calls",
        usage=Usage(input_tokens=100, output_tokens=20, cached_input_tokens=60, cache_write_tokens=10),
    )
    assert am.write_reply(reply, model="claude-public", request_id="req_abc123") == {
        "id": "msg_abc123",
        "type": "message",
        "role": "assistant",
        "model": "claude-public",
        "content": [
            {"type": "thinking", "thinking": "Hmm.", "signature": "sig-9"},
            {"type": "redacted_thinking", "data": "opaque"},
            {"type": "text", "text": "Let me check."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 30,
            "cache_creation_input_tokens": 10,
            "cache_read_input_tokens": 60,
            "output_tokens": 20,
        },
    }


@pytest.mark.parametrize(
    ("stop_reason", "expected"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("content_filter", "refusal"),
        (None, "end_turn"),
    ],
)
def test_write_reply_maps_stop_reasons(stop_reason, expected):
    with_call = Reply(id="x", model="m", parts=[ToolCall("t", "f")], stop_reason=stop_reason)
    assert am.write_reply(with_call, model="m", request_id="r")["stop_reason"] == (
        "tool_use" if stop_reason in ("stop", None) else expected
    )
    reply = Reply(id="x", model="m", parts=[Text("hi")], stop_reason=stop_reason)
    message = am.write_reply(reply, model="m", request_id="req_1")
    assert message["stop_reason"] == expected
    assert message["usage"] == {
        "input_tokens": 0,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": 0,
    }


def test_stream_of_text_is_anthropics_exact_sequence():
    raw = write_all(
        [
            Start(id="up", model="upstream"),
            TextDelta("Hello"),
            TextDelta(" world"),
            Finish("stop"),
            UsageReport(Usage(input_tokens=12, output_tokens=2, cached_input_tokens=4)),
        ]
    )
    events = events_of(raw)
    assert [name for name, _ in events] == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = events[0][1]["message"]
    assert start["id"] == "msg_abc123" and start["model"] == "claude-public" and start["content"] == []
    assert start["stop_reason"] is None and start["usage"]["output_tokens"] == 1
    assert events[2][1] == {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    assert events[3][1]["delta"] == {"type": "text_delta", "text": "Hello"}
    assert events[5][1] == {"type": "content_block_stop", "index": 0}
    assert events[6][1] == {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {
            "input_tokens": 8,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 4,
            "output_tokens": 2,
        },
    }


def test_stream_with_tool_calls_gives_each_call_its_own_block():
    raw = write_all(
        [
            TextDelta("Checking."),
            ToolCallStart(0, "toolu_a", "get_weather"),
            ToolCallDelta(0, '{"city":'),
            ToolCallDelta(0, '"Paris"}'),
            ToolCallStart(1, "toolu_b", "get_time"),
            ToolCallDelta(1, "{}"),
            Finish("tool_calls"),
        ]
    )
    events = events_of(raw)
    blocks = [(name, data.get("index"), data.get("content_block") or data.get("delta")) for name, data in events[2:-2]]
    assert blocks == [
        ("content_block_start", 0, {"type": "text", "text": ""}),
        ("content_block_delta", 0, {"type": "text_delta", "text": "Checking."}),
        ("content_block_stop", 0, None),
        ("content_block_start", 1, {"type": "tool_use", "id": "toolu_a", "name": "get_weather", "input": {}}),
        ("content_block_delta", 1, {"type": "input_json_delta", "partial_json": '{"city":'}),
        ("content_block_delta", 1, {"type": "input_json_delta", "partial_json": '"Paris"}'}),
        ("content_block_stop", 1, None),
        ("content_block_start", 2, {"type": "tool_use", "id": "toolu_b", "name": "get_time", "input": {}}),
        ("content_block_delta", 2, {"type": "input_json_delta", "partial_json": "{}"}),
        ("content_block_stop", 2, None),
    ]
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"
    assert events[-2][1]["usage"] == {"output_tokens": 0}  # no usage reported: message_start's counts stand
    assert events[-1][0] == "message_stop"


def test_stream_of_thinking_then_text():
    raw = write_all(
        [
            ThinkingDelta("Let me "),
            ThinkingDelta("think."),
            ThinkingDelta(signature="sig-1"),
            ThinkingDelta(redacted_data="opaque"),
            TextDelta("Answer."),
            Finish("stop"),
        ]
    )
    events = events_of(raw)
    blocks = [(name, data.get("index"), data.get("content_block") or data.get("delta")) for name, data in events[2:-2]]
    assert blocks == [
        ("content_block_start", 0, {"type": "thinking", "thinking": "", "signature": ""}),
        ("content_block_delta", 0, {"type": "thinking_delta", "thinking": "Let me "}),
        ("content_block_delta", 0, {"type": "thinking_delta", "thinking": "think."}),
        ("content_block_delta", 0, {"type": "signature_delta", "signature": "sig-1"}),
        ("content_block_stop", 0, None),
        ("content_block_start", 1, {"type": "redacted_thinking", "data": "opaque"}),
        ("content_block_stop", 1, None),
        ("content_block_start", 2, {"type": "text", "text": ""}),
        ("content_block_delta", 2, {"type": "text_delta", "text": "Answer."}),
        ("content_block_stop", 2, None),
    ]


def test_a_broken_stream_ends_with_an_error_event_instead_of_message_stop():
    events = events_of(write_all([TextDelta("Hel")], error="The model provider stopped answering."))
    assert [name for name, _ in events] == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "error",
    ]
    assert events[-1][1] == {
        "type": "error",
        "error": {"type": "api_error", "message": "The model provider stopped answering."},
    }


def test_an_empty_stream_still_starts_and_ends_the_message():
    assert types_of(write_all([])) == ["message_start", "ping", "message_delta", "message_stop"]
    writer = am.StreamWriter(model="m", request_id="req_1", conversation=convo())
    writer.close()
    assert writer.close() == b""  # closing twice writes nothing more


@pytest.mark.parametrize(
    ("error", "status", "kind"),
    [
        (InvalidRequest("bad"), 400, "invalid_request_error"),
        (ApiError("no key", status=401), 401, "authentication_error"),
        (ApiError("no money", status=402), 402, "billing_error"),
        (ApiError("not yours", status=403), 403, "permission_error"),
        (ApiError("no such model", status=404), 404, "not_found_error"),
        (ApiError("wrong method", status=405), 405, "invalid_request_error"),
        (ApiError("too big", status=413), 413, "request_too_large"),
        (RateLimited("slow down"), 429, "rate_limit_error"),
        (ApiError("bug", status=500), 500, "api_error"),
        (UpstreamError("provider failed"), 502, "api_error"),
        (UpstreamError("overloaded", status=503), 529, "overloaded_error"),
        (ApiError("timeout", status=504), 504, "timeout_error"),
    ],
)
def test_error_body_uses_anthropics_error_types(error, status, kind):
    assert am.error_body(error) == (status, {"type": "error", "error": {"type": kind, "message": error.message}})


def test_error_body_carries_the_request_id_when_given():
    _, payload = am.error_body(InvalidRequest("bad"), request_id="req_42")
    assert payload["request_id"] == "req_42"


# --- upstream side: building requests -----------------------------------------------------------------


def test_build_request_targets_messages_with_the_route_credential():
    conversation = convo(max_tokens=None, user="end-user-1", stop=["END"], top_k=5)
    request, payload = sent(conversation, stream=True)
    assert request.url == "https://api.anthropic.com/v1/messages"
    assert request.headers == {
        "x-api-key": SECRET,
        "anthropic-version": "2023-06-01",
        "content-type": "application/json",
        "accept": "text/event-stream",
    }
    assert payload == {
        "model": "claude-upstream-1",
        "max_tokens": 4096,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
        "stop_sequences": ["END"],
        "top_k": 5,
        "metadata": {"user_id": "end-user-1"},
        "stream": True,
    }
    assert request.dropped == []


def test_build_request_without_a_credential_sends_no_key_header():
    request, payload = sent(convo(), target=route(api_key=""))
    assert "x-api-key" not in request.headers
    assert request.headers["accept"] == "application/json"
    assert "stream" not in payload


def test_messages_are_merged_and_shaped_for_anthropic():
    conversation = convo(
        Message("user", [Text("Look:"), Image(data="iVBOR", media_type="image/png")]),
        Message("user", [Image(url="data:image/jpeg;base64,/9j/4AAQ"), Image(url="https://example.com/a.png")]),
        Message(
            "assistant",
            [
                Thinking("unsigned, from another provider"),
                Thinking("signed", "sig-1", origin="anthropic"),
                Thinking(redacted_data="opaque", origin="anthropic"),
                Text(""),
                ToolCall("call_1", "get_weather", '{"city":"Paris"}'),
            ],
        ),
        Message("user", [Text("and?")]),  # OpenAI order: the tool message came first; text after
        Message("user", [ToolResult("call_1", [Text("18C")], is_error=True), ToolResult("call_1", [])]),
        Message("assistant", [Thinking("only unsigned thinking")]),  # nothing left to send: left out
        Message("assistant", [Text("Done.")]),
    )
    _, payload = sent(conversation)
    assert payload["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Look:"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}},
                {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "signed", "signature": "sig-1"},
                {"type": "redacted_thinking", "data": "opaque"},
                {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "call_1",
                    "content": [{"type": "text", "text": "18C"}],
                    "is_error": True,
                },
                {"type": "tool_result", "tool_use_id": "call_1"},
                {"type": "text", "text": "and?"},
            ],
        },
        {"role": "assistant", "content": [{"type": "text", "text": "Done."}]},
    ]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        (ToolChoice("auto"), {"type": "auto"}),
        (ToolChoice("none", parallel=False), {"type": "none"}),
        (ToolChoice("required"), {"type": "any"}),
        (
            ToolChoice("tool", name="get_weather", parallel=False),
            {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
        ),
        (ToolChoice("auto", parallel=False), {"type": "auto", "disable_parallel_tool_use": True}),
    ],
)
def test_tools_and_tool_choice_are_sent(choice, expected):
    tools = [
        Tool("get_weather", "Weather", {"type": "object", "properties": {}}),
        Tool("noop", parameters={"properties": {}}),
    ]
    _, payload = sent(convo(tools=tools, tool_choice=choice))
    assert payload["tools"] == [
        {"name": "get_weather", "description": "Weather", "input_schema": {"type": "object", "properties": {}}},
        {"name": "noop", "input_schema": {"type": "object", "properties": {}}},
    ]
    assert payload["tool_choice"] == expected


def test_temperature_above_anthropics_maximum_is_clamped_and_named():
    request, payload = sent(convo(temperature=1.7, top_p=0.8))
    assert (payload["temperature"], payload["top_p"]) == (1, 0.8)
    assert request.dropped == ["temperature"]


def test_a_no_op_top_p_is_not_sent_with_temperature():
    request, payload = sent(convo(temperature=0.3, top_p=1.0))
    assert payload["temperature"] == 0.3 and "top_p" not in payload
    assert request.dropped == []


def test_thinking_drops_the_sampling_changes_anthropic_refuses_with_it():
    conversation = convo(
        max_tokens=8000, thinking=ThinkingConfig(budget_tokens=4000), temperature=0.2, top_k=10, top_p=0.5
    )
    request, payload = sent(conversation)
    assert payload["thinking"] == {"type": "enabled", "budget_tokens": 4000}
    assert "temperature" not in payload and "top_k" not in payload
    assert payload["top_p"] == 0.95
    assert request.dropped == ["temperature", "top_k", "top_p"]


@pytest.mark.parametrize(
    ("thinking", "max_tokens", "budget", "dropped"),
    [
        (ThinkingConfig(effort="high"), 32000, 24576, []),
        (ThinkingConfig(effort="high"), 4096, 3072, []),
        (ThinkingConfig(effort="low"), 16000, 2048, []),
        (ThinkingConfig(effort="minimal"), 16000, 1024, []),
        (ThinkingConfig(), 16000, 8192, []),  # adaptive thinking without an effort: medium
        (ThinkingConfig(effort="medium"), 1500, 1024, []),
        (ThinkingConfig(budget_tokens=500), 4096, 1024, []),
        (ThinkingConfig(budget_tokens=10000), 4096, 4095, ["thinking.budget_tokens"]),
        (ThinkingConfig(effort="low"), 1024, None, ["thinking"]),
        (ThinkingConfig(budget_tokens=0), 4096, None, []),
    ],
)
def test_thinking_budgets_stay_within_anthropics_limits(thinking, max_tokens, budget, dropped):
    request, payload = sent(convo(thinking=thinking, max_tokens=max_tokens))
    assert payload.get("thinking") == (None if budget is None else {"type": "enabled", "budget_tokens": budget})
    assert request.dropped == dropped


def test_thinking_gives_way_to_a_forced_tool():
    tools = [Tool("get_weather")]
    request, payload = sent(
        convo(tools=tools, tool_choice=ToolChoice("required"), thinking=ThinkingConfig(effort="low"))
    )
    assert "thinking" not in payload and payload["tool_choice"] == {"type": "any"}
    assert request.dropped == ["thinking"]


def test_openai_only_parameters_are_named_as_dropped():
    request, payload = sent(convo(openai_extra={"seed": 7, "presence_penalty": 0.5}))
    assert request.dropped == ["seed", "presence_penalty"]
    assert "seed" not in payload


def test_several_answers_are_refused():
    with pytest.raises(InvalidRequest) as caught:
        sent(convo(n=2))
    assert caught.value.param == "n"


def test_json_mode_is_refused_and_a_json_schema_is_sent_as_output_config():
    with pytest.raises(InvalidRequest) as caught:
        sent(convo(response_format=ResponseFormat(kind="json_object")))
    assert caught.value.param == "response_format"
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    _, payload = sent(convo(response_format=ResponseFormat(kind="json_schema", schema=schema, name="x")))
    assert payload["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    _, payload = sent(convo(response_format=ResponseFormat(kind="text")))
    assert "output_config" not in payload


def test_an_anthropic_request_round_trips_to_an_equivalent_upstream_body():
    original = {
        "model": "claude-public",
        "max_tokens": 2048,
        "system": [{"type": "text", "text": "You are terse."}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "Use the tool.", "signature": "sig-1"},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "18C"}]},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}},
                ],
            },
        ],
        "tools": [WEATHER_TOOL],
        "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
        "stop_sequences": ["END"],
        "thinking": {"type": "enabled", "budget_tokens": 1500},
        "metadata": {"user_id": "u-1"},
        "stream": True,
    }
    conversation = am.read_request(original)
    request, payload = sent(conversation, stream=True)
    assert payload == dict(original, model="claude-upstream-1")
    assert request.dropped == []


def test_count_tokens_request_sends_the_conversation_without_generation_settings():
    conversation = am.read_count_tokens_request(
        {
            "model": "claude-public",
            "system": "Be brief.",
            "messages": [{"role": "user", "content": "Hello"}],
            "tools": [WEATHER_TOOL],
            "temperature": 0.4,
        }
    )
    request = am.count_tokens_request(conversation, route=route())
    assert request.url == "https://api.anthropic.com/v1/messages/count_tokens"
    assert request.headers["x-api-key"] == SECRET
    assert orjson.loads(request.body) == {
        "model": "claude-upstream-1",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello"}]}],
        "system": [{"type": "text", "text": "Be brief."}],
        "tools": [WEATHER_TOOL],
    }
    assert am.read_count_tokens({"input_tokens": 14}) == 14
    assert am.write_count_tokens(14) == {"input_tokens": 14}
    with pytest.raises(ValueError):
        am.read_count_tokens({"type": "error"})


# --- upstream side: reading answers -----------------------------------------------------------------


def test_read_reply_of_a_text_message_converts_usage():
    b = Behaviour(reply_text="Paris it is.", prompt_tokens=30, cached_tokens=20, completion_tokens=4)
    reply = am.read_reply(fake_anthropic.reply_json("/v1/messages", {"model": "claude-x"}, b))
    assert (reply.id, reply.model, reply.text, reply.stop_reason) == (
        "msg_01FakeAnthropic0001",
        "claude-x",
        "Paris it is.",
        "stop",
    )
    assert reply.usage == Usage(input_tokens=30, output_tokens=4, cached_input_tokens=20)
    assert reply.created > 0


def test_read_reply_of_thinking_and_tool_use():
    b = Behaviour(
        reasoning_text="Need weather.", tool_calls=[FakeToolCall("get_weather", '{"city": "Paris"}', id="toolu_9")]
    )
    reply = am.read_reply(fake_anthropic.reply_json("/v1/messages", {"tools": [WEATHER_TOOL]}, b))
    assert reply.parts == [
        Thinking("Need weather.", fake_anthropic.SIGNATURE, origin="anthropic"),
        ToolCall("toolu_9", "get_weather", '{"city":"Paris"}'),
    ]
    assert reply.stop_reason == "tool_calls"


@pytest.mark.parametrize(
    ("anthropic_reason", "expected"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
    ],
)
def test_read_reply_maps_stop_reasons(anthropic_reason, expected):
    data = fake_anthropic.message({}, Behaviour())
    data["stop_reason"] = anthropic_reason
    assert am.read_reply(data).stop_reason == expected


def test_read_reply_without_usage_and_unreadable_answers():
    assert am.read_reply(fake_anthropic.reply_json("/v1/messages", {}, Behaviour(omit_usage=True))).usage is None
    usage = {"input_tokens": 5, "cache_creation_input_tokens": 7, "cache_read_input_tokens": 3, "output_tokens": 2}
    assert am.read_reply({"content": [], "usage": usage}).usage == Usage(
        input_tokens=15, output_tokens=2, cached_input_tokens=3, cache_write_tokens=7
    )
    for data in ({"type": "error", "error": {"type": "api_error"}, "content": []}, {"id": "x"}, "text", None):
        with pytest.raises(ValueError):
            am.read_reply(data)


def test_stream_reader_reads_the_fakes_text_stream():
    b = Behaviour(reply_text="Hello there friend", prompt_tokens=20, cached_tokens=5)
    reader, events, reply = read_stream(fake_payloads(b, {"model": "claude-x", "stream": True}))
    assert events[0] == Start(id="msg_01FakeAnthropic0001", model="claude-x")
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["Hello", " there", " friend"]
    assert reply.text == "Hello there friend" and reply.stop_reason == "stop"
    assert reply.usage == Usage(input_tokens=20, output_tokens=3, cached_input_tokens=5)
    assert reader.ended and reader.error is None


def test_stream_reader_reads_tool_calls_and_thinking():
    b = Behaviour(
        reasoning_text="Two tools.",
        tool_calls=[
            FakeToolCall("get_weather", '{"city": "Paris"}', id="toolu_1"),
            FakeToolCall("get_time", '{"zone": "CET"}', id="toolu_2"),
        ],
    )
    _, events, reply = read_stream(fake_payloads(b, {"tools": [WEATHER_TOOL], "stream": True}))
    assert [e for e in events if isinstance(e, ToolCallStart)] == [
        ToolCallStart(0, "toolu_1", "get_weather"),
        ToolCallStart(1, "toolu_2", "get_time"),
    ]
    assert ThinkingDelta(signature=fake_anthropic.SIGNATURE, origin="anthropic") in events
    assert reply.parts == [
        Thinking("Two tools.", fake_anthropic.SIGNATURE, origin="anthropic"),
        ToolCall("toolu_1", "get_weather", '{"city": "Paris"}'),
        ToolCall("toolu_2", "get_time", '{"zone": "CET"}'),
    ]
    assert reply.stop_reason == "tool_calls"


def test_stream_reader_reports_usage_even_without_message_stop():
    reader, events, reply = read_stream(fake_payloads(Behaviour(omit_done=True), {"stream": True}))
    assert not reader.ended
    assert isinstance(events[-1], UsageReport) and reply.usage.output_tokens > 0
    reader, events, reply = read_stream(fake_payloads(Behaviour(omit_usage=True), {"stream": True}))
    assert reader.ended and reply.usage is None and not any(isinstance(e, UsageReport) for e in events)


def test_stream_reader_ignores_pings_and_unknown_events_and_keeps_errors():
    reader = am.StreamReader()
    assert reader.feed(b'{"type": "ping"}') == []
    assert reader.feed(b'{"type": "some_future_event", "x": 1}') == []
    assert reader.feed(b"not json") == []
    assert reader.feed(b'{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}') == []
    assert reader.error == "Overloaded" and not reader.ended


# --- upstream side: errors -------------------------------------------------------------------------------


def upstream_error(status: int, message: str | None = None, headers=None) -> ApiError:
    content = json.dumps(fake_anthropic.error_json(status, Behaviour(error_message=message))).encode()
    return am.read_error(route=route(), status=status, content=content, headers=headers or {})


def test_a_refused_request_relays_anthropics_message_without_the_credential():
    error = upstream_error(400, f"messages.0: bad key {SECRET} in content")
    assert isinstance(error, InvalidRequest) and error.status == 400
    assert SECRET not in error.message and "***" in error.message
    assert upstream_error(413).status == 413


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (401, f"invalid x-api-key {SECRET}"),
        (403, "Your API key does not have permission"),
        (402, "Payment required"),
        (400, "Your credit balance is too low to access the Anthropic API."),
    ],
)
def test_a_refused_credential_or_account_is_not_relayed(status, message):
    error = upstream_error(status, message)
    assert isinstance(error, UpstreamError) and error.status == 502
    assert error.message == "The model provider refused Beluga's credentials."


@pytest.mark.parametrize(
    "headers", [CaseInsensitiveDict({"retry-after": "7"}), {"retry-after": "7"}, {"Retry-After": "7"}]
)
def test_rate_limits_pass_retry_after_on(headers):
    error = upstream_error(429, headers=headers)
    assert isinstance(error, RateLimited) and error.headers == {"Retry-After": "7"}


@pytest.mark.parametrize(("status", "expected"), [(529, 503), (500, 502), (503, 503), (504, 502)])
def test_provider_failures_become_upstream_errors(status, expected):
    error = upstream_error(status)
    assert isinstance(error, UpstreamError) and error.status == expected
    if status == 529:
        assert error.code == "upstream_overloaded"
        assert upstream_error(529, headers={"retry-after": "3"}).headers == {"Retry-After": "3"}
        assert am.error_body(error)[1]["error"]["type"] == "overloaded_error"


def test_an_unreadable_error_body_still_maps():
    error = am.read_error(route=route(), status=400, content=b"<html>", headers={})
    assert isinstance(error, InvalidRequest) and "HTTP 400" in error.message


# --- over HTTP: the fake upstream --------------------------------------------------------------------------


def test_build_request_and_stream_reader_against_the_fake_upstream(fake_upstream):
    fake_upstream.reply("One two three", prompt_tokens=9)
    target = route(base_url=fake_upstream.base_url.removesuffix("/v1"))
    request = am.build_request(convo(), route=target, stream=True)
    response = requests.post(request.url, data=request.body, headers=request.headers, stream=True, timeout=5)
    _, _, reply = read_stream(list(iter_sse_data(response)))
    assert reply.text == "One two three" and reply.usage == Usage(input_tokens=9, output_tokens=3)
    received = fake_upstream.requests[-1]
    assert received.path == "/v1/messages" and received.headers["x-api-key"] == SECRET

    request = am.count_tokens_request(convo(), route=target)
    response = requests.post(request.url, data=request.body, headers=request.headers, timeout=5)
    assert am.read_count_tokens(response.json()) == 9

    fake_upstream.fail_with(529)
    request = am.build_request(convo(), route=target, stream=False)
    response = requests.post(request.url, data=request.body, headers=request.headers, timeout=5)
    error = am.read_error(route=target, status=response.status_code, content=response.content, headers=response.headers)
    assert error.status == 503 and error.code == "upstream_overloaded"


# --- the anthropic SDK reads what Beluga writes -------------------------------------------------------------


@pytest.fixture
def canned():
    """A server on 127.0.0.1 answering every POST with `server.answer` = (status, content type, bytes)."""
    with CannedServer() as server:
        yield server, anthropic.Anthropic(base_url=server.base_url, api_key="x", max_retries=0)


SDK_ARGS = {"model": "claude-public", "max_tokens": 100, "messages": [{"role": "user", "content": "Hi"}]}


def test_the_sdk_assembles_the_final_message_from_the_stream(canned):
    server, client = canned
    server.answer = (
        200,
        "text/event-stream",
        write_all(
            [
                Start(),
                ThinkingDelta("Weather needed."),
                ThinkingDelta(signature="sig-1"),
                TextDelta("Let me "),
                TextDelta("check."),
                ToolCallStart(0, "toolu_1", "get_weather"),
                ToolCallDelta(0, '{"city": '),
                ToolCallDelta(0, '"Paris"}'),
                Finish("tool_calls"),
                UsageReport(Usage(input_tokens=50, output_tokens=12, cached_input_tokens=30, cache_write_tokens=5)),
            ]
        ),
    )
    with client.messages.stream(**SDK_ARGS) as stream:
        assert stream.get_final_text() == "Let me check."
        message = stream.get_final_message()
    assert message.id == "msg_abc123" and message.model == "claude-public"
    assert [block.type for block in message.content] == ["thinking", "text", "tool_use"]
    assert (message.content[0].thinking, message.content[0].signature) == ("Weather needed.", "sig-1")
    assert message.content[2].input == {"city": "Paris"} and message.content[2].name == "get_weather"
    assert message.stop_reason == "tool_use"
    usage = message.usage
    assert (usage.input_tokens, usage.output_tokens) == (15, 12)
    assert (usage.cache_read_input_tokens, usage.cache_creation_input_tokens) == (30, 5)


def test_the_sdk_iterates_raw_stream_events(canned):
    server, client = canned
    server.answer = (200, "text/event-stream", write_all([TextDelta("Hi!"), Finish("length")]))
    events = list(client.messages.create(**SDK_ARGS, stream=True))
    assert [event.type for event in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[-2].delta.stop_reason == "max_tokens"


def test_the_sdk_raises_on_an_error_event_mid_stream(canned):
    server, client = canned
    server.answer = (200, "text/event-stream", write_all([TextDelta("Hal")], error="Upstream broke off."))
    with pytest.raises(anthropic.APIStatusError, match="Upstream broke off"):
        list(client.messages.create(**SDK_ARGS, stream=True))


def test_the_sdk_parses_a_whole_reply_and_a_token_count(canned):
    server, client = canned
    reply = Reply(
        id="x",
        model="m",
        parts=[Text("Hello"), ToolCall("toolu_1", "get_weather", '{"city":"Oslo"}')],
        stop_reason="tool_calls",
        usage=Usage(input_tokens=10, output_tokens=3),
    )
    server.answer = (
        200,
        "application/json",
        orjson.dumps(am.write_reply(reply, model="claude-public", request_id="req_9")),
    )
    message = client.messages.create(**SDK_ARGS)
    assert message.content[0].text == "Hello" and message.content[1].input == {"city": "Oslo"}
    assert (message.stop_reason, message.usage.input_tokens, message.usage.output_tokens) == ("tool_use", 10, 3)

    server.answer = (200, "application/json", orjson.dumps(am.write_count_tokens(42)))
    assert client.messages.count_tokens(model="claude-public", messages=SDK_ARGS["messages"]).input_tokens == 42


@pytest.mark.parametrize(
    ("error", "exception"),
    [
        (InvalidRequest("messages: bad"), anthropic.BadRequestError),
        (RateLimited("slow down"), anthropic.RateLimitError),
        (UpstreamError("overloaded", status=503), anthropic._exceptions.OverloadedError),
    ],
)
def test_the_sdk_raises_its_own_exception_for_beluga_errors(canned, error, exception):
    server, client = canned
    status, payload = am.error_body(error, request_id="req_77")
    server.answer = (status, "application/json", orjson.dumps(payload))
    with pytest.raises(exception) as caught:
        client.messages.create(**SDK_ARGS)
    assert caught.value.status_code == status
    assert caught.value.body["error"]["message"] == error.message
    assert caught.value.body["request_id"] == "req_77"
