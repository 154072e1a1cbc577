"""Google's Gemini API (Generative Language API, v1beta), both sides.

Client side: what google-genai and other Gemini clients send to
`POST /v1beta/models/{model}:generateContent` and `:streamGenerateContent`, and
the GenerateContentResponse they read back. Upstream side: what Beluga sends a
route of kind "gemini" (generateContent, countTokens, batchEmbedContents).

Wire facts this module relies on, checked against recorded Google traffic and
the google-genai SDKs (Python `_api_client.py`, JS `_api_client.ts`):

- With `alt=sse` each chunk is `data: <json>\\r\\n\\r\\n`. Without it the stream is
  one JSON array: `[` + pretty-printed elements joined by `\\n,\\r\\n` + `\\n]`.
- Mid-stream, Google reports an error as a bare pretty-printed JSON object
  outside SSE framing. The Python SDK collects such lines by brace counting and
  raises it as an APIError (releases after the 1.46 installed here); so does the JS SDK.
- The SDK's chat keeps a turn in its history only when every streamed chunk has
  a non-empty part and the last one a finishReason, so the writer holds back one
  part and sends it with the finishReason.
- Google accepts a JSON field by its camelCase or its proto (snake_case) name.
- Thought signatures are opaque base64 that may ride on any part (thought,
  text or functionCall). A signature on a non-thought part is read as an empty
  `Thinking(signature=...)` placed just before that part, and written back onto
  the part that follows it. Gemini 3 refuses a replayed functionCall without
  one; a conversation that lost it (a client of another protocol) gets Google's
  documented placeholder, `skip_thought_signature_validator`.
- functionCall ids are optional. Ids Beluga makes up (`call_<digits>`) are never
  sent to Google or to Gemini clients; results are then matched by name, in order.
- Counts: promptTokenCount includes cachedContentTokenCount; candidatesTokenCount
  excludes thoughtsTokenCount. Zero counts are left out (proto3 JSON).
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
import time
from collections.abc import Iterable
from functools import lru_cache
from urllib.parse import quote

import orjson

from catalog.selectors import RouteTarget
from gateway.errors import ApiError, InvalidRequest, RateLimited, UpstreamError
from gateway.protocols import UpstreamRequest
from gateway.protocols.conversation import (
    CONTENT_FILTER,
    LENGTH,
    STOP,
    TOOL_CALLS,
    Conversation,
    Finish,
    Image,
    Message,
    Part,
    Reply,
    ResponseFormat,
    Start,
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
    signature_in,
    signature_out,
)

API_VERSION = "v1beta"
MAX_STOP_SEQUENCES = 5
MAX_CANDIDATES = 8
PROTOCOL = "gemini"  # Thinking.origin of signatures Google made
SKIP_SIGNATURE = "skip_thought_signature_validator"
# OpenAI-style efforts as Gemini thinking budgets. Every value lies inside the
# ranges of 2.5 Pro (128-32768), Flash (0-24576) and Flash-Lite (512-24576);
# Gemini 3 models take thinkingBudget too, for backward compatibility.
EFFORT_BUDGETS = {"minimal": 512, "low": 2048, "medium": 8192, "high": 24576}
LEVEL_EFFORTS = {"MINIMAL": "minimal", "LOW": "low", "MEDIUM": "medium", "HIGH": "high"}
# Families that predate thought-signature validation (and may refuse the placeholder).
_NO_SIGNATURE_CHECK = re.compile(r"(models/)?(gemini-1|gemini-2|gemma|learnlm)")
_GENERATED_ID = re.compile(r"call_\d+\Z")
_FUNCTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]{0,127}\Z")

FINISH_OUT = {STOP: "STOP", TOOL_CALLS: "STOP", LENGTH: "MAX_TOKENS", CONTENT_FILTER: "SAFETY"}
FILTERED = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
    }
)
STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_UNSUPPORTED_PARTS = ("executableCode", "codeExecutionResult")


# --- small readers ------------------------------------------------------------------------


@lru_cache(maxsize=256)
def _snake(name: str) -> str:
    return re.sub(r"([A-Z])", r"_\1", name).lower()


@lru_cache(maxsize=256)
def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word[:1].upper() + word[1:] for word in rest)


def _get(obj: dict, name: str):
    """A field by its JSON (camelCase) name or its proto (snake_case) one: Google accepts both."""
    value = obj.get(name)
    return obj.get(_snake(name)) if value is None else value


def _bad(param: str, problem: str) -> InvalidRequest:
    return InvalidRequest(f"Invalid value at '{param}': {problem}", param=param)


def _dict(value, param: str) -> dict:
    if not isinstance(value, dict):
        raise _bad(param, "expected an object.")
    return value


def _string(value, param: str, *, required: bool = True) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value):
        raise _bad(param, "expected a non-empty string.")
    return value


def _number(config: dict, name: str, where: str, low: float, high: float) -> float | None:
    value = _get(config, name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise _bad(f"{where}.{name}", f"expected a number from {low} to {high}.")
    return value


def _integer(config: dict, name: str, where: str, low: int, high: int | None = None) -> int | None:
    value = _get(config, name)
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bounds = f"from {low} to {high}" if high is not None else f"of at least {low}"
        raise _bad(f"{where}.{name}", f"expected an integer {bounds}.")
    return value


def _standard_base64(data: str) -> str:
    """google-genai sends bytes URL-safe encoded; other providers want the standard alphabet."""
    if "-" in data or "_" in data:
        data = data.replace("-", "+").replace("_", "/")
    return data + "=" * (-len(data) % 4)


def _client_signature(signature: str | None) -> str | None:
    """A signature fit for a Gemini client: google-genai refuses a whole answer over one that is not base64."""
    if not signature:
        return None
    try:
        base64.b64decode(_standard_base64(signature), validate=True)
    except (binascii.Error, ValueError):
        return None
    return signature


def _is_generated(call_id: str | None) -> bool:
    return not call_id or bool(_GENERATED_ID.match(call_id))


def _reply_call_id() -> str:
    # Random digits: unique across the turns of a conversation (Anthropic refuses a repeated
    # tool_use id), and recognisable as Beluga's so that it never reaches Google.
    return f"call_{secrets.randbelow(10**12):012d}"


# --- client side: reading a GenerateContentRequest ---------------------------------------


class _CallIds:
    """Ids for function calls a client sent without one, and results matched to calls by name in order."""

    def __init__(self) -> None:
        self.count = 0
        self.known: set[str] = set()
        self.waiting: dict[str, list[str]] = {}

    def _new(self) -> str:
        call_id = f"call_{self.count}"
        self.count += 1
        return call_id

    def call(self, name: str, given: str | None) -> str:
        call_id = given or self._new()
        self.known.add(call_id)
        self.waiting.setdefault(name, []).append(call_id)
        return call_id

    def result(self, name: str, given: str | None) -> str:
        waiting = self.waiting.get(name) or []
        if given and given in self.known:
            if given in waiting:
                waiting.remove(given)
            return given
        if waiting:
            return waiting.pop(0)
        return given or self._new()


_REQUEST_FIELDS = frozenset({"contents", "systemInstruction", "tools", "toolConfig", "generationConfig", "model"})
_CONFIG_FIELDS = frozenset(
    {
        "temperature",
        "topP",
        "topK",
        "maxOutputTokens",
        "candidateCount",
        "stopSequences",
        "responseModalities",
        "responseMimeType",
        "responseSchema",
        "responseJsonSchema",
        "thinkingConfig",
        "seed",
        "presencePenalty",
        "frequencyPenalty",
    }
)


def read_request(body: object, *, model: str | None = None, stream: bool | None = None) -> Conversation:
    """A GenerateContentRequest (model and stream come from the URL) as a Conversation.

    Other fields are accepted and named in `dropped`: safetySettings (Beluga sets
    no thresholds of its own), cachedContent (it holds no Google caches), logprobs...
    """
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object (a GenerateContentRequest).")
    contents = _get(body, "contents")
    if not isinstance(contents, list) or not contents:
        raise _bad("contents", "expected a non-empty list of Content objects.")
    ids = _CallIds()
    messages = [_read_content(content, f"contents[{i}]", ids) for i, content in enumerate(contents)]
    if model is None:
        model = str(_get(body, "model") or "").removeprefix("models/")
    conversation = Conversation(model=model, messages=messages, stream=bool(stream))
    conversation.system = _read_system(_get(body, "systemInstruction"))
    conversation.tools = _read_tools(_get(body, "tools"))
    conversation.tool_choice = _read_tool_config(_get(body, "toolConfig"), conversation.tools)
    config = _get(body, "generationConfig")
    if config is not None:
        _read_generation_config(_dict(config, "generationConfig"), conversation)
        ignored = (f"generationConfig.{_camel(key)}" for key in config if _camel(key) not in _CONFIG_FIELDS)
        conversation.dropped.extend(ignored)
    conversation.dropped.extend(_camel(key) for key in body if _camel(key) not in _REQUEST_FIELDS)
    return conversation


def _read_content(content, where: str, ids: _CallIds) -> Message:
    content = _dict(content, where)
    role = _get(content, "role") or "user"
    if role not in ("user", "model", "function"):
        raise _bad(f"{where}.role", "expected 'user' or 'model'.")
    parts = _get(content, "parts")
    if not isinstance(parts, list) or not parts:
        raise _bad(f"{where}.parts", "expected a non-empty list of Part objects.")
    message = Message(role="assistant" if role == "model" else "user")
    for j, part in enumerate(parts):
        message.parts.extend(_read_part(part, message.role, f"{where}.parts[{j}]", ids))
    return message


def _read_part(part, role: str, where: str, ids: _CallIds) -> list[Part]:
    part = _dict(part, where)
    signature, origin = signature_in(
        _string(_get(part, "thoughtSignature"), f"{where}.thoughtSignature", required=False), PROTOCOL
    )
    text = _get(part, "text")
    if text is not None and not isinstance(text, str):
        raise _bad(f"{where}.text", "expected a string.")
    if _get(part, "thought") is True:
        # Thoughts shown in a model turn; a user turn has none to give back.
        return [Thinking(text=text or "", signature=signature, origin=origin)] if role == "assistant" else []
    out: list[Part] = [Thinking(signature=signature, origin=origin)] if signature and role == "assistant" else []
    for kind in _UNSUPPORTED_PARTS:
        if _get(part, kind) is not None:
            raise InvalidRequest(f"{where}.{kind} is not supported: Beluga offers no code execution.", param=where)
    if text is not None:
        if text:
            out.append(Text(text))
    elif (inline := _get(part, "inlineData")) is not None:
        inline = _dict(inline, f"{where}.inlineData")
        data = _string(_get(inline, "data"), f"{where}.inlineData.data")
        media_type = _string(_get(inline, "mimeType"), f"{where}.inlineData.mimeType")
        out.append(Image(data=_standard_base64(data), media_type=media_type))
    elif (file := _get(part, "fileData")) is not None:
        file = _dict(file, f"{where}.fileData")
        uri = _string(_get(file, "fileUri"), f"{where}.fileData.fileUri")
        media_type = _string(_get(file, "mimeType"), f"{where}.fileData.mimeType", required=False)
        out.append(Image(url=uri, media_type=media_type))
    elif (call := _get(part, "functionCall")) is not None:
        if role != "assistant":
            raise _bad(f"{where}.functionCall", "only a 'model' turn can hold a functionCall.")
        call = _dict(call, f"{where}.functionCall")
        name = _string(_get(call, "name"), f"{where}.functionCall.name")
        args = _get(call, "args")
        if args is not None and not isinstance(args, dict):
            raise _bad(f"{where}.functionCall.args", "expected an object.")
        given = _string(_get(call, "id"), f"{where}.functionCall.id", required=False)
        out.append(ToolCall(id=ids.call(name, given), name=name, arguments=arguments_text(args)))
    elif (response := _get(part, "functionResponse")) is not None:
        if role != "user":
            raise _bad(f"{where}.functionResponse", "only a 'user' turn can hold a functionResponse.")
        where = f"{where}.functionResponse"
        out.append(_read_function_response(_dict(response, where), where, ids))
    elif not out:
        raise _bad(where, "a Part needs text, inlineData, fileData, functionCall or functionResponse.")
    return out


def _read_function_response(response: dict, where: str, ids: _CallIds) -> ToolResult:
    name = _string(_get(response, "name"), f"{where}.name")
    value = _get(response, "response")
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise _bad(f"{where}.response", "expected an object.")
    given = _string(_get(response, "id"), f"{where}.id", required=False)
    content: list[Text | Image] = [Text(orjson.dumps(value).decode())]
    extras = _get(response, "parts") or []
    if not isinstance(extras, list):
        raise _bad(f"{where}.parts", "expected a list of parts.")
    for k, extra in enumerate(extras):  # multimodal function responses
        inline = _get(_dict(extra, f"{where}.parts[{k}]"), "inlineData")
        if isinstance(inline, dict) and isinstance(_get(inline, "data"), str):
            content.append(Image(data=_standard_base64(_get(inline, "data")), media_type=_get(inline, "mimeType")))
    return ToolResult(call_id=ids.result(name, given), content=content, name=name, is_error=set(value) == {"error"})


def _read_system(value) -> list[Text]:
    if value is None:
        return []
    if isinstance(value, str):
        return [Text(value)] if value else []
    parts = _get(_dict(value, "systemInstruction"), "parts")
    if not isinstance(parts, list):
        raise _bad("systemInstruction.parts", "expected a list of text parts.")
    system = []
    for j, part in enumerate(parts):
        text = _get(_dict(part, f"systemInstruction.parts[{j}]"), "text")
        if not isinstance(text, str):
            raise _bad(f"systemInstruction.parts[{j}].text", "a system instruction holds text parts only.")
        if text:
            system.append(Text(text))
    return system


def _read_tools(value) -> list[Tool]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _bad("tools", "expected a list of Tool objects.")
    tools = []
    for i, tool in enumerate(value):
        for key, declarations in _dict(tool, f"tools[{i}]").items():
            where = f"tools[{i}].{key}"
            if _camel(key) != "functionDeclarations":
                raise InvalidRequest(
                    f"{where} is not supported: Beluga offers function calling (functionDeclarations) only.",
                    param=where,
                )
            if not isinstance(declarations, list):
                raise _bad(where, "expected a list of FunctionDeclaration objects.")
            tools.extend(_read_declaration(d, f"{where}[{j}]") for j, d in enumerate(declarations))
    return tools


def _read_declaration(declaration, where: str) -> Tool:
    declaration = _dict(declaration, where)
    name = _string(_get(declaration, "name"), f"{where}.name")
    if not _FUNCTION_NAME.match(name):
        raise _bad(f"{where}.name", "use letters, digits, '_', '.', ':' or '-', starting with a letter or '_'.")
    description = _get(declaration, "description") or ""
    if not isinstance(description, str):
        raise _bad(f"{where}.description", "expected a string.")
    openapi, json_schema = _get(declaration, "parameters"), _get(declaration, "parametersJsonSchema")
    if openapi is not None and json_schema is not None:
        raise _bad(f"{where}.parametersJsonSchema", "set either parameters or parametersJsonSchema, not both.")
    tool = Tool(name=name, description=description)
    if json_schema is not None:
        tool.parameters = _dict(json_schema, f"{where}.parametersJsonSchema")
    elif openapi is not None:
        tool.parameters = schema_from_openapi(_dict(openapi, f"{where}.parameters"))
    return tool


def _read_tool_config(value, tools: list[Tool]) -> ToolChoice | None:
    if value is None:
        return None
    config = _get(_dict(value, "toolConfig"), "functionCallingConfig")
    if config is None:
        return None
    where = "toolConfig.functionCallingConfig"
    config = _dict(config, where)
    mode = _get(config, "mode") or "AUTO"
    if not isinstance(mode, str):
        raise _bad(f"{where}.mode", "expected AUTO, ANY, NONE or VALIDATED.")
    mode = mode.upper()
    allowed = _get(config, "allowedFunctionNames") or []
    if not isinstance(allowed, list) or not all(isinstance(name, str) for name in allowed):
        raise _bad(f"{where}.allowedFunctionNames", "expected a list of function names.")
    declared = {tool.name for tool in tools}
    for name in allowed:
        if name not in declared:
            raise _bad(f"{where}.allowedFunctionNames", f"'{name}' is not among the functionDeclarations.")
    if mode == "NONE":
        return ToolChoice(mode="none")
    if mode in ("AUTO", "VALIDATED", "MODE_UNSPECIFIED"):
        return ToolChoice(mode="auto")  # VALIDATED's constrained decoding has no equivalent elsewhere
    if mode == "ANY":
        # Several allowed names cannot be expressed as one choice: "call one of the tools" is the nearest.
        return ToolChoice(mode="tool", name=allowed[0]) if len(allowed) == 1 else ToolChoice(mode="required")
    raise _bad(f"{where}.mode", "expected AUTO, ANY, NONE or VALIDATED.")


def _read_generation_config(config: dict, conversation: Conversation) -> None:
    where = "generationConfig"
    conversation.temperature = _number(config, "temperature", where, 0, 2)
    conversation.top_p = _number(config, "topP", where, 0, 1)
    conversation.top_k = _integer(config, "topK", where, 1)
    conversation.max_tokens = _integer(config, "maxOutputTokens", where, 1)
    conversation.n = _integer(config, "candidateCount", where, 1, MAX_CANDIDATES) or 1
    stop = _get(config, "stopSequences")
    if stop is not None:
        if not isinstance(stop, list) or len(stop) > MAX_STOP_SEQUENCES or not all(isinstance(s, str) for s in stop):
            raise _bad(f"{where}.stopSequences", f"expected a list of at most {MAX_STOP_SEQUENCES} strings.")
        conversation.stop = [s for s in stop if s]
    modalities = _get(config, "responseModalities")
    if modalities is not None and (
        not isinstance(modalities, list) or any(str(m).upper() != "TEXT" for m in modalities)
    ):
        raise InvalidRequest(f"{where}.responseModalities: only TEXT output is supported.", param=where)
    conversation.response_format = _read_response_format(config, where)
    if (thinking := _get(config, "thinkingConfig")) is not None:
        conversation.thinking = _read_thinking(_dict(thinking, f"{where}.thinkingConfig"), f"{where}.thinkingConfig")
    # Sampling controls Gemini shares with OpenAI only, kept under their OpenAI names.
    extra = {
        "seed": _integer(config, "seed", where, -(2**31), 2**31 - 1),
        "presence_penalty": _number(config, "presencePenalty", where, -2, 2),
        "frequency_penalty": _number(config, "frequencyPenalty", where, -2, 2),
    }
    conversation.openai_extra.update({name: value for name, value in extra.items() if value is not None})


def _read_response_format(config: dict, where: str) -> ResponseFormat | None:
    mime = _get(config, "responseMimeType")
    openapi, json_schema = _get(config, "responseSchema"), _get(config, "responseJsonSchema")
    if openapi is not None and json_schema is not None:
        raise _bad(f"{where}.responseJsonSchema", "set either responseSchema or responseJsonSchema, not both.")
    schema = None
    if json_schema is not None:
        schema = _dict(json_schema, f"{where}.responseJsonSchema")
    elif openapi is not None:
        schema = schema_from_openapi(_dict(openapi, f"{where}.responseSchema"))
    if mime in (None, "", "text/plain"):
        if schema is not None:
            raise _bad(f"{where}.responseMimeType", "a response schema needs responseMimeType 'application/json'.")
        return None
    if mime != "application/json":
        raise _bad(f"{where}.responseMimeType", "expected 'text/plain' or 'application/json'.")
    if schema is None:
        return ResponseFormat(kind="json_object")
    return ResponseFormat(kind="json_schema", schema=schema, name="response")


def _read_thinking(config: dict, where: str) -> ThinkingConfig | None:
    budget = _integer(config, "thinkingBudget", where, -1)
    level = _get(config, "thinkingLevel")
    include = _get(config, "includeThoughts")
    if include is not None and not isinstance(include, bool):
        raise _bad(f"{where}.includeThoughts", "expected true or false.")
    effort = None
    if level is not None:
        if budget is not None:
            raise _bad(f"{where}.thinkingLevel", "set either thinkingBudget or thinkingLevel, not both.")
        effort = LEVEL_EFFORTS.get(str(level).upper())
        if effort is None and str(level).upper() != "THINKING_LEVEL_UNSPECIFIED":
            raise _bad(f"{where}.thinkingLevel", "expected MINIMAL, LOW, MEDIUM or HIGH.")
    if budget is None and effort is None and not include:
        return None  # the model's default, thoughts not shown: nothing to carry
    # -1 is Gemini's "dynamic": the provider's default amount of thinking.
    return ThinkingConfig(budget_tokens=budget if budget != -1 else None, effort=effort, include_thoughts=bool(include))


# --- JSON Schema, both ways ----------------------------------------------------------------

_INT64_KEYWORDS = frozenset({"minItems", "maxItems", "minLength", "maxLength", "minProperties", "maxProperties"})
_SCHEMA_MAPS = frozenset({"properties", "$defs", "definitions", "patternProperties", "dependentSchemas"})
_SCHEMA_DATA = frozenset({"enum", "const", "default", "examples", "example", "required", "propertyOrdering"})


def schema_from_openapi(schema: dict) -> dict:
    """Gemini's OpenAPI-subset Schema (`"type": "OBJECT"`, `nullable`) as the JSON Schema other providers take."""
    out: dict = {}
    nullable = False
    for key, value in schema.items():
        key = _camel(key)
        if key == "type":
            if isinstance(value, str) and value.upper() != "TYPE_UNSPECIFIED":
                out["type"] = value.lower()
        elif key == "nullable":
            nullable = value is True
        elif key == "properties" and isinstance(value, dict):
            out[key] = {name: schema_from_openapi(sub) if isinstance(sub, dict) else sub for name, sub in value.items()}
        elif key == "items" and isinstance(value, dict):
            out[key] = schema_from_openapi(value)
        elif key == "anyOf" and isinstance(value, list):
            out[key] = [schema_from_openapi(sub) if isinstance(sub, dict) else sub for sub in value]
        elif key == "example":
            out["examples"] = [value]
        elif key == "propertyOrdering" or (key == "format" and value == "enum"):
            continue  # Gemini-only hints
        elif key in _INT64_KEYWORDS and isinstance(value, str) and value.isdigit():
            out[key] = int(value)  # int64 travels as a JSON string
        else:
            out[key] = value
    if nullable and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


