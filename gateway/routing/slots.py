"""Per-upstream concurrency caps (Upstream.max_concurrency), counted across every instance in the cache.

Only upstreams with a cap pay for it (two cache operations a call). A slot
left by a process killed mid-call is reclaimed when the counter expires
(SLOT_TTL_SECONDS after the last call took one).
"""

from __future__ import annotations

import logging

from django.core.cache import cache

from catalog.selectors import RouteTarget

logger = logging.getLogger("beluga.slots")
SLOT_TTL_SECONDS = 3600


def _key(upstream_id: int) -> str:
    return f"slots:u{upstream_id}"


def slot_take(route: RouteTarget) -> bool:
    """Take a slot of the upstream; False when it is at its cap (the call goes to the next upstream)."""
    if not route.max_concurrency:
        return True
    key = _key(route.upstream_id)
    try:
        cache.add(key, 0, SLOT_TTL_SECONDS)
        taken = cache.incr(key)
        if taken > route.max_concurrency:
            cache.decr(key)
            return False
        cache.touch(key, SLOT_TTL_SECONDS)
    except Exception:  # noqa: BLE001 - without the cache, the cap cannot be kept: let the call through
        logger.warning("concurrency slots unavailable for %s", route.upstream_name, exc_info=True)
    return True


def slot_give_back(route: RouteTarget) -> None:
    if not route.max_concurrency:
        return
    try:
        cache.decr(_key(route.upstream_id))
    except ValueError:
        pass  # the counter expired meanwhile
    except Exception:  # noqa: BLE001
        logger.warning("could not give back a slot of %s", route.upstream_name, exc_info=True)


def slots_taken(upstream_id: int) -> int:
    return int(cache.get(_key(upstream_id), 0))
