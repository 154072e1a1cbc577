"""The Gemini protocol module, both sides, against Google's wire format and the google-genai SDK itself."""

from __future__ import annotations

import base64
import json

import orjson
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types

from catalog.selectors import RouteTarget
from gateway.errors import AuthenticationFailed, InvalidRequest, NotFound, RateLimited, UpstreamError
from gateway.protocols import gemini
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
from tests import fake_gemini
from tests.canned_server import CannedServer
from tests.fake_upstream import Behaviour, words
from tests.fake_upstream import ToolCall as FakeToolCall
from tests.fixtures_gateway import route_target

PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="
SIG = base64.b64encode(b"a signature from Google").decode()
WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
STREAM_PATH = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
REPLY_PATH = "/v1beta/models/gemini-2.5-flash:generateContent"


def route(*, model: str = "gemini-2.5-flash", api_key: str = "AIza-route-secret") -> RouteTarget:
    base_url = "https://generativelanguage.googleapis.com"
    return route_target(kind="gemini", base_url=base_url, api_key=api_key, upstream_model=model, read_timeout=30.0)


def user(text: str = "Hi") -> dict:
    return {"role": "user", "parts": [{"text": text}]}


def read(body: dict, **kwargs) -> Conversation:
    return gemini.read_request(body, model="gemini-2.5-flash", stream=False, **kwargs)


def sent(conversation: Conversation, **kwargs) -> dict:
    return orjson.loads(gemini.build_request(conversation, route=kwargs.pop("route", route()), stream=False).body)


def convo(*messages: Message, **fields) -> Conversation:
    return Conversation(model="m", messages=list(messages), **fields)


# --- client side: reading requests ------------------------------------------------------


def test_reads_text_system_and_generation_config():
    conversation = read(
        {
            "contents": [user("Hello"), {"role": "model", "parts": [{"text": "Hi!"}]}, user("Weather?")],
            "systemInstruction": {"role": "user", "parts": [{"text": "Be brief."}, {"text": "Be kind."}]},
            "generationConfig": {
                "temperature": 0.3,
                "topP": 0.9,
                "topK": 40,
                "maxOutputTokens": 256,
                "stopSequences": ["END"],
                "candidateCount": 2,
                "seed": 7,
                "presencePenalty": 0.5,
                "frequencyPenalty": -0.5,
            },
            "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
            "cachedContent": "cachedContents/abc",
        }
    )
    assert [m.role for m in conversation.messages] == ["user", "assistant", "user"]
    assert conversation.messages[1].parts == [Text("Hi!")]
    assert conversation.system_text == "Be brief.\n\nBe kind."
    assert (conversation.temperature, conversation.top_p, conversation.top_k) == (0.3, 0.9, 40)
    assert (conversation.max_tokens, conversation.stop, conversation.n) == (256, ["END"], 2)
    assert conversation.openai_extra == {"seed": 7, "presence_penalty": 0.5, "frequency_penalty": -0.5}
    assert conversation.model == "gemini-2.5-flash" and conversation.stream is False
    assert conversation.dropped == ["safetySettings", "cachedContent"]


def test_fields_beluga_cannot_carry_are_named_as_dropped():
    body = {
        "contents": [user()],
        "generationConfig": {"temperature": 1, "response_logprobs": True, "mediaResolution": "MEDIA_RESOLUTION_LOW"},
        "labels": {"team": "a"},
    }
    assert read(body).dropped == ["generationConfig.responseLogprobs", "generationConfig.mediaResolution", "labels"]


def test_snake_case_field_names_read_like_camel_case():
    camel = read(
        {
            "contents": [{"role": "user", "parts": [{"inlineData": {"mimeType": "image/png", "data": PNG_B64}}]}],
            "systemInstruction": {"parts": [{"text": "S"}]},
            "generationConfig": {"maxOutputTokens": 9, "thinkingConfig": {"thinkingBudget": 100}},
            "toolConfig": {"functionCallingConfig": {"mode": "NONE"}},
        }
    )
    snake = read(
        {
            "contents": [{"role": "user", "parts": [{"inline_data": {"mime_type": "image/png", "data": PNG_B64}}]}],
            "system_instruction": {"parts": [{"text": "S"}]},
            "generation_config": {"max_output_tokens": 9, "thinking_config": {"thinking_budget": 100}},
            "tool_config": {"function_calling_config": {"mode": "NONE"}},
        }
    )
    assert camel == snake
    assert camel.messages[0].parts == [Image(data=PNG_B64, media_type="image/png")]


def test_function_calls_get_ids_and_results_match_them_by_name_in_order():
    conversation = read(
        {
            "contents": [
                user("Weather in Paris and Rome, and the time?"),
                {
                    "role": "model",
                    "parts": [
                        {"functionCall": {"name": "weather", "args": {"city": "Paris"}}},
                        {"functionCall": {"name": "weather", "args": {"city": "Rome"}}},
                        {"functionCall": {"name": "clock"}},
                    ],
                },
                {
                    "role": "function",
                    "parts": [
                        {"functionResponse": {"name": "clock", "response": {"time": "12:00"}}},
                        {"functionResponse": {"name": "weather", "response": {"result": "sunny"}}},
                        {"functionResponse": {"name": "weather", "response": {"error": "no station"}}},
                    ],
                },
            ]
        }
    )
    calls, results = conversation.messages[1].parts, conversation.messages[2].parts
    assert calls == [
        ToolCall("call_0", "weather", '{"city":"Paris"}'),
        ToolCall("call_1", "weather", '{"city":"Rome"}'),
        ToolCall("call_2", "clock", "{}"),
    ]
    assert conversation.messages[2].role == "user"  # "function" is a user turn
    assert [(r.call_id, r.name, r.text, r.is_error) for r in results] == [
        ("call_2", "clock", '{"time":"12:00"}', False),
        ("call_0", "weather", '{"result":"sunny"}', False),
        ("call_1", "weather", '{"error":"no station"}', True),
    ]


def test_function_response_with_an_id_answers_that_call():
    conversation = read(
        {
            "contents": [
                user(),
                {
                    "role": "model",
                    "parts": [
                        {"functionCall": {"id": "fc-1", "name": "weather", "args": {"city": "Paris"}}},
                        {"functionCall": {"id": "fc-2", "name": "weather", "args": {"city": "Rome"}}},
                    ],
                },
                {"role": "user", "parts": [{"functionResponse": {"id": "fc-2", "name": "weather", "response": {}}}]},
            ]
        }
    )
    assert [c.id for c in conversation.messages[1].parts] == ["fc-1", "fc-2"]
    assert conversation.messages[2].parts[0].call_id == "fc-2"


def test_inline_and_file_data_become_images_in_the_standard_base64_alphabet():
    raw = bytes(range(250, 256)) * 4
    conversation = read(
        {
            "contents": [
                {
                    "role": "user",
                    "parts": [
                        {"inlineData": {"mimeType": "image/jpeg", "data": base64.urlsafe_b64encode(raw).decode()}},
                        {"fileData": {"mimeType": "application/pdf", "fileUri": "gs://bucket/doc.pdf"}},
                        {"text": "What are these?"},
                    ],
                }
            ]
        }
    )
    image, file, text = conversation.messages[0].parts
    assert image == Image(data=base64.b64encode(raw).decode(), media_type="image/jpeg")
    assert file == Image(url="gs://bucket/doc.pdf", media_type="application/pdf")
    assert text == Text("What are these?")


