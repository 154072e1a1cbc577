"""Google's Gemini API, the pieces gemini.py (client side) and gemini_upstream.py
(upstream side) import: small readers (Google's field names and error wording, Beluga's
call ids), JSON Schema both ways, and a model turn's parts, written for a client or for Google.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from collections.abc import Iterable
from functools import lru_cache

from gateway.errors import InvalidRequest
from gateway.protocols.conversation import (
    FOREIGN_SIGNATURE,
    Part,
    Text,
    Thinking,
    ThinkingDelta,
    ToolCall,
    arguments_object,
    signature_in,
    signature_out,
)

MAX_STOP_SEQUENCES = 5
PROTOCOL = "gemini"  # Thinking.origin of signatures Google made
_GENERATED_ID = re.compile(r"call_\d+\Z")
STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    402: "RESOURCE_EXHAUSTED",
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


def signature_to_client(part: Thinking | ThinkingDelta) -> str | None:
    """The signature as a Gemini client carries it: Google's as Google sent it; another provider's tagged
    (see conversation.signature_out), then base64-wrapped, since google-genai takes base64 only."""
    signature = signature_out(part, PROTOCOL)
    if signature is not None and signature.startswith(FOREIGN_SIGNATURE):
        return base64.b64encode(signature.encode()).decode()
    return _client_signature(signature)


def signature_from_client(value: str | None) -> tuple[str | None, str | None]:
    """(signature, origin) of a thoughtSignature a Gemini client sent back (undoing signature_to_client)."""
    if value:
        try:
            decoded = base64.b64decode(_standard_base64(value), validate=True)
        except (binascii.Error, ValueError):
            decoded = b""
        if decoded.startswith(FOREIGN_SIGNATURE.encode()):
            return signature_in(decoded.decode("utf-8", "replace"), PROTOCOL)
    return signature_in(value, PROTOCOL)


def _is_generated(call_id: str | None) -> bool:
    return not call_id or bool(_GENERATED_ID.match(call_id))


def _reply_call_id() -> str:
    # Random digits: unique across the turns of a conversation (Anthropic refuses a repeated
    # tool_use id), and recognisable as Beluga's so that it never reaches Google.
    return f"call_{secrets.randbelow(10**12):012d}"


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


# --- a model turn's parts, to a client or back to Google -----------------------------------


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
                signature = signature_to_client(part)
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
