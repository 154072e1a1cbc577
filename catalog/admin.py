"""Admin for the catalog: models with their routes, upstreams, routes.

Every change made here clears this process's catalog snapshot; other processes
see it within BELUGA["CATALOG_CACHE_SECONDS"]. Upstream credentials are never
rendered: the list shows whether one is set, and the form field is write-only.
A model's price edits go to its price history (catalog.services); enabled
models lacking a price are flagged on the model list.
"""

from __future__ import annotations

from decimal import Decimal

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.options import IS_POPUP_VAR
from django.db import models
from django.db.models import Count, QuerySet
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from catalog.models import AIModel, PriceChange, Route, Upstream, prices_required
from catalog.selectors import catalog_cache_clear, models_unpriced, price_history
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


@admin.register(AIModel)
class AIModelAdmin(CatalogCacheClearMixin, admin.ModelAdmin):
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
            "Media options (image, video and audio models)",
            {
                "description": "What the model accepts; requests are checked against it (docs/media.md).",
                "fields": ("media_options",),
            },
        ),
        (
            "List price (official, micro-USD)",
            {
                "description": "The provider's own price, shown beside the sale price.",
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


def _upstream_formfield(db_field, **kwargs):
    if isinstance(db_field, models.URLField):
        kwargs.update(_URL_FIELD_OPTIONS)
    return db_field.formfield(**kwargs)


class UpstreamForm(forms.ModelForm):
    """The credential is write-only: blank on edit keeps the stored one."""

    api_key = forms.CharField(
        label="API key",
        required=False,
        max_length=500,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="The key itself, or env:VAR to read the variable at call time. Leave blank to keep the current one.",
    )
    clear_api_key = forms.BooleanField(label="Remove the stored key", required=False)

    class Meta:
        model = Upstream
        fields = ("name", "kind", "base_url", "api_key", "connect_timeout", "read_timeout", "enabled")
        formfield_callback = _upstream_formfield

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Never send the stored value back to the browser, not even as `initial`.
        self.initial["api_key"] = ""
        if self.instance.pk:
            self.fields["api_key"].help_text += f" Current: {credential_status(self.instance.api_key)}."

    def clean(self):
        cleaned = super().clean()
        # self.instance still holds the stored row here; it is updated from cleaned_data after clean().
        if cleaned.get("clear_api_key"):
            cleaned["api_key"] = ""
        elif not cleaned.get("api_key") and self.instance.pk:
            cleaned["api_key"] = self.instance.api_key
        return cleaned


@admin.register(Upstream)
class UpstreamAdmin(CatalogCacheClearMixin, admin.ModelAdmin):
    form = UpstreamForm
    formfield_overrides = {models.URLField: _URL_FIELD_OPTIONS}
    list_display = (
        "name",
        "kind",
        "base_url",
        "enabled",
        "credential",
        "connect_timeout",
        "read_timeout",
        "route_count",
    )
    list_filter = ("kind", "enabled")
    search_fields = ("name", "base_url")
    actions = ("enable_selected", "disable_selected")
    fieldsets = (
        (None, {"fields": ("name", "kind", "base_url", "enabled")}),
        ("Credential", {"fields": ("api_key", "clear_api_key")}),
        ("Timeouts", {"fields": (("connect_timeout", "read_timeout"),)}),
    )

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_route_count=Count("routes"))

    @admin.display(description="Credential")
    def credential(self, obj: Upstream) -> str:
        return credential_status(obj.api_key)

    @admin.display(description="Routes", ordering="_route_count")
    def route_count(self, obj: Upstream) -> int:
        return obj._route_count


@admin.register(Route)
class RouteAdmin(CatalogCacheClearMixin, admin.ModelAdmin):
    list_display = ("model", "upstream", "upstream_model", "priority", "weight", "enabled")
    list_filter = ("upstream", "enabled", "model__category", "model__vendor")
    search_fields = ("model__slug", "upstream__name", "upstream_model")
    list_select_related = ("model", "upstream")
    autocomplete_fields = ("model", "upstream")
    actions = ("enable_selected", "disable_selected")
    list_per_page = 200
