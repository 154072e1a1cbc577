"""Reads of the catalog: the hot-path snapshot, route choice and public listings.

The request pipeline needs a model's prices and routes on every call. Each
process keeps a snapshot of the enabled catalog (two queries to build) for
BELUGA["CATALOG_CACHE_SECONDS"], so admin edits reach every instance within
that time and the database stays off the hot path.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field

from django.conf import settings
from django.contrib.postgres.search import SearchQuery, SearchRank, SearchVector
from django.db import connection
from django.db.models import Q, QuerySet, Value
from django.db.models.functions import Lower, Replace

from catalog.models import (
    CHAT_CATEGORIES,
    AIModel,
    PriceChange,
    Route,
    Upstream,
    UpstreamCredential,
    routed_q,
    vendor_slug,
)

PRIMARY_CREDENTIAL = "primary"  # the label of Upstream.api_key in the pool


@dataclass(frozen=True, slots=True)
class RouteTarget:
    """Everything needed to call one upstream for one model.

    `api_key` is the credential of this attempt (the first of the pool until
    gateway.routing picks one); `credentials` is the pool in rotation, as
    (label, resolved key) pairs, without the ones the upstream refused."""

    upstream_id: int
    upstream_name: str
    kind: str
    base_url: str
    api_key: str = field(repr=False)  # resolved credential; never logged or returned
    connect_timeout: float
    read_timeout: float  # idle: between bytes, between stream chunks
    upstream_model: str
    priority: int
    weight: int
    params: dict = field(default_factory=dict)  # merged into the upstream body, over the client's values
    first_byte_timeout: float | None = None  # to the answer's headers; None: read_timeout
    total_timeout: float | None = None  # a whole call; None: only the request's deadline
    max_concurrency: int | None = None  # calls in flight across instances; None: no cap
    credential: str = PRIMARY_CREDENTIAL  # the label of api_key
    credentials: tuple[tuple[str, str], ...] = field(default=(), repr=False)


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """An enabled model as the pipeline sees it.

    `priced` is False when the model lacks a sale price its category needs
    (AIModel.missing_prices): such a model is refused, never served free. The
    prices are integers either way (a missing one reads 0) so that pricing
    arithmetic stays integer.
    """

    id: int
    slug: str
    category: str
    supports_stream: bool
    max_output_tokens: int | None
    context_window: int | None
    priced: bool
    input_per_1m: int
    output_per_1m: int
    per_image: int
    per_video_second: int
    per_1m_chars: int
    per_minute: int
    cached_input_per_1m: int | None  # None: cached input tokens cost the input price
    cache_write_per_1m: int | None
    routes: tuple[RouteTarget, ...] = field(default=())
    media_options: dict = field(default_factory=dict)  # AIModel.media_options: what a media model accepts
    per_image_by_option: dict = field(default_factory=dict)  # per-image prices by quality / size
    routing: str = "priority"  # or "latency": how routes of one priority are ordered
    fallbacks: tuple[str, ...] = ()  # model ids tried when none of this model's upstreams can take a call
    # Merged into every call (catalog/request_settings.py): defaults where the
    # client set nothing, overrides over what it set.
    request_defaults: dict = field(default_factory=dict)
    request_overrides: dict = field(default_factory=dict)


def upstream_credential(value: str) -> str:
    """`env:VAR` reads the variable (through settings, the one reader of the environment)."""
    if value.startswith("env:"):
        return settings.READ_ENV_SECRET(value[4:])
    return value


class _Snapshot:
    def __init__(self) -> None:
        self.models: dict[str, ModelInfo] = {}
        self.loaded_at = 0.0
        self.lock = threading.Lock()


_snapshot = _Snapshot()


def credential_pool(upstream: Upstream, credentials) -> tuple[tuple[str, str], ...] | None:
    """The upstream's key pool in rotation, as (label, resolved key): its api_key ("primary") unless
    refused, then its `credentials` (its enabled UpstreamCredential rows, by label) not refused.
    () for an upstream without a credential in rotation that was never refused (a local server, or
    an `env:` key not set here); None when what it has was refused: it must not be called without one."""
    pool = []
    if upstream.api_key and upstream.api_key_failed_at is None:
        primary = upstream_credential(upstream.api_key)
        if primary:
            pool.append((PRIMARY_CREDENTIAL, primary))
    for row in credentials:
        key = upstream_credential(row.api_key) if row.failed_at is None else ""
        if key:
            pool.append((row.label, key))
    if not pool and ((upstream.api_key and upstream.api_key_failed_at) or credentials):
        return None
    return tuple(pool)


def _enabled_credentials() -> dict[int, list[UpstreamCredential]]:
    by_upstream: dict[int, list[UpstreamCredential]] = {}
    rows = UpstreamCredential.objects.filter(enabled=True, upstream__enabled=True).order_by("upstream_id", "label")
    for row in rows:
        by_upstream.setdefault(row.upstream_id, []).append(row)
    return by_upstream


def _load() -> dict[str, ModelInfo]:
    routes_by_model: dict[int, list[RouteTarget]] = {}
    # Every model's routes, enabled or not: a variant of a disabled model is served by its routes.
    route_rows = Route.objects.filter(enabled=True, upstream__enabled=True).select_related("upstream")
    credentials = _enabled_credentials()
    for route in route_rows:
        up = route.upstream
        pool = credential_pool(up, credentials.get(up.id, []))
        if pool is None:
            continue  # every credential it has was refused: never called without one
        label, key = pool[0] if pool else (PRIMARY_CREDENTIAL, "")
        routes_by_model.setdefault(route.model_id, []).append(
            RouteTarget(
                upstream_id=up.id,
                upstream_name=up.name,
                kind=up.kind,
                base_url=up.base_url.rstrip("/"),
                api_key=key,
                connect_timeout=up.connect_timeout,
                read_timeout=up.read_timeout,
                upstream_model=route.upstream_model,
                priority=route.priority,
                weight=route.weight,
                params=route.params if isinstance(route.params, dict) else {},
                first_byte_timeout=up.first_byte_timeout,
                total_timeout=up.total_timeout,
                max_concurrency=up.max_concurrency,
                credential=label,
                credentials=pool,
            )
        )
    models = {}
    aliases: list[tuple[str, int]] = []
    for m in AIModel.objects.filter(enabled=True):
        if m.alias_of_id is not None:
            aliases.append((m.slug, m.alias_of_id))
            continue
        models[m.slug] = ModelInfo(
            id=m.id,
            slug=m.slug,
            category=m.category,
            supports_stream=m.supports_stream,
            max_output_tokens=m.max_output_tokens,
            context_window=m.context_window,
            priced=not m.missing_prices(),
            input_per_1m=m.input_per_1m or 0,
            output_per_1m=m.output_per_1m or 0,
            per_image=m.per_image or 0,
            per_video_second=m.per_video_second or 0,
            per_1m_chars=m.per_1m_chars or 0,
            per_minute=m.per_minute or 0,
            cached_input_per_1m=m.cached_input_per_1m,
            cache_write_per_1m=m.cache_write_per_1m,
            # A variant without routes of its own is served by its base model's.
            routes=tuple(
                sorted(routes_by_model.get(m.id) or routes_by_model.get(m.variant_of_id, ()), key=lambda r: r.priority)
            ),
            media_options=m.media_options if isinstance(m.media_options, dict) else {},
            per_image_by_option=m.per_image_by_option if isinstance(m.per_image_by_option, dict) else {},
            routing=m.routing,
            fallbacks=tuple(v for v in m.fallbacks if isinstance(v, str)) if isinstance(m.fallbacks, list) else (),
            request_defaults=m.request_defaults if isinstance(m.request_defaults, dict) else {},
            request_overrides=m.request_overrides if isinstance(m.request_overrides, dict) else {},
        )
    by_id = {info.id: info for info in models.values()}
    for slug, target_id in aliases:
        if target_id in by_id:  # an alias of a disabled model is unavailable with it
            models[slug] = by_id[target_id]  # the target itself: its routes, prices, and its id in answers
    return models


def _models() -> dict[str, ModelInfo]:
    ttl = settings.BELUGA["CATALOG_CACHE_SECONDS"]
    if time.monotonic() - _snapshot.loaded_at <= ttl and _snapshot.loaded_at:
        return _snapshot.models
    if _snapshot.loaded_at:
        # Stale: one thread reloads, the others keep serving the old snapshot
        # rather than queue behind it (each of them may hold a pooled database
        # connection the reloading thread would wait for).
        if _snapshot.lock.acquire(blocking=False):
            try:
                _reload()
            finally:
                _snapshot.lock.release()
        return _snapshot.models
    with _snapshot.lock:  # no snapshot yet: everyone waits for the first one
        if not _snapshot.loaded_at:
            _reload()
    return _snapshot.models


def _reload() -> None:
    _snapshot.models = _load()
    _snapshot.loaded_at = time.monotonic()


def catalog_cache_clear() -> None:
    """Forget this process's snapshot (tests, and right after an import in the same process)."""
    _snapshot.loaded_at = 0.0