def schema_for_gemini(schema: dict) -> dict:
    """JSON Schema as Gemini's `parametersJsonSchema` / `responseJsonSchema` take it.

    Those fields take JSON Schema as it is and ignore keywords they do not use,
    which is safer than rewriting into the OpenAPI subset (`parameters`), where
    anyOf, type lists, additionalProperties and $ref are refused or lost. What
    they do refuse is removed: `$schema`/`$comment`, and keywords beside a `$ref`
    (Google: "no other properties, except those starting with $"). Draft-07
    `definitions` become `$defs`.
    """

    def walk(node):
        if isinstance(node, list):
            return [walk(item) for item in node]
        if not isinstance(node, dict):
            return node
        has_ref = isinstance(node.get("$ref"), str)
        out: dict = {}
        for key, value in node.items():
            if key in ("$schema", "$comment") or (has_ref and not key.startswith("$")):
                continue
            if key in _SCHEMA_MAPS and isinstance(value, dict):
                target = "$defs" if key == "definitions" else key
                out.setdefault(target, {}).update({name: walk(sub) for name, sub in value.items()})
            elif key in _SCHEMA_DATA:
                out[key] = value
            elif key == "$ref" and isinstance(value, str):
                out[key] = value.replace("#/definitions/", "#/$defs/", 1)
            else:
                out[key] = walk(value)
        return out

    return walk(schema)