def test_thoughts_and_signatures_are_kept_in_model_turns():
    conversation = read(
        {
            "contents": [
                user(),
                {
                    "role": "model",
                    "parts": [
                        {"text": "Let me think.", "thought": True, "thoughtSignature": "T1"},
                        {"functionCall": {"name": "weather", "args": {}}, "thoughtSignature": SIG},
                        {"text": "", "thoughtSignature": "T3"},
                    ],
                },
            ]
        }
    )
    assert conversation.messages[1].parts == [
        Thinking("Let me think.", "T1", origin="gemini"),
        Thinking("", SIG, origin="gemini"),
        ToolCall("call_0", "weather", "{}"),
        Thinking("", "T3", origin="gemini"),
    ]


def test_gemini_schemas_are_read_as_json_schema():
    openapi = {
        "type": "OBJECT",
        "properties": {
            "city": {"type": "STRING", "description": "City name", "nullable": True},
            "days": {"type": "INTEGER", "format": "int32", "minimum": 1},
            "tags": {
                "type": "ARRAY",
                "items": {"type": "STRING", "format": "enum", "enum": ["a", "b"]},
                "max_items": "3",
            },
        },
        "required": ["city"],
        "propertyOrdering": ["city", "days", "tags"],
    }
    expected = {
        "type": "object",
        "properties": {
            "city": {"type": ["string", "null"], "description": "City name"},
            "days": {"type": "integer", "format": "int32", "minimum": 1},
            "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}, "maxItems": 3},
        },
        "required": ["city"],
    }
    conversation = read(
        {
            "contents": [user()],
            "tools": [
                {
                    "functionDeclarations": [
                        {"name": "forecast", "description": "Forecast.", "parameters": openapi},
                        {"name": "as_is", "parametersJsonSchema": {"type": "object", "additionalProperties": False}},
                        {"name": "no_args"},
                    ]
                }
            ],
            "generationConfig": {"responseMimeType": "application/json", "responseSchema": openapi},
        }
    )
    assert conversation.tools == [
        Tool("forecast", "Forecast.", expected),
        Tool("as_is", "", {"type": "object", "additionalProperties": False}),
        Tool("no_args", "", {"type": "object", "properties": {}}),
    ]
    assert conversation.response_format == ResponseFormat(kind="json_schema", schema=expected, name="response")


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"responseMimeType": "application/json"}, ResponseFormat(kind="json_object")),
        (
            {"responseMimeType": "application/json", "responseJsonSchema": {"type": "object"}},
            ResponseFormat(kind="json_schema", schema={"type": "object"}, name="response"),
        ),
        ({"responseMimeType": "text/plain"}, None),
    ],
)
def test_response_mime_type(config, expected):
    assert read({"contents": [user()], "generationConfig": config}).response_format == expected


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"mode": "AUTO"}, ToolChoice("auto")),
        ({"mode": "VALIDATED"}, ToolChoice("auto")),
        ({"mode": "NONE"}, ToolChoice("none")),
        ({"mode": "ANY"}, ToolChoice("required")),
        ({"mode": "ANY", "allowedFunctionNames": ["weather"]}, ToolChoice("tool", name="weather")),
        ({"mode": "ANY", "allowedFunctionNames": ["weather", "clock"]}, ToolChoice("required")),
        ({"mode": "any"}, ToolChoice("required")),
    ],
)
def test_function_calling_modes_become_tool_choices(config, expected):
    tools = [{"functionDeclarations": [{"name": "weather"}, {"name": "clock"}]}]
    body = {"contents": [user()], "tools": tools, "toolConfig": {"functionCallingConfig": config}}
    assert read(body).tool_choice == expected


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"thinkingBudget": 1024, "includeThoughts": True}, ThinkingConfig(budget_tokens=1024, include_thoughts=True)),
        ({"thinkingBudget": 0}, ThinkingConfig(budget_tokens=0, include_thoughts=False)),
        ({"thinkingBudget": -1, "includeThoughts": True}, ThinkingConfig(include_thoughts=True)),
        ({"thinkingLevel": "LOW"}, ThinkingConfig(effort="low", include_thoughts=False)),
        ({"thinkingLevel": "high", "includeThoughts": True}, ThinkingConfig(effort="high", include_thoughts=True)),
        ({"includeThoughts": False}, None),
    ],
)
def test_thinking_config(config, expected):
    body = {"contents": [user()], "generationConfig": {"thinkingConfig": config}}
    assert read(body).thinking == expected


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "contents"),
        ({"contents": []}, "contents"),
        ({"contents": ["hi"]}, "contents[0]"),
        ({"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}, "contents[0].role"),
        ({"contents": [{"role": "user", "parts": []}]}, "contents[0].parts"),
        ({"contents": [{"role": "user", "parts": [{}]}]}, "contents[0].parts[0]"),
        ({"contents": [{"parts": [{"text": 5}]}]}, "contents[0].parts[0].text"),
        (
            {"contents": [{"parts": [{"inlineData": {"mimeType": "image/png"}}]}]},
            "contents[0].parts[0].inlineData.data",
        ),
        ({"contents": [{"parts": [{"fileData": {"mimeType": "image/png"}}]}]}, "contents[0].parts[0].fileData.fileUri"),
        ({"contents": [{"parts": [{"functionCall": {"name": "f"}}]}]}, "contents[0].parts[0].functionCall"),
        (
            {"contents": [{"role": "model", "parts": [{"functionResponse": {"name": "f", "response": {}}}]}]},
            "contents[0].parts[0].functionResponse",
        ),
        (
            {"contents": [{"role": "model", "parts": [{"functionCall": {"name": "f", "args": [1]}}]}]},
            "contents[0].parts[0].functionCall.args",
        ),
        ({"contents": [{"parts": [{"executableCode": {"code": "1"}}]}]}, "contents[0].parts[0]"),
        (
            {"contents": [user()], "systemInstruction": {"parts": [{"inlineData": {}}]}},
            "systemInstruction.parts[0].text",
        ),
        ({"contents": [user()], "generationConfig": {"temperature": 3}}, "generationConfig.temperature"),
        ({"contents": [user()], "generationConfig": {"temperature": True}}, "generationConfig.temperature"),
        ({"contents": [user()], "generationConfig": {"topK": 0}}, "generationConfig.topK"),
        ({"contents": [user()], "generationConfig": {"maxOutputTokens": "9"}}, "generationConfig.maxOutputTokens"),
        ({"contents": [user()], "generationConfig": {"candidateCount": 9}}, "generationConfig.candidateCount"),
        (
            {"contents": [user()], "generationConfig": {"stopSequences": list("abcdef")}},
            "generationConfig.stopSequences",
        ),
        ({"contents": [user()], "generationConfig": {"responseModalities": ["AUDIO"]}}, "generationConfig"),
        (
            {"contents": [user()], "generationConfig": {"responseMimeType": "text/x.enum"}},
            "generationConfig.responseMimeType",
        ),
        (
            {"contents": [user()], "generationConfig": {"responseSchema": {"type": "OBJECT"}}},
            "generationConfig.responseMimeType",
        ),
        (
            {
                "contents": [user()],
                "generationConfig": {"thinkingConfig": {"thinkingBudget": 9, "thinkingLevel": "LOW"}},
            },
            "generationConfig.thinkingConfig.thinkingLevel",
        ),
        (
            {"contents": [user()], "generationConfig": {"thinkingConfig": {"thinkingLevel": "EXTREME"}}},
            "generationConfig.thinkingConfig.thinkingLevel",
        ),
        ({"contents": [user()], "tools": [{"googleSearch": {}}]}, "tools[0].googleSearch"),
        ({"contents": [user()], "tools": [{"codeExecution": {}}]}, "tools[0].codeExecution"),
        (
            {"contents": [user()], "tools": [{"functionDeclarations": [{"name": "1bad"}]}]},
            "tools[0].functionDeclarations[0].name",
        ),
        (
            {
                "contents": [user()],
                "tools": [{"functionDeclarations": [{"name": "f", "parameters": {}, "parametersJsonSchema": {}}]}],
            },
            "tools[0].functionDeclarations[0].parametersJsonSchema",
        ),
        (
            {
                "contents": [user()],
                "tools": [{"functionDeclarations": [{"name": "f"}]}],
                "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["g"]}},
            },
            "toolConfig.functionCallingConfig.allowedFunctionNames",
        ),
        (
            {"contents": [user()], "toolConfig": {"functionCallingConfig": {"mode": "SOMETIMES"}}},
            "toolConfig.functionCallingConfig.mode",
        ),
    ],
)
def test_invalid_requests_name_the_parameter(body, param):
    with pytest.raises(InvalidRequest) as caught:
        read(body)
    assert caught.value.param == param
    assert caught.value.status == 400