def model_get(*, slug: str) -> ModelInfo | None:
    """An enabled model by its public id, from the snapshot."""
    return _models().get(slug)


def model_example_slug() -> str | None:
    """A priced chat model a new key can call right now (its route has a credential), for examples."""
    for model in _models().values():
        if model.category in CHAT_CATEGORIES and model.priced and any(route.api_key for route in model.routes):
            return model.slug
    return None


def route_pick(*, model: ModelInfo) -> RouteTarget | None:
    """The route to call: lowest priority first, weighted at random among equals."""
    if not model.routes:
        return None
    best = model.routes[0].priority
    candidates = [r for r in model.routes if r.priority == best]
    if len(candidates) == 1:
        return candidates[0]
    return random.choices(candidates, weights=[max(r.weight, 0) or 1 for r in candidates])[0]


# --- listings (not on the hot path) -----------------------------------------


def _public() -> QuerySet[AIModel]:
    """The models GET /v1/models shows: enabled ones a call can be served for (AIModel.served: a
    route and a price), so that every listed id can be called; an alias while its target can."""
    return (
        AIModel.objects.filter(enabled=True).served().select_related("alias_of", "variant_of", "alias_of__variant_of")
    )


def models_public(*, category: str = "", provider: str = "", search: str = "") -> QuerySet[AIModel]:
    """The models of GET /v1/models, filtered. Full-text search on PostgreSQL.

    `provider` is the vendor as shown ("Moonshot AI") or as its `owned_by` slug ("moonshot-ai"), any
    case, or the slug's leading words ("moonshot")."""
    qs = _public()
    if "\x00" in category + provider + search:
        return qs.none()  # no id or name holds a NUL, and PostgreSQL refuses it in a query
    if category:
        qs = qs.filter(category__iexact=category)
    if provider:
        wanted = vendor_slug(provider)
        # vendor_slug in SQL: what `owned_by` shows.
        qs = qs.annotate(vendor_slug=Replace(Lower("vendor"), Value(" "), Value("-"))).filter(
            Q(vendor_slug=wanted) | Q(vendor_slug__startswith=wanted + "-")
        )
    if search:
        if connection.vendor == "postgresql":
            vector = (
                SearchVector("slug", weight="A")
                + SearchVector("name", weight="A")
                + SearchVector("vendor", "description", weight="B")
            )
            query = SearchQuery(search, search_type="websearch")
            # Prefix matches on the id catch partial slugs ("gpt-5") that
            # the English stemmer would split into tokens.
            qs = (
                qs.annotate(rank=SearchRank(vector, query))
                .filter(Q(rank__gt=0) | Q(slug__icontains=search) | Q(name__icontains=search))
                .order_by("-rank", "vendor", "slug")
            )
        else:
            terms = search.split()
            for term in terms:
                qs = qs.filter(
                    Q(slug__icontains=term)
                    | Q(name__icontains=term)
                    | Q(vendor__icontains=term)
                    | Q(description__icontains=term)
                )
    return qs