# --- client side: writing answers ---------------------------------------------------------


def _usage_out(usage: Usage) -> dict:
    out = {
        "promptTokenCount": usage.input_tokens,
        "candidatesTokenCount": max(usage.output_tokens - usage.reasoning_tokens, 0),
        "totalTokenCount": usage.input_tokens + usage.output_tokens,
    }
    if usage.cached_input_tokens:
        out["cachedContentTokenCount"] = usage.cached_input_tokens
    if usage.reasoning_tokens:
        out["thoughtsTokenCount"] = usage.reasoning_tokens
    return out


def _call_out(call: ToolCall) -> dict:
    function: dict = {"name": call.name, "args": arguments_object(call.arguments)}
    if not _is_generated(call.id):
        function["id"] = call.id
    return {"functionCall": function}


def _model_parts_out(parts: Iterable[Part], *, for_client: bool) -> list[dict]:
    """A model turn's parts, each signature on the part it came with.

    To clients, unsigned thinking is shown as thought parts; toward Google only
    signed thoughts go back, as Google asks.
    """
    out: list[dict] = []
    pending = None
    for part in parts:
        if isinstance(part, Thinking):
            if part.redacted_data is not None:
                continue
            if for_client:
                signature = _client_signature(signature_out(part, PROTOCOL))
            else:  # another provider's signature: Google would refuse it
                signature = part.signature if part.origin == PROTOCOL else None
            if part.text and (for_client or signature):
                thought = {"text": part.text, "thought": True}
                if signature:
                    thought["thoughtSignature"] = signature
                out.append(thought)
            elif not part.text and signature:
                pending = signature  # belongs to the next part
            continue
        if isinstance(part, Text):
            if not part.text:
                continue
            entry = {"text": part.text}
        elif isinstance(part, ToolCall):
            entry = _call_out(part)
        else:
            continue
        if pending:
            entry["thoughtSignature"], pending = pending, None
        out.append(entry)
    if pending:
        out.append({"text": "", "thoughtSignature": pending})  # as Google sent it: an empty last part
    return out


