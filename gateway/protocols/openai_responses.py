"""OpenAI's Responses API, client side only: what Codex CLI and the OpenAI SDKs send
to POST /v1/responses, and the Response (whole, or as its event stream) they read back.

No provider is called in this protocol: the pipeline sends the Conversation to the
model's upstream in that upstream's protocol.

Beluga is stateless. It stores no response (`store` is accepted, every Response
says `store: false`), so what needs a stored one is refused: `previous_response_id`,
`conversation`, `prompt`, `background` and `item_reference` items. Clients send the
whole input each turn, as Codex does.

Tools. Function tools are read as they are. Custom (freeform) tools, which Codex
sends for apply_patch on GPT-5 models, become function tools taking one string
`input`; the model's calls to them go back as `custom_tool_call` items. Tools that
OpenAI's servers run (web_search, which Codex sends by default, file_search,
code_interpreter, image_generation, remote mcp, computer use, local_shell,
namespaces...) are dropped and named in `ResponsesConversation.dropped`, so the
request still works; forcing one with `tool_choice` is refused, since dropping it
would change the meaning.
"""

from __future__ import annotations

import base64
import binascii
import time
from dataclasses import dataclass, field

import orjson

from gateway.errors import ApiError, InvalidRequest
from gateway.protocols.conversation import (
    CONTENT_FILTER,
    LENGTH,
    Conversation,
    Finish,
    Image,
    Message,
    Reply,
    ResponseFormat,
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
    arguments_object,
    arguments_text,
    signs_next_part,
    with_cost_of,
)

ROLES = frozenset({"user", "assistant", "system", "developer"})
EFFORTS = frozenset({"none", "minimal", "low", "medium", "high", "xhigh"})
SUMMARIES = frozenset({"auto", "concise", "detailed", "none"})
SERVICE_TIERS = frozenset({"auto", "default", "flex", "scale", "priority"})
# Items a client may replay from a conversation that ran hosted tools on OpenAI:
# they carry nothing another model can use, so they are left out (and reported).
IGNORED_ITEMS = frozenset(
    {
        "web_search_call", "file_search_call", "code_interpreter_call", "image_generation_call", "computer_call",
        "computer_call_output", "mcp_list_tools", "mcp_approval_request", "mcp_approval_response", "mcp_call",
        "tool_search_call", "tool_search_output", "compaction", "compaction_summary", "ghost_snapshot",
    }
)  # fmt: skip
# Read, or accepted without effect on the answer; anything else is ignored and reported.
KNOWN_PARAMS = frozenset(
    {
        "model", "input", "instructions", "tools", "tool_choice", "parallel_tool_calls", "max_output_tokens",
        "max_tool_calls", "temperature", "top_p", "top_logprobs", "text", "reasoning", "stream", "stream_options",
        "store", "user", "safety_identifier", "metadata", "include", "truncation", "service_tier",
        "prompt_cache_key", "prompt_cache_retention", "client_metadata", "background", "previous_response_id",
        "conversation", "prompt",
    }
)  # fmt: skip
STATEFUL = {
    "previous_response_id": "Beluga is stateless and stores no responses: send the whole conversation in 'input' "
    "instead of 'previous_response_id'.",
    "conversation": "Beluga is stateless and stores no conversations: send the whole conversation in 'input'.",
    "prompt": "Stored prompt templates are not supported: send 'instructions' and 'input' instead.",
}
# The one argument a custom (freeform) tool's stand-in function takes.
CUSTOM_PARAMETERS = {
    "type": "object",
    "properties": {"input": {"type": "string", "description": "The tool's whole input, as free text."}},
    "required": ["input"],
    "additionalProperties": False,
}
# Anthropic's thinking signature rides in `encrypted_content` (Codex sends it
# back); anything else there is OpenAI's and means nothing to other providers.
SEALED = "beluga1."


@dataclass(slots=True)
class ResponsesConversation(Conversation):
    """A Conversation read from a Responses request, with what reading it left behind.

    `echo`: the request's settings as the Response object repeats them.
    (Parameters, tools and input items Beluga ignored go in the inherited
    `dropped`, which the pipeline reports with the upstream writer's own.)
    """

    echo: dict = field(default_factory=dict)


# --- reading the request -----------------------------------------------------------