def test_a_body_that_is_not_an_object_is_refused():
    with pytest.raises(InvalidRequest):
        gemini.read_request([user()], model="m", stream=True)


# --- client side: writing answers -------------------------------------------------------


def test_reply_is_a_generate_content_response():
    reply = Reply(
        id="up-1",
        model="gemini-2.5-flash",
        parts=[
            Thinking("Thinking it over."),
            Text("Calling."),
            Thinking("", SIG),
            ToolCall("call_123456789012", "weather", '{"city":"Paris"}'),
            ToolCall("call_real_id", "clock", "{}"),
        ],
        stop_reason=TOOL_CALLS,
        usage=Usage(input_tokens=100, output_tokens=30, cached_input_tokens=40, reasoning_tokens=10),
    )
    assert gemini.write_reply(reply, model="public-model", request_id="req_1") == {
        "candidates": [
            {
                "content": {
                    "parts": [
                        {"text": "Thinking it over.", "thought": True},
                        {"text": "Calling."},
                        {"functionCall": {"name": "weather", "args": {"city": "Paris"}}, "thoughtSignature": SIG},
                        {"functionCall": {"name": "clock", "args": {}, "id": "call_real_id"}},
                    ],
                    "role": "model",
                },
                "finishReason": "STOP",
                "index": 0,
            }
        ],
        "usageMetadata": {
            "promptTokenCount": 100,
            "candidatesTokenCount": 20,
            "totalTokenCount": 130,
            "cachedContentTokenCount": 40,
            "thoughtsTokenCount": 10,
        },
        "modelVersion": "public-model",
        "responseId": "req_1",
    }


@pytest.mark.parametrize(
    ("stop", "finish"),
    [(STOP, "STOP"), (TOOL_CALLS, "STOP"), (LENGTH, "MAX_TOKENS"), (CONTENT_FILTER, "SAFETY"), (None, "STOP")],
)
def test_reply_finish_reasons(stop, finish):
    body = gemini.write_reply(Reply(id="", model="", parts=[Text("x")], stop_reason=stop), model="m", request_id="r")
    assert body["candidates"][0]["finishReason"] == finish
    assert "usageMetadata" not in body


def test_a_filtered_reply_without_parts_has_no_content():
    body = gemini.write_reply(Reply(id="", model="", stop_reason=CONTENT_FILTER), model="m", request_id="r")
    assert body["candidates"] == [{"finishReason": "SAFETY", "index": 0}]


def test_a_signature_that_is_not_base64_never_reaches_a_client():
    # google-genai refuses the whole answer over one; Google itself would refuse it too.
    reply = Reply(id="", model="", parts=[Thinking("Hmm.", "not base64!"), Thinking("", "x=y"), Text("Hi")])
    parts = gemini.write_reply(reply, model="m", request_id="r")["candidates"][0]["content"]["parts"]
    assert parts == [{"text": "Hmm.", "thought": True}, {"text": "Hi"}]
    events = [ThinkingDelta("Hmm.", "not base64!"), ThinkingDelta("", "x=y"), TextDelta("Hi"), Finish(STOP)]
    assert [c["candidates"][0]["content"]["parts"][0] for c in sse_chunks(run(writer(), events))] == parts


def test_a_trailing_signature_joins_the_last_part_for_clients():
    reply = Reply(id="", model="", parts=[Text("Done."), Thinking("", SIG)], stop_reason=STOP)
    parts = gemini.write_reply(reply, model="m", request_id="r")["candidates"][0]["content"]["parts"]
    assert parts == [{"text": "Done.", "thoughtSignature": SIG}]


def writer(*, sse: bool = True) -> gemini.StreamWriter:
    return gemini.StreamWriter(model="public-model", request_id="req_1", conversation=convo(), sse=sse)


def run(w: gemini.StreamWriter, events, *, error: str | None = None) -> bytes:
    return b"".join(w.write(event) for event in events) + w.close(error=error)


def sse_chunks(data: bytes) -> list[dict]:
    assert data.endswith(b"\r\n\r\n")
    frames = data.split(b"\r\n\r\n")[:-1]
    assert all(frame.startswith(b"data: ") for frame in frames)
    return [orjson.loads(frame[len(b"data: ") :]) for frame in frames]


def chunk(part: dict | None = None, **extra) -> dict:
    candidate = {"content": {"parts": [part], "role": "model"}} if part is not None else {}
    if "finish" in extra:
        candidate["finishReason"] = extra.pop("finish")
    body = {"candidates": [candidate]}
    body.update(extra)
    body.update(modelVersion="public-model", responseId="req_1")
    return body


TEXT_EVENTS = [
    Start("up", "gemini-2.5-flash"),
    TextDelta("Hello"),
    TextDelta(" there"),
    Finish(STOP),
    UsageReport(Usage(input_tokens=5, output_tokens=2)),
]
FINAL_USAGE = {"promptTokenCount": 5, "candidatesTokenCount": 2, "totalTokenCount": 7}


def test_stream_writer_sends_text_with_the_finish_on_the_last_part():
    w = writer()
    assert w.content_type == "text/event-stream"
    out = [w.write(event) for event in TEXT_EVENTS] + [w.close()]
    assert out[:2] == [b"", b""]  # the first part waits for the next one
    assert sse_chunks(b"".join(out)) == [
        chunk({"text": "Hello"}),
        chunk({"text": " there"}, finish="STOP", usageMetadata=FINAL_USAGE),
    ]
    assert out[2] == b'data: {"candidates":[{"content":{"parts":[{"text":"Hello"}],"role":"model"}}],' + (
        b'"modelVersion":"public-model","responseId":"req_1"}\r\n\r\n'
    )


