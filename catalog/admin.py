"""Admin for the catalog: models with their routes, upstreams with their credentials, routes.

Every change made here clears this process's catalog snapshot; other processes
see it within BELUGA["CATALOG_CACHE_SECONDS"]. Upstream credentials (the API
key and the pooled ones) are never rendered: the pages say whether one is set
and whether the upstream refused it, and the form fields are write-only.
A model's price edits go to its price history (catalog.services); enabled
models lacking a price are flagged on the model list. The upstream list links
to a live health table (breakers, keys, concurrency) at upstream/health/.
"""

from __future__ import annotations

import re
from dataclasses import asdict
from decimal import Decimal

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.options import IS_POPUP_VAR
from django.core.exceptions import PermissionDenied
from django.db import models
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from catalog.models import AIModel, PriceChange, Route, Upstream, UpstreamCredential, prices_required
from catalog.selectors import PRIMARY_CREDENTIAL, catalog_cache_clear, models_unpriced, price_history
from catalog.services import model_prices_record

_UNIT_PRICES = (
    ("per_image", "image"),
    ("per_video_second", "s of video"),
    ("per_1m_chars", "1M chars"),
    ("per_minute", "min of audio"),
)
# How the price history names each price.
_PRICE_LABELS = {
    "input_per_1m": "input /1M",
    "output_per_1m": "output /1M",
    "cached_input_per_1m": "cached input /1M",
    "cache_write_per_1m": "cache write /1M",
    **{name: f"/ {unit}" for name, unit in _UNIT_PRICES},
}
# Unpriced models named in the changelist's warning before "and N more".
_UNPRICED_SHOWN = 10


def usd(micro: int) -> str:
    """Integer micro-USD as dollars: 2500000 → "$2.50", 75000 → "$0.075"."""
    text = f"{Decimal(micro) / 1_000_000:.6f}".rstrip("0")
    whole, _, cents = text.partition(".")
    return f"${whole}.{cents.ljust(2, '0')}"


def credential_status(value: str) -> str:
    """How a stored credential is shown: never the secret itself."""
    if not value:
        return "missing"
    if value.startswith("env:"):
        if settings.READ_ENV_SECRET(value[4:]):
            return f"set ({value})"
        return f"missing ({value} is empty)"
    return "set"


class CatalogCacheClearMixin:
    """Clears the catalog snapshot after every write the admin makes."""

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        catalog_cache_clear()

    def save_related(self, request, form, formsets, change):
        # Inline routes are saved after the parent, so clear once more.
        super().save_related(request, form, formsets, change)
        catalog_cache_clear()

    def delete_model(self, request, obj):
        super().delete_model(request, obj)
        catalog_cache_clear()

    def delete_queryset(self, request, queryset):
        super().delete_queryset(request, queryset)
        catalog_cache_clear()

    def _set_enabled(self, request, queryset: QuerySet, enabled: bool) -> None:
        count = queryset.update(enabled=enabled)
        catalog_cache_clear()
        noun = self.model._meta.verbose_name if count == 1 else self.model._meta.verbose_name_plural
        self.message_user(request, f"{'Enabled' if enabled else 'Disabled'} {count} {noun}.", messages.SUCCESS)

    @admin.action(description="Enable selected %(verbose_name_plural)s")
    def enable_selected(self, request, queryset):
        self._set_enabled(request, queryset, True)

    @admin.action(description="Disable selected %(verbose_name_plural)s")
    def disable_selected(self, request, queryset):
        self._set_enabled(request, queryset, False)


def prices_text(prices: dict, *, category: str) -> str:
    """A PriceChange's sale prices in dollars: the ones set (zeros only where the category needs them)."""
    required = prices_required(category=category)
    parts = []
    for name, label in _PRICE_LABELS.items():
        value = prices.get(name)
        if value is None:
            if name in required:
                parts.append(f"{label} not set")
        elif value or name in required:
            parts.append(f"{label} {usd(value)}")
    return ", ".join(parts) or "—"


def list_prices_text(prices: dict) -> str:
    parts = [
        f"{label} {usd(prices[name + '_list'])}" for name, label in _PRICE_LABELS.items() if prices.get(name + "_list")
    ]
    return ", ".join(parts) or "—"


