"""The account API: what one call cost, and what a key may still spend.

    GET /v1/generation?id=<request id>   one call's stats (OpenRouter's /api/v1/generation)
    GET /v1/key, /v1/auth/key            the calling key, its account's balance and limits
                                         (OpenRouter's /api/v1/key)

Both take the API key as every API call does and answer `{"data": {...}}`.
Money is given twice: exact integer micro-USD (`*_micro_usd`) and, under
OpenRouter's names, USD as JSON numbers for its clients (display only).
"""

from __future__ import annotations

from datetime import datetime

from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt

from billing.api_selectors import KeyBudget, KeyOverview, generation_get, key_overview
from billing.models import UsageRecord
from billing.pricing import usd_text
from gateway.errors import InvalidRequest, MethodNotAllowed, NotFound
from gateway.pipeline import authenticate

# OpenRouter's names for a limit's reset.
LIMIT_RESETS = {"day": "daily", "month": "monthly", "total": None}


@csrf_exempt
@never_cache
def generation(request: HttpRequest) -> JsonResponse:
    """`GET /v1/generation?id=<request id>`: a call of the caller's account (any of its keys)."""
    _get_only(request)
    key = authenticate(request)
    request_id = request.GET.get("id", "").strip()
    if not request_id:
        raise InvalidRequest("Missing required query parameter: 'id' (a call's X-Request-Id).", param="id")
    record = generation_get(user_id=key.user_id, request_id=request_id)
    if record is None:
        raise NotFound(f"No generation with id '{request_id[:100]}' was found for this account.", param="id")
    return JsonResponse({"data": generation_json(record)})


@csrf_exempt
@never_cache
def key(request: HttpRequest) -> JsonResponse:
    """`GET /v1/key`: the calling key."""
    _get_only(request)
    caller = authenticate(request)
    overview = key_overview(key_id=caller.key_id)
    return JsonResponse({"data": key_json(overview, chat_rpm=caller.chat_rpm, image_rpm=caller.image_rpm)})


def generation_json(record: UsageRecord) -> dict:
    return {
        "id": record.request_id,
        "created_at": _iso(record.created_at),
        "model": record.model,
        "provider_name": record.upstream,
        "upstream": record.upstream,
        "upstream_model": record.upstream_model,
        "upstream_kind": record.upstream_kind,
        "protocol": record.protocol,
        "endpoint": record.endpoint,
        "streamed": record.stream,
        "cancelled": record.client_disconnected,
        "status_code": record.status_code,
        "error_type": record.error_type or None,
        "finish_reason": record.finish_reason or None,
        # Beluga's counts are the provider's (or its estimate, see usage_estimated): OpenRouter's
        # normalised and native counts are the same numbers here.
        "tokens_prompt": record.prompt_tokens,
        "tokens_completion": record.completion_tokens,
        "native_tokens_prompt": record.prompt_tokens,
        "native_tokens_completion": record.completion_tokens,
        "native_tokens_cached": record.cached_tokens,
        "native_tokens_cache_write": record.cache_write_tokens,
        "native_tokens_reasoning": record.reasoning_tokens,
        "usage_estimated": record.usage_estimated,
        "total_cost": _usd(record.cost_micro_usd),
        "usage": _usd(record.cost_micro_usd),
        "cost_micro_usd": record.cost_micro_usd,
        "prices_per_1m_micro_usd": {
            "input": record.input_price_per_1m,
            "output": record.output_price_per_1m,
            "cached_input": record.cached_input_price_per_1m,
            "cache_write": record.cache_write_price_per_1m,
        },
        # Media calls: what was charged per unit (image, video_second, character, audio_second).
        "media": {"unit": record.media_unit, "units": record.media_units, "unit_price": record.media_unit_price}
        if record.media_unit
        else None,
        "latency": record.latency_ms,
        "generation_time": record.upstream_latency_ms,
        "latency_ms": record.latency_ms,
        "upstream_latency_ms": record.upstream_latency_ms,
        # Every upstream the call tried, in order (the last one answered); only the answer was billed.
        "attempts": record.attempts or [],
    }


def key_json(overview: KeyOverview, *, chat_rpm: int, image_rpm: int) -> dict:
    """`chat_rpm`/`image_rpm`: the limits the rate limiter applies (the plan's, or an account's or key's override)."""
    api_key = overview.key
    plan = api_key.user.plan
    budget = overview.budget
    return {
        "name": api_key.name,
        "label": f"{api_key.prefix}…",
        "created_at": _iso(api_key.created_at),
        "expires_at": _iso(api_key.expires_at),
        "plan": {"slug": plan.slug, "name": plan.name, "prepaid": plan.prepaid},
        "is_free_tier": plan.slug == "free",
        # What the account may still spend: its balance minus the holds of calls in flight.
        "balance_micro_usd": overview.available_micro_usd,
        "reserved_micro_usd": overview.reserved_micro_usd,
        "balance": _usd(overview.available_micro_usd),
        "usage_micro_usd": overview.usage_micro_usd,
        "usage_daily_micro_usd": overview.usage_day_micro_usd,
        "usage_monthly_micro_usd": overview.usage_month_micro_usd,
        "usage": _usd(overview.usage_micro_usd),
        "usage_daily": _usd(overview.usage_day_micro_usd),
        "usage_monthly": _usd(overview.usage_month_micro_usd),
        "limit": _usd(budget.limit_micro_usd) if budget else None,
        "limit_remaining": _usd(budget.remaining_micro_usd) if budget else None,
        "limit_reset": LIMIT_RESETS[budget.period] if budget else None,
        "spend_limit": _budget_json(budget) if budget else None,
        "rate_limit": {
            "requests": chat_rpm,
            "interval": "60s",
            "chat_requests_per_minute": chat_rpm,
            "image_requests_per_minute": image_rpm,
        },
    }


def _budget_json(budget: KeyBudget) -> dict:
    return {
        "period": budget.period,
        "limit_micro_usd": budget.limit_micro_usd,
        "spent_micro_usd": budget.spent_micro_usd,
        "held_micro_usd": budget.held_micro_usd,
        "remaining_micro_usd": budget.remaining_micro_usd,
        "resets_at": _iso(budget.resets_at),
    }


def _get_only(request: HttpRequest) -> None:
    if request.method not in ("GET", "HEAD"):
        raise MethodNotAllowed(
            f"Method {request.method} is not allowed on this endpoint; use GET.", headers={"Allow": "GET, HEAD"}
        )


def _usd(micro_usd: int) -> float:
    # Through the exact decimal text, so that 1234 micro-USD is written 0.001234.
    return float(usd_text(micro_usd))


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None
