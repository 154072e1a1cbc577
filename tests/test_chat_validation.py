"""Every chat parameter is validated at the edge: a 400 naming the parameter, nothing sent upstream,
no usage recorded. Valid requests at the edges of each range go through unchanged."""

from __future__ import annotations

import json

import pytest

from billing.models import UsageRecord
from tests.fixtures_gateway import MODEL_ID, chat_body, error_of, post_chat

# Registers the fixtures (fake upstream, chat route, keys, live clients) for this module.
pytest_plugins = ["tests.fixtures_gateway"]

USER = {"role": "user", "content": "hi"}
TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}}}

INVALID = [
    # model
    ("model-missing", {"messages": [USER]}, "model"),
    ("model-empty", {"model": "", "messages": [USER]}, "model"),
    ("model-not-string", {"model": 5, "messages": [USER]}, "model"),
    # messages
    ("messages-missing", {"model": MODEL_ID}, "messages"),
    ("messages-string", chat_body(messages="hi"), "messages"),
    ("messages-object", chat_body(messages={"role": "user", "content": "hi"}), "messages"),
    ("messages-empty", chat_body(messages=[]), "messages"),
    ("message-not-object", chat_body(messages=["hi"]), "messages[0]"),
    ("role-missing", chat_body(messages=[{"content": "hi"}]), "messages[0].role"),
    ("role-unknown", chat_body(messages=[{"role": "robot", "content": "hi"}]), "messages[0].role"),
    ("role-in-second-message", chat_body(messages=[USER, {"role": "wizard", "content": "x"}]), "messages[1].role"),
    ("content-missing", chat_body(messages=[{"role": "user"}]), "messages[0].content"),
    ("content-number", chat_body(messages=[{"role": "user", "content": 5}]), "messages[0].content"),
    ("content-empty-array", chat_body(messages=[{"role": "user", "content": []}]), "messages[0].content"),
    (
        "content-part-not-object",
        chat_body(messages=[{"role": "user", "content": ["hi"]}]),
        "messages[0].content[0]",
    ),
    (
        "content-part-unknown-type",
        chat_body(messages=[{"role": "user", "content": [{"type": "video", "video": "x"}]}]),
        "messages[0].content[0].type",
    ),
    (
        "text-part-without-text",
        chat_body(messages=[{"role": "user", "content": [{"type": "text"}]}]),
        "messages[0].content[0].text",
    ),
    (
        "image-part-without-url",
        chat_body(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]),
        "messages[0].content[0].image_url.url",
    ),
    (
        "image-part-bad-detail",
        chat_body(
            messages=[
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "4k"}}],
                }
            ]
        ),
        "messages[0].content[0].image_url.detail",
    ),
    (
        "audio-part-without-audio",
        chat_body(messages=[{"role": "user", "content": [{"type": "input_audio"}]}]),
        "messages[0].content[0].input_audio",
    ),
    (
        "system-with-image",
        chat_body(
            messages=[{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]
        ),
        "messages[0].content[0].type",
    ),
    (
        "assistant-null-content-without-tool-calls",
        chat_body(messages=[USER, {"role": "assistant", "content": None}]),
        "messages[1].content",
    ),
    (
        "user-null-content",
        chat_body(messages=[{"role": "user", "content": None}]),
        "messages[0].content",
    ),
    (
        "tool-without-tool-call-id",
        chat_body(messages=[USER, {"role": "tool", "content": "21 C"}]),
        "messages[1].tool_call_id",
    ),
    (
        "tool-calls-on-user-message",
        chat_body(messages=[{"role": "user", "content": "hi", "tool_calls": []}]),
        "messages[0].tool_calls",
    ),
    # sampling ranges
    ("temperature-below-0", chat_body(temperature=-0.1), "temperature"),
    ("temperature-above-2", chat_body(temperature=2.01), "temperature"),
    ("temperature-string", chat_body(temperature="1"), "temperature"),
    ("temperature-bool", chat_body(temperature=True), "temperature"),
    ("top-p-above-1", chat_body(top_p=1.5), "top_p"),
    ("top-p-below-0", chat_body(top_p=-0.5), "top_p"),
    ("frequency-penalty-above-2", chat_body(frequency_penalty=2.5), "frequency_penalty"),
    ("frequency-penalty-below-minus-2", chat_body(frequency_penalty=-2.5), "frequency_penalty"),
    ("presence-penalty-above-2", chat_body(presence_penalty=3), "presence_penalty"),
    ("presence-penalty-below-minus-2", chat_body(presence_penalty=-3), "presence_penalty"),
    # counts
    ("n-zero", chat_body(n=0), "n"),
    ("n-float", chat_body(n=1.5), "n"),
    ("max-tokens-zero", chat_body(max_tokens=0), "max_tokens"),
    ("max-tokens-negative", chat_body(max_tokens=-5), "max_tokens"),
    ("max-tokens-float", chat_body(max_tokens=10.5), "max_tokens"),
    ("max-tokens-string", chat_body(max_tokens="10"), "max_tokens"),
    ("max-tokens-bool", chat_body(max_tokens=True), "max_tokens"),
    ("max-completion-tokens-zero", chat_body(max_completion_tokens=0), "max_completion_tokens"),
    ("max-completion-tokens-string", chat_body(max_completion_tokens="many"), "max_completion_tokens"),
    # stop
    ("stop-five-sequences", chat_body(stop=["a", "b", "c", "d", "e"]), "stop"),
    ("stop-number", chat_body(stop=5), "stop"),
    ("stop-array-of-numbers", chat_body(stop=[1, 2]), "stop"),
    ("stop-object", chat_body(stop={"a": 1}), "stop"),
    # booleans
    ("stream-string", chat_body(stream="true"), "stream"),
    ("stream-number", chat_body(stream=1), "stream"),
    ("logprobs-string", chat_body(logprobs="yes"), "logprobs"),
    ("stream-options-without-stream", chat_body(stream_options={"include_usage": True}), "stream_options"),
    ("stream-options-not-object", chat_body(stream=True, stream_options=True), "stream_options"),
    # tools
    ("tools-object", chat_body(tools=TOOL), "tools"),
    ("tool-unknown-type", chat_body(tools=[{"type": "retrieval"}]), "tools[0].type"),
    ("tool-without-function", chat_body(tools=[{"type": "function"}]), "tools[0].function.name"),
    (
        "tool-function-without-name",
        chat_body(tools=[{"type": "function", "function": {"description": "x"}}]),
        "tools[0].function.name",
    ),
    (
        "tool-function-empty-name",
        chat_body(tools=[{"type": "function", "function": {"name": ""}}]),
        "tools[0].function.name",
    ),
    (
        "tool-parameters-not-object",
        chat_body(tools=[{"type": "function", "function": {"name": "f", "parameters": "object"}}]),
        "tools[0].function.parameters",
    ),
    ("second-tool-invalid", chat_body(tools=[TOOL, {"type": "browser"}]), "tools[1].type"),
    ("tool-choice-unknown-string", chat_body(tools=[TOOL], tool_choice="sometimes"), "tool_choice"),
    ("tool-choice-number", chat_body(tools=[TOOL], tool_choice=1), "tool_choice"),
    ("tool-choice-object-without-type", chat_body(tools=[TOOL], tool_choice={"function": {}}), "tool_choice"),
    ("tool-choice-unknown-type", chat_body(tools=[TOOL], tool_choice={"type": "banana"}), "tool_choice.type"),
    (
        "tool-choice-function-without-name",
        chat_body(tools=[TOOL], tool_choice={"type": "function"}),
        "tool_choice.function.name",
    ),
    (
        "tool-choice-function-empty-name",
        chat_body(tools=[TOOL], tool_choice={"type": "function", "function": {"name": ""}}),
        "tool_choice.function.name",
    ),
    (
        "tool-choice-allowed-tools-without-list",
        chat_body(tools=[TOOL], tool_choice={"type": "allowed_tools", "allowed_tools": {"mode": "auto"}}),
        "tool_choice.allowed_tools.tools",
    ),
    ("tool-choice-required-without-tools", chat_body(tool_choice="required"), "tool_choice"),
    (
        "tool-choice-function-without-tools",
        chat_body(tool_choice={"type": "function", "function": {"name": "get_weather"}}),
        "tool_choice",
    ),
    # earlier tool calls sent back in an assistant turn
    (
        "tool-call-not-object",
        chat_body(messages=[USER, {"role": "assistant", "tool_calls": ["call_1"]}]),
        "messages[1].tool_calls[0]",
    ),
    (
        "tool-call-without-id",
        chat_body(
            messages=[
                USER,
                {
                    "role": "assistant",
                    "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": "{}"}}],
                },
            ]
        ),
        "messages[1].tool_calls[0].id",
    ),
    (
        "tool-call-unknown-type",
        chat_body(messages=[USER, {"role": "assistant", "tool_calls": [{"id": "c", "type": "search"}]}]),
        "messages[1].tool_calls[0].type",
    ),
    (
        "tool-call-without-function",
        chat_body(messages=[USER, {"role": "assistant", "tool_calls": [{"id": "c", "type": "function"}]}]),
        "messages[1].tool_calls[0].function",
    ),
    (
        "tool-call-arguments-object",
        chat_body(
            messages=[
                USER,
                {
                    "role": "assistant",
                    "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": {"a": 1}}}],
                },
            ]
        ),
        "messages[1].tool_calls[0].function.arguments",
    ),
    ("message-name-number", chat_body(messages=[{"role": "user", "content": "hi", "name": 5}]), "messages[0].name"),
    # response_format
    ("response-format-unknown-type", chat_body(response_format={"type": "xml"}), "response_format.type"),
    ("response-format-string", chat_body(response_format="json_object"), "response_format.type"),
    (
        "response-format-schema-missing",
        chat_body(response_format={"type": "json_schema"}),
        "response_format.json_schema",
    ),
    (
        "response-format-schema-without-name",
        chat_body(response_format={"type": "json_schema", "json_schema": {"schema": {"type": "object"}}}),
        "response_format.json_schema.name",
    ),
    (
        "response-format-schema-name-with-spaces",
        chat_body(response_format={"type": "json_schema", "json_schema": {"name": "my answer"}}),
        "response_format.json_schema.name",
    ),
    (
        "response-format-schema-not-object",
        chat_body(response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": "object"}}),
        "response_format.json_schema.schema",
    ),
    (
        "response-format-strict-string",
        chat_body(response_format={"type": "json_schema", "json_schema": {"name": "a", "strict": "yes"}}),
        "response_format.json_schema.strict",
    ),
    (
        "include-usage-string",
        chat_body(stream=True, stream_options={"include_usage": "false"}),
        "stream_options.include_usage",
    ),
    ("parallel-tool-calls-string", chat_body(tools=[TOOL], parallel_tool_calls="true"), "parallel_tool_calls"),
    ("store-number", chat_body(store=1), "store"),
    ("top-logprobs-float", chat_body(logprobs=True, top_logprobs=2.5), "top_logprobs"),
    (
        "reasoning-content-number",
        chat_body(messages=[USER, {"role": "assistant", "content": "a", "reasoning_content": 5}]),
        "messages[1].reasoning_content",
    ),
    # misc
    ("seed-float", chat_body(seed=1.5), "seed"),
    ("seed-string", chat_body(seed="42"), "seed"),
    ("top-logprobs-above-20", chat_body(logprobs=True, top_logprobs=21), "top_logprobs"),
    ("top-logprobs-negative", chat_body(logprobs=True, top_logprobs=-1), "top_logprobs"),
    ("user-number", chat_body(user=5), "user"),
    ("reasoning-effort-unknown", chat_body(reasoning_effort="extreme"), "reasoning_effort"),
    ("reasoning-effort-number", chat_body(reasoning_effort=3), "reasoning_effort"),
]