def _stop_out(stop_reason: str | None) -> str:
    return FINISH_OUT.get(stop_reason or STOP, "STOP")


def write_reply(reply: Reply, *, model: str, request_id: str, conversation: Conversation | None = None) -> dict:
    """A GenerateContentResponse with one candidate, under the public model id."""
    parts = _model_parts_out(reply.parts, for_client=True)
    _fold_last_signature(parts)
    candidate: dict = {}
    if parts:
        candidate["content"] = {"parts": parts, "role": "model"}
    candidate["finishReason"] = _stop_out(reply.stop_reason)
    candidate["index"] = 0
    body: dict = {"candidates": [candidate]}
    if reply.usage is not None:
        body["usageMetadata"] = _usage_out(reply.usage)
    body["modelVersion"] = model
    body["responseId"] = request_id
    return body


def _fold_last_signature(parts: list[dict]) -> None:
    """An empty-text signature part at the end joins the part before it.

    google-genai's chat drops a whole turn from its history when a part has
    empty text, so clients get the signature on the last real part instead.
    """
    if len(parts) > 1 and parts[-1].get("text") == "" and "thoughtSignature" not in parts[-2]:
        signature = parts.pop()["thoughtSignature"]
        parts[-1]["thoughtSignature"] = signature


class StreamWriter:
    """GenerateContentResponse chunks: SSE (`alt=sse`, what google-genai asks for) or Google's JSON array.

    One part a chunk. A function call is sent whole, once its last argument
    fragment arrived. The latest part is held back so that the last chunk
    carries a part along with the finishReason and usageMetadata.
    """

    def __init__(self, *, model: str, request_id: str, conversation: Conversation, sse: bool = True) -> None:
        self.model = model
        self.request_id = request_id
        self.sse = sse
        self.content_type = "text/event-stream" if sse else "application/json"
        self._held: dict | None = None
        self._signature: str | None = None
        self._calls: dict[int, list[str]] = {}  # index -> [id, name, arguments so far]
        self._stop: str | None = None
        self._usage: Usage | None = None
        self._sent = 0

    def write(self, event: StreamEvent) -> bytes:
        if isinstance(event, ToolCallDelta):
            call = self._calls.get(event.index)
            if call is not None:
                call[2] += event.arguments
            return b""
        out: list[bytes] = []
        self._flush_calls(out)
        if isinstance(event, TextDelta):
            if event.text:
                self._part({"text": event.text}, out)
        elif isinstance(event, ThinkingDelta):
            signature = _client_signature(signature_out(event, PROTOCOL))
            if event.text:
                thought = {"text": event.text, "thought": True}
                if signature:
                    thought["thoughtSignature"] = signature
                self._part(thought, out)
            elif signature:
                self._signature = signature
        elif isinstance(event, ToolCallStart):
            self._calls[event.index] = [event.id, event.name, ""]
        elif isinstance(event, Finish):
            self._stop = event.stop_reason
        elif isinstance(event, UsageReport):
            self._usage = event.usage
        return b"".join(out)

    def close(self, *, error: str | None = None) -> bytes:
        out: list[bytes] = []
        self._flush_calls(out)
        held, self._held = self._held, None
        if error is None:
            if self._signature and held is not None and "thoughtSignature" not in held:
                held["thoughtSignature"] = self._signature
            out.append(self._frame(self._chunk(held, finish=_stop_out(self._stop), usage=self._usage)))
        else:
            if held is not None:
                out.append(self._frame(self._chunk(held)))
            out.append(self._error(error))
        if not self.sse:
            out.append(b"\n]" if self._sent else b"[]")
        return b"".join(out)

    def _flush_calls(self, out: list[bytes]) -> None:
        calls, self._calls = self._calls, {}
        for call_id, name, arguments in calls.values():
            self._part(_call_out(ToolCall(id=call_id, name=name, arguments=arguments)), out)

    def _part(self, part: dict, out: list[bytes]) -> None:
        if self._signature and not part.get("thought"):
            part["thoughtSignature"], self._signature = self._signature, None
        if self._held is not None:
            out.append(self._frame(self._chunk(self._held)))
        self._held = part

    def _chunk(self, part: dict | None, *, finish: str | None = None, usage: Usage | None = None) -> dict:
        candidate: dict = {}
        if part is not None:
            candidate["content"] = {"parts": [part], "role": "model"}
        if finish:
            candidate["finishReason"] = finish
        chunk: dict = {"candidates": [candidate]}
        if usage is not None:
            chunk["usageMetadata"] = _usage_out(usage)
        chunk["modelVersion"] = self.model
        chunk["responseId"] = self.request_id
        return chunk

    def _frame(self, chunk: dict) -> bytes:
        if self.sse:
            return b"data: " + orjson.dumps(chunk) + b"\r\n\r\n"
        self._sent += 1
        return (b"[" if self._sent == 1 else b"\n,\r\n") + orjson.dumps(chunk, option=orjson.OPT_INDENT_2)

    def _error(self, message: str) -> bytes:
        error = {"error": {"code": 503, "message": message, "status": STATUS_NAMES[503]}}
        if self.sse:
            # As Google does: a bare JSON object, outside SSE framing.
            return orjson.dumps(error, option=orjson.OPT_INDENT_2) + b"\n"
        return self._frame(error)