def test_stream_writer_sends_a_function_call_whole():
    events = [
        Start(),
        TextDelta("Checking."),
        ThinkingDelta("", SIG),
        ToolCallStart(0, "call_123456789012", "weather"),
        ToolCallDelta(0, '{"ci'),
        ToolCallDelta(0, 'ty":"Paris"}'),
        ToolCallStart(1, "fc-2", "clock"),
        Finish(TOOL_CALLS),
        UsageReport(Usage(input_tokens=5, output_tokens=9)),
    ]
    w = writer()
    outputs = [w.write(event) for event in events]
    assert outputs[4:6] == [b"", b""]  # fragments are held until the call is whole
    assert sse_chunks(b"".join(outputs) + w.close()) == [
        chunk({"text": "Checking."}),
        chunk({"functionCall": {"name": "weather", "args": {"city": "Paris"}}, "thoughtSignature": SIG}),
        chunk(
            {"functionCall": {"name": "clock", "args": {}, "id": "fc-2"}},
            finish="STOP",
            usageMetadata={"promptTokenCount": 5, "candidatesTokenCount": 9, "totalTokenCount": 14},
        ),
    ]


def test_stream_writer_sends_thinking_as_thought_parts():
    events = [
        ThinkingDelta("Hmm."),
        ThinkingDelta(" Right.", signature="T1"),
        TextDelta("Yes."),
        ThinkingDelta("", "T2"),
        Finish(STOP),
    ]
    assert sse_chunks(run(writer(), events)) == [
        chunk({"text": "Hmm.", "thought": True}),
        chunk({"text": " Right.", "thought": True, "thoughtSignature": "T1"}),
        chunk({"text": "Yes.", "thoughtSignature": "T2"}, finish="STOP"),
    ]


def test_stream_writer_without_sse_writes_googles_json_array():
    w = writer(sse=False)
    assert w.content_type == "application/json"
    data = run(w, TEXT_EVENTS)
    assert data.startswith(b'[{\n  "candidates": [')
    assert data.count(b"\n,\r\n") == 1
    assert data.endswith(b"\n}\n]")
    assert orjson.loads(data) == [
        chunk({"text": "Hello"}),
        chunk({"text": " there"}, finish="STOP", usageMetadata=FINAL_USAGE),
    ]


def test_stream_writer_closes_on_an_error_as_google_does():
    data = run(writer(), [Start(), TextDelta("Hel")], error="The connection broke.")
    frame, rest = data.split(b"\r\n\r\n", 1)
    assert orjson.loads(frame.removeprefix(b"data: ")) == chunk({"text": "Hel"})
    assert not rest.startswith(b"data:")  # a bare JSON object, outside SSE framing
    assert rest.startswith(b'{\n  "error": {') and rest.endswith(b"}\n")
    assert orjson.loads(rest) == {"error": {"code": 503, "message": "The connection broke.", "status": "UNAVAILABLE"}}

    array = orjson.loads(run(writer(sse=False), [TextDelta("Hel")], error="The connection broke."))
    assert array == [
        chunk({"text": "Hel"}),
        {"error": {"code": 503, "message": "The connection broke.", "status": "UNAVAILABLE"}},
    ]


def test_stream_writer_with_nothing_to_say():
    assert sse_chunks(run(writer(), [Finish(STOP)])) == [chunk(finish="STOP")]
    assert orjson.loads(run(writer(sse=False), [], error="Broke.")) == [
        {"error": {"code": 503, "message": "Broke.", "status": "UNAVAILABLE"}}
    ]


@pytest.mark.parametrize(
    ("error", "status", "name"),
    [
        (InvalidRequest("bad", param="contents"), 400, "INVALID_ARGUMENT"),
        (AuthenticationFailed("no key"), 401, "UNAUTHENTICATED"),
        (NotFound("no model"), 404, "NOT_FOUND"),
        (RateLimited("slow down"), 429, "RESOURCE_EXHAUSTED"),
        (UpstreamError("down", status=502), 502, "UNAVAILABLE"),
        (UpstreamError("down", status=503), 503, "UNAVAILABLE"),
        (UpstreamError("late", status=504), 504, "DEADLINE_EXCEEDED"),
        (InvalidRequest("too big", status=413), 413, "INVALID_ARGUMENT"),
    ],
)
def test_error_body_is_googles_shape(error, status, name):
    assert gemini.error_body(error) == (status, {"error": {"code": status, "message": error.message, "status": name}})


def test_models_are_listed_as_google_lists_them():
    model = gemini.write_model(
        slug="test-model",
        display_name="Test Model",
        description="A model.",
        input_token_limit=128_000,
        output_token_limit=None,
        methods=["generateContent", "countTokens"],
    )
    assert model == {
        "name": "models/test-model",
        "baseModelId": "test-model",
        "version": "001",
        "displayName": "Test Model",
        "description": "A model.",
        "inputTokenLimit": 128_000,
        "supportedGenerationMethods": ["generateContent", "countTokens"],
    }
    assert gemini.write_model_list([model], "next") == {"models": [model], "nextPageToken": "next"}
    assert gemini.write_model_list([], None) == {"models": []}


# --- upstream side: requests ------------------------------------------------------------


def test_request_url_and_credential_header():
    conversation = convo(Message("user", [Text("Hi")]))
    plain = gemini.build_request(conversation, route=route(), stream=False)
    assert plain.url == "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"
    assert plain.headers["x-goog-api-key"] == "AIza-route-secret"
    assert plain.headers["Content-Type"] == "application/json"
    streamed = gemini.build_request(conversation, route=route(model="models/gemini-2.5-pro"), stream=True)
    assert streamed.url.endswith("/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse")
    keyless = gemini.build_request(conversation, route=route(api_key=""), stream=False)
    assert "x-goog-api-key" not in keyless.headers
    assert orjson.loads(plain.body) == {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}
    assert plain.dropped == []


def test_contents_merge_turns_and_carry_tool_results_and_images():
    conversation = convo(
        Message("user", [Text("Weather?"), Image(data=PNG_B64, media_type="image/png")]),
        Message("user", [Image(url="data:image/jpeg;base64,AAAA"), Image(url="gs://b/x.png", media_type="image/png")]),
        Message(
            "assistant",
            [
                Thinking("unsigned thoughts stay here"),
                ToolCall("call_0", "weather", '{"city":"Paris"}'),
                ToolCall("toolu_1", "clock", "{}"),
                ToolCall("call_2", "lookup", "{}"),
            ],
        ),
        Message(
            "user",
            [
                ToolResult("call_0", [Text("sunny")]),
                ToolResult("toolu_1", [Text('{"time": "12:00"}')], name="clock"),
                ToolResult("call_2", [Text("not found"), Image(data=PNG_B64, media_type="image/png")], is_error=True),
            ],
        ),
        Message("assistant", [Text("")]),
    )
    assert sent(conversation, route=route(model="gemini-2.5-flash"))["contents"] == [
        {
            "role": "user",
            "parts": [
                {"text": "Weather?"},
                {"inlineData": {"mimeType": "image/png", "data": PNG_B64}},
                {"inlineData": {"mimeType": "image/jpeg", "data": "AAAA"}},
                {"fileData": {"fileUri": "gs://b/x.png", "mimeType": "image/png"}},
            ],
        },
        {
            "role": "model",
            "parts": [
                {"functionCall": {"name": "weather", "args": {"city": "Paris"}}},
                {"functionCall": {"name": "clock", "args": {}, "id": "toolu_1"}},
                {"functionCall": {"name": "lookup", "args": {}}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "weather", "response": {"result": "sunny"}}},
                {"functionResponse": {"name": "clock", "response": {"time": "12:00"}, "id": "toolu_1"}},
                {"functionResponse": {"name": "lookup", "response": {"error": "not found"}}},
                {"inlineData": {"mimeType": "image/png", "data": PNG_B64}},
            ],
        },
    ]


