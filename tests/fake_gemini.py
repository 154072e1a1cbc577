"""Google's Gemini API wire format for the fake upstream (tests/fake_upstream.py dispatches here).

What generativelanguage.googleapis.com sends, from the scripted Behaviour:

- generateContent: a GenerateContentResponse; streamGenerateContent (`alt=sse`):
  `data: <json>\\r\\n\\r\\n` chunks, JSON spaced as Google spaces it. A thought part
  first when `reasoning_text` is set and the request asked for thoughts
  (`includeThoughts`); then the text word by word and a closing chunk with an
  empty text part, the finishReason and the full usage; or, when the request
  declares functions and the test scripts calls, the calls whole in one chunk
  (ids included, the first one signed, as Gemini 3 answers) carrying the finish.
  Earlier chunks carry the prompt count only, as Google's do. Gemini has no end
  marker: `omit_done` leaves the finishReason out.
- countTokens: `{"totalTokens": prompt_tokens}`; batchEmbedContents and
  embedContent: a small vector per text, derived from its hash.
- Errors in Google's shape, pretty-printed: {"error": {code, message, status, details?}}.

Usage as Gemini counts it: promptTokenCount includes cachedContentTokenCount
(Behaviour.cached_tokens); the output (completion_tokens, or one token a word)
is candidatesTokenCount plus thoughtsTokenCount (reasoning_tokens). Zero counts
are left out, as proto3 JSON does.
"""

from __future__ import annotations

import base64
import hashlib
import json

from tests.fake_upstream import Behaviour, words

RESPONSE_ID = "fakeGeminiResp0001"
SIGNATURE = base64.b64encode(b"a fake thought signature 0001").decode()  # opaque base64, as Google's
DEFAULT_DIMENSIONS = 8
STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
DEFAULT_ERROR_MESSAGES = {
    400: "Request contains an invalid argument.",
    401: "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other "
    "valid authentication credential.",
    403: "Method doesn't allow unregistered callers (callers without established identity). Please use API Key "
    "or other form of API consumer identity to call this API.",
    404: "models/upstream-test-model is not found for API version v1beta, or is not supported for generateContent.",
    429: "Resource has been exhausted (e.g. check quota).",
    500: "An internal error has occurred. Please retry or report in "
    "https://developers.generativeai.google/guide/troubleshooting",
    503: "The model is overloaded. Please try again later.",
    504: "The request timed out. Please try again.",
}


def _action(path: str) -> str:
    return path.split("?", 1)[0].rstrip("/").rsplit(":", 1)[-1]


def _model(path: str) -> str:
    return path.split("?", 1)[0].split("/models/", 1)[-1].split(":", 1)[0]


def _wants_tools(body: dict, b: Behaviour) -> bool:
    declared = any(isinstance(t, dict) and t.get("functionDeclarations") for t in body.get("tools") or ())
    mode = ((body.get("toolConfig") or {}).get("functionCallingConfig") or {}).get("mode")
    return declared and bool(b.tool_calls) and mode != "NONE"


def _wants_thoughts(body: dict, b: Behaviour) -> bool:
    # Google takes a field by its JSON or its proto name; google-genai sends thinkingConfig's in snake_case.
    config = body.get("generationConfig") or body.get("generation_config") or {}
    thinking = config.get("thinkingConfig") or config.get("thinking_config") or {}
    include = thinking.get("includeThoughts", thinking.get("include_thoughts"))
    return bool(b.reasoning_text) and include is True


def _nonzero(counts: dict) -> dict:
    return {name: value for name, value in counts.items() if value}


def usage(b: Behaviour) -> dict:
    output = b.completion_tokens if b.completion_tokens is not None else len(words(b.reply_text))
    counts = _nonzero(
        {
            "promptTokenCount": b.prompt_tokens,
            "candidatesTokenCount": max(output - b.reasoning_tokens, 0),
            "totalTokenCount": b.prompt_tokens + output,
            "cachedContentTokenCount": b.cached_tokens,
            "thoughtsTokenCount": b.reasoning_tokens,
        }
    )
    counts["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": b.prompt_tokens}]
    return counts