class PricedFilter(admin.SimpleListFilter):
    title = "price"
    parameter_name = "price"

    def lookups(self, request, model_admin):
        return (("missing", "Missing"), ("set", "Set"))

    def queryset(self, request, queryset):
        if self.value() == "missing":
            return queryset.unpriced()
        if self.value() == "set":
            return queryset.priced()
        return queryset


class RouteInline(admin.TabularInline):
    model = Route
    fk_name = "model"
    fields = ("upstream", "upstream_model", "priority", "weight", "enabled", "params")
    autocomplete_fields = ("upstream",)
    extra = 0


class AIModelForm(forms.ModelForm):
    class Meta:
        model = AIModel
        fields = ("fallbacks",)  # the admin's fieldsets name the rest

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "routing" in self.fields:
            # A browser always sends one; a form posted without it keeps the model's.
            self.fields["routing"].required = False

    def clean_fallbacks(self):
        fallbacks = self.cleaned_data["fallbacks"]
        if fallbacks is None:  # an emptied box
            return []
        # A malformed value is AIModel.clean's to report; here, ids that name no model.
        if isinstance(fallbacks, list) and all(isinstance(v, str) and v for v in fallbacks):
            known = set(AIModel.objects.filter(slug__in=fallbacks).values_list("slug", flat=True))
            unknown = [slug for slug in fallbacks if slug not in known]
            if unknown:
                raise forms.ValidationError(f"No model with the id {', '.join(map(repr, unknown))}.")
        return fallbacks

    def clean_request_defaults(self):
        return self.cleaned_data["request_defaults"] or {}  # an emptied box: no settings

    def clean_request_overrides(self):
        return self.cleaned_data["request_overrides"] or {}


