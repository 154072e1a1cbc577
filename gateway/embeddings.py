"""POST /v1/embeddings: OpenAI's shape in, to an OpenAI-compatible or a Gemini upstream.

Same steps as a chat call (gateway/pipeline.py): key, rate limit (the chat
bucket), validation, routing, the upstream call, price per input token,
usage record. Gemini's batchEmbedContents reports no token counts, so those
calls are priced on Beluga's estimate (four characters a token) and the
record says so.
"""

from __future__ import annotations

import base64
import struct

import orjson
from django.http import HttpRequest, HttpResponse

from accounts.limits import BUCKET_CHAT
from catalog.models import Category
from gateway.errors import InvalidRequest, UpstreamError
from gateway.pipeline import (
    CallContext,
    Inbound,
    _ms,
    _send,
    _upstream_json,
    estimate_tokens,
    hold_for_call,
    limited_call,
    model_and_route,
    parse_json_body,
    post_upstream,
    priced_json,
    run_held,
    unreadable,
)
from gateway.protocols import UpstreamRequest, gemini
from gateway.protocols.conversation import Usage
from gateway.providers import openai as openai_adapter

EMBEDDINGS = Inbound(None, "openai.embeddings", "embeddings")
EMBEDDING_CATEGORIES = frozenset({Category.EMBEDDING})
MAX_INPUTS = 2048
ENCODINGS = ("float", "base64")


def _validated(body: object) -> dict:
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("Missing required parameter: 'model'.", param="model", code="missing_required_parameter")
    value = body.get("input")
    if value is None:
        raise InvalidRequest("Missing required parameter: 'input'.", param="input", code="missing_required_parameter")
    inputs = [value] if isinstance(value, str) else value
    if not isinstance(inputs, list) or not inputs:
        raise InvalidRequest(
            "Invalid 'input': expected a string or a non-empty array of strings or token arrays.", param="input"
        )
    if len(inputs) > MAX_INPUTS:
        raise InvalidRequest(f"Invalid 'input': at most {MAX_INPUTS} inputs per request.", param="input")
    if all(isinstance(item, int) and not isinstance(item, bool) for item in inputs):
        inputs = [inputs]  # one input given as tokens
    for i, item in enumerate(inputs):
        tokens = isinstance(item, list) and item and all(isinstance(t, int) and not isinstance(t, bool) for t in item)
        if not (isinstance(item, str) and item) and not tokens:
            raise InvalidRequest(
                f"Invalid 'input[{i}]': expected a non-empty string or an array of token ids.", param=f"input[{i}]"
            )
    encoding = body.get("encoding_format", "float")
    if encoding not in ENCODINGS:
        raise InvalidRequest("Invalid 'encoding_format': expected float or base64.", param="encoding_format")
    dimensions = body.get("dimensions")
    if dimensions is not None and (not isinstance(dimensions, int) or isinstance(dimensions, bool) or dimensions < 1):
        raise InvalidRequest("Invalid 'dimensions': expected a positive integer.", param="dimensions")
    return {"model": model, "inputs": inputs, "encoding": encoding, "dimensions": dimensions}


def _encoded(vector: list[float], encoding: str):
    if encoding == "float":
        return vector
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def embeddings_call(request: HttpRequest) -> HttpResponse:
    return limited_call(request, bucket=BUCKET_CHAT, call=lambda key, started: _embeddings_call(request, key, started))


def _embeddings_call(request: HttpRequest, key, started: float) -> HttpResponse:
    body = parse_json_body(request)
    spec = _validated(body)
    model, route = model_and_route(spec["model"], categories=EMBEDDING_CATEGORIES, served="embedding", key=key)
    if route.kind not in ("openai", "gemini"):
        raise UpstreamError(f"'{model.slug}' is routed to an upstream that has no embeddings.", status=503)
    chars = sum(len(item) if isinstance(item, str) else 4 * len(item) for item in spec["inputs"])
    ctx = CallContext(request.request_id, started, key, EMBEDDINGS, model, route, False, chars)
    hold_for_call(ctx, spec["inputs"], output_tokens=0, inputs=len(spec["inputs"]))
    return run_held(ctx, lambda: _openai(ctx, body) if route.kind == "openai" else _gemini(ctx, spec))


def _openai(ctx: CallContext, body: dict) -> HttpResponse:
    route = ctx.route
    headers = {"Content-Type": "application/json"}
    if route.api_key:
        headers["Authorization"] = f"Bearer {route.api_key}"
    outbound = UpstreamRequest(
        url=f"{route.base_url}/embeddings", headers=headers, body=orjson.dumps({**body, "model": route.upstream_model})
    )
    upstream, upstream_started = _send(
        ctx,
        call=lambda: post_upstream(ctx.route, outbound, request_id=ctx.request_id, stream=False),
        read_error=openai_adapter.error_from_response,
    )
    upstream_ms = _ms(upstream_started)
    data = _upstream_json(ctx, upstream, upstream_ms)
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise unreadable(ctx, upstream_ms)
    reported = (data.get("usage") or {}).get("prompt_tokens")
    estimated = not isinstance(reported, int)
    tokens = estimate_tokens(ctx.prompt_chars) if estimated else reported
    data["model"] = ctx.model.slug
    data["usage"] = {"prompt_tokens": tokens, "total_tokens": tokens}
    return priced_json(ctx, Usage(input_tokens=tokens), data, estimated=estimated, upstream_ms=upstream_ms)


def _gemini(ctx: CallContext, spec: dict) -> HttpResponse:
    if not all(isinstance(item, str) for item in spec["inputs"]):
        raise InvalidRequest(f"'{ctx.model.slug}' takes text input, not token arrays.", param="input")
    outbound = gemini.embed_request(spec["inputs"], route=ctx.route, dimensions=spec["dimensions"])
    upstream, upstream_started = _send(
        ctx,
        call=lambda: post_upstream(ctx.route, outbound, request_id=ctx.request_id, stream=False),
        read_error=gemini.read_error,
    )
    upstream_ms = _ms(upstream_started)
    try:
        vectors = gemini.read_embeddings(_upstream_json(ctx, upstream, upstream_ms))
    except ValueError:
        raise unreadable(ctx, upstream_ms) from None
    tokens = estimate_tokens(ctx.prompt_chars)
    data = {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": _encoded(vector, spec["encoding"])}
            for i, vector in enumerate(vectors)
        ],
        "model": ctx.model.slug,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    return priced_json(ctx, Usage(input_tokens=tokens), data, estimated=True, upstream_ms=upstream_ms)
