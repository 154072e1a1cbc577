"""Google's Gemini API (Generative Language API, v1beta), both sides.

Client side: what google-genai and other Gemini clients send to
`POST /v1beta/models/{model}:generateContent` and `:streamGenerateContent`, and
the GenerateContentResponse they read back. Upstream side: what Beluga sends a
route of kind "gemini" (generateContent, countTokens, batchEmbedContents), in
gemini_upstream.py, whose names this module re-exports; what both sides use is in
gemini_wire.py.

Wire facts these modules rely on, checked against recorded Google traffic and
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

import re

import orjson

from gateway.errors import ApiError, InvalidRequest
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
    arguments_text,
    with_cost_of,
)
from gateway.protocols.gemini_wire import (
    MAX_STOP_SEQUENCES,
    PROTOCOL,
    STATUS_NAMES,
    _bad,
    _call_out,
    _camel,
    _dict,
    _get,
    _integer,
    _model_parts_out,
    _number,
    _standard_base64,
    _string,
    schema_from_openapi,
    signature_from_client,
    signature_to_client,
)

MAX_CANDIDATES = 8
LEVEL_EFFORTS = {"MINIMAL": "minimal", "LOW": "low", "MEDIUM": "medium", "HIGH": "high"}
_FUNCTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]{0,127}\Z")

FINISH_OUT = {STOP: "STOP", TOOL_CALLS: "STOP", LENGTH: "MAX_TOKENS", CONTENT_FILTER: "SAFETY"}
_UNSUPPORTED_PARTS = ("executableCode", "codeExecutionResult")


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
    _join_signed_thoughts(messages)
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


def _join_signed_thoughts(messages: list[Message]) -> None:
    """Thinking another provider signed reaches a streaming client in pieces, one thought part each, the
    signature on the last (StreamWriter). The provider verifies the whole text: the pieces (unsigned
    thoughts just before, in the same model turn, over as many model contents as the SDK kept) are
    joined back into the signed block."""
    pieces: list[Thinking] = []
    joined: set[int] = set()
    for message in messages:
        if message.role != "assistant":
            pieces = []
            continue
        for part in message.parts:
            if not isinstance(part, Thinking) or part.redacted_data is not None:
                pieces = []
            elif part.signature is None:
                pieces.append(part)
            else:
                if part.origin != PROTOCOL and part.text and pieces:
                    part.text = "".join(piece.text for piece in pieces) + part.text
                    joined.update(id(piece) for piece in pieces)
                pieces = []
    if joined:
        # A content that held only pieces goes with them.
        messages[:] = [m for m in messages if not m.parts or any(id(part) not in joined for part in m.parts)]
        for message in messages:
            message.parts = [part for part in message.parts if id(part) not in joined]


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
    signature, origin = signature_from_client(
        _string(_get(part, "thoughtSignature"), f"{where}.thoughtSignature", required=False)
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

    def __init__(
        self, *, model: str, request_id: str, conversation: Conversation, sse: bool = True, cost_of=None
    ) -> None:
        self.cost_of = cost_of  # Usage -> the cost fields added to the last chunk's usageMetadata
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
            signature = signature_to_client(event)
            if event.text:
                thought = {"text": event.text, "thought": True}
                if signature:
                    thought["thoughtSignature"] = signature
                self._part(thought, out)
            elif signature:
                held = self._held
                foreign = event.origin not in (None, PROTOCOL)
                if foreign and held and held.get("thought") and "thoughtSignature" not in held:
                    # Another provider's signature ends the thinking just streamed: it goes on the block's
                    # last piece, so that the block comes back whole (_join_signed_thoughts).
                    held["thoughtSignature"] = signature
                else:
                    self._signature = signature  # Google's: on the part that follows
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
            chunk["usageMetadata"] = with_cost_of(_usage_out(usage), usage, self.cost_of)
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


# The upstream side (an upstream of kind `gemini`), kept in its own file for size.
from gateway.protocols.gemini_upstream import (  # noqa: E402
    PassthroughFramer,
    StreamReader,
    build_request,
    count_tokens_request,
    embed_request,
    passthrough_check,
    passthrough_reply,
    passthrough_request,
    read_count_tokens,
    read_embeddings,
    read_error,
    read_reply,
)

__all__ = [
    "PassthroughFramer",
    "StreamReader",
    "StreamWriter",
    "build_request",
    "count_tokens_request",
    "embed_request",
    "error_body",
    "passthrough_check",
    "passthrough_reply",
    "passthrough_request",
    "read_count_tokens",
    "read_embeddings",
    "read_error",
    "read_reply",
    "read_request",
    "write_model",
    "write_model_list",
    "write_reply",
]
