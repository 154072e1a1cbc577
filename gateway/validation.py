"""Validation of OpenAI chat requests at the edge, before anything goes upstream.

Hand-written rather than DRF serializers: this runs on every call and a
serializer tree costs more CPU than the whole proxy step. Every failure names
the parameter, as OpenAI does (`messages[1].role`). Parameters not listed here
are passed through unchanged: upstreams add their own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gateway.errors import InvalidRequest

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
CONTENT_PART_TYPES = {
    "system": frozenset({"text"}),
    "developer": frozenset({"text"}),
    "user": frozenset({"text", "image_url", "input_audio", "file"}),
    "assistant": frozenset({"text", "refusal"}),
    "tool": frozenset({"text"}),
    "function": frozenset({"text"}),
}
TOOL_CHOICE_STRINGS = frozenset({"none", "auto", "required"})
TOOL_CHOICE_TYPES = ("function", "custom", "allowed_tools")
JSON_SCHEMA_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
RESPONSE_FORMAT_TYPES = frozenset({"text", "json_object", "json_schema"})
MAX_STOP_SEQUENCES = 4


@dataclass(frozen=True, slots=True)
class ChatRequest:
    model: str
    stream: bool
    include_usage: bool  # the client asked for the usage chunk in its stream
    max_tokens: int | None
    body: dict  # the validated body, as sent by the client


# OpenAI's values (xhigh: its newest models; other upstreams take it as high).
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number_in(body: dict, name: str, low: float, high: float) -> None:
    value = body.get(name)
    if value is None:
        return
    if not _is_number(value):
        raise InvalidRequest(f"Invalid type for '{name}': expected a number.", param=name, code="invalid_type")
    if not low <= value <= high:
        raise InvalidRequest(
            f"Invalid value for '{name}': {value} is not between {low:g} and {high:g}.",
            param=name,
            code="invalid_value",
        )


def _positive_int(body: dict, name: str, minimum: int = 1) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not _is_int(value):
        raise InvalidRequest(f"Invalid type for '{name}': expected an integer.", param=name, code="invalid_type")
    if value < minimum:
        raise InvalidRequest(
            f"Invalid value for '{name}': must be at least {minimum}.", param=name, code="invalid_value"
        )
    return value


def _boolean(body: dict, name: str) -> bool | None:
    value = body.get(name)
    if value is not None and not isinstance(value, bool):
        raise InvalidRequest(f"Invalid type for '{name}': expected a boolean.", param=name, code="invalid_type")
    return value


def _validate_content(content, role: str, where: str) -> None:
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise InvalidRequest(
            f"Invalid type for '{where}': expected a string or an array of content parts.",
            param=where,
            code="invalid_type",
        )
    if not content:
        raise InvalidRequest(f"'{where}' must not be an empty array.", param=where, code="invalid_value")
    allowed = CONTENT_PART_TYPES[role]
    for j, part in enumerate(content):
        here = f"{where}[{j}]"
        if not isinstance(part, dict):
            raise InvalidRequest(f"Invalid type for '{here}': expected an object.", param=here, code="invalid_type")
        part_type = part.get("type")
        if part_type not in allowed:
            raise InvalidRequest(
                f"Invalid value for '{here}.type': {part_type!r} is not allowed for role '{role}'"
                f" (expected one of {', '.join(sorted(allowed))}).",
                param=f"{here}.type",
                code="invalid_value",
            )
        if part_type == "text" and not isinstance(part.get("text"), str):
            raise InvalidRequest(f"Missing or invalid '{here}.text'.", param=f"{here}.text", code="invalid_type")
        if part_type == "image_url":
            image = part.get("image_url")
            if not isinstance(image, dict) or not isinstance(image.get("url"), str) or not image["url"]:
                raise InvalidRequest(
                    f"Missing or invalid '{here}.image_url.url'.", param=f"{here}.image_url.url", code="invalid_type"
                )
            if image.get("detail") not in (None, "auto", "low", "high"):
                raise InvalidRequest(
                    f"Invalid value for '{here}.image_url.detail': expected auto, low or high.",
                    param=f"{here}.image_url.detail",
                    code="invalid_value",
                )
        if part_type == "input_audio" and not isinstance(part.get("input_audio"), dict):
            raise InvalidRequest(f"Missing '{here}.input_audio'.", param=f"{here}.input_audio", code="invalid_type")


# OpenRouter's reasoning_details items: the string fields each kind carries (None: may be null or absent).
REASONING_DETAIL_FIELDS = {
    "reasoning.text": {"text": False, "signature": False},
    "reasoning.summary": {"summary": True},
    "reasoning.encrypted": {"data": True},
}


def _validate_reasoning_details(details, where: str) -> None:
    """OpenRouter's `reasoning_details`: objects with a `type`; the kinds Beluga reads, with their fields' types.

    Kinds Beluga does not know are let through (and ignored), as new ones appear.
    """
    if details is None:
        return
    if not isinstance(details, list):
        raise InvalidRequest(f"Invalid type for '{where}': expected an array.", param=where, code="invalid_type")
    for j, detail in enumerate(details):
        here = f"{where}[{j}]"
        if not isinstance(detail, dict) or not isinstance(detail.get("type"), str):
            raise InvalidRequest(
                f"Invalid '{here}': expected an object with a string 'type'.", param=here, code="invalid_type"
            )
        fields = dict(REASONING_DETAIL_FIELDS.get(detail["type"], {}), format=False, id=False)
        for name, required in fields.items():
            value = detail.get(name)
            if (value is None and required) or (value is not None and not isinstance(value, str)):
                raise InvalidRequest(
                    f"Invalid type for '{here}.{name}': expected a string.", param=f"{here}.{name}", code="invalid_type"
                )
        index = detail.get("index")
        if index is not None and not _is_int(index):
            raise InvalidRequest(
                f"Invalid type for '{here}.index': expected an integer.", param=f"{here}.index", code="invalid_type"
            )


def _validate_messages(messages) -> None:
    if messages is None:
        raise InvalidRequest(
            "Missing required parameter: 'messages'.", param="messages", code="missing_required_parameter"
        )
    if not isinstance(messages, list):
        raise InvalidRequest("Invalid type for 'messages': expected an array.", param="messages", code="invalid_type")
    if not messages:
        raise InvalidRequest("'messages' must contain at least one message.", param="messages", code="invalid_value")
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise InvalidRequest(f"Invalid type for '{where}': expected an object.", param=where, code="invalid_type")
        role = message.get("role")
        if role not in ROLES:
            raise InvalidRequest(
                f"Invalid value for '{where}.role': {role!r} (expected one of {', '.join(sorted(ROLES))}).",
                param=f"{where}.role",
                code="invalid_value",
            )
        content = message.get("content")
        if content is None:
            # Only an assistant turn that calls tools (or a legacy function) may have no content.
            if role != "assistant" or not (message.get("tool_calls") or message.get("function_call")):
                raise InvalidRequest(
                    f"Missing required parameter: '{where}.content'.",
                    param=f"{where}.content",
                    code="missing_required_parameter",
                )
        else:
            _validate_content(content, role, f"{where}.content")
        if role == "tool" and not isinstance(message.get("tool_call_id"), str):
            raise InvalidRequest(
                f"Missing required parameter: '{where}.tool_call_id'.",
                param=f"{where}.tool_call_id",
                code="missing_required_parameter",
            )
        for name in ("reasoning_content", "reasoning"):
            value = message.get(name)
            if value is not None and not isinstance(value, str):
                param = f"{where}.{name}"
                raise InvalidRequest(
                    f"Invalid type for '{param}': expected a string.", param=param, code="invalid_type"
                )
        _validate_reasoning_details(message.get("reasoning_details"), f"{where}.reasoning_details")
        name = message.get("name")
        if name is not None and not isinstance(name, str):
            raise InvalidRequest(
                f"Invalid type for '{where}.name': expected a string.", param=f"{where}.name", code="invalid_type"
            )
        tool_calls = message.get("tool_calls")
        if tool_calls is not None:
            if role != "assistant" or not isinstance(tool_calls, list):
                raise InvalidRequest(
                    f"Invalid '{where}.tool_calls': only assistant messages carry an array of tool calls.",
                    param=f"{where}.tool_calls",
                    code="invalid_value",
                )
            for j, call in enumerate(tool_calls):
                _validate_tool_call(call, f"{where}.tool_calls[{j}]")


def _validate_tool_call(call, where: str) -> None:
    """An assistant turn's earlier tool call, as the client sends it back: `id`, `type` and the call."""
    if not isinstance(call, dict):
        raise InvalidRequest(f"Invalid type for '{where}': expected an object.", param=where, code="invalid_type")
    if not isinstance(call.get("id"), str):
        raise InvalidRequest(
            f"Missing required parameter: '{where}.id'.", param=f"{where}.id", code="missing_required_parameter"
        )
    kind = call.get("type", "function")
    if kind not in ("function", "custom"):
        raise InvalidRequest(
            f"Invalid value for '{where}.type': expected 'function'.", param=f"{where}.type", code="invalid_value"
        )
    # A function call carries string arguments (JSON text); a custom tool's call carries its input.
    fields = ("name", "arguments") if kind == "function" else ("name", "input")
    target = call.get(kind)
    if not isinstance(target, dict):
        raise InvalidRequest(
            f"Missing required parameter: '{where}.{kind}'.", param=f"{where}.{kind}", code="missing_required_parameter"
        )
    for field in fields:
        if not isinstance(target.get(field), str):
            raise InvalidRequest(
                f"Invalid type for '{where}.{kind}.{field}': expected a string.",
                param=f"{where}.{kind}.{field}",
                code="invalid_type",
            )


