"""The request pipeline for model calls, step by step:

    authenticate → rate-limit → read the request (client protocol) → route →
    hold the most the call can cost (prepaid accounts, key budgets) →
    call the upstream (its protocol) → answer (client protocol) → price →
    record and settle (one transaction)

Every client protocol (OpenAI chat, Anthropic Messages, Gemini, OpenAI
Responses) enters through `model_call`. When the client and the route's
upstream both speak OpenAI chat, the validated body is forwarded as it is (the
fast path); every other pair goes through the Conversation of
gateway/protocols: the client protocol's reader, the upstream protocol's
writer, and back. Each step calls the app that owns it (accounts, catalog,
billing); nothing here writes another app's tables directly.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import time
from dataclasses import dataclass

import orjson
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import connection
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.utils import timezone

from accounts.limits import BUCKET_CHAT, RateLimitState, key_admit, rate_limit_peek
from accounts.services import AuthenticatedKey, KeyRejected, api_key_authenticate
from billing.pricing import MediaCharge, charged_prices, cost_fields, max_token_cost, token_cost, usd_text
from billing.services import (
    Budget,
    BudgetExceeded,
    Hold,
    InsufficientBalance,
    reservation_release,
    reserve,
    usage_record,
)
from catalog.models import CHAT_CATEGORIES
from catalog.selectors import ModelInfo, RouteTarget, model_get, route_pick
from gateway import metrics
from gateway.errors import (
    ApiError,
    AuthenticationFailed,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    PaymentRequired,
    PermissionDenied,
    RateLimited,
    UpstreamError,
)
from gateway.protocols import (
    UpstreamRequest,
    anthropic_messages,
    gemini,
    openai_chat,
    openai_responses,
    request_with_route_params,
    variants,
)
from gateway.protocols.conversation import Conversation, Image, Reply, ToolResult, Usage
from gateway.providers import openai as openai_adapter
from gateway.providers.http import idle_timeout_set, iter_sse_data, post, session_for, upstream_timeout
from gateway.providers.image_fetch import fetch_image
from gateway.routing import breakers
from gateway.routing.budget import retry_budget
from gateway.routing.plan import candidates, credential_left, credential_refused, latency_observed, with_credential
from gateway.routing.slots import slot_give_back, slot_take
from gateway.streaming import RelayedStream, StreamOutcome, TranslatedStream
from gateway.validation import validate_chat_request

logger = logging.getLogger("beluga.pipeline")

# The protocol Beluga speaks to an upstream, by the upstream's kind.
UPSTREAM_PROTOCOLS = {
    "openai": openai_chat,
    "openai-responses": openai_responses,
    "anthropic": anthropic_messages,
    "gemini": gemini,
}
# Upstream kinds that need an image's bytes: a URL is fetched by Beluga (safely) first.
NEEDS_IMAGE_BYTES = frozenset({"gemini"})
DROPPED_HEADER = "X-Beluga-Dropped-Params"
UPSTREAM_HEADER = "X-Beluga-Upstream"  # which upstream answered
MODEL_HEADER = "X-Beluga-Model"  # which model answered (a fallback's id when one did)
# Upstream answers worth another upstream: transient, not the request's fault (and every 5xx:
# Anthropic's 529 "overloaded", a CDN's 52x).
RETRYABLE_STATUSES = frozenset({408, 429})
# The upstream refused Beluga's credential: it leaves the pool; the call goes on with the next one.
CREDENTIAL_STATUSES = frozenset({401, 403})
# ... but not a 403 from these kinds: Google answers 403 about the request's own resources too (a
# file or cached content the key cannot read), and a client must not be able to switch keys off.
REQUEST_SCOPED_403_KINDS = frozenset({"gemini"})
# Stream endings that say the upstream broke off, not that one model failed.
FAILED_ATTEMPT_LATENCY_MS = 10_000  # what a failed attempt counts as, for the latency strategy
TRANSPORT_FAILURES = frozenset({"upstream_stream_broken", "upstream_total_timeout", "upstream_stream_incomplete"})
COST_HEADER = "X-Request-Cost-Micro-Usd"
# Without the upstream's usage (a stream cut short), tokens are estimated from
# characters: about four characters a token for English text with OpenAI's
# tokenizers. Marked usage_estimated on the record.
CHARS_PER_TOKEN = 4


@dataclass(slots=True)
class Inbound:
    """A client protocol as the pipeline sees it: its module and the names it is recorded under."""

    module: object  # a gateway.protocols module
    protocol: str  # recorded on the usage record: "openai.chat", "anthropic.messages", ...
    endpoint: str  # recorded on the usage record: "chat/completions", "messages", ...


OPENAI_CHAT = Inbound(openai_chat, "openai.chat", "chat/completions")
OPENAI_RESPONSES = Inbound(openai_responses, "openai.responses", "responses")
ANTHROPIC_MESSAGES = Inbound(anthropic_messages, "anthropic.messages", "messages")
GEMINI = Inbound(gemini, "gemini", "generateContent")


@dataclass(slots=True)
class CallContext:
    """What the later steps of one call need to know about the earlier ones."""

    request_id: str
    started: float
    key: AuthenticatedKey
    inbound: Inbound
    model: ModelInfo
    route: RouteTarget
    stream: bool
    prompt_chars: int  # for the token estimate when the upstream gives no usage
    body: dict | None = None  # the fast path: the validated OpenAI body, forwarded as is
    hold: Hold | None = None  # the money held for this call (prepaid accounts, key budgets)
    recorded: bool = False  # the usage record (and the hold's settle) is written
    # Routed calls (model_call): every upstream tried, and the breakers that let the current one through.
    attempts: list[dict] | None = None
    admission: breakers.Admission | None = None
    attempt_started: float = 0.0
    attempt_first_byte_ms: int | None = None  # to the answer's headers (a stream's first event)
    slot: str | None = None  # the attempt's concurrency lease (gateway/routing/slots.py)
    # What the hold was sized for: input tokens, the output cap the request (or route) set, answers asked.
    held_tokens: tuple[int, int | None, int] | None = None


class AttemptFailed(Exception):
    """One upstream of a routed call failed before answering (nothing was sent to the client)."""

    def __init__(self, error: ApiError, *, outcome: str, status: int | None, retry_after: float | None = None):
        super().__init__(outcome)
        self.error = error
        self.outcome = outcome  # "http_503", "timeout", "connect_error", ...
        self.status = status  # the upstream's HTTP status, when it answered
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        return self.status is None or self.status >= 500 or self.status in RETRYABLE_STATUSES

    @property
    def route_wrong(self) -> bool:
        """The route names a model its upstream does not serve (a 404): the next route may serve it,
        and the upstream is no less healthy for it (no breaker verdict)."""
        return self.error.code == "upstream_model_not_found"

    def credential_refused(self, route: RouteTarget) -> bool:
        if self.status == 403 and route.kind in REQUEST_SCOPED_403_KINDS:
            return False
        return self.status in CREDENTIAL_STATUSES


def raw_key_from(request: HttpRequest) -> str:
    """The API key from `Authorization: Bearer`, `x-api-key` or `x-goog-api-key`
    (or, on the Gemini paths only, `?key=`, as Google's API takes it)."""
    meta = request.META
    auth = meta.get("HTTP_AUTHORIZATION", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    key = meta.get("HTTP_X_API_KEY") or meta.get("HTTP_X_GOOG_API_KEY") or ""
    if not key and "/v1beta/" in request.path:
        key = request.GET.get("key", "")
    return key


def authenticate(request: HttpRequest, *, bucket: str = BUCKET_CHAT) -> AuthenticatedKey:
    """Check the caller's key without counting the request (polling, lookups).

    The response still gets the key's rate-limit headers for `bucket`
    (RequestIdMiddleware reads them through `request.rate_limit_peek`).
    """
    try:
        key = api_key_authenticate(raw_key=raw_key_from(request))
    except KeyRejected:
        raise _key_rejected() from None
    django_request = getattr(request, "_request", request)  # under a DRF view, the HttpRequest it wraps
    django_request.rate_limit_peek = lambda: rate_limit_peek(request=django_request, key=key, bucket=bucket)
    return key


def admit(request: HttpRequest, *, bucket: str) -> tuple[AuthenticatedKey, RateLimitState]:
    """Authenticate the caller and count the request in the key's `bucket` (one Redis call for a known key)."""
    try:
        admitted = key_admit(request=request, raw_key=raw_key_from(request), bucket=bucket)
    except KeyRejected:
        raise _key_rejected() from None
    release_db_connection()  # a key lookup that missed the cache must not hold a connection while we wait
    return admitted


def _key_rejected() -> AuthenticationFailed:
    return AuthenticationFailed("Invalid API key provided. Pass a valid Beluga key as 'Authorization: Bearer bapi_…'.")


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


def conversation_chars(conversation: Conversation) -> int:
    """Characters of text in a Conversation (system, messages, tools), for estimates."""
    total = len(conversation.system_text)
    for message in conversation.messages:
        for part in message.parts:
            if isinstance(part, ToolResult):
                total += len(part.text)
            elif not isinstance(part, Image):
                total += len(getattr(part, "text", "") or getattr(part, "arguments", ""))
    for tool in conversation.tools:
        total += len(tool.name) + len(tool.description) + len(orjson.dumps(tool.parameters))
    return total


SKIPPED_TEXT_KEYS = frozenset({"data", "signature", "thoughtSignature", "url", "uri", "fileUri"})


def text_chars(value) -> int:
    """Characters of text anywhere in a JSON request (inline data and signatures left out), for estimates.

    Walks with a stack, not recursion: a client's deeply nested JSON must not end in a RecursionError.
    """
    total = 0
    stack = [("", value)]
    while stack:
        key, item = stack.pop()
        if isinstance(item, str):
            total += 0 if key in SKIPPED_TEXT_KEYS else len(item)
        elif isinstance(item, dict):
            stack.extend(item.items())
        elif isinstance(item, list):
            stack.extend((key, element) for element in item)
    return total


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


def model_and_route(
    slug: str, *, categories: frozenset, served: str, key: AuthenticatedKey | None = None
) -> tuple[ModelInfo, RouteTarget]:
    """The model and the upstream to call for it: 404 unknown, 403 not allowed for the key,
    400 outside `categories`, 503 without a price or a route."""
    found = model_get(slug=slug)
    if found is None:
        raise NotFound(f"The model '{slug}' does not exist.", param="model", code="model_not_found")
    # An alias (AIModel.alias_of) resolves to its target: a key may name either.
    if key is not None and not (key.allows_model(found.slug) or key.allows_model(slug)):
        raise PermissionDenied(
            f"This API key may not call '{found.slug}'. It is limited to: {', '.join(key.allowed_models)}.",
            param="model",
            code="model_not_allowed",
        )
    if found.category not in categories:
        article = "an" if found.category[0] in "aeiou" else "a"
        raise InvalidRequest(
            f"The model '{found.slug}' is {article} {found.category} model; this endpoint serves {served} models.",
            param="model",
            code="model_not_supported",
        )
    if not found.priced:
        # Never served for free by accident: an operator has to set its price first (see /v1/health).
        raise UpstreamError(
            f"The model '{found.slug}' has no price set, so Beluga does not serve it yet.",
            status=503,
            code="model_not_priced",
        )
    route = route_pick(model=found)
    if route is None:
        raise UpstreamError(f"No upstream is available for '{found.slug}' right now.", status=503)
    return found, route


# --- holding money before the call ------------------------------------------------

IMAGE_PART_TYPES = frozenset({"image_url", "image", "input_image"})
FILE_PART_TYPES = frozenset({"document", "input_file", "file", "input_audio"})
INLINE_DATA_KEYS = ("inlineData", "inline_data")
FILE_DATA_KEYS = ("fileData", "file_data")


def _is_image_part(part: dict) -> bool:
    if part.get("type") in IMAGE_PART_TYPES:
        return True
    inline = next((part[k] for k in INLINE_DATA_KEYS + FILE_DATA_KEYS if isinstance(part.get(k), dict)), None)
    mime = inline.get("mimeType") or inline.get("mime_type") if inline is not None else None
    return isinstance(mime, str) and mime.startswith("image/")


def _is_file_reference(part: dict) -> bool:
    """A document or file given by reference (its tokens are not in the request): counted like an image."""
    if any(isinstance(part.get(k), dict) for k in FILE_DATA_KEYS):
        return True
    return part.get("type") in FILE_PART_TYPES and not any(
        isinstance(value, str) and len(value) > 1000 for value in _strings_in(part)
    )


def _strings_in(value):
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def request_size(body) -> tuple[int, int]:
    """(characters, media parts) of a request in any client protocol, for the hold.

    Every string counts a token a character (tool-call arguments, documents
    and audio sent inline included: base64 holds under a token's worth per
    character); images and files given by reference count as media parts.
    Iterative, like text_chars.
    """
    chars = media = 0
    stack = [body]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            chars += len(item)
        elif isinstance(item, int):
            chars += 1  # a token id (embeddings take them), or a number: a token at most
        elif isinstance(item, dict):
            if _is_image_part(item) or _is_file_reference(item):
                media += 1
                continue
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return chars, media


MAX_OUTPUT_KEYS = ("max_completion_tokens", "max_tokens", "max_output_tokens")


def requested_choices(body) -> int:
    """How many answers the request asks for (OpenAI's `n`, Gemini's `candidateCount`): each is paid for."""
    if not isinstance(body, dict):
        return 1
    config = body.get("generationConfig") or body.get("generation_config") or {}
    for value in (body.get("n"), config.get("candidateCount") if isinstance(config, dict) else None):
        if isinstance(value, int) and not isinstance(value, bool) and value > 1:
            return value
    return 1


def requested_max_output(body) -> int | None:
    """The output cap the client asked for, in any client protocol's field."""
    if not isinstance(body, dict):
        return None
    config = body.get("generationConfig") or body.get("generation_config")
    candidates = [body.get(name) for name in MAX_OUTPUT_KEYS]
    if isinstance(config, dict):
        candidates += [config.get("maxOutputTokens"), config.get("max_output_tokens")]
    for value in candidates:
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def hold_for_call(ctx: CallContext, body, *, output_tokens: int | None = None, inputs: int = 1) -> None:
    """Hold the most the call can cost, or answer 402; a no-op for postpaid keys without a budget.

    Input: a token per character of the request (tokenizers give fewer) plus
    a fixed amount per image or file reference, at most the model's context
    window per input (`inputs`: embeddings take many). Output: the request's
    cap (else the model's output limit, else a default) for each answer asked.
    """
    key = ctx.key
    if not key.prepaid and key.spend_limit_micro_usd is None:
        return
    model = ctx.model
    limits = settings.BELUGA
    chars, media = request_size(body)
    input_tokens = chars + media * limits["RESERVE_TOKENS_PER_IMAGE"]
    if model.context_window:
        input_tokens = min(input_tokens, model.context_window * inputs)
    if output_tokens is None:
        output_tokens = model.max_output_tokens or limits["RESERVE_DEFAULT_OUTPUT_TOKENS"]
        # The route's params win over the client's (with_route_params), its output cap too; then
        # the model's settings: an override over the client's cap, a default in place of none.
        requested = (
            requested_max_output(ctx.route.params)
            or model.request_overrides.get("max_tokens")
            or requested_max_output(body)
            or model.request_defaults.get("max_tokens")
        )
        if requested is not None:
            output_tokens = min(requested, output_tokens) if model.max_output_tokens else requested
        output_tokens *= requested_choices(body)
        # A fallback is checked against the client's own cap: this model's settings and route are not its.
        ctx.held_tokens = (input_tokens, requested_max_output(body), requested_choices(body))
    amount = max_token_cost(model=model, input_tokens=input_tokens, output_tokens=output_tokens)
    hold_money(
        ctx,
        amount,
        detail=f" ({input_tokens} input tokens estimated, up to {output_tokens} output tokens). "
        "Add credit, or lower max_tokens.",
    )


def hold_money(ctx: CallContext, amount: int, *, detail: str = ".", expires_in_seconds: float | None = None) -> None:
    """Hold `amount` for the call (ctx.hold), or answer 402; a no-op for postpaid keys without a budget.

    `detail` ends the 402's message (what the amount is made of);
    `expires_in_seconds` outlives calls longer than the default (media jobs).
    """
    key = ctx.key
    if not key.prepaid and key.spend_limit_micro_usd is None:
        return
    budget = None
    if key.spend_limit_micro_usd is not None:
        budget = Budget(limit_micro_usd=key.spend_limit_micro_usd, period=key.spend_limit_period)
    try:
        ctx.hold = reserve(
            user_id=key.user_id,
            api_key_id=key.key_id,
            request_id=ctx.request_id,
            amount_micro_usd=amount,
            charges_balance=key.prepaid,
            budget=budget,
            expires_in_seconds=expires_in_seconds,
        )
    except InsufficientBalance as short:
        raise PaymentRequired(
            f"Your balance is too low for this call: ${usd_text(max(0, short.available_micro_usd))} available, "
            f"and the call may cost up to ${usd_text(amount)}{detail}",
        ) from None
    except BudgetExceeded as over:
        period = {"day": "daily", "month": "monthly", "total": "total"}[over.budget.period]
        resets = over.budget.period_end(timezone.now())
        raise PaymentRequired(
            f"This API key's {period} spend limit of ${usd_text(over.budget.limit_micro_usd)} would be exceeded: "
            f"${usd_text(over.spent_micro_usd)} spent and ${usd_text(over.held_micro_usd)} held by calls in flight, "
            f"and this call may cost up to ${usd_text(amount)}."
            + (f" The limit resets at {resets:%Y-%m-%d %H:%M} UTC." if resets else ""),
            code="budget_exceeded",
        ) from None


def run_held(ctx: CallContext, call):
    """Run the rest of the call; a hold the call did not record (an error in between) is given back."""
    release_db_connection()
    try:
        return call()
    except BaseException:
        release_unrecorded(ctx)
        raise


def release_unrecorded(ctx: CallContext) -> None:
    """Give back the hold of a call that ends without a record; a failure is left to the sweeper."""
    if ctx.hold is None or ctx.recorded:
        return
    try:
        reservation_release(ctx.hold, request_id=ctx.request_id)
    except Exception:
        logger.exception("could not release the hold of %s; the sweeper will", ctx.request_id)


def limited_call(request: HttpRequest, *, bucket: str, call) -> HttpResponse:
    """Authenticate, take a rate-limit slot in `bucket`, run `call(key, started)`: the steps every
    endpoint but model_call shares. The X-RateLimit-* headers go on the answer and on its errors."""
    started = time.perf_counter()
    key, limit = admit(request, bucket=bucket)
    try:
        raise_if_limited(limit, bucket=bucket)
        response = call(key, started)
    except ApiError as error:
        error.headers = {**limit.headers(), **error.headers}
        raise
    for name, value in limit.headers().items():
        response[name] = value
    return response


def raise_if_limited(limit, *, bucket: str = "chat") -> None:
    if limit.limited:
        raise RateLimited(
            f"Rate limit reached: {limit.limit} {bucket} requests per minute for this key. "
            f"Retry after {limit.retry_after} s.",
            headers={"Retry-After": str(limit.retry_after)},
        )


def _ms(since: float) -> int:
    return int((time.perf_counter() - since) * 1000)


# --- the pipeline ---------------------------------------------------------


def chat_completions(request: HttpRequest) -> HttpResponse:
    return model_call(request, inbound=OPENAI_CHAT)


def model_call(
    request: HttpRequest,
    *,
    inbound: Inbound,
    model: str | None = None,
    stream: bool | None = None,
    writer_options: dict | None = None,
) -> HttpResponse:
    """One model call in any client protocol. `model`/`stream` come from the URL where the protocol puts them there."""
    started = time.perf_counter()
    key, limit = admit(request, bucket=BUCKET_CHAT)
    try:
        raise_if_limited(limit)
        body = parse_json_body(request)
        chat = conversation = None
        if inbound is OPENAI_CHAT:
            chat = validate_chat_request(body)
            slug = chat.model
        else:
            slug = model if model is not None else (body.get("model") if isinstance(body, dict) else None)
            if not isinstance(slug, str) or not slug:
                inbound.module.read_request(body, model=model, stream=stream)  # the protocol's own error
                raise InvalidRequest("Missing required parameter: 'model'.", param="model")
        found, route = model_and_route(slug, categories=CHAT_CATEGORIES, served="chat", key=key)
        # The same protocol on both sides: the client's request goes as it is (see _passthrough).
        can_pass = chat is None and hasattr(inbound.module, "passthrough_request")
        passthrough = can_pass and UPSTREAM_PROTOCOLS.get(route.kind) is inbound.module
        if chat is not None:
            streaming = chat.stream
        elif passthrough:
            checked = inbound.module.passthrough_check(body)
            streaming = stream if stream is not None else bool(checked)
        else:
            conversation = inbound.module.read_request(body, model=model, stream=stream)
            streaming = conversation.stream
        if streaming and not found.supports_stream:
            raise InvalidRequest(f"The model '{found.slug}' does not support streaming.", param="stream")
        if chat is not None:
            chars = prompt_chars(chat.body)
        elif passthrough:
            chars = text_chars(body)
        else:
            chars = conversation_chars(conversation)
        ctx = CallContext(request.request_id, started, key, inbound, found, route, streaming, chars)
        options = writer_options or {}

        def call_route() -> HttpResponse:
            """The call to the route of this attempt (ctx.route), by the pair of protocols it makes."""
            nonlocal conversation
            if chat is not None and ctx.route.kind == "openai":
                ctx.body, dropped = variants.body_with_settings(chat.body, model=ctx.model, route=ctx.route)
                response = _stream(ctx, include_usage=chat.include_usage) if streaming else _complete(ctx)
                if dropped:
                    response[DROPPED_HEADER] = ", ".join(sorted(set(dropped)))
                return response
            if can_pass and UPSTREAM_PROTOCOLS.get(ctx.route.kind) is inbound.module:
                return _passthrough(ctx, body, request.headers, options)
            if conversation is None:
                if chat is not None:
                    conversation = openai_chat.conversation_from(chat)
                else:
                    conversation = inbound.module.read_request(body, model=model, stream=stream)
            return _translated(ctx, conversation, options)

        hold_for_call(ctx, body)
        response = run_held(ctx, lambda: _call_upstreams(ctx, call_route))
    except ApiError as error:
        error.headers = {**limit.headers(), **error.headers}
        raise
    for name, value in limit.headers().items():
        response[name] = value
    return response


# --- routing: the upstreams a call tries (gateway/routing, docs/routing.md) ---------


def _call_upstreams(ctx: CallContext, call_route) -> HttpResponse:
    """Try the model's upstreams (then its fallbacks') in order until one answers.

    An attempt that fails before anything reached the client (unreachable,
    timed out before its headers, 429 or 5xx) goes on to the next upstream,
    within MAX_ATTEMPTS, the request's deadline and the retry budget; a 4xx
    is the request's own fault and is returned as it is. A 401/403 refused
    Beluga's credential: it leaves the pool and the same upstream is tried
    with its next credential, never another upstream.
    Upstreams whose breaker is open or that are at their concurrency cap are
    skipped. Each attempt is kept for the usage record; only the answer is billed.
    """
    limits = settings.BELUGA
    deadline = ctx.started + limits["REQUEST_DEADLINE_SECONDS"]
    ctx.attempts = []
    retry_budget.call_started()
    requested = ctx.model
    last: AttemptFailed | None = None

    def usable_fallback(slug: str) -> ModelInfo | None:
        other = model_get(slug=slug)
        if other is None or other.category not in CHAT_CATEGORIES or not other.priced:
            return None
        if not ctx.key.allows_model(other.slug) or (ctx.stream and not other.supports_stream):
            return None
        if ctx.hold is not None:
            # The money held was sized for the requested model: a fallback that could cost more is not used.
            if ctx.held_tokens is None:
                return None
            input_tokens, client_cap, choices = ctx.held_tokens
            output_cap = (
                other.request_overrides.get("max_tokens") or client_cap or other.request_defaults.get("max_tokens")
            )
            output = other.max_output_tokens or limits["RESERVE_DEFAULT_OUTPUT_TOKENS"]
            if output_cap is not None:
                output = min(output_cap, output) if other.max_output_tokens else output_cap
            worst = max_token_cost(model=other, input_tokens=input_tokens, output_tokens=output * choices)
            if worst > ctx.hold.amount_micro_usd:
                return None
        return other

    plan = candidates(requested, fallback=usable_fallback)
    pending: list[tuple[ModelInfo, RouteTarget]] = []  # the same upstream again, with its next credential
    while True:
        if pending:
            model, route = pending.pop()
        else:
            nxt = next(plan, None)
            if nxt is None:
                break
            model, route = nxt
        if len(ctx.attempts) >= limits["MAX_ATTEMPTS"] or time.perf_counter() >= deadline:
            break
        admission = breakers.admit(upstream_id=route.upstream_id, model=model.slug)
        if admission is None:
            continue  # its breaker is open
        attempt_route = with_credential(route)
        slot = slot_take(attempt_route) if attempt_route is not None else None
        if slot is None:  # no credential left, or at its concurrency cap
            breakers.probes_release(admission)
            continue
        if ctx.attempts and not retry_budget.retry_allowed():
            slot_give_back(attempt_route, slot)
            breakers.probes_release(admission)
            break
        ctx.slot = slot
        ctx.model, ctx.route, ctx.admission = model, _within_deadline(attempt_route, deadline), admission
        ctx.attempt_started = time.perf_counter()
        ctx.attempt_first_byte_ms = None
        release_db_connection()  # a fallback's catalog read must not hold a connection during the call
        try:
            response = call_route()
        except AttemptFailed as failure:
            _attempt_failed(ctx, failure)
            last = failure
            if failure.credential_refused(attempt_route):
                # Beluga's credential, not the request: the pool's next one, on this upstream only
                # (401/403 never move a call to another upstream).
                if not route.credentials:
                    break  # an upstream without credentials: nothing to rotate
                _credential_refused(attempt_route)
                if not credential_left(route):
                    break
                pending.append((model, route))
                continue
            if not (failure.retryable or failure.route_wrong):
                break
            continue
        except BaseException:
            _attempt_abandoned(ctx)  # refused before or without an answer (a 400 of ours, a bug): no verdict
            raise
        response[UPSTREAM_HEADER] = attempt_route.upstream_name
        response[MODEL_HEADER] = model.slug
        return response
    if last is None:
        cooldown = int(limits["BREAKER_COOLDOWN_SECONDS"])
        raise UpstreamError(
            f"No upstream of '{requested.slug}' can take the call right now (circuit open, at capacity, "
            f"or no working credential); retry in {cooldown} s.",
            status=503,
            code="upstream_unavailable",
            headers={"Retry-After": str(max(1, cooldown))},
        )
    error = last.error
    if last.status == 429 and last.retry_after is not None:
        error.headers = {**error.headers, "Retry-After": str(int(math.ceil(last.retry_after)))}
    _record(
        ctx,
        status_code=error.status,
        error_type=error.code or error.type,
        upstream_latency_ms=_ms(ctx.attempt_started),
    )
    raise error


def _within_deadline(route: RouteTarget, deadline: float) -> RouteTarget:
    """The route with its timeouts cut to what is left of the request's deadline."""
    left = deadline - time.perf_counter()
    first_byte = route.first_byte_timeout or route.read_timeout
    if left >= first_byte and (route.total_timeout is None or left >= route.total_timeout):
        return route
    left = max(left, 0.001)
    return dataclasses.replace(
        route,
        first_byte_timeout=min(first_byte, left),
        total_timeout=min(route.total_timeout or left, left),
    )


def _attempt_entry(ctx: CallContext, *, status: int | None, outcome: str) -> dict:
    return {
        "upstream": ctx.route.upstream_name,
        "model": ctx.model.slug,
        "credential": ctx.route.credential,
        "status": status,
        "outcome": outcome,
        "latency_ms": _ms(ctx.attempt_started),
    }


def _attempt_failed(ctx: CallContext, failure: AttemptFailed) -> None:
    ctx.attempts.append(_attempt_entry(ctx, status=failure.status, outcome=failure.outcome))
    metrics.attempt_observed(
        upstream=ctx.route.upstream_name, outcome=failure.outcome, seconds=time.perf_counter() - ctx.attempt_started
    )
    _slot_release(ctx)
    if failure.retryable:  # a 4xx says nothing about the upstream's health
        breakers.failed(ctx.admission, upstream_wide=failure.status is None)
        # A failing upstream must not look fast to the latency strategy.
        latency_observed(upstream_id=ctx.route.upstream_id, model=ctx.model.slug, ms=FAILED_ATTEMPT_LATENCY_MS)
    else:
        breakers.probes_release(ctx.admission)
    ctx.admission = None


def _slot_release(ctx: CallContext) -> None:
    slot, ctx.slot = ctx.slot, None
    slot_give_back(ctx.route, slot)


def _attempt_abandoned(ctx: CallContext) -> None:
    """An attempt that ended in an exception of Beluga's own, unrecorded: free its slot and probe."""
    if ctx.admission is None:
        return
    _slot_release(ctx)
    breakers.probes_release(ctx.admission)
    ctx.admission = None


def _outcome(status: int, error_type: str) -> str:
    return "ok" if status < 500 else error_type or f"http_{status}"


def _attempt_ended(ctx: CallContext, *, status: int, error_type: str) -> None:
    """The answering attempt ended (its answer sent or cut, and recorded): count it for the breakers,
    free its slot."""
    ok = status < 500
    outcome = _outcome(status, error_type)
    metrics.attempt_observed(
        upstream=ctx.route.upstream_name, outcome=outcome, seconds=time.perf_counter() - ctx.attempt_started
    )
    _slot_release(ctx)
    if ok:
        breakers.succeeded(ctx.admission)
        first_byte = ctx.attempt_first_byte_ms if ctx.attempt_first_byte_ms is not None else _ms(ctx.attempt_started)
        latency_observed(upstream_id=ctx.route.upstream_id, model=ctx.model.slug, ms=first_byte)
    else:
        breakers.failed(ctx.admission, upstream_wide=error_type in TRANSPORT_FAILURES)
    ctx.admission = None


def _credential_refused(route: RouteTarget) -> None:
    """Out of the pool here at once, and for every instance once the refusal is saved."""
    from catalog.services import upstream_credential_refused

    credential_refused(route)
    try:
        upstream_credential_refused(upstream_id=route.upstream_id, label=route.credential)
    except Exception:  # noqa: BLE001 - flagging is best effort; this process already stopped using it
        logger.exception("could not flag credential %s of %s", route.credential, route.upstream_name)
    finally:
        release_db_connection()


def call_cost(ctx: CallContext, usage: Usage | None) -> int:
    """What the call costs at the prices it started with (the catalog snapshot taken then)."""
    if usage is None:
        return 0
    return token_cost(
        model=ctx.model,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cached_tokens=usage.cached_input_tokens,
        cache_write_tokens=usage.cache_write_tokens,
    )


def cost_fields_of(ctx: CallContext):
    """Usage -> the cost fields a protocol module adds to its usage object (its `cost_of`)."""
    return lambda usage: cost_fields(call_cost(ctx, usage))


def _record(
    ctx: CallContext,
    *,
    usage: Usage | None = None,
    estimated: bool = False,
    media: MediaCharge | None = None,
    **fields,
) -> int:
    """Write the call's usage record and settle its hold (once per call); returns the cost.

    Token calls are priced from `usage`; media calls by their `media` charge (units × unit price).
    """
    cost = media.cost if media is not None else call_cost(ctx, usage)
    if ctx.recorded:
        logger.error("call %s was already recorded; not recording it twice", ctx.request_id)
        return cost
    usage = usage or Usage()
    ended = ctx.admission is not None
    if ended:  # the answering attempt: on the record it ends
        status, error_type = fields.get("status_code", 200), fields.get("error_type", "")
        ctx.attempts.append(_attempt_entry(ctx, status=status, outcome=_outcome(status, error_type)))
    try:
        _usage_record(ctx, usage, cost, estimated, {**fields, "media": media})
    except Exception:
        # No record (the database is down or locked): give the hold back now rather than block the
        # account's money until the sweeper does; the error goes on to the caller (and the log).
        release_unrecorded(ctx)
        raise
    ctx.recorded = True
    if ended:
        try:
            _attempt_ended(ctx, status=status, error_type=error_type)
        except Exception:  # noqa: BLE001 - the record is written; health bookkeeping must not undo that
            logger.exception("ending the attempt of %s failed", ctx.request_id)
    metrics.usage_observed(
        model=ctx.model.slug, cost_micro_usd=cost, input_tokens=usage.input_tokens, output_tokens=usage.output_tokens
    )
    return cost


def _usage_record(ctx: CallContext, usage: Usage, cost: int, estimated: bool, fields: dict) -> None:
    usage_record(
        request_id=ctx.request_id,
        user_id=ctx.key.user_id,
        api_key_id=ctx.key.key_id,
        model=ctx.model.slug,
        upstream=ctx.route.upstream_name,
        upstream_model=ctx.route.upstream_model,
        upstream_kind=ctx.route.kind,
        protocol=ctx.inbound.protocol,
        endpoint=ctx.inbound.endpoint,
        stream=ctx.stream,
        prompt_tokens=usage.input_tokens,
        completion_tokens=usage.output_tokens,
        cached_tokens=usage.cached_input_tokens,
        cache_write_tokens=usage.cache_write_tokens,
        reasoning_tokens=usage.reasoning_tokens,
        usage_estimated=estimated,
        cost_micro_usd=cost,
        prices=charged_prices(ctx.model),
        latency_ms=_ms(ctx.started),
        attempts=ctx.attempts,
        hold=ctx.hold,
        charge_balance=ctx.key.prepaid,
        **fields,
    )


def _estimated_usage(ctx: CallContext, output_chars: int) -> Usage:
    return Usage(input_tokens=estimate_tokens(ctx.prompt_chars), output_tokens=estimate_tokens(output_chars))


def _send(ctx: CallContext, *, call, read_error):
    """Call the upstream; an unreachable upstream or a non-200 answer fails the attempt.

    `call()` returns the upstream's response or raises UpstreamError;
    `read_error` maps a non-200 answer to what the client sees. In a routed
    call (model_call) the failure is raised as AttemptFailed for the next
    upstream to be tried; elsewhere it is recorded and raised.
    """
    upstream_started = time.perf_counter()
    status = None
    retry_after = None
    try:
        upstream = call()
        error = None
        if upstream.status_code != 200:
            status = upstream.status_code
            try:
                content = upstream.content
            except Exception:  # noqa: BLE001 - a broken error body is still an upstream error
                content = b""
            error = read_error(route=ctx.route, status=status, content=content, headers=upstream.headers)
            retry_after = _retry_after_seconds(upstream.headers.get("Retry-After"))
    except UpstreamError as unreachable:
        error = unreachable
    if error is None and ctx.stream and ctx.attempts is not None:
        error = _first_event(ctx, upstream)
        if error is not None:
            raise AttemptFailed(error, outcome=error.outcome, status=None)
    if error is None:
        if ctx.stream and ctx.route.first_byte_timeout:
            idle_timeout_set(upstream, ctx.route.read_timeout)  # the first event is in: now between chunks
        ctx.attempt_first_byte_ms = _ms(upstream_started)
        return upstream, upstream_started
    if ctx.attempts is not None:
        outcome = f"http_{status}" if status is not None else getattr(error, "outcome", "") or "connect_error"
        raise AttemptFailed(error, outcome=outcome, status=status, retry_after=retry_after)
    _record(
        ctx, status_code=error.status, error_type=error.code or error.type, upstream_latency_ms=_ms(upstream_started)
    )
    raise error


def _first_event(ctx: CallContext, upstream) -> UpstreamError | None:
    """Read a stream's first event before anything goes to the client, so that an upstream that
    answers 200 and then stalls or breaks off before its first event is still another route's job.

    The event is kept on the response (`primed_events`, read by gateway/streaming.py): the client
    gets its headers with it, as it would have anyway.
    """
    events = iter_sse_data(upstream)
    try:
        first = next(events)
    except StopIteration:
        error = UpstreamError("The model provider ended the stream before its first event.", status=502)
        error.outcome = "stream_empty"
    except Exception:  # noqa: BLE001 - a timeout or reset before the first event
        error = UpstreamError("The model provider sent nothing after its headers.", status=502, code="upstream_timeout")
        error.outcome = "timeout_first_event"
    else:
        upstream.primed_events = itertools.chain((first,), events)
        return None
    upstream.close()
    return error


def _retry_after_seconds(value: str | None) -> float | None:
    """Retry-After in seconds (the delta form; an HTTP date is read as no advice)."""
    try:
        seconds = float(value) if value else None
    except ValueError:
        return None
    return seconds if seconds is not None and 0 <= seconds < 86400 else None


def unreadable(ctx: CallContext, upstream_ms: int) -> UpstreamError:
    """Record an answer Beluga could not read; the error to raise for it."""
    _record(ctx, status_code=502, error_type="upstream_invalid_response", upstream_latency_ms=upstream_ms)
    return UpstreamError("The model provider sent an unreadable answer.", status=502)


def _upstream_json(ctx: CallContext, upstream, upstream_ms: int):
    try:
        return orjson.loads(upstream.content)
    except orjson.JSONDecodeError:
        raise unreadable(ctx, upstream_ms) from None


# --- the fast path: OpenAI chat in, OpenAI chat out ------------------------------


def _openai_send(ctx: CallContext, *, stream: bool):
    return _send(
        ctx,
        call=lambda: openai_adapter.chat_send(route=ctx.route, body=ctx.body, stream=stream, request_id=ctx.request_id),
        read_error=openai_adapter.error_from_response,
    )


def _complete(ctx: CallContext) -> HttpResponse:
    upstream, upstream_started = _openai_send(ctx, stream=False)
    upstream_ms = _ms(upstream_started)
    data = _upstream_json(ctx, upstream, upstream_ms)
    if not isinstance(data, dict):
        raise unreadable(ctx, upstream_ms)
    failure = openai_adapter.error_in_answer(route=ctx.route, data=data)
    if failure is not None:
        _record(ctx, status_code=502, error_type="upstream_error_in_answer", upstream_latency_ms=upstream_ms)
        raise failure
    reported = openai_chat.read_usage(data)
    usage = reported or _estimated_usage(ctx, openai_adapter.completion_chars(data))
    data["model"] = ctx.model.slug
    choices = data.get("choices")
    first = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    finish = first.get("finish_reason")
    return priced_json(
        ctx,
        usage,
        data,
        estimated=reported is None,
        upstream_ms=upstream_ms,
        finish_reason=finish if isinstance(finish, str) else "",
    )


def _stream(ctx: CallContext, *, include_usage: bool) -> HttpResponse:
    upstream, upstream_started = _openai_send(ctx, stream=True)
    relayed = RelayedStream(
        upstream=upstream,
        relay=openai_adapter.StreamRelay(
            public_model=ctx.model.slug,
            keep_usage=include_usage,
            cost_of=cost_fields_of(ctx),
            secret=ctx.route.api_key,
        ),
        on_finish=lambda outcome: _record_stream(ctx, outcome, upstream_started),
    )
    relayed.deadline = _stream_deadline(ctx)
    return _event_stream_response(relayed, "text/event-stream")


def _stream_deadline(ctx: CallContext) -> float:
    """When a stream is cut: the upstream's total timeout from its attempt, or the request's deadline."""
    deadline = ctx.started + settings.BELUGA["REQUEST_DEADLINE_SECONDS"]
    if ctx.route.total_timeout:
        deadline = min(deadline, (ctx.attempt_started or ctx.started) + ctx.route.total_timeout)
    return deadline


def _record_stream(ctx: CallContext, outcome: StreamOutcome, upstream_started: float) -> None:
    """Record a stream once it ended, however it ended (every stream kind reports a StreamOutcome)."""
    usage = outcome.usage
    if usage is None:
        usage = _estimated_usage(ctx, outcome.delivered_chars)
        reported = outcome.usage_so_far
        if reported is not None and reported.input_tokens:
            # Cut short: the provider already counted the input; only the output is estimated.
            usage.input_tokens = reported.input_tokens
            usage.cached_input_tokens = reported.cached_input_tokens
            usage.cache_write_tokens = reported.cache_write_tokens
            usage.output_tokens = max(usage.output_tokens, reported.output_tokens)
    _record(
        ctx,
        usage=usage,
        estimated=outcome.usage is None,
        finish_reason=outcome.finish_reason,
        status_code=outcome.status,
        error_type=outcome.error_type,
        client_disconnected=outcome.client_disconnected,
        upstream_latency_ms=_ms(upstream_started),
    )


# --- every other pair: through the Conversation ----------------------------------


def _fetchable(url: str) -> bool:
    """An http(s) image URL Beluga fetches for the provider (Google's own file URIs it reads itself)."""
    return url.startswith(("http://", "https://")) and not url.startswith(GOOGLE_FILE_URIS)


GOOGLE_FILE_URIS = ("https://generativelanguage.googleapis.com/",)


def _prepare(ctx: CallContext, conversation: Conversation) -> Conversation:
    """What the upstream's protocol needs that the client's may have left out; the conversation as
    this attempt sends it (the client's own is left as it was for the next attempt)."""
    if conversation.max_tokens is None and ctx.route.kind == "anthropic":
        # This model's cap, not a previous attempt's (a fallback may allow fewer).
        conversation = dataclasses.replace(
            conversation, max_tokens=ctx.model.max_output_tokens or anthropic_messages.DEFAULT_MAX_TOKENS
        )
    if ctx.route.kind in NEEDS_IMAGE_BYTES:
        for message in conversation.messages:
            for part in message.parts:
                images = part.content if isinstance(part, ToolResult) else (part,)
                for image in images:
                    if isinstance(image, Image) and image.data is None and _fetchable(image.url or ""):
                        fetched = fetch_image(image.url, param="messages")
                        image.data, image.media_type, image.url = fetched.data, fetched.media_type, None
    return conversation


def post_upstream(route: RouteTarget, outbound: UpstreamRequest, *, request_id: str, stream: bool):
    """Send a protocol module's request through the upstream's session; UpstreamError when unreachable."""
    outbound.headers["X-Request-Id"] = request_id
    return openai_adapter.guarded(
        lambda: post(
            session=session_for(upstream_id=route.upstream_id, base_url=route.base_url),
            url=outbound.url,
            data=outbound.body,
            headers=outbound.headers,
            stream=stream,
            timeout=upstream_timeout(route),
        )
    )


def _event_stream_response(body, content_type: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(body, content_type=content_type)
    response.records_on_close = True  # closed off the connection (gateway/after_response.py)
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx in front must not buffer the stream
    return response


def _reply_of(ctx: CallContext, module, data, upstream_ms: int) -> Reply:
    try:
        return module.read_reply(data)
    except ValueError:
        raise unreadable(ctx, upstream_ms) from None


def _priced_reply(ctx: CallContext, reply: Reply, body: dict, upstream_ms: int) -> HttpResponse:
    estimated = reply.usage is None
    usage = reply.usage or _estimated_usage(ctx, reply.output_chars)
    return priced_json(
        ctx, usage, body, estimated=estimated, upstream_ms=upstream_ms, finish_reason=reply.stop_reason or ""
    )


def priced_json(
    ctx: CallContext, usage: Usage, body: dict, *, estimated: bool, upstream_ms: int, finish_reason: str = ""
) -> HttpResponse:
    """Price a whole answer and send `body` with its cost (header, and in its usage object); recorded once sent."""
    cost = call_cost(ctx, usage)
    usage_object = body.get("usage") if isinstance(body.get("usage"), dict) else body.get("usageMetadata")
    if isinstance(usage_object, dict):
        usage_object.update(cost_fields(cost))
    try:
        content = orjson.dumps(body)
    except orjson.JSONEncodeError:
        # The answer echoes something of the request orjson cannot write (nested past 255 levels): the
        # provider did the work, so the call is recorded and priced, and the client told why it got no answer.
        _record(
            ctx,
            usage=usage,
            estimated=estimated,
            status_code=400,
            error_type="invalid_json",
            upstream_latency_ms=upstream_ms,
        )
        raise
    response = RecordedResponse(
        content,
        content_type="application/json",
        record=lambda: _record(
            ctx,
            usage=usage,
            estimated=estimated,
            finish_reason=finish_reason,
            status_code=200,
            upstream_latency_ms=upstream_ms,
        ),
    )
    response[COST_HEADER] = str(cost)
    return response


class RecordedResponse(HttpResponse):
    """A whole answer whose usage record (and settle) is written once the WSGI server has sent it.

    The server calls close() after the last byte went out, so the client does
    not wait for the INSERT and its commit (a third of a millisecond on
    PostgreSQL, on every call). The cost is already in the answer; a worker
    that dies in between leaves at worst its hold to the sweeper. The server's
    close() is itself handed to a pool thread (gateway/after_response.py), so a
    keep-alive client's next call does not wait for this one's record either.
    """

    records_on_close = True

    def __init__(self, content: bytes, *, record, **kwargs) -> None:
        super().__init__(content, **kwargs)
        self._record = record

    def close(self) -> None:
        record, self._record = self._record, None
        try:
            if record is not None:
                record()
        finally:
            super().close()


def _passthrough(ctx: CallContext, body: dict, client_headers, writer_options: dict) -> HttpResponse:
    """Anthropic to Anthropic, Gemini to Gemini: the request and answer as they are but for the model.

    What the Conversation does not carry (prompt-cache marks, server tools,
    betas, safety settings) reaches the provider; Beluga still reads the
    answer with the protocol's reader, for usage and what was delivered.
    """
    module = ctx.inbound.module
    outbound = module.passthrough_request(body, route=ctx.route, stream=ctx.stream, client_headers=client_headers)
    variants.request_with_settings(outbound, model=ctx.model, route=ctx.route)
    request_with_route_params(outbound, ctx.route.params)
    upstream, upstream_started = _send(
        ctx,
        call=lambda: post_upstream(ctx.route, outbound, request_id=ctx.request_id, stream=ctx.stream),
        read_error=module.read_error,
    )
    if ctx.stream:
        relayed = TranslatedStream(
            upstream=upstream,
            reader=module.StreamReader(),
            writer=module.PassthroughFramer(model=ctx.model.slug, cost_of=cost_fields_of(ctx), **writer_options),
            on_finish=lambda outcome: _record_stream(ctx, outcome, upstream_started),
            forward=True,
        )
        relayed.deadline = _stream_deadline(ctx)
        response = _event_stream_response(relayed, relayed.writer.content_type)
    else:
        upstream_ms = _ms(upstream_started)
        data = _upstream_json(ctx, upstream, upstream_ms)
        reply = _reply_of(ctx, module, data, upstream_ms)
        response = _priced_reply(ctx, reply, module.passthrough_reply(data, model=ctx.model.slug), upstream_ms)
    if outbound.dropped:
        response[DROPPED_HEADER] = ", ".join(sorted(set(outbound.dropped)))
    return response


def _translated(ctx: CallContext, conversation: Conversation, writer_options: dict) -> HttpResponse:
    upstream_protocol = UPSTREAM_PROTOCOLS.get(ctx.route.kind)
    if upstream_protocol is None:
        raise UpstreamError(f"'{ctx.model.slug}' is routed to an upstream Beluga cannot call for chat.", status=503)
    conversation = _prepare(ctx, variants.conversation_with_settings(conversation, ctx.model))
    if conversation.n > 1:
        raise InvalidRequest(
            "Several answers per request (n > 1) need an upstream of the client's own protocol; "
            f"'{ctx.model.slug}' is served by another one.",
            param="n",
        )
    outbound = upstream_protocol.build_request(conversation, route=ctx.route, stream=ctx.stream)
    request_with_route_params(outbound, ctx.route.params)
    upstream, upstream_started = _send(
        ctx,
        call=lambda: post_upstream(ctx.route, outbound, request_id=ctx.request_id, stream=ctx.stream),
        read_error=upstream_protocol.read_error,
    )
    inbound = ctx.inbound.module
    if ctx.stream:
        writer = inbound.StreamWriter(
            model=ctx.model.slug,
            request_id=ctx.request_id,
            conversation=conversation,
            cost_of=cost_fields_of(ctx),
            **writer_options,
        )
        translated = TranslatedStream(
            upstream=upstream,
            reader=upstream_protocol.StreamReader(),
            writer=writer,
            on_finish=lambda outcome: _record_stream(ctx, outcome, upstream_started),
        )
        translated.deadline = _stream_deadline(ctx)
        response = _event_stream_response(translated, writer.content_type)
    else:
        upstream_ms = _ms(upstream_started)
        reply = _reply_of(ctx, upstream_protocol, _upstream_json(ctx, upstream, upstream_ms), upstream_ms)
        answer = inbound.write_reply(reply, model=ctx.model.slug, request_id=ctx.request_id, conversation=conversation)
        response = _priced_reply(ctx, reply, answer, upstream_ms)
    dropped = set(conversation.dropped) | set(outbound.dropped)
    if dropped:
        response[DROPPED_HEADER] = ", ".join(sorted(dropped))
    return response


# --- token counting --------------------------------------------------------------
# Free (no usage record, no rate-limit hit) but authenticated, as the providers do it.

# Without a provider count: four characters a token, plus what each message and
# image costs on top of its text (Anthropic documents about 1,600 tokens for a
# 1092x1092 image; unknown sizes are counted at that).
ESTIMATE_TOKENS_PER_MESSAGE = 4
ESTIMATE_TOKENS_PER_IMAGE = 1600


def estimate_conversation_tokens(conversation: Conversation) -> int:
    images = sum(
        1
        for message in conversation.messages
        for part in message.parts
        for item in (part.content if isinstance(part, ToolResult) else (part,))
        if isinstance(item, Image)
    )
    return (
        estimate_tokens(conversation_chars(conversation))
        + ESTIMATE_TOKENS_PER_MESSAGE * (len(conversation.messages) + bool(conversation.system))
        + ESTIMATE_TOKENS_PER_IMAGE * images
    )


def _count_tokens(request: HttpRequest, conversation: Conversation) -> tuple[int, bool]:
    """(input tokens, counted by the provider): the provider's own count where it has one."""
    found = model_get(slug=conversation.model)
    if found is None:
        raise NotFound(f"The model '{conversation.model}' does not exist.", param="model", code="model_not_found")
    route = route_pick(model=found)
    release_db_connection()
    counter = {"anthropic": anthropic_messages, "gemini": gemini}.get(route.kind) if route is not None else None
    if counter is None:
        return estimate_conversation_tokens(conversation), False
    outbound = counter.count_tokens_request(conversation, route=route)
    try:
        upstream = post_upstream(route, outbound, request_id=request.request_id, stream=False)
        if upstream.status_code == 200:
            return counter.read_count_tokens(orjson.loads(upstream.content)), True
    except (UpstreamError, ValueError):
        pass
    # The provider could not count: an estimate is still an honest answer to "about how many".
    return estimate_conversation_tokens(conversation), False


def count_tokens(request: HttpRequest) -> HttpResponse:
    """POST /v1/messages/count_tokens (Anthropic's shape)."""
    authenticate(request)
    conversation = anthropic_messages.read_count_tokens_request(parse_json_body(request))
    tokens, exact = _count_tokens(request, conversation)
    response = HttpResponse(
        orjson.dumps(anthropic_messages.write_count_tokens(tokens)), content_type="application/json"
    )
    response["X-Beluga-Token-Count"] = "provider" if exact else "estimate"
    return response


def gemini_count_tokens(request: HttpRequest, *, model: str) -> HttpResponse:
    """POST /v1beta/models/{model}:countTokens (Gemini's shape)."""
    authenticate(request)
    body = parse_json_body(request)
    if isinstance(body, dict) and isinstance(body.get("generateContentRequest"), dict):
        body = body["generateContentRequest"]
    conversation = gemini.read_request(body, model=model, stream=False)
    tokens, exact = _count_tokens(request, conversation)
    response = HttpResponse(orjson.dumps({"totalTokens": tokens}), content_type="application/json")
    response["X-Beluga-Token-Count"] = "provider" if exact else "estimate"
    return response
