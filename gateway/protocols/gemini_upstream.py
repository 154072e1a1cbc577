"""Google's Gemini API, upstream side: what Beluga sends a route of kind "gemini"
(generateContent, countTokens, batchEmbedContents) and reads back, and the same protocol
on both sides (passthrough). gemini.py, the client side, re-exports these names, so that
the one protocol module offers both sides.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
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
    Part,
    Reply,
    Start,
    StreamEvent,
    Text,
    TextDelta,
    Thinking,
    ThinkingConfig,
    ThinkingDelta,
    ToolCall,
    ToolCallDelta,
    ToolCallStart,
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
    _get,
    _is_generated,
    _model_parts_out,
    _reply_call_id,
    _snake,
    schema_for_gemini,
)
from gateway.protocols.variants import RequestSettings, settings_merged

API_VERSION = "v1beta"
SKIP_SIGNATURE = "skip_thought_signature_validator"
# OpenAI-style efforts as Gemini thinking budgets. Every value lies inside the
# ranges of 2.5 Pro (128-32768), Flash (0-24576) and Flash-Lite (512-24576);
# Gemini 3 models take thinkingBudget too, for backward compatibility.
EFFORT_BUDGETS = {"minimal": 512, "low": 2048, "medium": 8192, "high": 24576}
# Gemini 3 and later take a thinking level (2.5 a budget); Pro offers two levels.
_LEVELS_MODEL = re.compile(r"(models/)?gemini-([3-9]|\d\d)")
FLASH_LEVELS = {"minimal": "minimal", "low": "low", "medium": "medium", "high": "high", "xhigh": "high"}
PRO_LEVELS = {"minimal": "low", "low": "low", "medium": "high", "high": "high", "xhigh": "high"}
# Models that think (2.5 and later); earlier ones may refuse a thinkingConfig.
_THINKING_MODEL = re.compile(r"(models/)?gemini-(2\.5|[3-9]|\d\d)")
# Models that cannot think less than this (0 does not turn their thinking off).
_MIN_BUDGETS = ((re.compile(r"(models/)?gemini-2\.5-pro"), 128),)
# Families that predate thought-signature validation (and may refuse the placeholder).
_NO_SIGNATURE_CHECK = re.compile(r"(models/)?(gemini-1|gemini-2|gemma|learnlm)")
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


def _thinking_config(thinking: ThinkingConfig, model: str) -> dict | None:
    """Gemini's thinkingConfig for `model`: a level on Gemini 3 and later, else a budget.

    Off is a budget of 0, or the lowest level on Gemini 3 (minimal; low on Pro),
    which cannot turn thinking off; 2.5 Pro cannot either and takes its minimum."""
    levels = _LEVELS_MODEL.match(model)
    pro = "pro" in model
    off = thinking.is_off
    if off and not _THINKING_MODEL.match(model):
        return None  # a model without thinking (1.5, 2.0, Gemma) is not told to turn it off
    config: dict = {}
    if levels and (thinking.effort or off):
        effort = "minimal" if off else thinking.effort
        config["thinkingLevel"] = (PRO_LEVELS if pro else FLASH_LEVELS).get(effort, "high")
    else:
        budget = thinking.budget_tokens
        if budget is None and thinking.effort:
            budget = EFFORT_BUDGETS.get(thinking.effort)
        if budget is not None:
            config["thinkingBudget"] = next(
                (low for name, low in _MIN_BUDGETS if name.match(model) and budget < low), budget
            )
    if thinking.include_thoughts and not off:
        config["includeThoughts"] = True
    return config or None


def settings_into_body(
    body: dict, defaults: RequestSettings, overrides: RequestSettings, *, route: RouteTarget, dropped: list[str]
) -> None:
    """A model's request settings (gateway/protocols/variants.py) in a Gemini request the client wrote
    itself: a default where its generationConfig lacks the field, an override over it."""
    key = "generation_config" if "generation_config" in body and "generationConfig" not in body else "generationConfig"
    if body.get(key) is not None and not isinstance(body[key], dict):
        raise _bad(key, "expected an object.")
    config = dict(body.get(key) or {})
    names = {"thinking": "thinkingConfig", "max_tokens": "maxOutputTokens", "temperature": "temperature"}
    names |= {"top_p": "topP", "top_k": "topK"}
    merged = settings_merged(defaults, overrides, client_sets=lambda name: _get(config, names[name]) is not None)
    if not merged:
        return
    for name, value in merged.items():
        config.pop(_snake(names[name]), None)
        if name != "thinking":
            config[names[name]] = value
        elif thinking_config := _thinking_config(value, route.upstream_model):
            config["thinkingConfig"] = thinking_config
        else:
            config.pop("thinkingConfig", None)
    body[key] = config


def _generation_config_out(conversation: Conversation, model: str, dropped: list[str]) -> dict:
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
    if conversation.thinking is not None and (thinking_config := _thinking_config(conversation.thinking, model)):
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
    if config := _generation_config_out(conversation, route.upstream_model, dropped):
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

    def __init__(self, *, model: str, sse: bool = True, cost_of=None, **_options) -> None:
        self.cost_of = cost_of  # Usage -> the cost fields, added to each chunk's usageMetadata (the cost so far)
        self.model = model
        self.sse = sse
        self.content_type = "text/event-stream" if sse else "application/json"
        self._sent = 0

    def _framed(self, chunk: dict) -> bytes:
        if self.sse:
            return b"data: " + orjson.dumps(chunk) + b"\r\n\r\n"
        self._sent += 1
        return (b"[" if self._sent == 1 else b"\n,\r\n") + orjson.dumps(chunk, option=orjson.OPT_INDENT_2)

    def frame(self, data: bytes, usage: Usage | None = None) -> bytes:
        """`usage`: what the stream reported so far (read from this and the earlier chunks)."""
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            return b""
        if not isinstance(chunk, dict) or "error" in chunk:
            return b""  # an error is written by close()
        chunk["modelVersion"] = self.model
        if isinstance(chunk.get("usageMetadata"), dict) and usage is not None:
            with_cost_of(chunk["usageMetadata"], usage, self.cost_of)
        return self._framed(chunk)

    def close(self, *, error: str | None = None) -> bytes:
        out = b""
        if error is not None:
            body = {"error": {"code": 503, "message": error, "status": STATUS_NAMES[503]}}
            out = orjson.dumps(body, option=orjson.OPT_INDENT_2) + b"\n" if self.sse else self._framed(body)
        if not self.sse:
            out += b"\n]" if self._sent else b"[]"
        return out
