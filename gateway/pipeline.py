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

from accounts.limits import BUCKET_CHAT, RateLimitState, rate_limit_hit
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
    limit: RateLimitState
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
        ctx = CallContext(request.request_id, started, key, limit, chat, model, route)
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


def _complete(ctx: CallContext) -> HttpResponse:
    upstream_started = time.perf_counter()
    try:
        upstream = openai_adapter.chat_send(
            route=ctx.route, body=ctx.chat.body, stream=False, request_id=ctx.request_id
        )
        content = upstream.content
    except UpstreamError as error:
        _record(
            ctx,
            status_code=error.status,
            error_type=error.code or error.type,
            upstream_latency_ms=_ms(upstream_started),
        )
        raise
    upstream_ms = _ms(upstream_started)
    if upstream.status_code != 200:
        error = openai_adapter.error_from_response(
            route=ctx.route, status=upstream.status_code, content=content, headers=upstream.headers
        )
        _record(ctx, status_code=error.status, error_type=error.code or error.type, upstream_latency_ms=upstream_ms)
        raise error
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
        usage = (estimate_tokens(prompt_chars(ctx.chat.body)), estimate_tokens(len(content)))
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
    upstream_started = time.perf_counter()
    try:
        upstream = openai_adapter.chat_send(route=ctx.route, body=ctx.chat.body, stream=True, request_id=ctx.request_id)
    except UpstreamError as error:
        _record(
            ctx,
            status_code=error.status,
            error_type=error.code or error.type,
            upstream_latency_ms=_ms(upstream_started),
        )
        raise
    if upstream.status_code != 200:
        try:
            content = upstream.content
        except Exception:  # noqa: BLE001 - a broken error body is still an upstream error
            content = b""
        error = openai_adapter.error_from_response(
            route=ctx.route, status=upstream.status_code, content=content, headers=upstream.headers
        )
        _record(
            ctx,
            status_code=error.status,
            error_type=error.code or error.type,
            upstream_latency_ms=_ms(upstream_started),
        )
        raise error
    response = StreamingHttpResponse(_relay(ctx, upstream, upstream_started), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx in front must not buffer the stream
    return response


def _relay(ctx: CallContext, upstream, upstream_started: float):
    """Relay the upstream's SSE chunks as they arrive, and record the call when the stream ends.

    The finally block runs when the stream completes, when the upstream breaks
    off, and when the client hangs up (the WSGI server closes this generator),
    so every stream is recorded exactly once.
    """
    relay = openai_adapter.StreamRelay(public_model=ctx.model.slug, keep_usage=ctx.chat.include_usage)
    status, error_type, disconnected, finished = 200, "", False, False
    try:
        for data in openai_adapter.iter_sse_data(upstream):
            if data == b"[DONE]":
                finished = True
                break
            out = relay.relay(data)
            if out is None:
                continue
            yield b"data: " + out + b"\n\n"
            if relay.error:
                status, error_type = 502, "upstream_stream_error"
                break
        if not finished and status == 200:
            # The upstream closed without [DONE]: tell the client rather than end silently.
            status, error_type = 502, "upstream_stream_incomplete"
            yield _stream_error_event("The model provider ended the stream early.")
        yield b"data: [DONE]\n\n"
    except GeneratorExit:
        disconnected = True
        raise
    except Exception:  # noqa: BLE001 - the upstream broke off mid-stream (reset, timeout)
        status, error_type = 502, "upstream_stream_broken"
        yield _stream_error_event("The connection to the model provider broke during the stream.")
        yield b"data: [DONE]\n\n"
    finally:
        upstream.close()
        usage = relay.usage
        estimated = usage is None
        if usage is None:
            usage = (estimate_tokens(prompt_chars(ctx.chat.body)), estimate_tokens(relay.delivered_chars))
        _record(
            ctx,
            status_code=status,
            error_type=error_type or ("client_disconnected" if disconnected else ""),
            prompt_tokens=usage[0],
            completion_tokens=usage[1],
            usage_estimated=estimated,
            client_disconnected=disconnected,
            upstream_latency_ms=_ms(upstream_started),
        )


def _stream_error_event(message: str) -> bytes:
    return (
        b"data: "
        + orjson.dumps(
            {
                "error": {
                    "message": message,
                    "type": "service_unavailable_error",
                    "code": "upstream_error",
                    "param": None,
                }
            }
        )
        + b"\n\n"
    )