def error_body(error: ApiError) -> tuple[int, dict]:
    """Status and Google's error shape: {"error": {"code", "message", "status"}}."""
    status = error.status
    name = STATUS_NAMES.get(status) or ("INTERNAL" if status >= 500 else "INVALID_ARGUMENT")
    return status, {"error": {"code": status, "message": error.message, "status": name}}


def write_model(
    *,
    slug: str,
    display_name: str,
    description: str,
    input_token_limit: int | None,
    output_token_limit: int | None,
    methods: list[str],
) -> dict:
    """A Model resource as `GET /v1beta/models` lists it (no sampling defaults: they depend on the upstream)."""
    model: dict = {
        "name": f"models/{slug}",
        "baseModelId": slug,
        "version": "001",
        "displayName": display_name or slug,
        "description": description or "",
    }
    if input_token_limit:
        model["inputTokenLimit"] = input_token_limit
    if output_token_limit:
        model["outputTokenLimit"] = output_token_limit
    model["supportedGenerationMethods"] = list(methods)
    return model


def write_model_list(models: list[dict], next_page_token: str | None) -> dict:
    body: dict = {"models": models}
    if next_page_token:
        body["nextPageToken"] = next_page_token
    return body


# --- upstream side: requests ---------------------------------------------------------------


def _model_url(route: RouteTarget, action: str) -> str:
    name = quote(route.upstream_model.removeprefix("models/"), safe="-._~")
    return f"{route.base_url}/{API_VERSION}/models/{name}:{action}"