def _prompt_usage(b: Behaviour) -> dict:
    """What Google's chunks before the last one carry."""
    return {
        "promptTokenCount": b.prompt_tokens,
        "totalTokenCount": b.prompt_tokens,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": b.prompt_tokens}],
    }


def _call_parts(b: Behaviour) -> list[dict]:
    parts = []
    for i, call in enumerate(b.tool_calls):
        part: dict = {"functionCall": {"name": call.name, "args": json.loads(call.arguments), "id": call.id}}
        if i == 0:
            part["thoughtSignature"] = SIGNATURE  # Gemini 3 signs a step's first call
        parts.append(part)
    return parts


def _chunk(path: str, parts: list[dict], finish: str | None, usage_metadata: dict | None) -> dict:
    candidate: dict = {"content": {"parts": parts, "role": "model"}}
    if finish:
        candidate["finishReason"] = finish
    chunk: dict = {"candidates": [candidate]}
    if usage_metadata:
        chunk["usageMetadata"] = usage_metadata
    chunk["modelVersion"] = _model(path)
    chunk["responseId"] = RESPONSE_ID
    return chunk


def generate_content(path: str, body: dict, b: Behaviour) -> dict:
    parts = [{"text": b.reasoning_text, "thought": True}] if _wants_thoughts(body, b) else []
    parts += _call_parts(b) if _wants_tools(body, b) else [{"text": b.reply_text}]
    response = _chunk(path, parts, "STOP", None if b.omit_usage else usage(b))
    response["candidates"][0]["index"] = 0
    return response


def stream_chunks(path: str, body: dict, b: Behaviour) -> list[dict]:
    partial = None if b.omit_usage else _prompt_usage(b)
    final = None if b.omit_usage else usage(b)
    chunks = []
    if _wants_thoughts(body, b):
        chunks.append(_chunk(path, [{"text": b.reasoning_text, "thought": True}], None, partial))
    if _wants_tools(body, b):
        chunks.append(_chunk(path, _call_parts(b), None if b.omit_done else "STOP", partial if b.omit_done else final))
        return chunks
    chunks.extend(_chunk(path, [{"text": word}], None, partial) for word in words(b.reply_text))
    if not b.omit_done:
        chunks.append(_chunk(path, [{"text": ""}], "STOP", final))
    return chunks


def _vector(text: str, dimensions: int) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [round((digest[i % len(digest)] - 128) / 128, 6) for i in range(dimensions)]


def _google_json(obj) -> bytes:
    # Google's streamed JSON: `": "` between key and value, nothing after commas.
    return json.dumps(obj, separators=(",", ": "), ensure_ascii=False).encode()


# --- the four functions every wire module offers ------------------------------------------


def is_stream(path: str, body: dict) -> bool:
    return _action(path) == "streamGenerateContent"


def reply_json(path: str, body: dict, b: Behaviour) -> dict:
    action = _action(path)
    if action == "countTokens":
        return {
            "totalTokens": b.prompt_tokens,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": b.prompt_tokens}],
        }
    if action == "batchEmbedContents":
        embeddings = []
        for request in body.get("requests") or ():
            text = "".join(p.get("text", "") for p in (request.get("content") or {}).get("parts") or ())
            embeddings.append({"values": _vector(text, request.get("outputDimensionality") or DEFAULT_DIMENSIONS)})
        return {"embeddings": embeddings}
    if action == "embedContent":
        text = "".join(p.get("text", "") for p in (body.get("content") or {}).get("parts") or ())
        return {"embedding": {"values": _vector(text, body.get("outputDimensionality") or DEFAULT_DIMENSIONS)}}
    return generate_content(path, body, b)


def stream_frames(path: str, body: dict, b: Behaviour) -> list[bytes]:
    return [b"data: " + _google_json(chunk) + b"\r\n\r\n" for chunk in stream_chunks(path, body, b)]


def error_json(status: int, b: Behaviour) -> dict:
    message = b.error_message or DEFAULT_ERROR_MESSAGES.get(status, "Upstream error.")
    error: dict = {"code": status, "message": message, "status": STATUS_NAMES.get(status, "UNKNOWN")}
    if status == 429:
        error["details"] = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1s"}]
    elif status == 400 and "API key" in message:
        error["details"] = [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            }
        ]
    return {"error": error}
