"""Per-upstream concurrency caps (Upstream.max_concurrency), counted across every instance.

Only upstreams with a cap pay for it: one round trip to take a slot, one to
give it back. On Redis a slot is a lease in a sorted set (the call's request
id, scored by when the lease runs out: the request deadline and a minute), so
the slot of a call whose process was killed frees itself when its lease ends,
and never sooner. On the embedded database cache (one machine) a counter
stands in, and a killed process's slots are forgotten when the counter expires.
"""

from __future__ import annotations

import logging
import secrets
import time

from django.conf import settings
from django.core.cache import cache
from django.core.cache.backends.redis import RedisCache

from catalog.selectors import RouteTarget

logger = logging.getLogger("beluga.slots")
LEASE_MARGIN_SECONDS = 60

# KEYS[1]: the upstream's lease set. ARGV: now, cap, the call's id, its lease's end.
_TAKE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[3])
redis.call('EXPIRE', KEYS[1], math.ceil(ARGV[4] - ARGV[1]) + 1)
return 1
"""


def _key(upstream_id: int) -> str:
    return f"slots:u{upstream_id}"


def _lease_seconds() -> float:
    return settings.BELUGA["REQUEST_DEADLINE_SECONDS"] + LEASE_MARGIN_SECONDS


def _redis():
    client = cache._cache.get_client(write=True)
    script = _scripts.get(id(client))
    if script is None:
        script = _scripts[id(client)] = client.register_script(_TAKE)
    return client, script


_scripts: dict[int, object] = {}


NO_CAP = ""  # the slot of an upstream without a cap: nothing to give back


def slot_take(route: RouteTarget) -> str | None:
    """Take a slot of the upstream: its lease id (NO_CAP without a cap), or None at the cap (the call
    goes to the next upstream). Give it back with slot_give_back."""
    if not route.max_concurrency:
        return NO_CAP
    lease = secrets.token_hex(8)  # not the request id: a client chooses that, and could reuse it
    try:
        if isinstance(cache, RedisCache):
            _, script = _redis()
            now = time.time()
            key = cache.make_key(_key(route.upstream_id))
            taken = script(keys=[key], args=[now, route.max_concurrency, lease, now + _lease_seconds()])
            return lease if taken else None
        counter = _key(route.upstream_id)
        cache.add(counter, 0, int(_lease_seconds()))
        if cache.incr(counter) > route.max_concurrency:
            cache.decr(counter)
            return None
        return lease
    except Exception:  # noqa: BLE001 - without the cache the cap cannot be kept: let the call through
        logger.warning("concurrency slots unavailable for %s", route.upstream_name, exc_info=True)
        return NO_CAP


def slot_give_back(route: RouteTarget, lease: str | None) -> None:
    if not lease:
        return
    try:
        if isinstance(cache, RedisCache):
            client, _ = _redis()
            client.zrem(cache.make_key(_key(route.upstream_id)), lease)
            return
        counter = _key(route.upstream_id)
        if cache.decr(counter) < 0:
            cache.set(counter, 0, int(_lease_seconds()))
    except ValueError:
        pass  # the counter expired meanwhile
    except Exception:  # noqa: BLE001
        logger.warning("could not give back a slot of %s", route.upstream_name, exc_info=True)


def slots_taken(upstream_id: int) -> int:
    """Calls holding a slot of the upstream now (its leases not run out)."""
    if isinstance(cache, RedisCache):
        client, _ = _redis()
        return int(client.zcount(cache.make_key(_key(upstream_id)), time.time(), "+inf"))
    return max(0, int(cache.get(_key(upstream_id), 0)))