def _missing(param: str) -> InvalidRequest:
    return InvalidRequest(f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter")


def _wrong_type(param: str, expected: str) -> InvalidRequest:
    return InvalidRequest(f"Invalid type for '{param}': expected {expected}.", param=param, code="invalid_type")


def _wrong_value(param: str, detail: str) -> InvalidRequest:
    return InvalidRequest(f"Invalid value for '{param}': {detail}", param=param, code="invalid_value")


def _unsupported(param: str, detail: str) -> InvalidRequest:
    return InvalidRequest(f"Unsupported value for '{param}': {detail}", param=param, code="unsupported_value")


def _string(obj: dict, name: str, where: str, *, required: bool = True) -> str | None:
    value = obj.get(name)
    param = f"{where}.{name}" if where else name
    if value is None:
        if required:
            raise _missing(param)
        return None
    if not isinstance(value, str):
        raise _wrong_type(param, "a string")
    return value


def _number(body: dict, name: str, low: float, high: float) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise _wrong_type(name, "a number")
    if not low <= value <= high:
        raise _wrong_value(name, f"{value} is not between {low:g} and {high:g}.")
    return value


def _integer(body: dict, name: str, low: int, high: int | None = None) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise _wrong_type(name, "an integer")
    if value < low or (high is not None and value > high):
        raise _wrong_value(name, f"{value} is out of range.")
    return value


def _boolean(body: dict, name: str) -> bool | None:
    value = body.get(name)
    if value is not None and not isinstance(value, bool):
        raise _wrong_type(name, "a boolean")
    return value


def _one_of(obj: dict, name: str, allowed: frozenset, where: str = "") -> str | None:
    value = obj.get(name)
    if value is not None and value not in allowed:
        param = f"{where}.{name}" if where else name
        raise _wrong_value(param, f"{value!r} (expected one of {', '.join(sorted(allowed))}).")
    return value


def _append(conversation: Conversation, role: str, parts: list) -> None:
    """Consecutive items of one side form one message (a reasoning item, a text and calls are one turn)."""
    if not parts:
        return
    messages = conversation.messages
    if messages and messages[-1].role == role:
        messages[-1].parts.extend(parts)
    else:
        messages.append(Message(role=role, parts=list(parts)))


def _image(part: dict, where: str) -> Image:
    if part.get("file_id") is not None:
        raise _unsupported(
            f"{where}.file_id",
            "Beluga has no Files API; send 'image_url' as a URL or a base64 data: URL.",
        )
    url = _string(part, "image_url", where)
    detail = _one_of(part, "detail", frozenset({"auto", "low", "high"}), where)
    if url.startswith("data:"):
        header, _, data = url.partition(",")
        if ";base64" not in header or not data:
            raise _wrong_value(f"{where}.image_url", "a data: URL must be base64-encoded.")
        return Image(data=data, media_type=header[5:].split(";", 1)[0] or "image/png", detail=detail)
    if not url.startswith(("http://", "https://")):
        raise _wrong_value(f"{where}.image_url", "expected an http(s) URL or a data: URL.")
    return Image(url=url, detail=detail)


def _parts(content, where: str, *, images: bool) -> list[Text | Image]:
    """Message content or a tool's output: a string, or a list of text and image parts."""
    if isinstance(content, str):
        return [Text(content)]
    if not isinstance(content, list):
        raise _wrong_type(where, "a string or an array of content parts")
    parts: list[Text | Image] = []
    for j, part in enumerate(content):
        here = f"{where}[{j}]"
        if not isinstance(part, dict):
            raise _wrong_type(here, "an object")
        kind = part.get("type")
        if kind in ("input_text", "output_text", "text"):
            parts.append(Text(_string(part, "text", here)))
        elif kind == "refusal":
            parts.append(Text(_string(part, "refusal", here)))
        elif kind == "input_image" and images:
            parts.append(_image(part, here))
        elif kind in ("input_file", "input_audio"):
            raise _unsupported(f"{here}.type", f"content parts of type '{kind}' are not supported.")
        else:
            raise _wrong_value(f"{here}.type", f"{kind!r} is not allowed here.")
    return parts


def _thinking(item: dict, where: str) -> Thinking | None:
    """A replayed reasoning item: its summary (else its reasoning text) as visible thinking."""
    texts = []
    for key, kinds in (("summary", ("summary_text",)), ("content", ("reasoning_text", "text"))):
        value = item.get(key)
        if value is None:
            continue
        if not isinstance(value, list):
            raise _wrong_type(f"{where}.{key}", "an array")
        texts = [
            p["text"]
            for p in value
            if isinstance(p, dict) and p.get("type") in kinds and isinstance(p.get("text"), str)
        ]
        if texts:
            break
    signature, redacted, origin = _unseal(item.get("encrypted_content"))
    text = "\n\n".join(texts)
    if not text and signature is None and redacted is None:
        return None
    return Thinking(text=text, signature=signature, redacted_data=redacted, origin=origin)


def _read_input(value, conversation: ResponsesConversation) -> None:
    if value is None:
        raise _missing("input")
    if isinstance(value, str):
        _append(conversation, "user", [Text(value)])
        return
    if not isinstance(value, list):
        raise _wrong_type("input", "a string or an array of input items")
    names: dict[str, str] = {}  # call id -> tool name, for results (Gemini wants the name)
    for i, item in enumerate(value):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise _wrong_type(where, "an object")
        kind = item.get("type", "message" if "role" in item else None)
        if kind == "message":
            role = item.get("role")
            if role not in ROLES:
                raise _wrong_value(f"{where}.role", f"{role!r} (expected one of {', '.join(sorted(ROLES))}).")
            if "content" not in item:
                raise _missing(f"{where}.content")
            parts = _parts(item["content"], f"{where}.content", images=role == "user")
            if role in ("system", "developer"):
                conversation.system.extend(parts)  # text only: images are refused above
            else:
                _append(conversation, role, parts)
        elif kind in ("function_call", "custom_tool_call", "local_shell_call"):
            call_id = _string(item, "call_id", where, required=kind != "local_shell_call") or f"call_{i}"
            if kind == "function_call":
                call = ToolCall(call_id, _string(item, "name", where), _string(item, "arguments", where))
            elif kind == "custom_tool_call":
                call = ToolCall(
                    call_id, _string(item, "name", where), arguments_text({"input": _string(item, "input", where)})
                )
            else:
                call = ToolCall(call_id, "local_shell", arguments_text(item.get("action")))
            names[call.id] = call.name
            _append(conversation, "assistant", [call])
        elif kind in ("function_call_output", "custom_tool_call_output", "local_shell_call_output"):
            call_id = _string(item, "id" if kind == "local_shell_call_output" else "call_id", where)
            if "output" not in item:
                raise _missing(f"{where}.output")
            content = _parts(item["output"], f"{where}.output", images=True)
            _append(conversation, "user", [ToolResult(call_id=call_id, content=content, name=names.get(call_id))])
        elif kind == "reasoning":
            thinking = _thinking(item, where)
            if thinking is not None:
                _append(conversation, "assistant", [thinking])
        elif kind == "item_reference":
            raise _unsupported(
                f"{where}.type",
                "Beluga is stateless and stores no items; send the item itself, not an 'item_reference'.",
            )
        elif kind in IGNORED_ITEMS:
            conversation.dropped.append(f"input.{kind}")
        else:
            raise _wrong_value(f"{where}.type", f"input items of type {kind!r} are not supported.")
    if not conversation.messages:
        raise _wrong_value("input", "it must contain at least one user or assistant item.")


def _custom_description(description: str | None, fmt: dict | None) -> str:
    text = (description or "").strip()
    note = "Pass the tool's whole input as the string argument `input` (free text, not JSON)."
    if fmt and fmt.get("type") == "grammar":
        note += f" The input must follow this {fmt['syntax']} grammar:\n{fmt['definition']}"
    return f"{text}\n\n{note}" if text else note


def _read_tools(value, conversation: ResponsesConversation) -> list[dict]:
    """The function and custom tools into the Conversation; their Response echo."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise _wrong_type("tools", "an array")
    echo = []
    for i, tool in enumerate(value):
        where = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise _wrong_type(where, "an object")
        kind = _string(tool, "type", where)
        if kind not in ("function", "custom"):
            conversation.dropped.append(f"tools.{kind}")
            continue
        name = _string(tool, "name", where)
        if not name:
            raise _wrong_value(f"{where}.name", "must not be empty.")
        description = _string(tool, "description", where, required=False)
        if kind == "function":
            parameters = tool.get("parameters")
            if parameters is not None and not isinstance(parameters, dict):
                raise _wrong_type(f"{where}.parameters", "a JSON Schema object")
            strict = tool.get("strict")
            if strict is not None and not isinstance(strict, bool):
                raise _wrong_type(f"{where}.strict", "a boolean")
            conversation.tools.append(Tool(name, description or "", parameters or {"type": "object", "properties": {}}))
            echo.append(
                {
                    "type": "function",
                    "name": name,
                    "description": description,
                    "parameters": parameters,
                    "strict": strict,
                }
            )
            continue
        fmt = tool.get("format")
        if fmt is not None:
            if not isinstance(fmt, dict) or fmt.get("type") not in ("text", "grammar"):
                raise _wrong_value(f"{where}.format.type", "expected 'text' or 'grammar'.")
            if fmt["type"] == "grammar":
                _one_of(fmt, "syntax", frozenset({"lark", "regex"}), f"{where}.format")
                if not isinstance(fmt.get("syntax"), str):
                    raise _missing(f"{where}.format.syntax")
                _string(fmt, "definition", f"{where}.format")
        conversation.tools.append(Tool(name, _custom_description(description, fmt), CUSTOM_PARAMETERS))
        custom = {"type": "custom", "name": name, "description": description}
        if fmt is not None:
            custom["format"] = fmt
        echo.append(custom)
    return echo


def _read_tool_choice(body: dict, conversation: ResponsesConversation, tools_echo: list[dict]):
    """tool_choice and parallel_tool_calls into the Conversation; tool_choice's Response echo."""
    choice = body.get("tool_choice")
    parallel = _boolean(body, "parallel_tool_calls")
    mode, name = "auto", None
    names = {tool["name"] for tool in tools_echo}
    if isinstance(choice, str):
        mode = _one_of(body, "tool_choice", frozenset({"auto", "none", "required"}))
    elif isinstance(choice, dict):
        kind = choice.get("type")
        if kind in ("function", "custom"):
            mode, name = "tool", _string(choice, "name", "tool_choice")
            if name not in names:
                raise _wrong_value("tool_choice.name", f"no tool named {name!r} is in 'tools'.")
        elif kind == "allowed_tools":
            mode = _one_of(choice, "mode", frozenset({"auto", "required"}), "tool_choice") or "auto"
            allowed = choice.get("tools")
            if not isinstance(allowed, list):
                raise _wrong_type("tool_choice.tools", "an array")
            keep = {t.get("name") for t in allowed if isinstance(t, dict) and t.get("type") in ("function", "custom")}
            conversation.tools = [tool for tool in conversation.tools if tool.name in keep]
        elif isinstance(kind, str):
            raise _unsupported(
                "tool_choice",
                f"'{kind}' is a hosted tool; Beluga runs only function and custom tools.",
            )
        else:
            raise _missing("tool_choice.type")
    elif choice is not None:
        raise _wrong_type("tool_choice", "a string or an object")
    if choice is not None or parallel is not None:
        conversation.tool_choice = ToolChoice(mode=mode, name=name, parallel=parallel)
    return choice if choice is not None else "auto"


def _read_text(body: dict, conversation: ResponsesConversation) -> dict:
    text = body.get("text")
    if text is None:
        return {"format": {"type": "text"}}
    if not isinstance(text, dict):
        raise _wrong_type("text", "an object")
    fmt = text.get("format")
    echo: dict = {"format": {"type": "text"}}
    if fmt is not None:
        if not isinstance(fmt, dict):
            raise _wrong_type("text.format", "an object")
        kind = _one_of(fmt, "type", frozenset({"text", "json_object", "json_schema"}), "text.format")
        if kind == "json_object":
            conversation.response_format = ResponseFormat(kind="json_object")
        elif kind == "json_schema":
            schema = fmt.get("schema")
            if not isinstance(schema, dict):
                raise (
                    _missing("text.format.schema") if schema is None else _wrong_type("text.format.schema", "an object")
                )
            name = _string(fmt, "name", "text.format", required=False) or "response"
            strict = fmt.get("strict")
            if strict is not None and not isinstance(strict, bool):
                raise _wrong_type("text.format.strict", "a boolean")
            conversation.response_format = ResponseFormat(kind="json_schema", schema=schema, name=name, strict=strict)
            description = _string(fmt, "description", "text.format", required=False)
            fmt = {"type": kind, "name": name, "schema": schema, "strict": strict, "description": description}
        elif kind is None:
            raise _missing("text.format.type")
        echo["format"] = fmt
    verbosity = _one_of(text, "verbosity", frozenset({"low", "medium", "high"}), "text")
    if verbosity is not None:
        conversation.openai_extra["verbosity"] = verbosity  # the chat API's parameter of the same meaning
        echo["verbosity"] = verbosity
    return echo


def _read_reasoning(body: dict, conversation: ResponsesConversation) -> dict | None:
    reasoning = body.get("reasoning")
    if reasoning is None:
        return None
    if not isinstance(reasoning, dict):
        raise _wrong_type("reasoning", "an object")
    effort = _one_of(reasoning, "effort", EFFORTS, "reasoning")
    summary = _one_of(reasoning, "summary", SUMMARIES, "reasoning") or _one_of(
        reasoning, "generate_summary", SUMMARIES, "reasoning"
    )
    # "none" asks for no reasoning; "xhigh" is the most the Conversation can say ("high").
    if effort == "none":
        conversation.thinking = ThinkingConfig.off()
    elif effort is not None:
        conversation.thinking = ThinkingConfig(
            effort="high" if effort == "xhigh" else effort, include_thoughts=summary not in (None, "none")
        )
    return {"effort": effort, "summary": summary}


def read_request(body: object, *, model: str | None = None, stream: bool | None = None) -> ResponsesConversation:
    """A Responses API request body as a Conversation (see the module doc for what is refused or dropped)."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_type")
    model = model if model is not None else body.get("model")
    if model is None:
        raise _missing("model")
    if not isinstance(model, str) or not model:
        raise _wrong_type("model", "a non-empty string")
    for name, message in STATEFUL.items():
        if body.get(name) is not None:
            raise InvalidRequest(message, param=name, code="unsupported_parameter")
    if _boolean(body, "background"):
        raise InvalidRequest(
            "Unsupported parameter 'background': Beluga stores no responses to poll. Use 'stream' instead.",
            param="background",
            code="unsupported_parameter",
        )
    if stream is None:
        stream = bool(_boolean(body, "stream"))
    conversation = ResponsesConversation(model=model, messages=[], stream=stream)
    instructions = _string(body, "instructions", "", required=False)
    if instructions:
        conversation.system.append(Text(instructions))
    _read_input(body.get("input"), conversation)

    tools = _read_tools(body.get("tools"), conversation)
    tool_choice = _read_tool_choice(body, conversation, tools)
    conversation.max_tokens = _integer(body, "max_output_tokens", 1)
    conversation.temperature = _number(body, "temperature", 0, 2)
    conversation.top_p = _number(body, "top_p", 0, 1)
    text = _read_text(body, conversation)
    reasoning = _read_reasoning(body, conversation)
    user = _string(body, "user", "", required=False)
    safety_identifier = _string(body, "safety_identifier", "", required=False)
    conversation.user = safety_identifier or user

    # The chat API has these with the same meaning, so an OpenAI upstream honours them.
    if _one_of(body, "service_tier", SERVICE_TIERS) is not None:
        conversation.openai_extra["service_tier"] = body["service_tier"]
    for name in ("prompt_cache_key", "prompt_cache_retention"):
        if _string(body, name, "", required=False) is not None:
            conversation.openai_extra[name] = body[name]
    # No reply in the Conversation carries logprobs, and no upstream caps tool calls.
    if _integer(body, "top_logprobs", 0, 20) is not None:
        conversation.dropped.append("top_logprobs")
    if _integer(body, "max_tool_calls", 1) is not None:
        conversation.dropped.append("max_tool_calls")
    metadata = body.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise _wrong_type("metadata", "an object")
    truncation = _one_of(body, "truncation", frozenset({"auto", "disabled"}))
    conversation.dropped.extend(sorted(name for name in body if name not in KNOWN_PARAMS))

    conversation.echo = {
        "instructions": instructions,
        "max_output_tokens": conversation.max_tokens,
        "max_tool_calls": body.get("max_tool_calls"),
        "metadata": metadata or {},
        "parallel_tool_calls": body.get("parallel_tool_calls") is not False,
        "prompt_cache_key": body.get("prompt_cache_key"),
        "reasoning": reasoning,
        "safety_identifier": safety_identifier,
        "service_tier": body.get("service_tier"),
        "temperature": conversation.temperature,
        "text": text,
        "tool_choice": tool_choice,
        "tools": tools,
        "top_logprobs": body.get("top_logprobs"),
        "top_p": conversation.top_p,
        "truncation": truncation or "disabled",
        "user": user,
    }
    return conversation


# --- writing the Response -------------------------------------------------------------


def _seal(thinking: Thinking) -> str | None:
    """Another provider's signed thinking as `encrypted_content` (with whose it is: Thinking.origin)."""
    if thinking.signature is None and thinking.redacted_data is None:
        return None
    payload = orjson.dumps(
        {"signature": thinking.signature, "redacted_data": thinking.redacted_data, "origin": thinking.origin}
    )
    return SEALED + base64.urlsafe_b64encode(payload).decode()


def _unseal(value) -> tuple[str | None, str | None, str | None]:
    """(signature, redacted data, origin) from what _seal wrote; Nones for anything else."""
    if not isinstance(value, str) or not value.startswith(SEALED):
        return None, None, None
    try:
        payload = orjson.loads(base64.urlsafe_b64decode(value[len(SEALED) :]))
    except (binascii.Error, ValueError):
        return None, None, None
    if not isinstance(payload, dict):
        return None, None, None
    values = [payload.get(name) for name in ("signature", "redacted_data", "origin")]
    signature, redacted, origin = (value if isinstance(value, str) else None for value in values)
    return signature, redacted, origin


def _base(request_id: str) -> str:
    return request_id.removeprefix("req_")


def response_id(request_id: str) -> str:
    return f"resp_{_base(request_id)}"


def _item_id(prefix: str, request_id: str, index: int) -> str:
    return f"{prefix}_{_base(request_id)}_{index}"


def _output_text(text: str) -> dict:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _message_item(item_id: str, text: str, status: str) -> dict:
    content = [_output_text(text)] if status != "in_progress" else []
    return {"id": item_id, "type": "message", "status": status, "role": "assistant", "content": content}


def _reasoning_item(item_id: str, thinking: Thinking) -> dict:
    summary = [{"type": "summary_text", "text": thinking.text}] if thinking.text else []
    return {
        "id": item_id,
        "type": "reasoning",
        "summary": summary,
        "encrypted_content": _seal(thinking),
    }


def _custom_input(arguments: str) -> str:
    value = arguments_object(arguments).get("input")
    return value if isinstance(value, str) else arguments


def _call_item(item_id: str, call: ToolCall, status: str, *, custom: bool) -> dict:
    if custom:
        return {
            "id": item_id,
            "type": "custom_tool_call",
            "status": status,
            "call_id": call.id,
            "name": call.name,
            "input": _custom_input(call.arguments) if status != "in_progress" else "",
        }
    arguments = (call.arguments or "{}") if status != "in_progress" else ""
    return {
        "id": item_id,
        "type": "function_call",
        "status": status,
        "call_id": call.id,
        "name": call.name,
        "arguments": arguments,
    }


def _usage(usage: Usage | None) -> dict | None:
    if usage is None:
        return None
    return {
        "input_tokens": usage.input_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_input_tokens},
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.input_tokens + usage.output_tokens,
    }


