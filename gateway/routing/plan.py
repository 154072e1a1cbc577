"""The order in which a call tries upstreams, and which credential of each it uses.

A model's routes by priority (lowest first); among routes of one priority,
weighted at random, or by lowest recent latency when the model says
`routing: latency`. Then, only if none of those could take the call, each
fallback model's routes the same way. Breakers and concurrency caps are
checked by the pipeline as it walks this order (gateway/pipeline.py).
"""

from __future__ import annotations

import dataclasses
import itertools
import random
import threading
from collections.abc import Callable, Iterator

from catalog.selectors import ModelInfo, RouteTarget

# Recent latency per (upstream, model), in this process: an exponentially weighted average.
LATENCY_WEIGHT = 0.3
_latency_ms: dict[tuple[int, str], float] = {}
_rotation: dict[int, itertools.count] = {}
_refused: set[tuple[int, str]] = set()  # credentials refused here, before the catalog snapshot drops them
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


def with_credential(route: RouteTarget) -> RouteTarget | None:
    """The route with the next credential of its pool (round-robin per process); None when none is left."""
    pool = (
        [c for c in route.credentials if (route.upstream_id, c[0]) not in _refused] if _refused else route.credentials
    )
    if not pool:
        return None if route.credentials else route  # an upstream without credentials (a local server)
    if len(pool) == 1 and pool[0][0] == route.credential:
        return route  # one credential, already the route's
    with _lock:
        turn = next(_rotation.setdefault(route.upstream_id, itertools.count()))
    label, key = pool[turn % len(pool)]
    return dataclasses.replace(route, api_key=key, credential=label)


def credential_refused(*, upstream_id: int, label: str) -> None:
    """Out of rotation in this process at once (the catalog snapshot drops it everywhere on its next load)."""
    _refused.add((upstream_id, label))


def reset_for_tests() -> None:
    _latency_ms.clear()
    _rotation.clear()
    _refused.clear()