def _headers(route: RouteTarget, *, stream: bool = False) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream" if stream else "application/json"}
    if route.api_key:
        headers["x-goog-api-key"] = route.api_key
    return headers


def _image_out(image: Image) -> dict:
    if image.data is not None:
        return {"inlineData": {"mimeType": image.media_type or "image/png", "data": image.data}}
    url = image.url or ""
    if url.startswith("data:") and "," in url:
        head, data = url[5:].split(",", 1)
        return {"inlineData": {"mimeType": head.split(";", 1)[0] or "image/png", "data": data}}
    file: dict = {"fileUri": url}
    if image.media_type:
        file["mimeType"] = image.media_type
    return {"fileData": file}


def _result_response(result: ToolResult) -> dict:
    """The result as Gemini's `response` object: a JSON object as it is, other text wrapped."""
    text = result.text
    if text.lstrip().startswith("{"):
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError:
            value = None
        if isinstance(value, dict):
            return value
    return {"error": text} if result.is_error else {"result": text}


def _user_parts_out(parts: Iterable[Part], conversation: Conversation) -> list[dict]:
    out: list[dict] = []
    for part in parts:
        if isinstance(part, Text):
            if part.text:  # Gemini refuses empty text parts
                out.append({"text": part.text})
        elif isinstance(part, Image):
            out.append(_image_out(part))
        elif isinstance(part, ToolResult):
            name = part.name or conversation.tool_name_for(part.call_id)
            if not name:
                raise InvalidRequest(
                    f"The tool result for '{part.call_id}' answers no earlier tool call.", param="messages"
                )
            function: dict = {"name": name, "response": _result_response(part)}
            if not _is_generated(part.call_id):
                function["id"] = part.call_id
            out.append({"functionResponse": function})
            out.extend(_image_out(item) for item in part.content if isinstance(item, Image))
    return out


def _contents_out(conversation: Conversation, *, model: str) -> list[dict]:
    contents: list[dict] = []
    for message in conversation.messages:
        if message.role == "assistant":
            role, parts = "model", _model_parts_out(message.parts, for_client=False)
        else:
            role, parts = "user", _user_parts_out(message.parts, conversation)
        if not parts:
            continue
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    if not _NO_SIGNATURE_CHECK.match(model):
        for content in contents:
            calls = [part for part in content["parts"] if "functionCall" in part]
            if content["role"] == "model" and calls and not any("thoughtSignature" in call for call in calls):
                calls[0]["thoughtSignature"] = SKIP_SIGNATURE
    return contents


def _system_out(conversation: Conversation) -> dict | None:
    parts = [{"text": part.text} for part in conversation.system if part.text]
    return {"parts": parts} if parts else None


def _tools_out(conversation: Conversation) -> list[dict] | None:
    if not conversation.tools:
        return None
    declarations = []
    for tool in conversation.tools:
        declaration: dict = {"name": tool.name}
        if tool.description:
            declaration["description"] = tool.description
        parameters = tool.parameters or {}
        # A function without arguments has no schema at all (an empty object schema is refused by older models).
        if parameters.get("properties") or set(parameters) - {"type", "properties", "additionalProperties"}:
            declaration["parametersJsonSchema"] = schema_for_gemini(parameters)
        declarations.append(declaration)
    return [{"functionDeclarations": declarations}]


def _tool_config_out(conversation: Conversation, dropped: list[str]) -> dict | None:
    choice = conversation.tool_choice
    if choice is None or not conversation.tools:
        return None
    if choice.parallel is False:
        dropped.append("parallel_tool_calls")  # Gemini has no switch for one call at a time
    if choice.mode == "tool" and choice.name:
        config = {"mode": "ANY", "allowedFunctionNames": [choice.name]}
    else:
        config = {"mode": {"auto": "AUTO", "none": "NONE", "required": "ANY"}.get(choice.mode, "AUTO")}
    return {"functionCallingConfig": config}


def _generation_config_out(conversation: Conversation, dropped: list[str]) -> dict:
    config: dict = {}
    if conversation.max_tokens is not None:
        config["maxOutputTokens"] = conversation.max_tokens
    for name, value in (("temperature", conversation.temperature), ("topP", conversation.top_p)):
        if value is not None:
            config[name] = value
    if conversation.top_k is not None:
        config["topK"] = conversation.top_k
    if conversation.stop:
        if len(conversation.stop) > MAX_STOP_SEQUENCES:
            raise InvalidRequest(f"stop: this model takes at most {MAX_STOP_SEQUENCES} stop sequences.", param="stop")
        config["stopSequences"] = conversation.stop
    if conversation.n > 1:
        config["candidateCount"] = conversation.n
    response_format = conversation.response_format
    if response_format is not None and response_format.kind != "text":
        config["responseMimeType"] = "application/json"
        if response_format.kind == "json_schema" and response_format.schema:
            config["responseJsonSchema"] = schema_for_gemini(response_format.schema)
    thinking = conversation.thinking
    if thinking is not None:
        budget = thinking.budget_tokens
        if budget is None and thinking.effort:
            budget = EFFORT_BUDGETS.get(thinking.effort)
        thinking_config: dict = {}
        if budget is not None:
            thinking_config["thinkingBudget"] = budget
        if thinking.include_thoughts and budget != 0:
            thinking_config["includeThoughts"] = True
        if thinking_config:
            config["thinkingConfig"] = thinking_config
    for name, value in conversation.openai_extra.items():
        gemini_name = {"seed": "seed", "presence_penalty": "presencePenalty", "frequency_penalty": "frequencyPenalty"}
        if name in gemini_name and value is not None:
            config[gemini_name[name]] = value
        else:
            dropped.append(name)
    if conversation.user:
        dropped.append("user")
    return config