@admin.register(AIModel)
class AIModelAdmin(CatalogCacheClearMixin, admin.ModelAdmin):
    form = AIModelForm
    list_display = (
        "slug",
        "name",
        "vendor",
        "category",
        "enabled",
        "priced",
        "input_price",
        "output_price",
        "unit_price",
        "route_count",
    )
    list_display_links = ("slug", "name")
    list_filter = (
        "vendor",
        "category",
        "enabled",
        PricedFilter,
        "supports_stream",
        "supports_vision",
        "supports_tools",
        "supports_json",
    )
    search_fields = ("slug", "name", "vendor")
    list_per_page = 200
    inlines = (RouteInline,)
    actions = ("enable_selected", "disable_selected")
    readonly_fields = ("created_at", "updated_at", "price_changes")
    fieldsets = (
        (None, {"fields": ("slug", "name", "vendor", "category", "description", "enabled")}),
        (
            "Capabilities",
            {
                "fields": (
                    ("supports_stream", "supports_vision", "supports_tools", "supports_json"),
                    ("context_window", "max_output_tokens"),
                )
            },
        ),
        (
            "Sale price (micro-USD; 1 USD = 1,000,000)",
            {
                "description": "What customers pay. Token prices are per 1M tokens. Empty: no price; a model "
                "lacking one its category needs is refused (503 model_not_priced). 0: free. A change applies "
                "to new calls and is kept in the price history below.",
                "fields": (
                    ("input_per_1m", "output_per_1m"),
                    ("cached_input_per_1m", "cache_write_per_1m"),
                    ("per_image", "per_video_second"),
                    ("per_1m_chars", "per_minute"),
                    "per_image_by_option",
                ),
            },
        ),
        (
            "Routing",
            {
                "description": "Among routes of the same priority, a call tries one at random by weight, or "
                "the one with the lowest recent latency first. When none of this model's upstreams answers "
                "(breakers open, at capacity, failed), the fallback models' routes are tried, in order (chat "
                "calls; a fallback the key may not use or that lacks a price is skipped).",
                "fields": ("alias_of", "routing", "fallbacks"),
            },
        ),
        (
            "Variant and request settings",
            {
                "description": "A variant ('-thinking', '-nothinking') is served by its base model's routes, "
                "with settings merged into every call, whatever protocol the client speaks: defaults where the "
                "client sets none, overrides over what it sets. Keys: thinking (true/false), thinking_budget "
                "(tokens, 0 is off), reasoning_effort (none, minimal, low, medium, high), include_thoughts, "
                'max_tokens, temperature, top_p, top_k. E.g. defaults {"thinking_budget": 8192}; overrides '
                '{"thinking": false}. Each upstream gets them in its own terms (docs/protocols.md).',
                "fields": ("variant_of", "request_defaults", "request_overrides"),
            },
        ),
        (
            "Media options (image, video and audio models)",
            {
                "description": "What the model accepts; requests are checked against it (docs/media.md).",
                "fields": ("media_options",),
            },
        ),
        (
            "List price (official, micro-USD)",
            {
                "description": "The provider's own price, shown beside the sale price. Empty: not known "
                "(shown as null); 0: the provider charges nothing.",
                "fields": (
                    ("input_per_1m_list", "output_per_1m_list"),
                    ("cached_input_per_1m_list", "cache_write_per_1m_list"),
                    ("per_image_list", "per_video_second_list"),
                    ("per_1m_chars_list", "per_minute_list"),
                ),
            },
        ),
        ("Price history", {"fields": ("price_changes",)}),
        ("History", {"fields": ("created_at", "updated_at"), "classes": ("collapse",)}),
    )

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_route_count=Count("routes"))

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        model_prices_record(model=obj, source=PriceChange.Source.ADMIN, changed_by=request.user)
        if obj.enabled and (missing := obj.missing_prices()):
            self.message_user(
                request,
                f"Model {obj.slug} is enabled without a price ({', '.join(missing)}): calls to it are refused "
                "with 503 model_not_priced until it has one.",
                messages.WARNING,
            )

    def changelist_view(self, request, extra_context=None):
        if request.method == "GET" and IS_POPUP_VAR not in request.GET:
            self._warn_unpriced(request)
        return super().changelist_view(request, extra_context)

    def _warn_unpriced(self, request) -> None:
        slugs = models_unpriced()
        if not slugs:
            return
        names = ", ".join(slugs[:_UNPRICED_SHOWN]) + (
            f" and {len(slugs) - _UNPRICED_SHOWN} more" if len(slugs) > _UNPRICED_SHOWN else ""
        )
        url = reverse("admin:catalog_aimodel_changelist") + "?price=missing&enabled__exact=1"
        noun = "model has" if len(slugs) == 1 else "models have"
        self.message_user(
            request,
            format_html(
                '{} enabled {} no price and {} refused (503 model_not_priced): {}. <a href="{}">Show them</a>.',
                len(slugs),
                noun,
                "is" if len(slugs) == 1 else "are",
                names,
                url,
            ),
            messages.WARNING,
        )

    @admin.action(description="Enable selected %(verbose_name_plural)s")
    def enable_selected(self, request, queryset):
        super().enable_selected(request, queryset)
        unpriced = list(queryset.unpriced().values_list("slug", flat=True))
        if unpriced:
            self.message_user(
                request,
                f"Enabled without a price, refused with 503 model_not_priced until priced: {', '.join(unpriced)}.",
                messages.WARNING,
            )

    def _price_cell(self, obj: AIModel, name: str) -> str:
        value = getattr(obj, name)
        if name in prices_required(category=obj.category):
            return "missing" if value is None else usd(value)
        return usd(value) if value else "—"

    @admin.display(description="Priced", boolean=True)
    def priced(self, obj: AIModel) -> bool:
        return not obj.missing_prices()

    @admin.display(description="Input /1M", ordering="input_per_1m")
    def input_price(self, obj: AIModel) -> str:
        return self._price_cell(obj, "input_per_1m")

    @admin.display(description="Output /1M", ordering="output_per_1m")
    def output_price(self, obj: AIModel) -> str:
        return self._price_cell(obj, "output_per_1m")

    @admin.display(description="Other price")
    def unit_price(self, obj: AIModel) -> str:
        required = prices_required(category=obj.category)
        parts = [
            f"{self._price_cell(obj, name)} / {unit}"
            for name, unit in _UNIT_PRICES
            if getattr(obj, name) or name in required
        ]
        return ", ".join(parts) or "—"

    @admin.display(description="Price history (newest first)")
    def price_changes(self, obj: AIModel) -> str:
        if obj.pk is None:
            return "—"
        rows = [
            (
                f"{change.changed_at:%Y-%m-%d %H:%M:%S} UTC",
                change.get_source_display(),
                change.changed_by or "—",
                prices_text(change.prices, category=obj.category),
                list_prices_text(change.prices),
            )
            for change in price_history(model=obj)
        ]
        if not rows:
            return "No price change recorded."
        return format_html(
            "<table><thead><tr><th>Changed</th><th>Source</th><th>By</th><th>Sale price</th><th>List price</th>"
            "</tr></thead><tbody>{}</tbody></table>",
            format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", rows),
        )

    @admin.display(description="Routes", ordering="_route_count")
    def route_count(self, obj: AIModel) -> int:
        return obj._route_count