def _outcome(stop_reason: str | None) -> tuple[str, dict | None]:
    """The Response status and incomplete_details for a stop reason."""
    if stop_reason == LENGTH:
        return "incomplete", {"reason": "max_output_tokens"}
    if stop_reason == CONTENT_FILTER:
        return "incomplete", {"reason": "content_filter"}
    return "completed", None


def _echo(conversation: Conversation | None) -> dict:
    echo = {
        "instructions": None,
        "max_output_tokens": None,
        "max_tool_calls": None,
        "metadata": {},
        "parallel_tool_calls": True,
        "prompt_cache_key": None,
        "reasoning": None,
        "safety_identifier": None,
        "service_tier": None,
        "temperature": None,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_logprobs": None,
        "top_p": None,
        "truncation": "disabled",
        "user": None,
    }
    echo.update(getattr(conversation, "echo", None) or {})
    return echo


def _custom_tools(echo: dict) -> frozenset[str]:
    return frozenset(tool["name"] for tool in echo["tools"] if tool.get("type") == "custom")


def _response(
    *,
    request_id: str,
    model: str,
    created_at: int,
    status: str,
    output: list[dict],
    usage: Usage | None,
    echo: dict,
    incomplete_details: dict | None = None,
    error: dict | None = None,
) -> dict:
    return {
        "id": response_id(request_id),
        "object": "response",
        "created_at": created_at,
        "status": status,
        "background": False,
        "error": error,
        "incomplete_details": incomplete_details,
        "model": model,
        "output": output,
        "previous_response_id": None,
        "store": False,  # Beluga keeps no responses
        "usage": _usage(usage),
        **echo,
    }


