"""Per-key, per-minute request limits by plan, on the shared cache (django-ratelimit)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from django_ratelimit.core import get_usage

from accounts.services import AuthenticatedKey

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


def rate_limit_hit(*, request, key: AuthenticatedKey, bucket: str) -> RateLimitState:
    """Count one request against the key's bucket and say whether it is over the limit."""
    limit = key.chat_rpm if bucket == BUCKET_CHAT else key.image_rpm
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