# Django 6 makes https the default scheme for a URL typed without one; opt in now.
_URL_FIELD_OPTIONS = {"assume_scheme": "https"}
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TIMEOUTS = ("connect_timeout", "first_byte_timeout", "read_timeout", "total_timeout")


def _upstream_formfield(db_field, **kwargs):
    if isinstance(db_field, models.URLField):
        kwargs.update(_URL_FIELD_OPTIONS)
    return db_field.formfield(**kwargs)


def _secret_field(*, help_text: str) -> forms.CharField:
    """A write-only credential field: the browser is never sent the stored value."""
    return forms.CharField(
        label="API key",
        required=False,
        max_length=500,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=help_text,
    )


def _credential_checked(value: str) -> str:
    if value.startswith("env:") and not _ENV_NAME_RE.fullmatch(value[4:]):
        raise forms.ValidationError("env: must be followed by a variable name, e.g. env:OPENAI_API_KEY.")
    return value


def _utc(moment) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC"


class UpstreamForm(forms.ModelForm):
    """The credential is write-only: blank on edit keeps the stored one.

    A key the upstream refused (401/403) is out of rotation until "put back in
    rotation" is ticked or a new key is typed."""

    api_key = _secret_field(
        help_text="The key itself, or env:VAR to read the variable at call time. Leave blank to keep the current one."
    )
    clear_api_key = forms.BooleanField(label="Remove the stored key", required=False)
    clear_refusal = forms.BooleanField(
        label="Put the key back in rotation",
        required=False,
        help_text="Once the key is fixed (or the variable it names). Typing a new key does it too.",
    )
    max_concurrency = forms.IntegerField(
        required=False, min_value=1, help_text=Upstream._meta.get_field("max_concurrency").help_text
    )

    class Meta:
        model = Upstream
        fields = (
            "name",
            "kind",
            "base_url",
            "api_key",
            "connect_timeout",
            "first_byte_timeout",
            "read_timeout",
            "total_timeout",
            "max_concurrency",
            "health_probe",
            "enabled",
        )
        formfield_callback = _upstream_formfield

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Never send the stored value back to the browser, not even as `initial`.
        self.initial["api_key"] = ""
        self.refusal_cleared = False
        if self.instance.pk:
            self.fields["api_key"].help_text += f" Current: {credential_status(self.instance.api_key)}."

    def clean_api_key(self) -> str:
        return _credential_checked(self.cleaned_data["api_key"])

    def clean(self):
        cleaned = super().clean()
        for name in _TIMEOUTS:
            if cleaned.get(name) is not None and cleaned[name] <= 0:
                self.add_error(name, "Must be more than 0 seconds.")
        # self.instance still holds the stored row here; it is updated from cleaned_data after clean().
        stored = self.instance.api_key if self.instance.pk else ""
        if cleaned.get("clear_api_key"):
            cleaned["api_key"] = ""
        elif not cleaned.get("api_key") and self.instance.pk:
            cleaned["api_key"] = stored
        # The refusal was of the stored key: a new one (or none) starts afresh.
        self.refusal_cleared = bool(cleaned.get("clear_refusal")) or cleaned.get("api_key", stored) != stored
        return cleaned

    def save(self, commit=True):
        if self.refusal_cleared:
            self.instance.api_key_failed_at = None
        return super().save(commit)