def write_reply(reply: Reply, *, model: str, request_id: str, conversation: Conversation | None = None) -> dict:
    """The whole Response object. Give the request's `conversation` so that it repeats the request's settings."""
    echo = _echo(conversation)
    custom = _custom_tools(echo)
    status, incomplete = _outcome(reply.stop_reason)
    output: list[dict] = []
    for part in reply.parts:
        index = len(output)
        if isinstance(part, Text):
            if not part.text:
                continue
            if output and output[-1]["type"] == "message":
                output[-1]["content"][0]["text"] += part.text
            else:
                output.append(_message_item(_item_id("msg", request_id, index), part.text, "completed"))
        elif isinstance(part, Thinking):
            if part.text or part.signature or part.redacted_data:  # as the stream skips empty thinking
                output.append(_reasoning_item(_item_id("rs", request_id, index), part))
        elif isinstance(part, ToolCall):
            is_custom = part.name in custom
            item_id = _item_id("ctc" if is_custom else "fc", request_id, index)
            output.append(_call_item(item_id, part, "completed", custom=is_custom))
    if incomplete and output:
        output[-1]["status"] = "incomplete"
    return _response(
        request_id=request_id,
        model=model,
        created_at=reply.created or int(time.time()),
        status=status,
        output=output,
        usage=reply.usage,
        echo=echo,
        incomplete_details=incomplete,
    )


