"""Prometheus metrics: what Beluga counts, and the protected `/metrics` view that exports it.

Under gunicorn the values live in prometheus_client's multiprocess files (gunicorn.conf.py sets
PROMETHEUS_MULTIPROC_DIR before any worker starts), so a scrape answered by any worker reports every
worker's counts. Elsewhere (tests, manage.py) they live in the process. Labels name endpoints,
upstreams and models, never a customer, a key or a request. See docs/metrics.md.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from functools import lru_cache

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpResponse
from django.views.decorators.http import require_safe
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.values import ValueClass

logger = logging.getLogger("beluga.gateway")

# From a refused key or a cached answer (milliseconds) to a long generation (minutes).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)
UPSTREAM_STATES = ("healthy", "degraded", "open")
# Django takes any method token; a label must not take whatever a client invents.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# A request that came through a proxy is not "from the internal network", whatever its REMOTE_ADDR.
_PROXY_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_FORWARDED", "HTTP_X_REAL_IP")

# prometheus_client picks its value class from PROMETHEUS_MULTIPROC_DIR when it is first imported.
MULTIPROCESS: bool = getattr(ValueClass, "_multiprocess", False)

_registry = CollectorRegistry()

HTTP_REQUESTS = Counter(
    "beluga_http_requests",
    "API requests answered, by endpoint (URL name), method and status code.",
    ("endpoint", "method", "status"),
    registry=_registry,
)
HTTP_REQUEST_SECONDS = Histogram(
    "beluga_http_request_duration_seconds",
    "Time until an API answer was ready to send (for a stream: until its first byte could go out).",
    ("endpoint",),
    buckets=DURATION_BUCKETS,
    registry=_registry,
)
UPSTREAM_ATTEMPTS = Counter(
    "beluga_upstream_attempts",
    "Calls to an upstream, by how they ended (ok, http_429, http_5xx, timeout, connect_error, ...).",
    ("upstream", "outcome"),
    registry=_registry,
)
UPSTREAM_ATTEMPT_SECONDS = Histogram(
    "beluga_upstream_attempt_duration_seconds",
    "Duration of calls to an upstream, whatever their outcome.",
    ("upstream",),
    buckets=DURATION_BUCKETS,
    registry=_registry,
)
USAGE_COST = Counter(
    "beluga_usage_cost_micro_usd",
    "What calls cost their accounts, in micro-USD, by public model id.",
    ("model",),
    registry=_registry,
)
USAGE_TOKENS = Counter(
    "beluga_usage_tokens",
    "Tokens billed, by public model id and kind (input, output).",
    ("model", "kind"),
    registry=_registry,
)

# labels() takes a lock and builds tuples: each series is looked up once per process.
_request_series: dict[tuple[str, str, int], tuple] = {}
_attempt_series: dict[tuple[str, str], tuple] = {}
_usage_series: dict[str, tuple] = {}
_failure_logged = False


def _observation_failed() -> None:
    """A metric that cannot be written must not fail the call it describes; say so once per process."""
    global _failure_logged
    if not _failure_logged:
        _failure_logged = True
        logger.warning("metrics: an observation failed; later failures are not logged", exc_info=True)


def request_observed(*, endpoint: str, method: str, status: int, seconds: float) -> None:
    """One API request answered (called by RequestIdMiddleware)."""
    try:
        if method not in _METHODS:
            method = "other"
        key = (endpoint, method, status)
        series = _request_series.get(key)
        if series is None:
            # labels() takes a lock and builds tuples: do it once per series, not per request.
            series = (HTTP_REQUESTS.labels(endpoint, method, str(status)), HTTP_REQUEST_SECONDS.labels(endpoint))
            series = _request_series.setdefault(key, series)
        series[0].inc()
        series[1].observe(seconds)
    except Exception:
        _observation_failed()


def attempt_observed(*, upstream: str, outcome: str, seconds: float) -> None:
    """One call to an upstream ended: `outcome` is "ok", "http_429", "http_5xx", "timeout", "connect_error",
    "client_error", "stream_broken", ... (a short, fixed word: it is a label)."""
    try:
        key = (upstream, outcome)
        series = _attempt_series.get(key)
        if series is None:
            series = (UPSTREAM_ATTEMPTS.labels(upstream, outcome), UPSTREAM_ATTEMPT_SECONDS.labels(upstream))
            series = _attempt_series.setdefault(key, series)
        series[0].inc()
        series[1].observe(seconds)
    except Exception:
        _observation_failed()


def usage_observed(*, model: str, cost_micro_usd: int, input_tokens: int, output_tokens: int) -> None:
    """One call's billed usage, under its public model id."""
    try:
        # Counters only go up; a negative amount would be a bug elsewhere, not a refund.
        series = _usage_series.get(model)
        if series is None:
            series = (
                USAGE_COST.labels(model),
                USAGE_TOKENS.labels(model, "input"),
                USAGE_TOKENS.labels(model, "output"),
            )
            series = _usage_series.setdefault(model, series)
        series[0].inc(max(cost_micro_usd, 0))
        series[1].inc(max(input_tokens, 0))
        series[2].inc(max(output_tokens, 0))
    except Exception:
        _observation_failed()


