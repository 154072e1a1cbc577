"""Each upstream's health as /v1/health, the admin's health table and /metrics report it.

Read from the shared cache (the breakers' states and window counts), so every
instance reports the same. Not on the request path: a few cache reads per
upstream and model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from gateway.routing import breakers
from gateway.routing.slots import slots_taken

HEALTHY, DEGRADED, OPEN = "healthy", "degraded", "open"


@dataclass(frozen=True, slots=True)
class UpstreamState:
    name: str
    kind: str
    state: str  # "healthy"; "degraded" (failures in the window, or a model's breaker open); "open"
    breaker: str  # the upstream's own breaker: "closed", "open" or "half-open"
    models_open: tuple[str, ...] = ()  # public model ids whose upstream + model breaker is open or half-open
    requests: int = 0  # calls in the breaker's window
    failures: int = 0
    credentials: int = 0  # in rotation
    credentials_refused: tuple[str, ...] = ()  # labels the upstream refused (401/403)
    in_flight: int | None = None  # calls holding a slot, when the upstream has a concurrency cap
    max_concurrency: int | None = None


MEMO_SECONDS = 2.0  # load balancers probe /v1/health often; states are read at most this often
_memo: dict[str, tuple[float, list]] = {}


def upstream_states(*, fresh: bool = False) -> list[UpstreamState]:
    """Every enabled upstream, by name (this process's reading of the last two seconds unless `fresh`)."""
    now = time.monotonic()
    memo = _memo.get("states")
    if not fresh and memo is not None and now - memo[0] < MEMO_SECONDS:
        return memo[1]
    states = _read_states()
    _memo["states"] = (now, states)
    return states


def _read_states() -> list[UpstreamState]:
    from catalog.models import Route, Upstream, UpstreamCredential
    from catalog.selectors import PRIMARY_CREDENTIAL

    upstreams = list(Upstream.objects.filter(enabled=True).order_by("name"))
    models: dict[int, list[str]] = {}
    for upstream_id, slug in Route.objects.filter(enabled=True, model__enabled=True).values_list(
        "upstream_id", "model__slug"
    ):
        models.setdefault(upstream_id, []).append(slug)
    extra: dict[int, list[UpstreamCredential]] = {}
    for credential in UpstreamCredential.objects.filter(upstream__enabled=True, enabled=True):
        extra.setdefault(credential.upstream_id, []).append(credential)
    states = []
    for upstream in upstreams:
        scope = breakers.upstream_scope(upstream.id)
        breaker = breakers.shared_state(scope)
        calls, failures = breakers.window_counts(scope)
        models_open = tuple(
            sorted(
                slug
                for slug in models.get(upstream.id, ())
                if breakers.shared_state(breakers.model_scope(upstream.id, slug)) != breakers.CLOSED
            )
        )
        refused = [PRIMARY_CREDENTIAL] if upstream.api_key and upstream.api_key_failed_at else []
        refused += [c.label for c in extra.get(upstream.id, ()) if c.failed_at]
        in_rotation = (1 if upstream.api_key and not upstream.api_key_failed_at else 0) + sum(
            1 for c in extra.get(upstream.id, ()) if not c.failed_at
        )
        if breaker != breakers.CLOSED:
            state = OPEN
        elif models_open or failures or refused:
            state = DEGRADED
        else:
            state = HEALTHY
        states.append(
            UpstreamState(
                name=upstream.name,
                kind=upstream.kind,
                state=state,
                breaker=breaker,
                models_open=models_open,
                requests=calls,
                failures=failures,
                credentials=in_rotation,
                credentials_refused=tuple(refused),
                in_flight=slots_taken(upstream.id) if upstream.max_concurrency else None,
                max_concurrency=upstream.max_concurrency,
            )
        )
    return states
