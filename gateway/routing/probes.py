"""Active health probes: a cheap request (list the models) to idle upstreams that ask for it.

Passive health (the breakers fed by live traffic) knows nothing of an
upstream that gets no calls, nor when an open one recovers before its
cool-down ends. For upstreams with `health_probe` on, a periodic Celery beat
task (gateway.tasks.upstream_probes_task) lists the models of those that had
no call in the breaker's window, or whose breaker (or one of its models') is
open: a success closes
the upstream's breaker and ends its models' cool-downs (the next call of each
model is that model's half-open probe); a failure counts like a failed call.
"""

from __future__ import annotations

import logging
import time

import requests

from gateway.providers.http import send, session_for
from gateway.routing import breakers

logger = logging.getLogger("beluga.probes")
PROBE_TIMEOUT_SECONDS = 10.0


def _probe_request(upstream, api_key: str) -> tuple[str, dict]:
    """The URL and headers of the upstream kind's cheapest authenticated request: list the models."""
    base = upstream.base_url.rstrip("/")
    if upstream.kind == "anthropic":
        return f"{base}/v1/models", {"x-api-key": api_key, "anthropic-version": "2023-06-01"}
    if upstream.kind == "gemini":
        return f"{base}/v1beta/models", {"x-goog-api-key": api_key}
    return f"{base}/models", ({"Authorization": f"Bearer {api_key}"} if api_key else {})


def _probe_credential(upstream) -> str | None:
    """The first key of its pool ("" for an upstream without any); None when all were refused."""
    from catalog.selectors import credential_pool

    pool = credential_pool(upstream, list(upstream.credentials.filter(enabled=True).order_by("label")))
    if pool is None:
        return None
    return pool[0][1] if pool else ""


def upstream_probe(upstream) -> bool:
    """Probe one upstream now and feed the result to its breaker; True when it answered 200."""
    key = _probe_credential(upstream)
    if key is None:
        return False  # every credential it has was refused: nothing to learn from a 401
    url, headers = _probe_request(upstream, key)
    scope = breakers.upstream_scope(upstream.id)
    state = breakers.shared_state(scope)
    admission = breakers.Admission(scopes=(scope,), probes=(scope,) if state != breakers.CLOSED else ())
    started = time.perf_counter()
    try:
        response = send(
            session=session_for(upstream_id=upstream.id, base_url=upstream.base_url.rstrip("/")),
            method="GET",
            url=url,
            headers=headers,
            timeout=(upstream.connect_timeout, min(PROBE_TIMEOUT_SECONDS, upstream.read_timeout)),
        )
        ok = response.status_code == 200
        response.close()
    except requests.RequestException:
        ok = False
    if ok:
        breakers.succeeded(admission)
        for slug in upstream.routes.filter(enabled=True).values_list("model__slug", flat=True):
            breakers.cooldown_end(breakers.model_scope(upstream.id, slug))
    else:
        breakers.failed(admission)
    logger.info(
        "probe of %s: %s in %.0f ms", upstream.name, "ok" if ok else "failed", (time.perf_counter() - started) * 1000
    )
    return ok


def upstreams_probe() -> int:
    """Probe every enabled upstream with health_probe on that is idle or open; returns how many were probed."""
    from catalog.models import Upstream
    from gateway.routing.health import upstream_states

    busy_and_closed = {
        state.name
        for state in upstream_states(fresh=True)
        if state.requests and state.breaker == breakers.CLOSED and not state.models_open
    }
    probed = 0
    for upstream in Upstream.objects.filter(enabled=True, health_probe=True):
        if upstream.name in busy_and_closed:
            continue  # live traffic already tells its health
        upstream_probe(upstream)
        probed += 1
    return probed