def build_request(conversation: Conversation, *, route: RouteTarget, stream: bool) -> UpstreamRequest:
    dropped: list[str] = []
    body: dict = {"contents": _contents_out(conversation, model=route.upstream_model)}
    if (system := _system_out(conversation)) is not None:
        body["systemInstruction"] = system
    if (tools := _tools_out(conversation)) is not None:
        body["tools"] = tools
    if (tool_config := _tool_config_out(conversation, dropped)) is not None:
        body["toolConfig"] = tool_config
    if config := _generation_config_out(conversation, dropped):
        body["generationConfig"] = config
    action = "streamGenerateContent?alt=sse" if stream else "generateContent"
    return UpstreamRequest(
        url=_model_url(route, action),
        headers=_headers(route, stream=stream),
        body=orjson.dumps(body),
        dropped=dropped,
    )


def count_tokens_request(conversation: Conversation, *, route: RouteTarget) -> UpstreamRequest:
    """countTokens with a whole generateContentRequest: `contents` alone would leave out system and tools."""
    name = route.upstream_model.removeprefix("models/")
    inner: dict = {"model": f"models/{name}", "contents": _contents_out(conversation, model=name)}
    if (system := _system_out(conversation)) is not None:
        inner["systemInstruction"] = system
    if (tools := _tools_out(conversation)) is not None:
        inner["tools"] = tools
    return UpstreamRequest(
        url=_model_url(route, "countTokens"),
        headers=_headers(route),
        body=orjson.dumps({"generateContentRequest": inner}),
    )


def read_count_tokens(data: object) -> int:
    if not isinstance(data, dict) or "error" in data:
        raise ValueError("not a CountTokensResponse")
    total = data.get("totalTokens", 0)  # proto3 JSON leaves a zero out
    if isinstance(total, bool) or not isinstance(total, int):
        raise ValueError("totalTokens is not an integer")
    return total


def embed_request(texts: list[str], *, route: RouteTarget, dimensions: int | None) -> UpstreamRequest:
    model = "models/" + route.upstream_model.removeprefix("models/")
    requests = []
    for text in texts:
        item: dict = {"model": model, "content": {"parts": [{"text": text}]}}
        if dimensions:
            item["outputDimensionality"] = dimensions
        requests.append(item)
    return UpstreamRequest(
        url=_model_url(route, "batchEmbedContents"),
        headers=_headers(route),
        body=orjson.dumps({"requests": requests}),
    )


def read_embeddings(data: object) -> list[list[float]]:
    embeddings = data.get("embeddings") if isinstance(data, dict) else None
    if not isinstance(embeddings, list):
        raise ValueError("not a BatchEmbedContentsResponse")
    vectors = []
    for embedding in embeddings:
        values = embedding.get("values") if isinstance(embedding, dict) else None
        if not isinstance(values, list) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in values
        ):
            raise ValueError("an embedding has no list of numbers")
        vectors.append(values)
    return vectors


# --- upstream side: answers ----------------------------------------------------------------


def _usage_in(meta: object) -> Usage | None:
    if not isinstance(meta, dict) or "promptTokenCount" not in meta:
        return None

    def count(name: str) -> int:
        value = meta.get(name)
        return value if isinstance(value, int) and not isinstance(value, bool) else 0

    thoughts = count("thoughtsTokenCount")
    return Usage(
        input_tokens=count("promptTokenCount") + count("toolUsePromptTokenCount"),
        output_tokens=count("candidatesTokenCount") + thoughts,
        cached_input_tokens=count("cachedContentTokenCount"),
        reasoning_tokens=thoughts,
    )


def _stop_in(reason: object, *, calls: bool) -> str:
    if reason == "MAX_TOKENS":
        return LENGTH
    if reason in FILTERED:
        return CONTENT_FILTER
    return TOOL_CALLS if calls else STOP  # STOP, and OTHER, MALFORMED_FUNCTION_CALL, ...


def _parts_in(parts: object) -> Iterable[Part]:
    """A candidate's parts; a signature on a non-thought part comes first, as an empty Thinking."""
    for part in parts if isinstance(parts, list) else ():
        if not isinstance(part, dict):
            continue
        signature = part.get("thoughtSignature") or None
        text = part.get("text")
        if part.get("thought"):
            if text or signature:
                yield Thinking(text=text or "", signature=signature, origin=PROTOCOL)
            continue
        if signature:
            yield Thinking(signature=signature, origin=PROTOCOL)
        if isinstance(text, str):
            if text:
                yield Text(text)
        elif isinstance(call := part.get("functionCall"), dict):
            yield ToolCall(
                id=str(call.get("id") or _reply_call_id()),
                name=str(call.get("name") or ""),
                arguments=arguments_text(call.get("args")),
            )
        # executableCode, inlineData output and the like: Beluga asks for none of them.


def _blocked(data: dict) -> bool:
    feedback = data.get("promptFeedback")
    return isinstance(feedback, dict) and bool(feedback.get("blockReason"))


def read_reply(data: object) -> Reply:
    if not isinstance(data, dict):
        raise ValueError("not a GenerateContentResponse")
    candidates = data.get("candidates")
    if not candidates:
        if not _blocked(data):
            raise ValueError("a GenerateContentResponse without candidates")
        parts, stop = [], CONTENT_FILTER  # the prompt itself was blocked
    else:
        candidate = candidates[0] if isinstance(candidates, list) else None
        if not isinstance(candidate, dict):
            raise ValueError("a candidate is not an object")
        content = candidate.get("content")
        parts = list(_parts_in(content.get("parts") if isinstance(content, dict) else None))
        stop = _stop_in(candidate.get("finishReason"), calls=any(isinstance(p, ToolCall) for p in parts))
    return Reply(
        id=str(data.get("responseId") or ""),
        model=str(data.get("modelVersion") or ""),
        parts=parts,
        stop_reason=stop,
        usage=_usage_in(data.get("usageMetadata")),
        created=int(time.time()),
    )


