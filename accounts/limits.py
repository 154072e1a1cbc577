"""Per-key, per-minute request limits by plan, on the shared cache (django-ratelimit)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import caches
from django_ratelimit.core import _get_window, _make_cache_key, get_usage

from accounts.services import (
    AuthenticatedKey,
    api_key_admitted,
    api_key_authenticate,
    api_key_local,
    api_key_local_forget,
    api_key_local_keep,
    api_key_shared_entry_name,
)

logger = logging.getLogger("beluga.limits")

BUCKET_CHAT = "chat"
BUCKET_IMAGE = "image"


@dataclass(frozen=True, slots=True)
class RateLimitState:
    limit: int
    remaining: int
    reset_at: int  # UTC epoch seconds when the window resets
    limited: bool

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit-Requests": str(self.limit),
            "X-RateLimit-Remaining-Requests": str(self.remaining),
            "X-RateLimit-Reset-Requests": str(self.reset_at),
        }

    @property
    def retry_after(self) -> int:
        return max(1, self.reset_at - int(time.time()))


def key_admit(*, request, raw_key: str, bucket: str) -> tuple[AuthenticatedKey, RateLimitState]:
    """Check the key and count the request in `bucket`: what every API call does first.

    On Redis, the count also reads the key's shared cache entry in the same
    call, so a key this process has already checked costs one round trip, not
    two (accounts.services keeps the copy, and says why a change still holds
    at once). Raises KeyRejected.
    """
    counter = caches[settings.RATELIMIT_USE_CACHE]
    if not hasattr(counter, "read_along"):  # the embedded database cache
        key = api_key_authenticate(raw_key=raw_key)
        return key, rate_limit_hit(request=request, key=key, bucket=bucket)
    hashed, local = api_key_local(raw_key=raw_key)
    entry_name = api_key_shared_entry_name(hashed)
    if local is not None:
        known, entry = local
        counter.read_along(entry_name)
        state = rate_limit_hit(request=request, key=known, bucket=bucket)
        if counter.value_read_along() == entry:
            return api_key_admitted(known), state
        # The key changed (or the cache lost its entry): read it again, as on a first call.
        api_key_local_forget(hashed=hashed)
        key = api_key_authenticate(raw_key=raw_key)
        if _limit_of(key, bucket) == _limit_of(known, bucket):
            return key, state  # counted already, in the window this limit counts in
    else:
        key = api_key_authenticate(raw_key=raw_key)
    counter.read_along(entry_name)
    state = rate_limit_hit(request=request, key=key, bucket=bucket)
    api_key_local_keep(hashed=hashed, key=key, entry=counter.value_read_along())
    return key, state


def _limit_of(key: AuthenticatedKey, bucket: str) -> int:
    return key.chat_rpm if bucket == BUCKET_CHAT else key.image_rpm


def rate_limit_hit(*, request, key: AuthenticatedKey, bucket: str) -> RateLimitState:
    """Count one request against the key's bucket and say whether it is over the limit."""
    limit = _limit_of(key, bucket)
    usage = get_usage(
        request,
        group=f"rpm:{bucket}",
        key=lambda _group, _request: str(key.key_id),
        rate=(limit, 60),
        increment=True,
    )
    if usage is None:
        # The counter could not be read or written (settings.RATELIMIT_FAIL_OPEN): serve the
        # call rather than refuse every customer while the cache recovers.
        logger.warning("rate-limit counter unavailable for key %s; not limiting", key.key_id)
        return RateLimitState(limit=limit, remaining=limit, reset_at=int(time.time()) + 60, limited=False)
    count = usage["count"]
    return RateLimitState(
        limit=limit,
        remaining=max(0, limit - count),
        reset_at=int(time.time()) + int(usage["time_left"]),
        limited=usage["should_limit"],
    )


def rate_limit_peek(*, request, key: AuthenticatedKey, bucket: str) -> RateLimitState:
    """The key's window in `bucket`, without counting this request.

    For the calls that are not limited (polling a task, reading the key, a
    replayed idempotent answer): their responses still tell the client where
    its window stands. One cache read: django-ratelimit's get_usage(increment=
    False) would first add the counter (on the database cache, four statements),
    so the counter's name comes from its own helpers (pinned version; the
    headers tests compare the two).
    """
    limit = _limit_of(key, bucket)
    value = str(key.key_id)
    window = _get_window(value, 60)
    name = _make_cache_key(f"rpm:{bucket}", window, (limit, 60), value, get_usage.ALL)
    try:
        count = int(caches[settings.RATELIMIT_USE_CACHE].get(name) or 0)
    except Exception:  # noqa: BLE001 - informative headers; the counter's own failure is handled where it counts
        count = 0
    return RateLimitState(limit=limit, remaining=max(0, limit - count), reset_at=window, limited=count > limit)