def test_a_tool_result_for_no_known_call_is_refused():
    conversation = convo(Message("user", [ToolResult("call_9", [Text("x")])]))
    with pytest.raises(InvalidRequest) as caught:
        gemini.build_request(conversation, route=route(), stream=False)
    assert caught.value.param == "messages"


def test_signatures_ride_on_their_parts_and_gemini_3_gets_a_placeholder():
    signed = convo(
        Message("user", [Text("Go")]),
        Message(
            "assistant",
            [
                Thinking("thought", "T1", origin="gemini"),
                Thinking("", SIG, origin="gemini"),
                ToolCall("call_0", "f", "{}"),
                Text("x"),
            ],
        ),
    )
    assert sent(signed, route=route(model="gemini-3-pro-preview"))["contents"][1]["parts"] == [
        {"text": "thought", "thought": True, "thoughtSignature": "T1"},
        {"functionCall": {"name": "f", "args": {}}, "thoughtSignature": SIG},
        {"text": "x"},
    ]
    unsigned = convo(
        Message("user", [Text("Go")]),
        Message("assistant", [ToolCall("call_0", "f", "{}"), ToolCall("call_1", "g", "{}")]),
        Message("user", [ToolResult("call_0", [Text("1")], name="f"), ToolResult("call_1", [Text("2")], name="g")]),
        Message("assistant", [Text("Done"), Thinking("", "T9", origin="gemini")]),
    )
    gemini_3 = sent(unsigned, route=route(model="gemini-3-flash"))["contents"]
    assert gemini_3[1]["parts"] == [
        {"functionCall": {"name": "f", "args": {}}, "thoughtSignature": "skip_thought_signature_validator"},
        {"functionCall": {"name": "g", "args": {}}},
    ]
    assert gemini_3[3]["parts"] == [{"text": "Done"}, {"text": "", "thoughtSignature": "T9"}]
    older = sent(unsigned, route=route(model="gemini-2.5-flash"))["contents"]
    assert "thoughtSignature" not in older[1]["parts"][0]


def test_tools_are_sent_as_json_schema_that_gemini_takes():
    parameters = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": {
            "where": {"$ref": "#/definitions/Place", "description": "dropped beside a $ref"},
            "when": {"type": ["string", "null"], "default": None},
            "$schema": {"type": "string"},  # a property name, not a keyword
        },
        "required": ["where"],
        "additionalProperties": False,
        "definitions": {"Place": {"type": "object", "properties": {"city": {"type": "string"}}}},
    }
    conversation = convo(
        Message("user", [Text("Hi")]),
        tools=[
            Tool("plan", "Plan a trip.", parameters),
            Tool("ping", "", {"type": "object", "properties": {}}),
        ],
        tool_choice=ToolChoice("tool", name="plan", parallel=False),
    )
    request = gemini.build_request(conversation, route=route(), stream=False)
    body = orjson.loads(request.body)
    assert body["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "plan",
                    "description": "Plan a trip.",
                    "parametersJsonSchema": {
                        "type": "object",
                        "properties": {
                            "where": {"$ref": "#/$defs/Place"},
                            "when": {"type": ["string", "null"], "default": None},
                            "$schema": {"type": "string"},
                        },
                        "required": ["where"],
                        "additionalProperties": False,
                        "$defs": {"Place": {"type": "object", "properties": {"city": {"type": "string"}}}},
                    },
                },
                {"name": "ping"},
            ]
        }
    ]
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["plan"]}}
    assert request.dropped == ["parallel_tool_calls"]


@pytest.mark.parametrize(
    ("choice", "config"),
    [
        (ToolChoice("auto"), {"mode": "AUTO"}),
        (ToolChoice("none"), {"mode": "NONE"}),
        (ToolChoice("required"), {"mode": "ANY"}),
        (ToolChoice("tool", name="f"), {"mode": "ANY", "allowedFunctionNames": ["f"]}),
    ],
)
def test_tool_choice_becomes_function_calling_config(choice, config):
    conversation = convo(Message("user", [Text("Hi")]), tools=[Tool("f")], tool_choice=choice)
    assert sent(conversation)["toolConfig"] == {"functionCallingConfig": config}
    assert "toolConfig" not in sent(convo(Message("user", [Text("Hi")]), tool_choice=choice))


def test_generation_config_and_dropped_parameters():
    conversation = convo(
        Message("user", [Text("Hi")]),
        system=[Text("Be brief.")],
        max_tokens=100,
        temperature=0.2,
        top_p=0.8,
        top_k=20,
        stop=["END"],
        n=2,
        response_format=ResponseFormat(kind="json_schema", schema={"$schema": "x", "type": "object"}, name="r"),
        thinking=ThinkingConfig(effort="low"),
        user="end-user-1",
        openai_extra={"seed": 3, "presence_penalty": 0.1, "frequency_penalty": 0.2, "logit_bias": {"1": 2}},
    )
    request = gemini.build_request(conversation, route=route(), stream=False)
    body = orjson.loads(request.body)
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert body["generationConfig"] == {
        "maxOutputTokens": 100,
        "temperature": 0.2,
        "topP": 0.8,
        "topK": 20,
        "stopSequences": ["END"],
        "candidateCount": 2,
        "responseMimeType": "application/json",
        "responseJsonSchema": {"type": "object"},
        "thinkingConfig": {"thinkingBudget": 2048, "includeThoughts": True},
        "seed": 3,
        "presencePenalty": 0.1,
        "frequencyPenalty": 0.2,
    }
    assert sorted(request.dropped) == ["logit_bias", "user"]


@pytest.mark.parametrize(
    ("thinking", "config"),
    [
        (ThinkingConfig(budget_tokens=0, include_thoughts=True), {"thinkingBudget": 0}),
        (ThinkingConfig(budget_tokens=500, include_thoughts=False), {"thinkingBudget": 500}),
        (ThinkingConfig(effort="minimal"), {"thinkingBudget": 512, "includeThoughts": True}),
        (ThinkingConfig(effort="medium"), {"thinkingBudget": 8192, "includeThoughts": True}),
        (ThinkingConfig(effort="high"), {"thinkingBudget": 24576, "includeThoughts": True}),
        (ThinkingConfig(), {"includeThoughts": True}),
    ],
)
def test_thinking_budgets(thinking, config):
    assert sent(convo(Message("user", [Text("Hi")]), thinking=thinking))["generationConfig"]["thinkingConfig"] == config


