"""The request pipeline for chat completions, step by step:

    authenticate → rate-limit → validate → route → call upstream → price → record

Each step calls the app that owns it (accounts, catalog, billing) or the
provider adapter; nothing here writes another app's tables directly.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import orjson
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import connection
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse

from accounts.limits import BUCKET_CHAT, rate_limit_hit
from accounts.services import AuthenticatedKey, KeyRejected, api_key_authenticate
from billing.pricing import chat_cost
from billing.services import usage_record
from catalog.selectors import ModelInfo, RouteTarget, model_get, route_pick
from gateway.errors import (
    ApiError,
    AuthenticationFailed,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    UpstreamError,
)
from gateway.providers import openai as openai_adapter
from gateway.streaming import RelayedStream, StreamOutcome
from gateway.validation import ChatRequest, validate_chat_request

ENDPOINT_CHAT = "chat/completions"
# Without the upstream's usage (a stream cut short), tokens are estimated from
# characters: about four characters a token for English text with OpenAI's
# tokenizers. Marked usage_estimated on the record.
CHARS_PER_TOKEN = 4


@dataclass(slots=True)
class CallContext:
    """What the later steps of one call need to know about the earlier ones."""

    request_id: str
    started: float
    key: AuthenticatedKey
    chat: ChatRequest
    model: ModelInfo
    route: RouteTarget


def raw_key_from(request: HttpRequest) -> str:
    """The API key from `Authorization: Bearer`, `x-api-key` or `x-goog-api-key`."""
    meta = request.META
    auth = meta.get("HTTP_AUTHORIZATION", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return meta.get("HTTP_X_API_KEY") or meta.get("HTTP_X_GOOG_API_KEY") or ""


def authenticate(request: HttpRequest) -> AuthenticatedKey:
    try:
        return api_key_authenticate(raw_key=raw_key_from(request))
    except KeyRejected:
        raise AuthenticationFailed(
            "Invalid API key provided. Pass a valid Beluga key as 'Authorization: Bearer bapi_…'.",
        ) from None


def parse_json_body(request: HttpRequest) -> object:
    try:
        return orjson.loads(request.body)
    except RequestDataTooBig:
        raise PayloadTooLarge(
            f"Request body is larger than {settings.MAX_REQUEST_BODY_BYTES} bytes.", code="request_too_large"
        ) from None
    except orjson.JSONDecodeError:
        raise InvalidRequest(
            "We could not parse the JSON body of your request. Send a JSON object with Content-Type: application/json.",
            code="invalid_json",
        ) from None


def release_db_connection() -> None:
    """Give the database connection back before a long upstream call.

    gthread workers run one thread per open stream; none of them may sit on a
    pooled connection while waiting for a provider.
    """
    if connection.connection is not None and not connection.in_atomic_block:
        connection.close()


def estimate_tokens(chars: int) -> int:
    return math.ceil(chars / CHARS_PER_TOKEN) if chars > 0 else 0


def prompt_chars(body: dict) -> int:
    """Characters of text in the prompt (messages and tool definitions), for estimates."""
    total = 0
    for message in body.get("messages") or ():
        content = message.get("content")
        if isinstance(content, str):
            total += len(content)
        elif isinstance(content, list):
            for part in content:
                text = part.get("text") if isinstance(part, dict) else None
                if isinstance(text, str):
                    total += len(text)
    if body.get("tools"):
        total += len(orjson.dumps(body["tools"]))
    return total


def _ms(since: float) -> int:
    return int((time.perf_counter() - since) * 1000)


# --- the pipeline ---------------------------------------------------------


def chat_completions(request: HttpRequest) -> HttpResponse:
    started = time.perf_counter()
    key = authenticate(request)
    release_db_connection()  # a key lookup that missed the cache must not hold a connection while we wait
    limit = rate_limit_hit(request=request, key=key, bucket=BUCKET_CHAT)
    try:
        if limit.limited:
            raise RateLimited(
                f"Rate limit reached: {limit.limit} chat requests per minute for this key. "
                f"Retry after {limit.retry_after} s.",
                headers={"Retry-After": str(limit.retry_after)},
            )
        chat = validate_chat_request(parse_json_body(request))
        model = model_get(slug=chat.model)
        if model is None:
            raise NotFound(f"The model '{chat.model}' does not exist.", param="model", code="model_not_found")
        if chat.stream and not model.supports_stream:
            raise InvalidRequest(f"The model '{model.slug}' does not support streaming.", param="stream")
        route = route_pick(model=model)
        if route is None:
            raise UpstreamError(f"No upstream is available for '{model.slug}' right now.", status=503)
        ctx = CallContext(request.request_id, started, key, chat, model, route)
        release_db_connection()
        response = _stream(ctx) if chat.stream else _complete(ctx)
    except ApiError as error:
        error.headers = {**limit.headers(), **error.headers}
        raise
    for name, value in limit.headers().items():
        response[name] = value
    return response


def _record(ctx: CallContext, **fields) -> int:
    prompt = fields.get("prompt_tokens", 0)
    completion = fields.get("completion_tokens", 0)
    cost = chat_cost(model=ctx.model, prompt_tokens=prompt, completion_tokens=completion)
    usage_record(
        request_id=ctx.request_id,
        user_id=ctx.key.user_id,
        api_key_id=ctx.key.key_id,
        model=ctx.model.slug,
        upstream=ctx.route.upstream_name,
        upstream_model=ctx.route.upstream_model,
        endpoint=ENDPOINT_CHAT,
        stream=ctx.chat.stream,
        cost_micro_usd=cost,
        latency_ms=_ms(ctx.started),
        **fields,
    )
    return cost


def _send(ctx: CallContext, *, stream: bool):
    """Call the upstream; an unreachable upstream or a non-200 answer is recorded and raised."""
    upstream_started = time.perf_counter()
    try:
        upstream = openai_adapter.chat_send(
            route=ctx.route, body=ctx.chat.body, stream=stream, request_id=ctx.request_id
        )
        error = None
        if upstream.status_code != 200:
            try:
                content = upstream.content
            except Exception:  # noqa: BLE001 - a broken error body is still an upstream error
                content = b""
            error = openai_adapter.error_from_response(
                route=ctx.route, status=upstream.status_code, content=content, headers=upstream.headers
            )
    except UpstreamError as unreachable:
        error = unreachable
    if error is not None:
        _record(
            ctx,
            status_code=error.status,
            error_type=error.code or error.type,
            upstream_latency_ms=_ms(upstream_started),
        )
        raise error
    return upstream, upstream_started


def _complete(ctx: CallContext) -> HttpResponse:
    upstream, upstream_started = _send(ctx, stream=False)
    content = upstream.content
    upstream_ms = _ms(upstream_started)
    try:
        data = orjson.loads(content)
        if not isinstance(data, dict):
            raise ValueError("not an object")
    except ValueError:
        _record(ctx, status_code=502, error_type="upstream_invalid_response", upstream_latency_ms=upstream_ms)
        raise UpstreamError("The model provider sent an unreadable answer.", status=502) from None
    usage = openai_adapter.usage_from(data)
    estimated = usage is None
    if usage is None:
        usage = (
            estimate_tokens(prompt_chars(ctx.chat.body)),
            estimate_tokens(openai_adapter.completion_chars(data)),
        )
    data["model"] = ctx.model.slug
    cost = _record(
        ctx,
        status_code=200,
        prompt_tokens=usage[0],
        completion_tokens=usage[1],
        usage_estimated=estimated,
        upstream_latency_ms=upstream_ms,
    )
    response = HttpResponse(orjson.dumps(data), content_type="application/json")
    response["X-Request-Cost-Micro-Usd"] = str(cost)
    return response


def _stream(ctx: CallContext) -> HttpResponse:
    upstream, upstream_started = _send(ctx, stream=True)
    relayed = RelayedStream(
        upstream=upstream,
        relay=openai_adapter.StreamRelay(public_model=ctx.model.slug, keep_usage=ctx.chat.include_usage),
        on_finish=lambda outcome: _record_stream(ctx, outcome, upstream_started),
    )
    response = StreamingHttpResponse(relayed, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx in front must not buffer the stream
    return response


def _record_stream(ctx: CallContext, outcome: StreamOutcome, upstream_started: float) -> None:
    usage = outcome.usage
    if usage is None:
        usage = (estimate_tokens(prompt_chars(ctx.chat.body)), estimate_tokens(outcome.delivered_chars))
    _record(
        ctx,
        status_code=outcome.status,
        error_type=outcome.error_type,
        prompt_tokens=usage[0],
        completion_tokens=usage[1],
        usage_estimated=outcome.usage is None,
        client_disconnected=outcome.client_disconnected,
        upstream_latency_ms=_ms(upstream_started),
    )