class UpstreamCredentialForm(forms.ModelForm):
    """A pooled credential, write-only like the upstream's own key: blank on edit keeps it."""

    api_key = _secret_field(help_text="The key, or env:VAR. Blank keeps the stored one.")
    clear_refusal = forms.BooleanField(label="Back in rotation", required=False)

    class Meta:
        model = UpstreamCredential
        fields = ("label", "api_key", "enabled")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.initial["api_key"] = ""
        self.refusal_cleared = False
        # Only a refused credential can be put back.
        self.fields["clear_refusal"].disabled = self.instance.failed_at is None

    def clean_label(self) -> str:
        label = self.cleaned_data["label"]
        if label == PRIMARY_CREDENTIAL:
            raise forms.ValidationError(
                f"{PRIMARY_CREDENTIAL!r} names the upstream's own API key in the pool; choose another label."
            )
        # Inline forms skip the (upstream, label) constraint (the upstream is the inline's key): check it here.
        stored = UpstreamCredential.objects.filter(upstream_id=self.instance.upstream_id, label=label)
        if self.instance.upstream_id and stored.exclude(pk=self.instance.pk).exists():
            raise forms.ValidationError(f"This upstream already has a credential labelled {label!r}.")
        return label

    def clean_api_key(self) -> str:
        return _credential_checked(self.cleaned_data["api_key"])

    def clean(self):
        cleaned = super().clean()
        stored = self.instance.api_key if self.instance.pk else ""
        typed = cleaned.get("api_key")
        if not typed and "api_key" not in self.errors:
            if not stored:
                self.add_error("api_key", "Give the key, or env:VAR.")
            cleaned["api_key"] = stored
        self.refusal_cleared = bool(cleaned.get("clear_refusal")) or bool(typed and typed != stored)
        return cleaned

    def save(self, commit=True):
        if self.refusal_cleared:
            self.instance.failed_at = None
        return super().save(commit)


class UpstreamCredentialInline(admin.TabularInline):
    model = UpstreamCredential
    form = UpstreamCredentialForm
    fields = ("label", "api_key", "key_status", "enabled", "refused", "clear_refusal", "created_at")
    readonly_fields = ("key_status", "refused", "created_at")
    extra = 0
    verbose_name = "pooled credential"
    verbose_name_plural = "More credentials (rotated round-robin with the API key above)"

    @admin.display(description="Stored")
    def key_status(self, obj: UpstreamCredential) -> str:
        return credential_status(obj.api_key) if obj.pk else "—"

    @admin.display(description="Refused (401/403) at")
    def refused(self, obj: UpstreamCredential) -> str:
        return _utc(obj.failed_at) if obj.failed_at else "—"


def _pool(upstream: Upstream) -> tuple[int, list[str]]:
    """(credentials in the pool, labels of those refused) from the prefetched credentials; no query."""
    size = 1 if upstream.api_key else 0
    refused = [PRIMARY_CREDENTIAL] if upstream.api_key and upstream.api_key_failed_at else []
    for credential in upstream.credentials.all():
        if credential.enabled:
            size += 1
            if credential.failed_at:
                refused.append(credential.label)
    return size, refused