def test_json_object_mode_and_too_many_stop_sequences():
    body = sent(convo(Message("user", [Text("Hi")]), response_format=ResponseFormat(kind="json_object")))
    assert body["generationConfig"] == {"responseMimeType": "application/json"}
    with pytest.raises(InvalidRequest) as caught:
        sent(convo(Message("user", [Text("Hi")]), stop=list("abcdef")))
    assert caught.value.param == "stop"


def test_a_gemini_request_survives_the_round_trip():
    body = {
        "contents": [
            {
                "role": "user",
                "parts": [{"text": "Weather in Paris?"}, {"inlineData": {"mimeType": "image/png", "data": PNG_B64}}],
            },
            {
                "role": "model",
                "parts": [
                    {"text": "Let me check.", "thought": True, "thoughtSignature": "T1"},
                    {
                        "functionCall": {"name": "weather", "args": {"city": "Paris"}, "id": "fc_1"},
                        "thoughtSignature": SIG,
                    },
                ],
            },
            {
                "role": "user",
                "parts": [{"functionResponse": {"name": "weather", "response": {"temp": 21}, "id": "fc_1"}}],
            },
            {"role": "model", "parts": [{"text": "It is 21 C."}]},
            {"role": "user", "parts": [{"text": "Thanks"}]},
        ],
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "tools": [
            {
                "functionDeclarations": [
                    {"name": "weather", "description": "Weather.", "parametersJsonSchema": WEATHER_SCHEMA}
                ]
            }
        ],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["weather"]}},
        "generationConfig": {
            "maxOutputTokens": 300,
            "temperature": 0.5,
            "topP": 0.9,
            "topK": 10,
            "stopSequences": ["END"],
            "responseMimeType": "application/json",
            "responseJsonSchema": {"type": "object"},
            "thinkingConfig": {"thinkingBudget": 1000, "includeThoughts": True},
            "seed": 42,
        },
    }
    request = gemini.build_request(read(body), route=route(), stream=True)
    assert orjson.loads(request.body) == body
    assert request.dropped == []


# --- upstream side: answers -------------------------------------------------------------


def test_reads_the_fakes_text_reply():
    b = Behaviour(
        reply_text="Hello there friend", prompt_tokens=12, cached_tokens=4, reasoning_tokens=2, completion_tokens=5
    )
    reply = gemini.read_reply(fake_gemini.reply_json(REPLY_PATH, {"contents": []}, b))
    assert reply.parts == [Text("Hello there friend")]
    assert reply.stop_reason == STOP
    assert reply.usage == Usage(input_tokens=12, output_tokens=5, cached_input_tokens=4, reasoning_tokens=2)
    assert (reply.id, reply.model) == (fake_gemini.RESPONSE_ID, "gemini-2.5-flash")


def test_reads_the_fakes_function_calls_and_thoughts():
    b = Behaviour(
        tool_calls=[FakeToolCall("weather", '{"city": "Paris"}', id="fc_9"), FakeToolCall("clock", "{}", id="fc_10")],
        reasoning_text="Need the weather.",
    )
    body = {
        "tools": [{"functionDeclarations": [{"name": "weather"}]}],
        "generationConfig": {"thinkingConfig": {"includeThoughts": True}},
    }
    reply = gemini.read_reply(fake_gemini.reply_json(REPLY_PATH, body, b))
    assert reply.parts == [
        Thinking("Need the weather.", origin="gemini"),
        Thinking("", fake_gemini.SIGNATURE, origin="gemini"),
        ToolCall("fc_9", "weather", '{"city":"Paris"}'),
        ToolCall("fc_10", "clock", "{}"),
    ]
    assert reply.stop_reason == TOOL_CALLS


def test_function_calls_without_ids_get_unique_generated_ones():
    data = {
        "candidates": [
            {
                "content": {
                    "parts": [{"functionCall": {"name": "f", "args": {"a": 1}}}, {"functionCall": {"name": "f"}}]
                },
                "finishReason": "STOP",
            }
        ]
    }
    first, second = gemini.read_reply(data).tool_calls
    assert first.id != second.id
    assert first.id.startswith("call_") and first.id[5:].isdigit()
    assert (first.arguments, second.arguments) == ('{"a":1}', "{}")
    # Made-up ids never go back to Google.
    assert "id" not in gemini._call_out(first)["functionCall"]


@pytest.mark.parametrize(
    ("reason", "stop"),
    [
        ("STOP", STOP),
        ("MAX_TOKENS", LENGTH),
        ("SAFETY", CONTENT_FILTER),
        ("RECITATION", CONTENT_FILTER),
        ("BLOCKLIST", CONTENT_FILTER),
        ("PROHIBITED_CONTENT", CONTENT_FILTER),
        ("SPII", CONTENT_FILTER),
        ("IMAGE_SAFETY", CONTENT_FILTER),
        ("OTHER", STOP),
        ("MALFORMED_FUNCTION_CALL", STOP),
    ],
)
def test_finish_reasons(reason, stop):
    data = {"candidates": [{"content": {"parts": [{"text": "x"}]}, "finishReason": reason}]}
    assert gemini.read_reply(data).stop_reason == stop


def test_a_blocked_prompt_is_a_content_filter_with_no_parts():
    data = {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 8, "totalTokenCount": 8}}
    reply = gemini.read_reply(data)
    assert (reply.parts, reply.stop_reason) == ([], CONTENT_FILTER)
    assert reply.usage == Usage(input_tokens=8)


@pytest.mark.parametrize("data", [[], "x", {}, {"candidates": ["x"]}, {"error": {"code": 500}}])
def test_unreadable_replies_raise_value_error(data):
    with pytest.raises(ValueError):
        gemini.read_reply(data)


def feed_all(frames: list[bytes]) -> tuple[gemini.StreamReader, list]:
    reader = gemini.StreamReader()
    events = []
    for frame in frames:
        assert frame.startswith(b"data: ") and frame.endswith(b"\r\n\r\n")
        events += reader.feed(frame[len(b"data: ") : -4])
    return reader, events


def test_stream_reader_reads_the_fakes_text_stream():
    b = Behaviour(reply_text="One two three", prompt_tokens=9, cached_tokens=3)
    reader, events = feed_all(fake_gemini.stream_frames(STREAM_PATH, {}, b))
    assert events == [
        Start(fake_gemini.RESPONSE_ID, "gemini-2.5-flash"),
        TextDelta("One"),
        TextDelta(" two"),
        TextDelta(" three"),
        Finish(STOP),
        UsageReport(Usage(input_tokens=9, output_tokens=3, cached_input_tokens=3)),
    ]
    assert reader.ended and reader.error is None