class StreamWriter:
    """The Responses API event stream: `event: <type>` and `data: <json>` frames numbered by sequence_number.

    Output items open and close as the content changes kind (thinking, text, a
    tool call), in the order and with the events OpenAI sends; the terminal
    event repeats the whole Response, built from the items as they closed.
    """

    content_type = "text/event-stream"

    def __init__(self, *, model: str, request_id: str, conversation: Conversation, cost_of=None) -> None:
        self.cost_of = cost_of  # Usage -> the cost fields added to the final response's usage
        self.model = model
        self.request_id = request_id
        self.echo = _echo(conversation)
        self.custom = _custom_tools(self.echo)
        self.created_at = int(time.time())
        self.sequence = 0
        self.started = False
        self.closed = False
        self.output: list[dict] = []  # closed items
        self.stop_reason: str | None = None
        self.usage: Usage | None = None
        # the open item: "message" | "reasoning" | "call" | None, its id and what it holds so far
        self.open: str | None = None
        self.item_id = ""
        self.text = ""
        self.summary_open = False
        self.thinking: Thinking | None = None
        self.call: ToolCall | None = None
        self.call_index = -1

    # framing

    def _event(self, kind: str, **data) -> bytes:
        payload = {"type": kind, "sequence_number": self.sequence, **data}
        self.sequence += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"

    def _snapshot(self, status: str, **extra) -> dict:
        return _response(
            request_id=self.request_id,
            model=self.model,
            created_at=self.created_at,
            status=status,
            output=list(self.output),
            usage=self.usage,
            echo=self.echo,
            **extra,
        )

    def _begin(self) -> bytes:
        if self.started:
            return b""
        self.started = True
        return self._event("response.created", response=self._snapshot("in_progress")) + self._event(
            "response.in_progress", response=self._snapshot("in_progress")
        )

    # items

    def _open_item(self, kind: str, prefix: str) -> bytes:
        out = self._close_item()
        self.open, self.item_id = kind, _item_id(prefix, self.request_id, len(self.output))
        return out

    def _where(self, **extra) -> dict:
        return {"item_id": self.item_id, "output_index": len(self.output), **extra}

    def _close_item(self, status: str = "completed") -> bytes:
        kind, index = self.open, len(self.output)
        if kind is None:
            return b""
        out = b""
        if kind == "message":
            where = self._where(content_index=0)
            out += self._event("response.output_text.done", **where, text=self.text, logprobs=[])
            out += self._event("response.content_part.done", **where, part=_output_text(self.text))
            item = _message_item(self.item_id, self.text, status)
        elif kind == "reasoning":
            if self.summary_open:
                text = self.thinking.text
                out += self._event("response.reasoning_summary_text.done", **self._where(summary_index=0), text=text)
                part = {"type": "summary_text", "text": text}
                out += self._event("response.reasoning_summary_part.done", **self._where(summary_index=0), part=part)
            item = _reasoning_item(self.item_id, self.thinking)
        else:
            call, custom = self.call, self.call.name in self.custom
            item = _call_item(self.item_id, call, status, custom=custom)
            if custom:
                if item["input"]:
                    out += self._event("response.custom_tool_call_input.delta", **self._where(delta=item["input"]))
                out += self._event("response.custom_tool_call_input.done", **self._where(input=item["input"]))
            else:
                out += self._event(
                    "response.function_call_arguments.done", **self._where(arguments=item["arguments"], name=call.name)
                )
        if status != "completed":
            item["status"] = status
        out += self._event("response.output_item.done", output_index=index, item=item)
        self.output.append(item)
        self.open, self.text, self.summary_open, self.thinking, self.call = None, "", False, None, None
        return out

    def _text(self, delta: str) -> bytes:
        out = b""
        if self.open != "message":
            out += self._open_item("message", "msg")
            item = _message_item(self.item_id, "", "in_progress")
            out += self._event("response.output_item.added", output_index=len(self.output), item=item)
            out += self._event("response.content_part.added", **self._where(content_index=0), part=_output_text(""))
        self.text += delta
        return out + self._event("response.output_text.delta", **self._where(content_index=0), delta=delta, logprobs=[])

    def _thinking(self, event: ThinkingDelta) -> bytes:
        out = b""
        # A signed block is finished: more thinking is a new block (as ReplyBuilder counts them).
        if self.open != "reasoning" or self.thinking.signature is not None or signs_next_part(event):
            out += self._open_item("reasoning", "rs")
            self.thinking = Thinking()
            item = {"id": self.item_id, "type": "reasoning", "summary": []}
            out += self._event("response.output_item.added", output_index=len(self.output), item=item)
        thinking = self.thinking
        if event.text:
            if not self.summary_open:
                self.summary_open = True
                part = {"type": "summary_text", "text": ""}
                out += self._event("response.reasoning_summary_part.added", **self._where(summary_index=0), part=part)
            thinking.text += event.text
            out += self._event(
                "response.reasoning_summary_text.delta", **self._where(summary_index=0), delta=event.text
            )
        thinking.signature = event.signature or thinking.signature
        thinking.redacted_data = event.redacted_data or thinking.redacted_data
        thinking.origin = event.origin or thinking.origin
        return out

    def _call_start(self, event: ToolCallStart) -> bytes:
        custom = event.name in self.custom
        out = self._open_item("call", "ctc" if custom else "fc")
        self.call, self.call_index = ToolCall(id=event.id, name=event.name, arguments=""), event.index
        item = _call_item(self.item_id, self.call, "in_progress", custom=custom)
        return out + self._event("response.output_item.added", output_index=len(self.output), item=item)

    def _call_delta(self, event: ToolCallDelta) -> bytes:
        if self.open != "call" or event.index != self.call_index or not event.arguments:
            return b""  # a fragment of a call already closed cannot be sent any more
        self.call.arguments += event.arguments
        if self.call.name in self.custom:
            return b""  # a custom tool's input is only known whole, once its JSON is complete
        return self._event("response.function_call_arguments.delta", **self._where(delta=event.arguments))

    def write(self, event: StreamEvent) -> bytes:
        out = self._begin()
        if isinstance(event, TextDelta):
            if event.text:
                out += self._text(event.text)
        elif isinstance(event, ThinkingDelta):
            if event.text or event.signature or event.redacted_data:
                out += self._thinking(event)
        elif isinstance(event, ToolCallStart):
            out += self._call_start(event)
        elif isinstance(event, ToolCallDelta):
            out += self._call_delta(event)
        elif isinstance(event, Finish):
            self.stop_reason = event.stop_reason
        elif isinstance(event, UsageReport):
            self.usage = event.usage
        return out

    def close(self, *, error: str | None = None) -> bytes:
        if self.closed:
            return b""
        self.closed = True
        out = self._begin()
        if error is not None:
            # Items still open stay unfinished: Codex retries a failed turn, and must not keep half an item.
            failure = {"code": "server_error", "message": error}
            return out + self._event("response.failed", response=self._snapshot("failed", error=failure))
        status, incomplete = _outcome(self.stop_reason)
        out += self._close_item("incomplete" if incomplete else "completed")
        kind = "response.incomplete" if incomplete else "response.completed"
        final = self._snapshot(status, incomplete_details=incomplete)
        if isinstance(final.get("usage"), dict) and self.usage is not None:
            with_cost_of(final["usage"], self.usage, self.cost_of)
        return out + self._event(kind, response=final)


def error_body(error: ApiError) -> tuple[int, dict]:
    return error.status, error.body()


# The upstream side (an upstream of kind `openai-responses`), kept in its own file for size.
from gateway.protocols.openai_responses_upstream import (  # noqa: E402
    PassthroughFramer,
    StreamReader,
    build_request,
    passthrough_check,
    passthrough_reply,
    passthrough_request,
    read_error,
    read_reply,
)

__all__ = [
    "PassthroughFramer",
    "ResponsesConversation",
    "StreamReader",
    "StreamWriter",
    "build_request",
    "error_body",
    "passthrough_check",
    "passthrough_reply",
    "passthrough_request",
    "read_error",
    "read_reply",
    "read_request",
    "write_reply",
]
