"""The OpenAI Responses API (client side): request reading, the Response object and its event stream.

Shapes are checked with the openai SDK's own pydantic models, and the stream is
read by the SDK itself from a real HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import openai
import orjson
import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from gateway.errors import InvalidRequest, RateLimited
from gateway.protocols import openai_responses as responses
from gateway.protocols.conversation import (
    Finish,
    Image,
    Reply,
    ReplyBuilder,
    Start,
    Text,
    TextDelta,
    Thinking,
    ThinkingDelta,
    ToolCall,
    ToolCallDelta,
    ToolCallStart,
    ToolResult,
    Usage,
    UsageReport,
)
from tests.canned_server import CannedServer

EVENT = TypeAdapter(ResponseStreamEvent)
REQUEST_ID = "req_0123456789abcdef01234567"
USAGE = Usage(input_tokens=120, output_tokens=30, cached_input_tokens=100, reasoning_tokens=10)


def read(**body):
    return responses.read_request({"model": "m", "input": "hi", **body})


def refused(body) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        responses.read_request(body)
    return caught.value


# --- validation ----------------------------------------------------------------------

M = {"model": "m"}
MSG = {"type": "message", "role": "user", "content": "hi"}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": "hi"}, "model"),
        ({"model": 5, "input": "hi"}, "model"),
        (M, "input"),
        ({**M, "input": 5}, "input"),
        ({**M, "input": [5]}, "input[0]"),
        ({**M, "input": [{"role": "tool", "content": "x"}]}, "input[0].role"),
        ({**M, "input": [{"type": "message", "role": "user"}]}, "input[0].content"),
        ({**M, "input": [{"role": "user", "content": 5}]}, "input[0].content"),
        ({**M, "input": [{"role": "user", "content": [{"type": "video"}]}]}, "input[0].content[0].type"),
        ({**M, "input": [{"role": "user", "content": [{"type": "input_text"}]}]}, "input[0].content[0].text"),
        (
            {**M, "input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file_1"}]}]},
            "input[0].content[0].file_id",
        ),
        (
            {**M, "input": [{"role": "user", "content": [{"type": "input_image", "image_url": "ftp://x/y.png"}]}]},
            "input[0].content[0].image_url",
        ),
        (
            {**M, "input": [{"role": "user", "content": [{"type": "input_image", "image_url": "data:image/png,abc"}]}]},
            "input[0].content[0].image_url",
        ),
        (
            {
                **M,
                "input": [
                    {
                        "role": "user",
                        "content": [{"type": "input_image", "image_url": "https://x/y.png", "detail": "max"}],
                    }
                ],
            },
            "input[0].content[0].detail",
        ),
        (
            {
                **M,
                "input": [{"role": "developer", "content": [{"type": "input_image", "image_url": "https://x/y.png"}]}],
            },
            "input[0].content[0].type",
        ),
        (
            {**M, "input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
            "input[0].content[0].type",
        ),
        ({**M, "input": [MSG, {"type": "function_call", "name": "f", "arguments": "{}"}]}, "input[1].call_id"),
        (
            {**M, "input": [MSG, {"type": "function_call", "call_id": "c", "name": "f", "arguments": {}}]},
            "input[1].arguments",
        ),
        ({**M, "input": [MSG, {"type": "function_call_output", "call_id": "c"}]}, "input[1].output"),
        ({**M, "input": [MSG, {"type": "function_call_output", "call_id": "c", "output": 5}]}, "input[1].output"),
        (
            {**M, "input": [MSG, {"type": "function_call_output", "call_id": "c", "output": [{"type": "input_file"}]}]},
            "input[1].output[0].type",
        ),
        ({**M, "input": [MSG, {"type": "custom_tool_call", "call_id": "c", "name": "apply_patch"}]}, "input[1].input"),
        ({**M, "input": [MSG, {"type": "reasoning", "summary": "thought"}]}, "input[1].summary"),
        ({**M, "input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].type"),
        ({**M, "input": [{"type": "teleport"}]}, "input[0].type"),
        ({**M, "input": [{"role": "developer", "content": "rules only"}]}, "input"),
        ({**M, "input": "hi", "instructions": 5}, "instructions"),
        ({**M, "input": "hi", "previous_response_id": "resp_1"}, "previous_response_id"),
        ({**M, "input": "hi", "conversation": "conv_1"}, "conversation"),
        ({**M, "input": "hi", "prompt": {"id": "pmpt_1"}}, "prompt"),
        ({**M, "input": "hi", "background": True}, "background"),
        ({**M, "input": "hi", "stream": "yes"}, "stream"),
        ({**M, "input": "hi", "tools": {}}, "tools"),
        ({**M, "input": "hi", "tools": [{"name": "f"}]}, "tools[0].type"),
        ({**M, "input": "hi", "tools": [{"type": "function"}]}, "tools[0].name"),
        ({**M, "input": "hi", "tools": [{"type": "function", "name": ""}]}, "tools[0].name"),
        ({**M, "input": "hi", "tools": [{"type": "function", "name": "f", "parameters": "{}"}]}, "tools[0].parameters"),
        ({**M, "input": "hi", "tools": [{"type": "function", "name": "f", "strict": "yes"}]}, "tools[0].strict"),
        (
            {**M, "input": "hi", "tools": [{"type": "custom", "name": "f", "format": {"type": "regexp"}}]},
            "tools[0].format.type",
        ),
        (
            {
                **M,
                "input": "hi",
                "tools": [{"type": "custom", "name": "f", "format": {"type": "grammar", "syntax": "lark"}}],
            },
            "tools[0].format.definition",
        ),
        ({**M, "input": "hi", "tool_choice": "sometimes"}, "tool_choice"),
        ({**M, "input": "hi", "tool_choice": 5}, "tool_choice"),
        ({**M, "input": "hi", "tool_choice": {"type": "function", "name": "nope"}}, "tool_choice.name"),
        ({**M, "input": "hi", "tool_choice": {"type": "web_search_preview"}}, "tool_choice"),
        ({**M, "input": "hi", "tool_choice": {"type": "allowed_tools", "mode": "auto"}}, "tool_choice.tools"),
        ({**M, "input": "hi", "parallel_tool_calls": "yes"}, "parallel_tool_calls"),
        ({**M, "input": "hi", "max_output_tokens": 0}, "max_output_tokens"),
        ({**M, "input": "hi", "max_output_tokens": 1.5}, "max_output_tokens"),
        ({**M, "input": "hi", "temperature": 3}, "temperature"),
        ({**M, "input": "hi", "temperature": True}, "temperature"),
        ({**M, "input": "hi", "top_p": -0.1}, "top_p"),
        ({**M, "input": "hi", "top_logprobs": 50}, "top_logprobs"),
        ({**M, "input": "hi", "text": "json"}, "text"),
        ({**M, "input": "hi", "text": {"format": {"type": "yaml"}}}, "text.format.type"),
        ({**M, "input": "hi", "text": {"format": {"type": "json_schema", "name": "x"}}}, "text.format.schema"),
        ({**M, "input": "hi", "text": {"verbosity": "chatty"}}, "text.verbosity"),
        ({**M, "input": "hi", "reasoning": "high"}, "reasoning"),
        ({**M, "input": "hi", "reasoning": {"effort": "extreme"}}, "reasoning.effort"),
        ({**M, "input": "hi", "reasoning": {"summary": "long"}}, "reasoning.summary"),
        ({**M, "input": "hi", "user": 5}, "user"),
        ({**M, "input": "hi", "safety_identifier": 5}, "safety_identifier"),
        ({**M, "input": "hi", "service_tier": "gold"}, "service_tier"),
        ({**M, "input": "hi", "metadata": ["a"]}, "metadata"),
        ({**M, "input": "hi", "truncation": "middle"}, "truncation"),
    ],
)
def test_invalid_request_names_the_parameter(body, param):
    error = refused(body)
    assert error.param == param
    assert error.status == 400
    assert param in error.message


def test_a_body_that_is_not_an_object_is_refused():
    assert refused(["model", "m"]).status == 400


def test_previous_response_id_is_refused_because_beluga_is_stateless():
    error = refused({"model": "m", "input": "go on", "previous_response_id": "resp_abc"})
    assert error.param == "previous_response_id"
    assert error.code == "unsupported_parameter"
    assert "stateless" in error.message and "whole conversation" in error.message


def test_the_model_and_stream_from_the_url_take_precedence():
    conversation = responses.read_request({"input": "hi", "stream": False}, model="url-model", stream=True)
    assert (conversation.model, conversation.stream) == ("url-model", True)


# --- reading ------------------------------------------------------------------------


def test_a_string_input_is_one_user_message():
    conversation = read(stream=True)
    assert [(m.role, m.parts) for m in conversation.messages] == [("user", [Text("hi")])]
    assert conversation.stream is True


def test_instructions_come_first_then_system_and_developer_text_in_order():
    conversation = read(
        instructions="Be brief.",
        input=[
            {"role": "developer", "content": [{"type": "input_text", "text": "Sandbox: read-only."}]},
            {"type": "message", "role": "user", "content": "hi"},
            {"role": "system", "content": "Answer in French."},
        ],
    )
    assert conversation.system == [Text("Be brief."), Text("Sandbox: read-only."), Text("Answer in French.")]
    assert [m.role for m in conversation.messages] == ["user"]


def test_message_parts_of_every_kind_are_read():
    conversation = read(
        input=[
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "What is this?"},
                    {"type": "input_image", "image_url": "https://example.com/cat.png", "detail": "low"},
                    {"type": "input_image", "image_url": "data:image/jpeg;base64,/9j/AAA="},
                ],
            },
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "A cat. "}, {"type": "refusal", "refusal": "No more."}],
            },
        ]
    )
    user, assistant = conversation.messages
    assert user.parts == [
        Text("What is this?"),
        Image(url="https://example.com/cat.png", detail="low"),
        Image(data="/9j/AAA=", media_type="image/jpeg"),
    ]
    assert (assistant.role, assistant.parts) == ("assistant", [Text("A cat. "), Text("No more.")])


def test_a_tool_call_round_trip_reads_into_a_call_and_its_named_result():
    conversation = read(
        input=[
            {"role": "user", "content": "Weather in Paris?"},
            {"type": "function_call", "call_id": "call_1", "name": "weather", "arguments": '{"city":"Paris"}'},
            {"type": "function_call", "call_id": "call_2", "name": "time", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "18C"},
            {
                "type": "function_call_output",
                "call_id": "call_2",
                "output": [
                    {"type": "input_text", "text": "noon"},
                    {"type": "input_image", "image_url": "data:image/png;base64,iVBO"},
                ],
            },
            {"role": "user", "content": "Thanks"},
        ]
    )
    user, assistant, results = conversation.messages
    assert assistant.parts == [
        ToolCall(id="call_1", name="weather", arguments='{"city":"Paris"}'),
        ToolCall(id="call_2", name="time", arguments="{}"),
    ]
    assert results.role == "user"
    assert results.parts == [
        ToolResult(call_id="call_1", content=[Text("18C")], name="weather"),
        ToolResult(call_id="call_2", content=[Text("noon"), Image(data="iVBO", media_type="image/png")], name="time"),
        Text("Thanks"),
    ]


def test_reasoning_text_and_calls_of_one_turn_form_one_assistant_message():
    conversation = read(
        input=[
            {"role": "user", "content": "fix it"},
            {
                "type": "reasoning",
                "summary": [{"type": "summary_text", "text": "Look at"}, {"type": "summary_text", "text": "the file"}],
                "encrypted_content": "gAAAAB-openai-opaque",
            },
            {"type": "reasoning", "summary": [], "content": [{"type": "reasoning_text", "text": "raw thought"}]},
            {"type": "reasoning", "summary": [], "encrypted_content": "gAAAAB-only-opaque"},
            {"role": "assistant", "content": [{"type": "output_text", "text": "Reading it."}]},
            {"type": "function_call", "call_id": "c1", "name": "shell", "arguments": "{}"},
        ]
    )
    assert conversation.messages[1].parts == [
        Thinking("Look at\n\nthe file"),  # OpenAI's encrypted_content is no use to another model
        Thinking("raw thought"),
        Text("Reading it."),
        ToolCall("c1", "shell", "{}"),
    ]


def test_custom_and_local_shell_items_read_as_tool_calls_and_results():
    conversation = read(
        input=[
            {"role": "user", "content": "edit"},
            {
                "type": "custom_tool_call",
                "status": "completed",
                "call_id": "c1",
                "name": "apply_patch",
                "input": "*** Begin Patch",
            },
            {"type": "custom_tool_call_output", "call_id": "c1", "output": "Done!"},
            {
                "type": "local_shell_call",
                "call_id": "c2",
                "status": "completed",
                "action": {"type": "exec", "command": ["ls"]},
            },
            {"type": "local_shell_call_output", "id": "c2", "output": "README.md"},
        ]
    )
    calls = [part for message in conversation.messages for part in message.parts if isinstance(part, ToolCall)]
    results = [part for message in conversation.messages for part in message.parts if isinstance(part, ToolResult)]
    assert calls == [
        ToolCall("c1", "apply_patch", '{"input":"*** Begin Patch"}'),
        ToolCall("c2", "local_shell", '{"type":"exec","command":["ls"]}'),
    ]
    assert [(r.call_id, r.name, r.text) for r in results] == [
        ("c1", "apply_patch", "Done!"),
        ("c2", "local_shell", "README.md"),
    ]


def test_hosted_tool_items_from_an_earlier_openai_turn_are_dropped_and_reported():
    conversation = read(
        input=[
            {"role": "user", "content": "search"},
            {
                "type": "web_search_call",
                "id": "ws_1",
                "status": "completed",
                "action": {"type": "search", "query": "q"},
            },
            {"role": "assistant", "content": [{"type": "output_text", "text": "found"}]},
        ]
    )
    assert [m.role for m in conversation.messages] == ["user", "assistant"]
    assert conversation.dropped == ["input.web_search_call"]


def test_function_tools_are_read_and_hosted_tools_dropped_and_reported():
    conversation = read(
        tools=[
            {
                "type": "function",
                "name": "weather",
                "description": "Weather now",
                "parameters": {"type": "object"},
                "strict": True,
            },
            {"type": "function", "name": "ping"},
            {"type": "web_search", "external_web_access": False},
            {"type": "file_search", "vector_store_ids": ["vs_1"]},
            {"type": "image_generation"},
        ]
    )
    assert [(t.name, t.description, t.parameters) for t in conversation.tools] == [
        ("weather", "Weather now", {"type": "object"}),
        ("ping", "", {"type": "object", "properties": {}}),
    ]
    assert conversation.dropped == ["tools.web_search", "tools.file_search", "tools.image_generation"]
    assert [tool["name"] for tool in conversation.echo["tools"]] == ["weather", "ping"]


def test_a_custom_tool_becomes_a_function_taking_one_string_input():
    grammar = {"type": "grammar", "syntax": "lark", "definition": 'start: "*** Begin Patch"'}
    conversation = read(
        tools=[{"type": "custom", "name": "apply_patch", "description": "Edit files.", "format": grammar}]
    )
    (tool,) = conversation.tools
    assert tool.name == "apply_patch"
    assert tool.parameters["required"] == ["input"]
    assert tool.parameters["properties"]["input"]["type"] == "string"
    assert tool.description.startswith("Edit files.") and 'start: "*** Begin Patch"' in tool.description
    assert conversation.echo["tools"] == [
        {"type": "custom", "name": "apply_patch", "description": "Edit files.", "format": grammar}
    ]


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        ("auto", None, ("auto", None, None)),
        ("none", None, ("none", None, None)),
        ("required", False, ("required", None, False)),
        ({"type": "function", "name": "weather"}, True, ("tool", "weather", True)),
        ({"type": "custom", "name": "apply_patch"}, None, ("tool", "apply_patch", None)),
        (None, False, ("auto", None, False)),
    ],
)
def test_tool_choice_and_parallel_tool_calls(choice, parallel, expected):
    tools = [{"type": "function", "name": "weather"}, {"type": "custom", "name": "apply_patch"}]
    body = {"tools": tools}
    if choice is not None:
        body["tool_choice"] = choice
    if parallel is not None:
        body["parallel_tool_calls"] = parallel
    tool_choice = read(**body).tool_choice
    assert (tool_choice.mode, tool_choice.name, tool_choice.parallel) == expected


def test_no_tool_choice_leaves_the_upstream_default():
    assert read(tools=[{"type": "function", "name": "f"}]).tool_choice is None


def test_allowed_tools_narrows_the_tools_the_model_sees():
    conversation = read(
        tools=[{"type": "function", "name": "a"}, {"type": "function", "name": "b"}, {"type": "web_search"}],
        tool_choice={"type": "allowed_tools", "mode": "required", "tools": [{"type": "function", "name": "b"}]},
    )
    assert [tool.name for tool in conversation.tools] == ["b"]
    assert conversation.tool_choice.mode == "required"


def test_sampling_format_reasoning_and_user_are_read():
    schema = {"type": "object", "properties": {"x": {"type": "integer"}}}
    conversation = read(
        max_output_tokens=500,
        temperature=0.2,
        top_p=0.9,
        text={"format": {"type": "json_schema", "name": "point", "schema": schema, "strict": True}, "verbosity": "low"},
        reasoning={"effort": "high", "summary": "auto"},
        user="legacy-user",
        safety_identifier="hashed-user",
        service_tier="flex",
        prompt_cache_key="conv-42",
    )
    assert (conversation.max_tokens, conversation.temperature, conversation.top_p) == (500, 0.2, 0.9)
    fmt = conversation.response_format
    assert (fmt.kind, fmt.name, fmt.schema, fmt.strict) == ("json_schema", "point", schema, True)
    assert (conversation.thinking.effort, conversation.thinking.include_thoughts) == ("high", True)
    assert conversation.user == "hashed-user"
    assert conversation.openai_extra == {"verbosity": "low", "service_tier": "flex", "prompt_cache_key": "conv-42"}
    assert conversation.dropped == []


@pytest.mark.parametrize(
    ("reasoning", "effort"),
    [
        ({"effort": "none"}, None),
        ({"effort": "xhigh"}, "high"),
        ({"effort": "minimal"}, "minimal"),
        ({"summary": "auto"}, None),
    ],
)
def test_reasoning_effort_maps_to_what_the_conversation_can_say(reasoning, effort):
    thinking = read(reasoning=reasoning).thinking
    assert (thinking.effort if thinking else None) == effort


def test_json_object_and_text_formats():
    assert read(text={"format": {"type": "json_object"}}).response_format.kind == "json_object"
    assert read(text={"format": {"type": "text"}}).response_format is None


def test_accepted_parameters_without_effect_are_not_reported_but_unknown_ones_are():
    conversation = read(
        store=True,
        metadata={"k": "v"},
        include=["reasoning.encrypted_content"],
        truncation="auto",
        client_metadata={"x": "y"},
        stream_options={"include_obfuscation": False},
        top_logprobs=3,
        max_tool_calls=2,
        frobnicate=1,
    )
    assert conversation.dropped == ["top_logprobs", "max_tool_calls", "frobnicate"]
    assert conversation.echo["metadata"] == {"k": "v"}
    assert conversation.echo["truncation"] == "auto"


# A request as Codex CLI builds it (codex-rs/codex-api ResponsesApiRequest and
# core's tool specs): developer/user context messages, replayed reasoning with
# OpenAI's encrypted_content, shell and apply_patch calls, and the web_search
# tool that Codex sends by default ("cached" mode).
CODEX_REQUEST = {
    "model": "gpt-5-codex",
    "instructions": "You are Codex, based on GPT-5. You are running as a coding agent in the Codex CLI.",
    "input": [
        {
            "type": "message",
            "role": "developer",
            "content": [
                {
                    "type": "input_text",
                    "text": "<permissions instructions>Sandbox: workspace-write.</permissions instructions>",
                }
            ],
        },
        {
            "type": "message",
            "role": "user",
            "content": [
                {
                    "type": "input_text",
                    "text": "# AGENTS.md instructions for /repo\n\n<INSTRUCTIONS>Run tests.</INSTRUCTIONS>",
                }
            ],
        },
        {
            "type": "message",
            "role": "user",
            "content": [
                {
                    "type": "input_text",
                    "text": "<environment_context>\n  <cwd>/repo</cwd>\n  <shell>bash</shell>\n</environment_context>",
                }
            ],
        },
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Fix the failing test."}]},
        {
            "type": "reasoning",
            "summary": [{"type": "summary_text", "text": "**Inspecting the test**"}],
            "encrypted_content": "gAAAAABo-opaque",
        },
        {
            "type": "function_call",
            "name": "shell_command",
            "arguments": '{"command":"pytest -q","workdir":"/repo"}',
            "call_id": "call_sh1",
        },
        {
            "type": "function_call_output",
            "call_id": "call_sh1",
            "output": "Exit code: 1\nWall time: 0.4 seconds\nOutput:\nFAILED test_x.py::test_add",
        },
        {
            "type": "custom_tool_call",
            "status": "completed",
            "call_id": "call_ap1",
            "name": "apply_patch",
            "input": "*** Begin Patch\n*** Update File: x.py\n@@\n-    return a - b\n+    return a + b\n*** End Patch\n",
        },
        {
            "type": "custom_tool_call_output",
            "call_id": "call_ap1",
            "output": '{"output":"Success. Updated the following files:\\nM x.py\\n","metadata":{"exit_code":0}}',
        },
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Fixed `add` in x.py."}]},
        {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "Thanks, also run the linter."}],
        },
    ],
    "tools": [
        {
            "type": "function",
            "name": "shell_command",
            "description": "Runs a shell command and returns its output.",
            "strict": False,
            "parameters": {
                "type": "object",
                "properties": {
                    "command": {"type": "string"},
                    "workdir": {"type": "string"},
                    "timeout_ms": {"type": "number"},
                },
                "required": ["command"],
                "additionalProperties": False,
            },
        },
        {
            "type": "function",
            "name": "update_plan",
            "description": "Updates the task plan.",
            "strict": False,
            "parameters": {
                "type": "object",
                "properties": {
                    "plan": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {"step": {"type": "string"}, "status": {"type": "string"}},
                            "required": ["step", "status"],
                            "additionalProperties": False,
                        },
                    }
                },
                "required": ["plan"],
                "additionalProperties": False,
            },
        },
        {
            "type": "custom",
            "name": "apply_patch",
            "description": "Use the `apply_patch` tool to edit files. This is a FREEFORM tool, so do not wrap the patch in JSON.",
            "format": {
                "type": "grammar",
                "syntax": "lark",
                "definition": 'start: begin_patch hunk+ end_patch\nbegin_patch: "*** Begin Patch" LF\nend_patch: "*** End Patch" LF?\n',
            },
        },
        {
            "type": "function",
            "name": "view_image",
            "description": "Attach a local image.",
            "strict": False,
            "parameters": {
                "type": "object",
                "properties": {"path": {"type": "string"}},
                "required": ["path"],
                "additionalProperties": False,
            },
        },
        {"type": "web_search", "external_web_access": False},
    ],
    "tool_choice": "auto",
    "parallel_tool_calls": False,
    "reasoning": {"effort": "medium", "summary": "auto"},
    "store": False,
    "stream": True,
    "include": ["reasoning.encrypted_content"],
    "prompt_cache_key": "0199a213-81c0-7800-8aa1-bbab2a035a53",
    "text": {"verbosity": "medium"},
    "client_metadata": {"x-codex-installation-id": "11111111-2222-3333-4444-555555555555"},
}


def test_a_codex_cli_request_reads_without_error():
    conversation = responses.read_request(CODEX_REQUEST)
    assert conversation.stream is True
    assert conversation.dropped == ["tools.web_search"]
    assert [tool.name for tool in conversation.tools] == ["shell_command", "update_plan", "apply_patch", "view_image"]
    assert conversation.system[0].text.startswith("You are Codex") and len(conversation.system) == 2
    assert [m.role for m in conversation.messages] == [
        "user",
        "assistant",
        "user",
        "assistant",
        "user",
        "assistant",
        "user",
    ]
    assert conversation.messages[1].parts[0] == Thinking("**Inspecting the test**")
    patch = conversation.messages[3].parts[0]
    assert patch.name == "apply_patch" and orjson.loads(patch.arguments)["input"].startswith("*** Begin Patch")
    assert conversation.tool_choice.parallel is False
    assert conversation.thinking.effort == "medium"
    assert conversation.openai_extra == {"verbosity": "medium", "prompt_cache_key": CODEX_REQUEST["prompt_cache_key"]}


def test_codex_request_reasoning_without_effort_is_accepted():
    assert responses.read_request({**CODEX_REQUEST, "reasoning": None}).thinking is None


# --- the Response object ---------------------------------------------------------------


def test_a_text_reply_is_a_valid_completed_response():
    reply = Reply(
        id="x", model="up", parts=[Text("Hello "), Text("world")], stop_reason="stop", usage=USAGE, created=1700000000
    )
    body = responses.write_reply(reply, model="public-model", request_id=REQUEST_ID)
    response = Response.model_validate(body)
    assert response.id == "resp_0123456789abcdef01234567"
    assert (response.object, response.status, response.model, response.created_at) == (
        "response",
        "completed",
        "public-model",
        1700000000,
    )
    assert response.output_text == "Hello world"
    (message,) = body["output"]
    assert message == {
        "id": "msg_0123456789abcdef01234567_0",
        "type": "message",
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": "Hello world", "annotations": [], "logprobs": []}],
    }
    assert body["usage"] == {
        "input_tokens": 120,
        "input_tokens_details": {"cached_tokens": 100},
        "output_tokens": 30,
        "output_tokens_details": {"reasoning_tokens": 10},
        "total_tokens": 150,
    }
    assert (body["error"], body["incomplete_details"], body["store"], body["metadata"]) == (None, None, False, {})


def test_reasoning_text_and_tool_calls_become_output_items_in_order():
    conversation = read(tools=[{"type": "function", "name": "weather"}, {"type": "custom", "name": "apply_patch"}])
    reply = Reply(
        id="x",
        model="up",
        parts=[
            Thinking("Need weather", signature="sig-abc"),
            Text("Checking."),
            ToolCall("toolu_1", "weather", '{"city":"Paris"}'),
            ToolCall("toolu_2", "apply_patch", '{"input":"*** Begin Patch\\n"}'),
        ],
        stop_reason="tool_calls",
    )
    body = responses.write_reply(reply, model="m", request_id=REQUEST_ID, conversation=conversation)
    response = Response.model_validate(body)
    reasoning, message, call, custom = response.output
    assert (reasoning.type, reasoning.summary[0].text) == ("reasoning", "Need weather")
    assert (message.type, message.content[0].text) == ("message", "Checking.")
    assert (call.type, call.id, call.call_id, call.name, call.arguments, call.status) == (
        "function_call", "fc_0123456789abcdef01234567_2", "toolu_1", "weather", '{"city":"Paris"}', "completed"
    )  # fmt: skip
    assert (custom.type, custom.call_id, custom.name, custom.input) == (
        "custom_tool_call",
        "toolu_2",
        "apply_patch",
        "*** Begin Patch\n",
    )
    assert body["usage"] is None
    # The thinking signature comes back on the next turn as the reasoning item's encrypted_content.
    replayed = read(input=[{"role": "user", "content": "q"}, body["output"][0]]).messages[1].parts[0]
    assert replayed == Thinking("Need weather", signature="sig-abc")


def test_the_response_repeats_the_request_settings():
    conversation = read(
        instructions="Be brief.",
        tools=[{"type": "function", "name": "f", "parameters": {"type": "object"}}, {"type": "web_search"}],
        tool_choice="required",
        parallel_tool_calls=False,
        temperature=0.5,
        top_p=0.8,
        max_output_tokens=64,
        metadata={"ticket": "42"},
        reasoning={"effort": "low", "summary": "concise"},
        text={"format": {"type": "json_object"}},
    )
    body = responses.write_reply(
        Reply(id="x", model="m", parts=[Text("{}")]), model="m", request_id=REQUEST_ID, conversation=conversation
    )
    response = Response.model_validate(body)
    assert (response.instructions, response.tool_choice, response.parallel_tool_calls) == (
        "Be brief.",
        "required",
        False,
    )
    assert (response.temperature, response.top_p, response.max_output_tokens) == (0.5, 0.8, 64)
    assert [tool.name for tool in response.tools] == ["f"]
    assert response.metadata == {"ticket": "42"}
    assert (response.reasoning.effort, response.reasoning.summary) == ("low", "concise")
    assert response.text.format.type == "json_object"
    assert body["store"] is False  # Beluga keeps no responses, whatever the request's `store`


@pytest.mark.parametrize(("stop", "reason"), [("length", "max_output_tokens"), ("content_filter", "content_filter")])
def test_a_cut_reply_is_an_incomplete_response(stop, reason):
    reply = Reply(id="x", model="m", parts=[Text("Once upon")], stop_reason=stop)
    body = responses.write_reply(reply, model="m", request_id=REQUEST_ID)
    response = Response.model_validate(body)
    assert (response.status, response.incomplete_details.reason) == ("incomplete", reason)
    assert response.output[0].status == "incomplete"


def test_error_body_is_openais_shape():
    status, body = responses.error_body(RateLimited("Slow down.", param=None))
    assert status == 429
    assert body == {
        "error": {"message": "Slow down.", "type": "rate_limit_error", "code": "rate_limit_exceeded", "param": None}
    }


# --- the event stream --------------------------------------------------------------------


def frames(data: bytes) -> list[dict]:
    """Parse `event:`/`data:` frames, checking that both name the same type."""
    out = []
    for frame in data.decode().split("\n\n"):
        if not frame:
            continue
        event_line, data_line = frame.split("\n")
        payload = orjson.loads(data_line.removeprefix("data: "))
        assert event_line == f"event: {payload['type']}"
        out.append(payload)
    return out


def stream(events, *, conversation=None, error=None) -> bytes:
    writer = responses.StreamWriter(model="public-model", request_id=REQUEST_ID, conversation=conversation or read())
    assert writer.content_type == "text/event-stream"
    return b"".join(writer.write(event) for event in events) + writer.close(error=error)


def checked(data: bytes) -> list[dict]:
    """Every event valid for the SDK, numbered 0, 1, 2..."""
    payloads = frames(data)
    for payload in payloads:
        EVENT.validate_python(payload)
    assert [p["sequence_number"] for p in payloads] == list(range(len(payloads)))
    return payloads


TEXT_EVENTS = [Start(id="up-1", model="up"), TextDelta("Hel"), TextDelta("lo"), Finish("stop"), UsageReport(USAGE)]
CALL_EVENTS = [
    Start(),
    ToolCallStart(index=0, id="call_1", name="weather"),
    ToolCallDelta(index=0, arguments='{"city":'),
    ToolCallDelta(index=0, arguments='"Paris"}'),
    Finish("tool_calls"),
    UsageReport(Usage(input_tokens=50, output_tokens=12)),
]
REASONING_EVENTS = [
    ThinkingDelta("Think"),
    ThinkingDelta("ing"),
    ThinkingDelta(signature="sig-1"),
    TextDelta("Answer"),
    Finish("stop"),
]


def test_text_stream_event_sequence():
    payloads = checked(stream(TEXT_EVENTS))
    assert [p["type"] for p in payloads] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    created = payloads[0]["response"]
    assert (created["status"], created["output"], created["id"]) == ("in_progress", [], "resp_0123456789abcdef01234567")
    assert payloads[2]["item"] == {
        "id": "msg_0123456789abcdef01234567_0",
        "type": "message",
        "status": "in_progress",
        "role": "assistant",
        "content": [],
    }
    assert {k: payloads[4][k] for k in ("item_id", "output_index", "content_index", "delta", "logprobs")} == {
        "item_id": "msg_0123456789abcdef01234567_0", "output_index": 0, "content_index": 0, "delta": "Hel", "logprobs": []
    }  # fmt: skip
    assert payloads[6]["text"] == "Hello"
    final = Response.model_validate(payloads[-1]["response"])
    assert (final.status, final.output_text, final.usage.total_tokens, final.model) == (
        "completed",
        "Hello",
        150,
        "public-model",
    )


def test_function_call_stream_event_sequence():
    payloads = checked(stream(CALL_EVENTS, conversation=read(tools=[{"type": "function", "name": "weather"}])))
    assert [p["type"] for p in payloads] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert payloads[2]["item"] == {
        "id": "fc_0123456789abcdef01234567_0", "type": "function_call", "status": "in_progress",
        "call_id": "call_1", "name": "weather", "arguments": "",
    }  # fmt: skip
    assert (payloads[5]["arguments"], payloads[5]["name"]) == ('{"city":"Paris"}', "weather")
    (call,) = Response.model_validate(payloads[-1]["response"]).output
    assert (call.call_id, call.arguments, call.status) == ("call_1", '{"city":"Paris"}', "completed")


def test_reasoning_then_text_stream_event_sequence():
    payloads = checked(stream(REASONING_EVENTS))
    assert [p["type"] for p in payloads] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert payloads[4]["summary_index"] == 0
    reasoning_done = payloads[8]["item"]
    assert reasoning_done["summary"] == [{"type": "summary_text", "text": "Thinking"}]
    assert payloads[9]["output_index"] == 1
    final = Response.model_validate(payloads[-1]["response"])
    assert [item.type for item in final.output] == ["reasoning", "message"]


def test_a_custom_tool_call_streams_its_input_whole():
    conversation = read(tools=[{"type": "custom", "name": "apply_patch"}])
    events = [
        ToolCallStart(index=0, id="call_p", name="apply_patch"),
        ToolCallDelta(index=0, arguments='{"input":"*** Begin'),
        ToolCallDelta(index=0, arguments=' Patch\\n"}'),
        Finish("tool_calls"),
    ]
    payloads = checked(stream(events, conversation=conversation))
    assert [p["type"] for p in payloads][2:] == [
        "response.output_item.added",
        "response.custom_tool_call_input.delta",
        "response.custom_tool_call_input.done",
        "response.output_item.done",
        "response.completed",
    ]
    item = payloads[-2]["item"]
    assert (item["type"], item["call_id"], item["input"]) == ("custom_tool_call", "call_p", "*** Begin Patch\n")


def test_a_length_stop_ends_with_response_incomplete():
    payloads = checked(stream([TextDelta("Once upon"), Finish("length")]))
    assert payloads[-1]["type"] == "response.incomplete"
    assert payloads[-2]["item"]["status"] == "incomplete"
    final = Response.model_validate(payloads[-1]["response"])
    assert (final.status, final.incomplete_details.reason) == ("incomplete", "max_output_tokens")


def test_an_upstream_error_ends_with_response_failed_and_leaves_open_items_unfinished():
    payloads = checked(stream([TextDelta("partial")], error="The model provider ended the stream early."))
    assert [p["type"] for p in payloads] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.failed",
    ]
    failed = Response.model_validate(payloads[-1]["response"])
    assert (failed.status, failed.error.code, failed.error.message) == (
        "failed", "server_error", "The model provider ended the stream early."
    )  # fmt: skip


def test_a_stream_that_fails_before_any_content_still_opens_the_response():
    payloads = checked(stream([], error="boom"))
    assert [p["type"] for p in payloads] == ["response.created", "response.in_progress", "response.failed"]


def test_the_final_streamed_response_matches_the_whole_reply():
    second_block = [ThinkingDelta("More"), ThinkingDelta(signature="sig-2"), ThinkingDelta(redacted_data="opaque")]
    events = [
        *REASONING_EVENTS[:3],
        *second_block,
        TextDelta("Answer"),
        *CALL_EVENTS[1:4],
        TextDelta("after"),
        Finish("stop"),
        UsageReport(USAGE),
    ]
    conversation = read(tools=[{"type": "function", "name": "weather"}])
    final = checked(stream(events, conversation=conversation))[-1]["response"]
    builder = ReplyBuilder()
    for event in events:
        builder.add(event)
    whole = responses.write_reply(
        builder.result(), model="public-model", request_id=REQUEST_ID, conversation=conversation
    )
    assert final["output"] == whole["output"]
    # A signed thinking block is finished: more thinking, or a redacted block, is a new reasoning item.
    kinds = ["rs", "rs", "rs", "msg", "fc", "msg"]
    assert [item["id"] for item in final["output"]] == [
        f"{p}_0123456789abcdef01234567_{i}" for i, p in enumerate(kinds)
    ]
    assert [item.get("summary") for item in final["output"][:3]] == [
        [{"type": "summary_text", "text": "Thinking"}],
        [{"type": "summary_text", "text": "More"}],
        [],
    ]
    assert final["usage"] == whole["usage"]


# --- the SDK reading Beluga's bytes over HTTP ---------------------------------------------


@pytest.fixture
def served():
    """A 127.0.0.1 server answering POST /v1/responses with `server.answer` = (status, content type, bytes)."""
    with CannedServer() as server:
        yield server, openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="x", max_retries=0)


def test_the_sdk_reads_a_text_stream(served):
    server, client = served
    server.answer = (200, "text/event-stream", stream(TEXT_EVENTS))
    events = list(client.responses.create(model="public-model", input="hi", stream=True))
    assert events[-1].type == "response.completed"
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "Hello"
    with client.responses.stream(model="public-model", input="hi") as events:
        final = events.get_final_response()
    assert final.output_text == "Hello"
    assert (final.usage.input_tokens, final.usage.output_tokens, final.usage.input_tokens_details.cached_tokens) == (
        120,
        30,
        100,
    )


def test_the_sdk_reads_a_function_call_stream(served):
    server, client = served
    tools = [
        {
            "type": "function",
            "name": "weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        }
    ]
    server.answer = (200, "text/event-stream", stream(CALL_EVENTS, conversation=read(tools=tools)))
    with client.responses.stream(model="public-model", input="weather?", tools=tools) as events:
        deltas = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
        final = events.get_final_response()
    assert deltas == ['{"city":', '"Paris"}']
    (call,) = final.output
    assert (call.type, call.name, call.call_id, call.arguments) == (
        "function_call",
        "weather",
        "call_1",
        '{"city":"Paris"}',
    )
    assert final.usage.total_tokens == 62


def test_the_sdk_reads_a_reasoning_stream(served):
    server, client = served
    server.answer = (200, "text/event-stream", stream(REASONING_EVENTS))
    with client.responses.stream(model="public-model", input="q") as events:
        summary = "".join(e.delta for e in events if e.type == "response.reasoning_summary_text.delta")
        final = events.get_final_response()
    assert (summary, final.output_text, final.output[0].type) == ("Thinking", "Answer", "reasoning")


def test_the_sdk_reads_a_whole_response(served):
    server, client = served
    reply = Reply(id="x", model="m", parts=[Text("Hi there")], stop_reason="stop", usage=USAGE)
    body = orjson.dumps(responses.write_reply(reply, model="public-model", request_id=REQUEST_ID))
    server.answer = (200, "application/json", body)
    response = client.responses.create(model="public-model", input="hi")
    assert (response.output_text, response.status, response.usage.total_tokens) == ("Hi there", "completed", 150)