def test_stream_reader_reads_a_whole_function_call_and_thoughts():
    b = Behaviour(
        tool_calls=[FakeToolCall("weather", '{"city": "Paris"}', id="fc_1")], reasoning_text="Hmm.", reasoning_tokens=4
    )
    body = {
        "tools": [{"functionDeclarations": [{"name": "weather"}]}],
        "generationConfig": {"thinkingConfig": {"includeThoughts": True}},
    }
    reader, events = feed_all(fake_gemini.stream_frames(STREAM_PATH, body, b))
    usage = Usage(input_tokens=17, output_tokens=len(words(b.reply_text)), reasoning_tokens=4)
    assert events == [
        Start(fake_gemini.RESPONSE_ID, "gemini-2.5-flash"),
        ThinkingDelta("Hmm.", origin="gemini"),
        ThinkingDelta("", fake_gemini.SIGNATURE, origin="gemini"),
        ToolCallStart(0, "fc_1", "weather"),
        ToolCallDelta(0, '{"city":"Paris"}'),
        Finish(TOOL_CALLS),
        UsageReport(usage),
    ]
    assert reader.ended


def test_streamed_and_whole_answers_read_alike():
    b = Behaviour(tool_calls=[FakeToolCall("weather", '{"city": "Paris"}', id="fc_1")], reasoning_text="Hmm.")
    body = {
        "tools": [{"functionDeclarations": [{"name": "weather"}]}],
        "generationConfig": {"thinkingConfig": {"includeThoughts": True}},
    }
    builder = ReplyBuilder()
    for event in feed_all(fake_gemini.stream_frames(STREAM_PATH, body, b))[1]:
        builder.add(event)
    streamed = builder.result()
    whole = gemini.read_reply(fake_gemini.reply_json(REPLY_PATH, body, b))
    assert (streamed.stop_reason, streamed.usage, streamed.tool_calls) == (
        whole.stop_reason,
        whole.usage,
        whole.tool_calls,
    )


def test_stream_reader_without_finish_or_usage():
    reader, events = feed_all(fake_gemini.stream_frames(STREAM_PATH, {}, Behaviour(reply_text="a b", omit_done=True)))
    assert not reader.ended
    assert [type(e) for e in events] == [Start, TextDelta, TextDelta]
    reader, events = feed_all(fake_gemini.stream_frames(STREAM_PATH, {}, Behaviour(reply_text="a b", omit_usage=True)))
    assert reader.ended
    assert not any(isinstance(e, UsageReport) for e in events)


def test_stream_reader_notes_an_error_in_the_stream():
    reader = gemini.StreamReader()
    reader.feed(b'{"candidates": [{"content": {"parts": [{"text": "Hi"}]}}]}')
    # Google's mid-stream error, joined into one payload.
    assert (
        reader.feed(
            b'{\n  "error": {\n    "code": 503,\n    "message": "The model is overloaded.",\n    "status": "UNAVAILABLE"\n  }\n}'
        )
        == []
    )
    assert reader.error == "The model is overloaded."
    assert not reader.ended
    assert gemini.StreamReader().feed(b"not json") == []


def test_a_blocked_prompt_ends_a_stream():
    reader = gemini.StreamReader()
    events = reader.feed(
        b'{"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}, "usageMetadata": {"promptTokenCount": 3}}'
    )
    assert events[1:] == [Finish(CONTENT_FILTER), UsageReport(Usage(input_tokens=3))]
    assert reader.ended


def error_from(status: int, *, message: str | None = None, headers=None, body: bytes | None = None):
    b = Behaviour(status=status, error_message=message)
    content = body if body is not None else orjson.dumps(fake_gemini.error_json(status, b))
    return gemini.read_error(route=route(), status=status, content=content, headers=headers or {})


def test_a_refused_request_keeps_googles_words():
    error = error_from(400, message="Invalid value at 'contents[0].role' (AIza-route-secret)")
    assert isinstance(error, InvalidRequest) and error.status == 400
    assert error.message == "Invalid value at 'contents[0].role' (***)"
    assert error_from(404).status == 400 and "not found" in error_from(404).message
    assert error_from(413, body=b"").status == 413


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (400, "API key not valid. Please pass a valid API key."),
        (400, "API key expired. Please renew the API key."),
        (401, None),
        (403, None),
    ],
)
def test_refused_credentials_are_beluga_s_problem(status, message):
    error = error_from(status, message=message)
    assert isinstance(error, UpstreamError) and error.status == 502
    assert error.message == "The model provider refused Beluga's credentials."


def test_rate_limits_carry_the_retry_delay():
    from_details = error_from(429)
    assert isinstance(from_details, RateLimited) and from_details.status == 429
    assert from_details.headers == {"Retry-After": "1"}
    assert error_from(429, headers={"retry-after": "30"}).headers == {"Retry-After": "30"}
    assert error_from(429, body=b"{}").headers == {}


@pytest.mark.parametrize(
    ("status", "client_status", "code"),
    [
        (500, 502, "upstream_error"),
        (503, 503, "upstream_error"),
        (504, 502, "upstream_timeout"),
        (418, 502, "upstream_error"),
    ],
)
def test_provider_failures(status, client_status, code):
    error = error_from(status, body=b"<html>oops</html>")
    assert isinstance(error, UpstreamError)
    assert (error.status, error.code) == (client_status, code)


def test_an_error_wrapped_in_an_array_is_read():
    body = b'[{"error": {"code": 400, "message": "Bad thing.", "status": "INVALID_ARGUMENT"}}]'
    assert error_from(400, body=body).message == "Bad thing."


# --- token counting and embeddings ------------------------------------------------------


def test_count_tokens_sends_the_whole_request():
    conversation = convo(
        Message("user", [Text("Hi")]), system=[Text("S")], tools=[Tool("f", "", WEATHER_SCHEMA)], max_tokens=5
    )
    request = gemini.count_tokens_request(conversation, route=route(model="models/gemini-2.5-flash"))
    assert request.url == "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:countTokens"
    assert request.headers["x-goog-api-key"] == "AIza-route-secret"
    assert orjson.loads(request.body) == {
        "generateContentRequest": {
            "model": "models/gemini-2.5-flash",
            "contents": [{"role": "user", "parts": [{"text": "Hi"}]}],
            "systemInstruction": {"parts": [{"text": "S"}]},
            "tools": [{"functionDeclarations": [{"name": "f", "parametersJsonSchema": WEATHER_SCHEMA}]}],
        }
    }
    counted = fake_gemini.reply_json("/v1beta/models/m:countTokens", {}, Behaviour(prompt_tokens=31))
    assert gemini.read_count_tokens(counted) == 31
    assert gemini.read_count_tokens({}) == 0  # proto3 JSON leaves a zero out
    for bad in ([], {"totalTokens": "3"}, {"error": {"code": 400}}):
        with pytest.raises(ValueError):
            gemini.read_count_tokens(bad)


def test_embeddings_are_batched():
    request = gemini.embed_request(["one", "two"], route=route(model="text-embedding-004"), dimensions=4)
    assert request.url.endswith("/v1beta/models/text-embedding-004:batchEmbedContents")
    body = orjson.loads(request.body)
    assert body == {
        "requests": [
            {"model": "models/text-embedding-004", "content": {"parts": [{"text": "one"}]}, "outputDimensionality": 4},
            {"model": "models/text-embedding-004", "content": {"parts": [{"text": "two"}]}, "outputDimensionality": 4},
        ]
    }
    vectors = gemini.read_embeddings(fake_gemini.reply_json(request.url, body, Behaviour()))
    assert len(vectors) == 2 and all(len(v) == 4 for v in vectors) and vectors[0] != vectors[1]
    no_dimensions = orjson.loads(gemini.embed_request(["x"], route=route(), dimensions=None).body)
    assert "outputDimensionality" not in no_dimensions["requests"][0]
    for bad in ({}, {"embeddings": [{"values": ["x"]}]}, {"embeddings": [{}]}, None):
        with pytest.raises(ValueError):
            gemini.read_embeddings(bad)