@pytest.mark.parametrize(("body", "param"), [pytest.param(b, p, id=i) for i, b, p in INVALID])
def test_invalid_parameter_is_refused_naming_it(client, chat_route, raw_key, fake_upstream, body, param):
    response = post_chat(client, raw_key, body)

    assert response.status_code == 400, response.content
    error = error_of(response)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert response["X-Request-Id"]
    assert fake_upstream.requests == []
    assert UsageRecord.objects.count() == 0


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"{not json", id="not-json"),
        pytest.param(b"", id="empty"),
        pytest.param(b'{"model": "test-model", "messages": [', id="truncated"),
        pytest.param(b"\xff\xfe\x00", id="not-utf8"),
        pytest.param(b'[{"model": "test-model"}]', id="array"),
        pytest.param(b'"hello"', id="string"),
        pytest.param(b"null", id="null"),
        pytest.param(b"42", id="number"),
    ],
)
def test_body_that_is_not_a_json_object_is_refused(client, chat_route, raw_key, fake_upstream, raw):
    response = post_chat(client, raw_key, raw)

    assert response.status_code == 400
    assert error_of(response)["type"] == "invalid_request_error"
    assert fake_upstream.requests == []
    assert UsageRecord.objects.count() == 0


def test_unknown_model_is_404_model_not_found(client, chat_route, raw_key, fake_upstream):
    response = post_chat(client, raw_key, chat_body(model="foo"))

    assert response.status_code == 404
    assert error_of(response) == {
        "message": "The model 'foo' does not exist.",
        "type": "invalid_request_error",
        "code": "model_not_found",
        "param": "model",
    }
    assert fake_upstream.requests == []
    assert UsageRecord.objects.count() == 0