class UpstreamStateCollector:
    """`beluga_upstream_state{upstream,state}`: 1 for each upstream's current state, 0 for the others.

    Read at scrape time from the shared breakers, so whichever worker answers reports the same thing.
    """

    def describe(self):
        return []  # no collect() at registration: that would query upstream states at import

    def collect(self):
        from gateway.routing.health import upstream_states

        try:
            states = upstream_states()
        except Exception:
            logger.exception("metrics: upstream states are unavailable; this scrape goes without them")
            return
        family = GaugeMetricFamily(
            "beluga_upstream_state",
            "Each enabled upstream's health: 1 for its current state (healthy, degraded, open), 0 for the others.",
            labels=("upstream", "state"),
        )
        for upstream in states:
            for state in UPSTREAM_STATES:
                family.add_metric((upstream.name, state), 1.0 if upstream.state == state else 0.0)
            if upstream.state not in UPSTREAM_STATES:
                family.add_metric((upstream.name, upstream.state), 1.0)
        yield family


_registry.register(UpstreamStateCollector())


@lru_cache(maxsize=1)
def _scrape_registry() -> CollectorRegistry:
    if not MULTIPROCESS:
        return _registry
    # Every worker's files, merged; the collector above computes its gauge in the scraped worker.
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    registry.register(UpstreamStateCollector())
    return registry


# --- who may scrape ----------------------------------------------------------------


@lru_cache(maxsize=4)
def _networks(spec: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    try:
        return tuple(ipaddress.ip_network(item, strict=False) for item in spec)
    except ValueError as exc:
        raise ImproperlyConfigured(f"BELUGA_METRICS_ALLOW_NETWORKS: {exc}") from exc


def _token_matches(request, token: str) -> bool:
    scheme, _, given = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def _from_allowed_network(request) -> bool:
    networks = _networks(tuple(settings.BELUGA["METRICS_ALLOW_NETWORKS"]))
    if not networks or any(header in request.META for header in _PROXY_HEADERS):
        return False
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False  # a Unix socket, or no address at all
    if address.version == 6 and address.ipv4_mapped:  # a dual-stack listener's view of an IPv4 client
        address = address.ipv4_mapped
    return any(address in network for network in networks)


def metrics_allowed(request) -> bool:
    """The metrics token as a bearer token (when one is set), or a direct request from an allowed network."""
    token = settings.BELUGA["METRICS_TOKEN"]
    return bool(token and _token_matches(request, token)) or _from_allowed_network(request)


@require_safe
def metrics_view(request):
    if not metrics_allowed(request):
        return HttpResponse(
            "Forbidden: /metrics needs the metrics token or an allowed network.\n",
            status=403,
            content_type="text/plain; charset=utf-8",
        )
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    response = HttpResponse(encoder(_scrape_registry()), content_type=content_type)
    response["Cache-Control"] = "no-store"
    return response
