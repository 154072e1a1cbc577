"""The order in which a call tries upstreams, and which credential of each it uses.

A model's routes by priority (lowest first); among routes of one priority,
weighted at random, or by lowest recent latency when the model says
`routing: latency`. Then, only if none of those could take the call, each
fallback model's routes the same way. Breakers and concurrency caps are
checked by the pipeline as it walks this order (gateway/pipeline.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import random
import threading
import time
from collections.abc import Callable, Iterator

from django.conf import settings

from catalog.selectors import ModelInfo, RouteTarget

# Recent latency per (upstream, model), in this process: an exponentially weighted average.
LATENCY_WEIGHT = 0.3
_latency_ms: dict[tuple[int, str], float] = {}
_rotation: dict[int, itertools.count] = {}
# Credentials refused here, until the catalog snapshot drops them: (upstream, label) -> (until, key fingerprint).
_refused: dict[tuple[int, str], tuple[float, str]] = {}
_lock = threading.Lock()


def candidates(
    model: ModelInfo, *, fallback: Callable[[str], ModelInfo | None]
) -> Iterator[tuple[ModelInfo, RouteTarget]]:
    """(model, route) in the order a call tries them; `fallback(slug)` gives a usable fallback model or None."""
    for route in ordered_routes(model):
        yield model, route
    for slug in model.fallbacks:
        other = fallback(slug)
        if other is None or other.slug == model.slug:
            continue
        for route in ordered_routes(other):
            yield other, route


def ordered_routes(model: ModelInfo) -> list[RouteTarget]:
    out: list[RouteTarget] = []
    for _, group in itertools.groupby(model.routes, key=lambda r: r.priority):
        routes = list(group)
        if len(routes) > 1:
            routes = _by_latency(model, routes) if model.routing == "latency" else _weighted_order(routes)
        out.extend(routes)
    return out


def _weighted_order(routes: list[RouteTarget]) -> list[RouteTarget]:
    """A weighted random order without repeats: each next route drawn by weight among those left."""
    left = list(routes)
    out = []
    while left:
        pick = random.choices(range(len(left)), weights=[max(r.weight, 0) or 1 for r in left])[0]
        out.append(left.pop(pick))
    return out


def _by_latency(model: ModelInfo, routes: list[RouteTarget]) -> list[RouteTarget]:
    # An upstream not measured yet goes first, so that every one gets measured.
    return sorted(routes, key=lambda r: _latency_ms.get((r.upstream_id, model.slug), 0.0))


def latency_observed(*, upstream_id: int, model: str, ms: float) -> None:
    key = (upstream_id, model)
    old = _latency_ms.get(key)
    _latency_ms[key] = ms if old is None else old + LATENCY_WEIGHT * (ms - old)


def _refused_now(upstream_id: int, label: str, key: str) -> bool:
    refusal = _refused.get((upstream_id, label))
    if refusal is None:
        return False
    until, fingerprint = refusal
    if time.monotonic() > until or fingerprint != _fingerprint(key):
        _refused.pop((upstream_id, label), None)  # the snapshot knows by now, or the key was replaced
        return False
    return True


def _fingerprint(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _in_rotation(route: RouteTarget) -> tuple[tuple[str, str], ...]:
    if not _refused:
        return route.credentials
    return tuple(c for c in route.credentials if not _refused_now(route.upstream_id, c[0], c[1]))


def credential_left(route: RouteTarget) -> bool:
    """Whether the route's pool still has a credential here (without turning the rotation)."""
    return bool(_in_rotation(route))


def with_credential(route: RouteTarget) -> RouteTarget | None:
    """The route with the next credential of its pool (round-robin per process); None when none is left."""
    pool = _in_rotation(route)
    if not pool:
        return None if route.credentials else route  # an upstream without credentials (a local server)
    if len(pool) == 1 and pool[0][0] == route.credential:
        return route  # one credential, already the route's
    with _lock:
        turn = next(_rotation.setdefault(route.upstream_id, itertools.count()))
    label, key = pool[turn % len(pool)]
    return dataclasses.replace(route, api_key=key, credential=label)


def credential_refused(route: RouteTarget) -> None:
    """Out of rotation in this process at once, until the catalog snapshot (which drops it everywhere)
    has reloaded; a key replaced meanwhile is not held against its label."""
    until = time.monotonic() + 2 * settings.BELUGA["CATALOG_CACHE_SECONDS"] + 1
    _refused[(route.upstream_id, route.credential)] = (until, _fingerprint(route.api_key))


def reset_for_tests() -> None:
    _latency_ms.clear()
    _rotation.clear()
    _refused.clear()