def _validate_tools(body: dict) -> None:
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise InvalidRequest("Invalid type for 'tools': expected an array.", param="tools", code="invalid_type")
        for i, tool in enumerate(tools):
            where = f"tools[{i}]"
            if not isinstance(tool, dict) or tool.get("type") not in ("function", "custom"):
                raise InvalidRequest(
                    f"Invalid value for '{where}.type': expected 'function'.",
                    param=f"{where}.type",
                    code="invalid_value",
                )
            if tool["type"] == "function":
                function = tool.get("function")
                if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not function["name"]:
                    raise InvalidRequest(
                        f"Missing required parameter: '{where}.function.name'.",
                        param=f"{where}.function.name",
                        code="missing_required_parameter",
                    )
                parameters = function.get("parameters")
                if parameters is not None and not isinstance(parameters, dict):
                    raise InvalidRequest(
                        f"Invalid type for '{where}.function.parameters': expected a JSON Schema object.",
                        param=f"{where}.function.parameters",
                        code="invalid_type",
                    )
    choice = body.get("tool_choice")
    if choice is not None:
        if isinstance(choice, str):
            if choice not in TOOL_CHOICE_STRINGS:
                raise InvalidRequest(
                    f"Invalid value for 'tool_choice': {choice!r} (expected none, auto, required or an object).",
                    param="tool_choice",
                    code="invalid_value",
                )
        elif not isinstance(choice, dict) or not isinstance(choice.get("type"), str):
            raise InvalidRequest(
                "Invalid type for 'tool_choice': expected a string or an object with a 'type'.",
                param="tool_choice",
                code="invalid_type",
            )
        else:
            _validate_tool_choice_object(choice)
        # "none" and "auto" ask nothing of tools; the others name or require one.
        if not tools and choice not in ("none", "auto"):
            raise InvalidRequest(
                "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.",
                param="tool_choice",
                code="invalid_value",
            )