def test_disabled_model_is_404_model_not_found(client, chat_route, raw_key, fake_upstream):
    from catalog.selectors import catalog_cache_clear

    chat_route.model.enabled = False
    chat_route.model.save()
    catalog_cache_clear()

    response = post_chat(client, raw_key, chat_body())

    assert response.status_code == 404
    assert error_of(response)["code"] == "model_not_found"
    assert fake_upstream.requests == []


VALID = [
    ("temperature-0", chat_body(temperature=0)),
    ("temperature-2", chat_body(temperature=2)),
    ("temperature-float", chat_body(temperature=0.7)),
    ("top-p-0", chat_body(top_p=0)),
    ("top-p-1", chat_body(top_p=1)),
    ("penalties-at-bounds", chat_body(frequency_penalty=-2, presence_penalty=2)),
    ("nulls-mean-default", chat_body(temperature=None, top_p=None, max_tokens=None, stop=None, seed=None)),
    ("n-1", chat_body(n=1)),
    ("max-tokens-1", chat_body(max_tokens=1)),
    ("max-completion-tokens", chat_body(max_completion_tokens=256)),
    ("stop-string", chat_body(stop="\n")),
    ("stop-four-sequences", chat_body(stop=["a", "b", "c", "d"])),
    ("stream-false", chat_body(stream=False)),
    ("seed", chat_body(seed=-7)),
    ("logprobs", chat_body(logprobs=True, top_logprobs=20)),
    ("top-logprobs-0", chat_body(logprobs=True, top_logprobs=0)),
    ("user", chat_body(user="customer-123")),
    ("developer-role", chat_body(messages=[{"role": "developer", "content": "Be brief."}, USER])),
    (
        "system-text-parts",
        chat_body(messages=[{"role": "system", "content": [{"type": "text", "text": "Be brief."}]}, USER]),
    ),
    (
        "user-all-part-types",
        chat_body(
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Look and listen."},
                        {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "high"}},
                        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
                        {"type": "file", "file": {"file_id": "file-abc"}},
                    ],
                }
            ]
        ),
    ),
    (
        "assistant-tool-calls-with-null-content",
        chat_body(
            messages=[
                USER,
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
                    ],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": "21 C"},
            ],
            tools=[TOOL],
        ),
    ),
    ("legacy-function-role", chat_body(messages=[USER, {"role": "function", "name": "f", "content": "42"}])),
    ("tool-choice-none", chat_body(tools=[TOOL], tool_choice="none")),
    ("tool-choice-auto", chat_body(tools=[TOOL], tool_choice="auto")),
    ("tool-choice-required", chat_body(tools=[TOOL], tool_choice="required")),
    (
        "tool-choice-object",
        chat_body(tools=[TOOL], tool_choice={"type": "function", "function": {"name": "get_weather"}}),
    ),
    ("tool-choice-none-without-tools", chat_body(tool_choice="none")),
    (
        "tool-choice-allowed-tools",
        chat_body(
            tools=[TOOL],
            tool_choice={
                "type": "allowed_tools",
                "allowed_tools": {"mode": "auto", "tools": [{"type": "function", "function": {"name": "get_weather"}}]},
            },
        ),
    ),
    (
        "tool-call-without-type",
        chat_body(
            messages=[
                USER,
                {
                    "role": "assistant",
                    "tool_calls": [{"id": "c1", "function": {"name": "get_weather", "arguments": "{}"}}],
                },
                {"role": "tool", "tool_call_id": "c1", "content": "21 C"},
            ],
            tools=[TOOL],
        ),
    ),
    (
        "response-format-json-schema-strict",
        chat_body(
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "answer-v2", "strict": True, "schema": {"type": "object"}},
            }
        ),
    ),
    ("response-format-text", chat_body(response_format={"type": "text"})),
    ("response-format-json-object", chat_body(response_format={"type": "json_object"})),
    (
        "response-format-json-schema",
        chat_body(
            response_format={"type": "json_schema", "json_schema": {"name": "answer", "schema": {"type": "object"}}}
        ),
    ),
    ("unknown-extra-parameters", chat_body(reasoning_effort="low", metadata={"team": "a"}, x_custom=[1, {"b": 2}])),
]


@pytest.mark.parametrize("body", [pytest.param(b, id=i) for i, b in VALID])
def test_valid_request_goes_upstream_unchanged_but_for_the_model(client, chat_route, raw_key, fake_upstream, body):
    response = post_chat(client, raw_key, body)

    assert response.status_code == 200, response.content
    [received] = fake_upstream.chat_requests
    expected = dict(body, model="upstream-test-model")
    assert received.json == expected


def test_validation_errors_do_not_echo_the_api_key(client, chat_route, raw_key, fake_upstream):
    response = post_chat(client, raw_key, chat_body(temperature=9))

    assert response.status_code == 400
    assert raw_key not in response.content.decode()
    assert json.loads(response.content)["error"]["param"] == "temperature"


def test_upstream_model_name_is_not_a_public_model_id(client, chat_route, raw_key, fake_upstream):
    response = post_chat(client, raw_key, chat_body(model="upstream-test-model"))

    assert response.status_code == 404
    assert error_of(response)["code"] == "model_not_found"
    assert fake_upstream.requests == []