@admin.register(Upstream)
class UpstreamAdmin(CatalogCacheClearMixin, admin.ModelAdmin):
    form = UpstreamForm
    inlines = (UpstreamCredentialInline,)
    formfield_overrides = {models.URLField: _URL_FIELD_OPTIONS}
    list_display = (
        "name",
        "kind",
        "base_url",
        "enabled",
        "credential",
        "key_pool",
        "refused",
        "connect_timeout",
        "read_timeout",
        "route_count",
    )
    list_filter = ("kind", "enabled")
    search_fields = ("name", "base_url")
    actions = ("enable_selected", "disable_selected", "credentials_restore")
    readonly_fields = ("api_key_refused",)
    fieldsets = (
        (None, {"fields": ("name", "kind", "base_url", "enabled")}),
        ("Credential", {"fields": ("api_key", "clear_api_key", "api_key_refused", "clear_refusal")}),
        (
            "Timeouts (seconds)",
            {
                "description": "First byte: from sending the request to the answer's headers. Idle: silence "
                "allowed between bytes. Total: the whole call.",
                "fields": (("connect_timeout", "first_byte_timeout"), ("read_timeout", "total_timeout")),
            },
        ),
        ("Capacity", {"fields": ("max_concurrency",)}),
        ("Health", {"fields": ("health_probe",)}),
    )

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_route_count=Count("routes")).prefetch_related("credentials")

    def get_fieldsets(self, request, obj=None):
        # The refusal line and its checkbox only where there is a stored key to have been refused.
        hidden = {"api_key_refused", "clear_refusal"} if obj is None else set()
        if obj is not None and obj.api_key_failed_at is None:
            hidden.add("clear_refusal")
        return [
            (name, {**options, "fields": tuple(f for f in options["fields"] if f not in hidden)})
            for name, options in self.fieldsets
        ]

    def get_urls(self):
        health = path("health/", self.admin_site.admin_view(self.health_view), name="catalog_upstream_health")
        return [health, *super().get_urls()]  # before the change view's <path:object_id>/

    @admin.display(description="Credential")
    def credential(self, obj: Upstream) -> str:
        return credential_status(obj.api_key)

    @admin.display(description="Key pool")
    def key_pool(self, obj: Upstream) -> str:
        size, refused = _pool(obj)
        return f"{size}, {len(refused)} refused" if refused else str(size)

    @admin.display(description="Refused")
    def refused(self, obj: Upstream) -> str:
        return ", ".join(_pool(obj)[1]) or "—"

    @admin.display(description="Refused by the upstream")
    def api_key_refused(self, obj: Upstream) -> str:
        if obj.api_key_failed_at is None:
            return "No"
        return f"Yes, at {_utc(obj.api_key_failed_at)} (401/403): out of rotation until put back."

    @admin.display(description="Routes", ordering="_route_count")
    def route_count(self, obj: Upstream) -> int:
        return obj._route_count

    @admin.action(description="Put refused credentials back in rotation")
    def credentials_restore(self, request, queryset):
        ids = list(queryset.values_list("pk", flat=True))
        keys = Upstream.objects.filter(pk__in=ids, api_key_failed_at__isnull=False).update(api_key_failed_at=None)
        pooled = UpstreamCredential.objects.filter(upstream__in=ids, failed_at__isnull=False).update(failed_at=None)
        catalog_cache_clear()
        self.message_user(request, f"Put {keys + pooled} refused credentials back in rotation.", messages.SUCCESS)

    def health_view(self, request: HttpRequest) -> HttpResponse:
        """Every enabled upstream's state, as a table that refreshes itself from ?format=json."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        # Breakers and concurrency slots are the gateway's (gateway.routing); the admin only shows them.
        from gateway.routing.health import upstream_states

        states = upstream_states(fresh=True)
        urls = dict(Upstream.objects.filter(name__in=[s.name for s in states]).values_list("name", "pk"))
        rows = [
            {**asdict(state), "url": reverse("admin:catalog_upstream_change", args=[urls[state.name]])}
            for state in states
            if state.name in urls
        ]
        window = settings.BELUGA["BREAKER_WINDOW_SECONDS"]
        if request.GET.get("format") == "json":
            return JsonResponse({"window_seconds": window, "upstreams": rows})
        context = {
            **self.admin_site.each_context(request),
            "title": "Upstream health",
            "opts": self.opts,
            "rows": rows,
            "window_seconds": window,
            "json_url": f"{request.path}?format=json",
        }
        return TemplateResponse(request, "admin/catalog/upstream/health.html", context)


@admin.register(Route)
class RouteAdmin(CatalogCacheClearMixin, admin.ModelAdmin):
    list_display = ("model", "upstream", "upstream_model", "priority", "weight", "enabled")
    list_filter = ("upstream", "enabled", "model__category", "model__vendor")
    search_fields = ("model__slug", "upstream__name", "upstream_model")
    list_select_related = ("model", "upstream")
    autocomplete_fields = ("model", "upstream")
    actions = ("enable_selected", "disable_selected")
    list_per_page = 200