def _validate_tool_choice_object(choice: dict) -> None:
    kind = choice["type"]
    if kind not in TOOL_CHOICE_TYPES:
        raise InvalidRequest(
            f"Invalid value for 'tool_choice.type': {kind!r} (expected one of {', '.join(TOOL_CHOICE_TYPES)}).",
            param="tool_choice.type",
            code="invalid_value",
        )
    if kind == "allowed_tools":
        allowed = choice.get("allowed_tools")
        if not isinstance(allowed, dict) or not isinstance(allowed.get("tools"), list):
            raise InvalidRequest(
                "Missing required parameter: 'tool_choice.allowed_tools.tools'.",
                param="tool_choice.allowed_tools.tools",
                code="missing_required_parameter",
            )
        return
    named = choice.get(kind)
    if not isinstance(named, dict) or not isinstance(named.get("name"), str) or not named["name"]:
        raise InvalidRequest(
            f"Missing required parameter: 'tool_choice.{kind}.name'.",
            param=f"tool_choice.{kind}.name",
            code="missing_required_parameter",
        )


def _validate_stop(body: dict) -> None:
    stop = body.get("stop")
    if stop is None or isinstance(stop, str):
        return
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise InvalidRequest(
            "Invalid type for 'stop': expected a string or an array of strings.", param="stop", code="invalid_type"
        )
    if len(stop) > MAX_STOP_SEQUENCES:
        raise InvalidRequest(
            f"Invalid 'stop': at most {MAX_STOP_SEQUENCES} sequences are allowed, got {len(stop)}.",
            param="stop",
            code="invalid_value",
        )