class StreamReader:
    """Gemini's SSE chunks as stream events. Gemini has no end marker: a finishReason ends the stream."""

    def __init__(self) -> None:
        self.ended = False
        self.error: str | None = None
        self._started = False
        self._calls = 0
        self._usage: Usage | None = None

    @property
    def usage_so_far(self) -> Usage | None:
        """The latest usageMetadata (Google sends the prompt count early): for a stream cut short."""
        return self._usage

    def feed(self, data: bytes) -> list[StreamEvent]:
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            return []
        if isinstance(chunk, list) and len(chunk) == 1:
            chunk = chunk[0]
        if not isinstance(chunk, dict):
            return []
        if chunk.get("error") is not None and not chunk.get("candidates"):
            self.error = _error_message(chunk["error"]) or "unknown error"
            return []
        events: list[StreamEvent] = []
        if not self._started:
            self._started = True
            events.append(Start(id=str(chunk.get("responseId") or ""), model=str(chunk.get("modelVersion") or "")))
        usage = _usage_in(chunk.get("usageMetadata"))
        if usage is not None:
            self._usage = usage  # cumulative: the latest is the whole
        candidates = chunk.get("candidates")
        candidate = candidates[0] if isinstance(candidates, list) and candidates else None
        reason = None
        if isinstance(candidate, dict):
            content = candidate.get("content")
            for part in _parts_in(content.get("parts") if isinstance(content, dict) else None):
                events.extend(self._events(part))
            reason = candidate.get("finishReason")
        elif _blocked(chunk):
            reason = "SAFETY"
        if reason and not self.ended:
            self.ended = True
            events.append(Finish(_stop_in(reason, calls=self._calls > 0)))
            if self._usage is not None:
                events.append(UsageReport(self._usage))
        elif self.ended and usage is not None:
            events.append(UsageReport(usage))
        return events

    def _events(self, part: Part) -> list[StreamEvent]:
        if isinstance(part, Thinking):
            return [ThinkingDelta(text=part.text, signature=part.signature, origin=part.origin)]
        if isinstance(part, Text):
            return [TextDelta(part.text)]
        if isinstance(part, ToolCall):
            index, self._calls = self._calls, self._calls + 1
            return [ToolCallStart(index, part.id, part.name), ToolCallDelta(index, part.arguments)]
        return []


def _error_message(error: object) -> str:
    if isinstance(error, dict):
        return str(error.get("message") or error.get("status") or "")
    return str(error or "")


def _error_object(content: bytes) -> dict:
    try:
        data = orjson.loads(content)
    except orjson.JSONDecodeError:
        return {}
    if isinstance(data, list) and data:  # streamGenerateContent without alt=sse wraps it in an array
        data = data[0]
    error = data.get("error") if isinstance(data, dict) else None
    return error if isinstance(error, dict) else {}


def _detail(error: dict, kind: str, field: str) -> str | None:
    for detail in error.get("details") or ():
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith(kind) and detail.get(field):
            return str(detail[field])
    return None


def _header(headers, name: str) -> str | None:
    if headers is None:
        return None
    return headers.get(name) or headers.get(name.lower())


def _retry_after(headers, error: dict) -> str | None:
    given = _header(headers, "Retry-After")
    if given:
        return given
    delay = _detail(error, "RetryInfo", "retryDelay")  # "37s" or "0.5s"
    try:
        return str(max(1, round(float(delay.removesuffix("s"))))) if delay else None
    except ValueError:
        return None


def read_error(*, route: RouteTarget, status: int, content: bytes, headers) -> ApiError:
    """What the client sees for Google's non-200 answer ({"error": {code, message, status, details}})."""
    error = _error_object(content)
    message = str(error.get("message") or "")
    if route.api_key and route.api_key in message:
        message = message.replace(route.api_key, "***")
    reason = _detail(error, "ErrorInfo", "reason") or ""
    bad_key = reason.startswith("API_KEY") or "API key not valid" in message or "API key expired" in message
    if status in (401, 403) or bad_key:
        # Google answers a bad key with 400: still Beluga's credential, not the caller's request.
        return UpstreamError("The model provider refused Beluga's credentials.", status=502)
    if status == 429:
        retry = _retry_after(headers, error)
        return RateLimited(
            "The model provider is rate limiting requests; retry shortly." + (f" ({message})" if message else ""),
            code="upstream_rate_limited",
            headers={"Retry-After": retry} if retry else {},
        )
    if status in (400, 404, 409, 413, 422):
        return InvalidRequest(
            message or f"The model provider rejected the request (HTTP {status}).",
            status=413 if status == 413 else 400,
        )
    if status == 504:
        return UpstreamError("The model provider timed out.", status=502, code="upstream_timeout")
    if status >= 500:
        return UpstreamError(
            f"The model provider failed (HTTP {status}); retry shortly.", status=503 if status == 503 else 502
        )
    return UpstreamError(f"Unexpected answer from the model provider (HTTP {status}).", status=502)


# --- same protocol both sides: the client's request forwarded as it is ------------------
# A Gemini client calling a Gemini upstream keeps everything the Conversation
# does not carry (safety settings, cached content, Google's own tools, every
# candidate); the answer comes back unchanged but for modelVersion.


def passthrough_check(body: object) -> None:
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    contents = _get(body, "contents")
    if not isinstance(contents, list) or not contents:
        raise _bad("contents", "must be a non-empty array")


def passthrough_request(body: dict, *, route: RouteTarget, stream: bool, client_headers: dict) -> UpstreamRequest:
    action = "streamGenerateContent?alt=sse" if stream else "generateContent"
    return UpstreamRequest(
        url=_model_url(route, action), headers=_headers(route, stream=stream), body=orjson.dumps(body)
    )


def passthrough_reply(data: dict, *, model: str) -> dict:
    data["modelVersion"] = model
    return data


class PassthroughFramer:
    """The upstream's chunks for the client: SSE, or Google's JSON array stream."""

    def __init__(self, *, model: str, sse: bool = True, **_options) -> None:
        self.model = model
        self.sse = sse
        self.content_type = "text/event-stream" if sse else "application/json"
        self._sent = 0

    def _framed(self, chunk: dict) -> bytes:
        if self.sse:
            return b"data: " + orjson.dumps(chunk) + b"\r\n\r\n"
        self._sent += 1
        return (b"[" if self._sent == 1 else b"\n,\r\n") + orjson.dumps(chunk, option=orjson.OPT_INDENT_2)

    def frame(self, data: bytes) -> bytes:
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            return b""
        if not isinstance(chunk, dict) or "error" in chunk:
            return b""  # an error is written by close()
        chunk["modelVersion"] = self.model
        return self._framed(chunk)

    def close(self, *, error: str | None = None) -> bytes:
        out = b""
        if error is not None:
            body = {"error": {"code": 503, "message": error, "status": STATUS_NAMES[503]}}
            out = orjson.dumps(body, option=orjson.OPT_INDENT_2) + b"\n" if self.sse else self._framed(body)
        if not self.sse:
            out += b"\n]" if self._sent else b"[]"
        return out