# --- the google-genai SDK reads what the writers write ----------------------------------


@pytest.fixture
def sdk():
    with CannedServer() as server:
        http_options = genai_types.HttpOptions(base_url=server.base_url, timeout=10_000)
        yield genai.Client(api_key="x", http_options=http_options), server


def tools_config() -> genai_types.GenerateContentConfig:
    declaration = genai_types.FunctionDeclaration(
        name="get_weather", description="Weather.", parameters_json_schema=WEATHER_SCHEMA
    )
    return genai_types.GenerateContentConfig(
        tools=[genai_types.Tool(function_declarations=[declaration])],
        system_instruction="Be brief.",
        temperature=0.2,
        thinking_config=genai_types.ThinkingConfig(include_thoughts=True, thinking_budget=512),
    )


def test_the_sdk_reads_a_whole_reply_and_its_request_reads_back(sdk):
    client, server = sdk
    reply = Reply(
        id="",
        model="",
        parts=[
            Thinking("Checking."),
            Text("Let me look."),
            Thinking("", SIG),
            ToolCall("fc_1", "get_weather", '{"city":"Paris"}'),
        ],
        stop_reason=TOOL_CALLS,
        usage=Usage(input_tokens=20, output_tokens=8, cached_input_tokens=5, reasoning_tokens=3),
    )
    server.answer = (
        200,
        "application/json",
        orjson.dumps(gemini.write_reply(reply, model="test-model", request_id="req_9")),
    )
    response = client.models.generate_content(model="test-model", contents="Weather in Paris?", config=tools_config())
    assert response.text == "Let me look."
    call = response.function_calls[0]
    assert (call.name, call.args, call.id) == ("get_weather", {"city": "Paris"}, "fc_1")
    assert response.candidates[0].content.parts[2].thought_signature == base64.b64decode(SIG)
    assert response.candidates[0].finish_reason == genai_types.FinishReason.STOP
    usage = response.usage_metadata
    assert (usage.prompt_token_count, usage.candidates_token_count, usage.thoughts_token_count) == (20, 5, 3)
    assert (usage.cached_content_token_count, usage.total_token_count) == (5, 28)
    assert (response.model_version, response.response_id) == ("test-model", "req_9")

    method, path, body = server.requests[-1]
    assert (method, path) == ("POST", "/v1beta/models/test-model:generateContent")
    conversation = gemini.read_request(json.loads(body), model="test-model", stream=False)
    assert conversation.messages == [Message("user", [Text("Weather in Paris?")])]
    assert conversation.system_text == "Be brief." and conversation.temperature == 0.2
    assert conversation.tools == [Tool("get_weather", "Weather.", WEATHER_SCHEMA)]
    assert conversation.thinking == ThinkingConfig(budget_tokens=512, include_thoughts=True)


def test_the_sdk_reads_a_stream_and_its_chat_keeps_the_turn(sdk):
    client, server = sdk
    events = [
        Start(),
        TextDelta("Hello"),
        TextDelta(" from"),
        TextDelta(" Beluga"),
        Finish(STOP),
        UsageReport(Usage(input_tokens=6, output_tokens=3)),
    ]
    server.answer = (200, "text/event-stream", run(writer(), events))
    chunks = list(client.models.generate_content_stream(model="test-model", contents="Hi"))
    assert server.requests[-1][1] == "/v1beta/models/test-model:streamGenerateContent?alt=sse"
    assert [c.text for c in chunks] == ["Hello", " from", " Beluga"]
    assert chunks[-1].candidates[0].finish_reason == genai_types.FinishReason.STOP
    assert (chunks[-1].usage_metadata.prompt_token_count, chunks[-1].usage_metadata.candidates_token_count) == (6, 3)

    chat = client.chats.create(model="test-model")
    assert "".join(c.text for c in chat.send_message_stream("Hi")) == "Hello from Beluga"
    history = chat.get_history(curated=True)
    assert [content.role for content in history] == ["user", "model", "model", "model"]


def test_the_sdk_reads_a_streamed_function_call(sdk):
    client, server = sdk
    events = [
        Start(),
        ThinkingDelta("Need weather."),
        ThinkingDelta("", SIG),
        ToolCallStart(0, "call_555555555555", "get_weather"),
        ToolCallDelta(0, '{"city":'),
        ToolCallDelta(0, '"Paris"}'),
        Finish(TOOL_CALLS),
        UsageReport(Usage(input_tokens=6, output_tokens=9, reasoning_tokens=4)),
    ]
    server.answer = (200, "text/event-stream", run(writer(), events))
    chunks = list(client.models.generate_content_stream(model="test-model", contents="Weather?", config=tools_config()))
    assert [c.candidates[0].content.parts[0].thought for c in chunks] == [True, None]
    final = chunks[-1]
    call = final.function_calls[0]
    assert (call.name, call.args, call.id) == ("get_weather", {"city": "Paris"}, None)
    assert final.candidates[0].content.parts[0].thought_signature == base64.b64decode(SIG)
    assert final.usage_metadata.thoughts_token_count == 4


def test_the_sdk_sees_an_error_written_mid_stream(sdk):
    client, server = sdk
    server.answer = (
        200,
        "text/event-stream",
        run(writer(), [Start(), TextDelta("Hel")], error="The connection broke."),
    )
    try:
        bodies = [
            r.body
            for r in client._api_client.request_streamed("post", "models/test-model:streamGenerateContent?alt=sse", {})
        ]
    except genai_errors.APIError as raised:  # google-genai >= 1.5x raises it
        assert (raised.code, raised.message) == (503, "The connection broke.")
    else:  # older versions hand over the error object as a chunk
        assert json.loads(bodies[-1]) == {
            "error": {"code": 503, "message": "The connection broke.", "status": "UNAVAILABLE"}
        }
        assert json.loads(bodies[0])["candidates"][0]["content"]["parts"] == [{"text": "Hel"}]


def test_the_sdk_reads_googles_error_shape_and_the_model_list(sdk):
    client, server = sdk
    status, body = gemini.error_body(RateLimited("Slow down."))
    server.answer = (status, "application/json", orjson.dumps(body))
    with pytest.raises(genai_errors.ClientError) as caught:
        client.models.generate_content(model="test-model", contents="Hi")
    assert (caught.value.code, caught.value.status, caught.value.message) == (429, "RESOURCE_EXHAUSTED", "Slow down.")

    model = gemini.write_model(
        slug="test-model",
        display_name="Test",
        description="",
        input_token_limit=1000,
        output_token_limit=100,
        methods=["generateContent"],
    )
    server.answer = (200, "application/json", orjson.dumps(gemini.write_model_list([model], None)))
    listed = list(client.models.list())
    assert [(m.name, m.display_name, m.input_token_limit, m.supported_actions) for m in listed] == [
        ("models/test-model", "Test", 1000, ["generateContent"])
    ]