def _validate_response_format(body: dict) -> None:
    fmt = body.get("response_format")
    if fmt is None:
        return
    if not isinstance(fmt, dict) or fmt.get("type") not in RESPONSE_FORMAT_TYPES:
        raise InvalidRequest(
            "Invalid value for 'response_format.type': expected text, json_object or json_schema.",
            param="response_format.type",
            code="invalid_value",
        )
    if fmt["type"] != "json_schema":
        return
    spec = fmt.get("json_schema")
    if not isinstance(spec, dict):
        raise InvalidRequest(
            "Missing required parameter: 'response_format.json_schema'.",
            param="response_format.json_schema",
            code="missing_required_parameter",
        )
    name = spec.get("name")
    if not isinstance(name, str) or not JSON_SCHEMA_NAME.fullmatch(name):
        raise InvalidRequest(
            "Invalid 'response_format.json_schema.name': required, at most 64 characters of a-z, A-Z, 0-9, _ and -.",
            param="response_format.json_schema.name",
            code="invalid_value" if isinstance(name, str) else "missing_required_parameter",
        )
    if spec.get("schema") is not None and not isinstance(spec["schema"], dict):
        raise InvalidRequest(
            "Invalid type for 'response_format.json_schema.schema': expected a JSON Schema object.",
            param="response_format.json_schema.schema",
            code="invalid_type",
        )
    if spec.get("strict") is not None and not isinstance(spec["strict"], bool):
        raise InvalidRequest(
            "Invalid type for 'response_format.json_schema.strict': expected a boolean.",
            param="response_format.json_schema.strict",
            code="invalid_type",
        )


def validate_chat_request(body) -> ChatRequest:
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    model = body.get("model")
    if model is None or model == "":
        raise InvalidRequest("Missing required parameter: 'model'.", param="model", code="missing_required_parameter")
    if not isinstance(model, str):
        raise InvalidRequest("Invalid type for 'model': expected a string.", param="model", code="invalid_type")
    _validate_messages(body.get("messages"))
    stream = _boolean(body, "stream") or False
    _number_in(body, "temperature", 0, 2)
    _number_in(body, "top_p", 0, 1)
    _number_in(body, "frequency_penalty", -2, 2)
    _number_in(body, "presence_penalty", -2, 2)
    max_tokens = _positive_int(body, "max_tokens")
    max_completion_tokens = _positive_int(body, "max_completion_tokens")
    _positive_int(body, "n")
    _boolean(body, "logprobs")
    _boolean(body, "parallel_tool_calls")
    _boolean(body, "store")
    top_logprobs = _positive_int(body, "top_logprobs", minimum=0)
    if top_logprobs is not None and top_logprobs > 20:
        raise InvalidRequest(
            "Invalid value for 'top_logprobs': must be between 0 and 20.", param="top_logprobs", code="invalid_value"
        )
    seed = body.get("seed")
    if seed is not None and not _is_int(seed):
        raise InvalidRequest("Invalid type for 'seed': expected an integer.", param="seed", code="invalid_type")
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise InvalidRequest("Invalid type for 'user': expected a string.", param="user", code="invalid_type")
    effort = body.get("reasoning_effort")
    if effort is not None and effort not in REASONING_EFFORTS:
        raise InvalidRequest(
            f"Invalid value for 'reasoning_effort': expected one of {', '.join(REASONING_EFFORTS)}.",
            param="reasoning_effort",
            code="invalid_value",
        )
    _validate_stop(body)
    _validate_tools(body)
    _validate_response_format(body)
    include_usage = False
    stream_options = body.get("stream_options")
    if stream_options is not None:
        if not isinstance(stream_options, dict):
            raise InvalidRequest(
                "Invalid type for 'stream_options': expected an object.", param="stream_options", code="invalid_type"
            )
        if not stream:
            raise InvalidRequest(
                "'stream_options' is only allowed when 'stream' is true.", param="stream_options", code="invalid_value"
            )
        include_usage = stream_options.get("include_usage")
        if include_usage is not None and not isinstance(include_usage, bool):
            raise InvalidRequest(
                "Invalid type for 'stream_options.include_usage': expected a boolean.",
                param="stream_options.include_usage",
                code="invalid_type",
            )
        include_usage = bool(include_usage)
    return ChatRequest(
        model=model,
        stream=stream,
        include_usage=include_usage,
        max_tokens=max_completion_tokens or max_tokens,
        body=body,
    )