def model_public_get(*, slug: str) -> AIModel | None:
    """A model GET /v1/models lists, by id; None (404) for any other, as for an unknown id."""
    if "\x00" in slug:
        return None
    return _public().filter(slug=slug).first()


def upstreams_configured() -> int:
    return Upstream.objects.filter(enabled=True).count()


def models_enabled_count() -> int:
    return AIModel.objects.filter(enabled=True).count()


def models_unrouted() -> list[str]:
    """Ids of the enabled models without a route a call can take (an alias: its target's):
    refused with 503 and not listed until one is added."""
    rows = AIModel.objects.filter(enabled=True).exclude(alias_of__enabled=False)
    unrouted = rows.filter(alias_of__isnull=True).exclude(routed_q()) | rows.filter(
        alias_of__isnull=False, alias_of__in=AIModel.objects.exclude(routed_q())
    )
    return list(unrouted.order_by("slug").values_list("slug", flat=True))


def models_unpriced() -> list[str]:
    """Ids of the enabled models lacking a price their category needs: refused until priced."""
    return list(AIModel.objects.filter(enabled=True).unpriced().order_by("slug").values_list("slug", flat=True))


def price_history(*, model: AIModel) -> list[PriceChange]:
    """The model's price changes, newest first."""
    return list(PriceChange.objects.filter(model=model).select_related("changed_by").order_by("-changed_at", "-id"))
