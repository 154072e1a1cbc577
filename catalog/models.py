import re

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from catalog.request_settings import request_settings_errors


class Category(models.TextChoices):
    CHAT = "chat", "Chat"
    CODE = "code", "Code"
    REASONING = "reasoning", "Reasoning"
    VISION = "vision", "Vision"
    IMAGE = "image", "Image"
    VIDEO = "video", "Video"
    AUDIO_TTS = "audio-tts", "Audio: text to speech"
    AUDIO_STT = "audio-stt", "Audio: speech to text"
    EMBEDDING = "embedding", "Embedding"


# Categories answered by /v1/chat/completions and limited by the chat bucket.
CHAT_CATEGORIES = frozenset({Category.CHAT, Category.CODE, Category.REASONING, Category.VISION})

# The sale prices a model needs before it is served, by category. A model
# lacking one is "unpriced": refused with 503 model_not_priced, flagged in
# /v1/health and the admin.
REQUIRED_PRICES: dict[str, tuple[str, ...]] = {
    Category.CHAT: ("input_per_1m", "output_per_1m"),
    Category.CODE: ("input_per_1m", "output_per_1m"),
    Category.REASONING: ("input_per_1m", "output_per_1m"),
    Category.VISION: ("input_per_1m", "output_per_1m"),
    Category.EMBEDDING: ("input_per_1m",),
    Category.IMAGE: ("per_image",),
    Category.VIDEO: ("per_video_second",),
    Category.AUDIO_TTS: ("per_1m_chars",),
    Category.AUDIO_STT: ("per_minute",),
}
# Sale prices that may be empty ("not priced"); cached_input_per_1m and
# cache_write_per_1m may be empty too, meaning the input price.
SALE_PRICES = ("input_per_1m", "output_per_1m", "per_image", "per_video_second", "per_1m_chars", "per_minute")
CACHE_PRICES = ("cached_input_per_1m", "cache_write_per_1m")
# Every price a model carries, sale and list: what the price history records.
PRICE_FIELDS = (
    *SALE_PRICES,
    *CACHE_PRICES,
    *(f"{name}_list" for name in (*SALE_PRICES, *CACHE_PRICES)),
)


# The keys of AIModel.media_options, by category (docs/media.md).
MEDIA_OPTION_KEYS: dict[str, tuple[str, ...]] = {
    Category.IMAGE: ("sizes", "max_n", "qualities", "styles", "formats", "edits", "input_names", "size_form"),
    Category.VIDEO: ("durations", "sizes", "resolutions", "image_input", "input_names"),
    Category.AUDIO_TTS: ("voices", "formats", "instructions", "max_chars"),
    Category.AUDIO_STT: ("formats", "translations", "timestamps"),
}


# media_options["size_form"]: how a prediction upstream takes an image's size, when not as an aspect
# ratio or a "WxH" string: "W*H" (one string, e.g. "1280*720") or "width_height" (two integers). The
# model's `sizes` are then the pixel sizes it takes; gateway/media/options.py picks one and writes it.
SIZE_FORMS = ("W*H", "width_height")
_PIXEL_SIZE = re.compile(r"^[1-9][0-9]{1,4}x[1-9][0-9]{1,4}$")


def size_form_error(options: dict) -> str | None:
    """What is wrong with an image model's size_form (and the sizes it needs), or None."""
    form = options.get("size_form")
    if form not in SIZE_FORMS:
        return f"size_form must be one of: {', '.join(SIZE_FORMS)}."
    sizes = options.get("sizes")
    if not isinstance(sizes, list) or not sizes or not all(isinstance(s, str) and _PIXEL_SIZE.match(s) for s in sizes):
        return f'With size_form {form}, sizes must list the pixel sizes it takes, e.g. ["1024x1024", "1280x720"].'
    return None


def prices_required(*, category: str) -> tuple[str, ...]:
    """The sale prices a model of `category` must have to be served."""
    return REQUIRED_PRICES.get(category, ())


def unpriced_q() -> Q:
    """Matches the models lacking a price their category needs (REQUIRED_PRICES, as a query).
    An alias has no prices of its own: its target's apply."""
    query = Q(pk__in=[])
    for category, names in REQUIRED_PRICES.items():
        missing = Q()
        for name in names:
            missing |= Q(**{f"{name}__isnull": True})
        query |= Q(category=category) & missing
    return query & Q(alias_of__isnull=True)


def routed_q() -> Q:
    """Matches the models with a route a call can take, counted as the catalog snapshot counts them
    (catalog.selectors._load): an enabled route to an enabled upstream of their own or, for a
    variant, of its base model (enabled or not). An alias has none of its own: see served_q."""
    routes = Route.objects.filter(enabled=True, upstream__enabled=True)
    return Q(Exists(routes.filter(model=OuterRef("pk")))) | Q(Exists(routes.filter(model=OuterRef("variant_of"))))


def served_q() -> Q:
    """Matches the models a call can be served for: routed (routed_q) and priced, or an alias of an
    enabled model that is. The rest are refused with 503 (no route, or model_not_priced).
    Whether the upstream still accepts Beluga's credentials is runtime health, not counted here."""
    target = AIModel.objects.filter(pk=OuterRef("alias_of"), enabled=True).filter(routed_q()).exclude(unpriced_q())
    return (Q(alias_of__isnull=True) & routed_q() & ~unpriced_q()) | (Q(alias_of__isnull=False) & Q(Exists(target)))


def vendor_slug(vendor: str) -> str:
    """The vendor as /v1/models shows it in `owned_by`: "Moonshot AI" → "moonshot-ai"."""
    return vendor.lower().replace(" ", "-")


class AIModelQuerySet(models.QuerySet):
    def unpriced(self) -> "AIModelQuerySet":
        return self.filter(unpriced_q())

    def priced(self) -> "AIModelQuerySet":
        return self.exclude(unpriced_q())

    def served(self) -> "AIModelQuerySet":
        return self.filter(served_q())


class AIModel(models.Model):
    """A model customers can call, with its public id and prices.

    Prices are integer micro-USD (1 USD = 1,000,000). `*_list` fields hold the
    provider's official price, shown beside Beluga's sale price; empty (NULL)
    when it is not known (0: the provider charges nothing). A sale price
    that is empty (NULL) is not set: a model lacking one its category needs
    (REQUIRED_PRICES) is never served; 0 is free, on purpose. The admin and
    catalog imports record every price change (catalog.services.model_prices_record).
    """

    slug = models.CharField("model id", max_length=128, unique=True)
    name = models.CharField(max_length=200)
    vendor = models.CharField(max_length=64, db_index=True)
    category = models.CharField(max_length=16, choices=Category.choices, default=Category.CHAT, db_index=True)
    description = models.TextField(blank=True)
    supports_stream = models.BooleanField(default=True)
    supports_vision = models.BooleanField(default=False)
    supports_tools = models.BooleanField(default=False)
    supports_json = models.BooleanField(default=False)
    context_window = models.PositiveIntegerField(null=True, blank=True, help_text="Tokens, where known.")
    max_output_tokens = models.PositiveIntegerField(null=True, blank=True, help_text="Tokens, where known.")
    enabled = models.BooleanField(default=True, db_index=True)
    routing = models.CharField(
        max_length=16,
        choices=[
            ("priority", "By priority, then at random by weight"),
            ("latency", "By priority, then the lowest recent latency"),
        ],
        default="priority",
        db_default="priority",  # older instances keep inserting during a rolling deploy
        help_text="How a call picks among this model's routes of the same priority.",
    )
    alias_of = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="aliases",
        help_text="Another name for that model: calls to this id are that model's calls (its routes, prices "
        "and fallbacks; answers name it). Leave this model's own prices and routes empty.",
    )
    fallbacks = models.JSONField(
        default=list,
        db_default=[],
        blank=True,
        help_text="Model ids tried in this order when none of this model's upstreams can take the call, "
        'e.g. ["gpt-5.4-mini"].',
    )
    # Variants ('-thinking', '-nothinking'): another model's upstreams with
    # settings merged into every call (catalog/request_settings.py).
    variant_of = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="variants",
        help_text="This model is served by that model's routes (when it has none of its own), with its "
        "request settings below; it keeps its own id, prices and fallbacks.",
    )
    request_defaults = models.JSONField(
        default=dict,
        db_default={},
        blank=True,
        help_text="Settings for every call where the client sets none, e.g. "
        '{"thinking_budget": 8192}. Keys: thinking, thinking_budget, reasoning_effort, include_thoughts, '
        "max_tokens, temperature, top_p, top_k (docs/protocols.md).",
    )
    request_overrides = models.JSONField(
        default=dict,
        db_default={},
        blank=True,
        help_text='Settings for every call, over the client\'s own, e.g. {"thinking": false}. Same keys.',
    )

    input_per_1m = models.BigIntegerField(
        null=True, blank=True, default=None, help_text="Sale price, micro-USD per 1M input tokens."
    )
    output_per_1m = models.BigIntegerField(
        null=True, blank=True, default=None, help_text="Sale price, micro-USD per 1M output tokens."
    )
    per_image = models.BigIntegerField(
        null=True, blank=True, default=None, help_text="Sale price, micro-USD per image."
    )
    per_video_second = models.BigIntegerField(
        null=True, blank=True, default=None, help_text="Sale price, micro-USD per second of video."
    )
    per_1m_chars = models.BigIntegerField(
        null=True, blank=True, default=None, help_text="Sale price, micro-USD per 1M TTS characters."
    )
    per_minute = models.BigIntegerField(
        null=True, blank=True, default=None, help_text="Sale price, micro-USD per minute of audio (STT)."
    )
    # Prompt caching: input tokens the provider read from (or wrote to) its
    # cache are priced apart where vendors publish it. Empty: the input price.
    cached_input_per_1m = models.BigIntegerField(
        null=True, blank=True, help_text="Sale price, micro-USD per 1M cached input tokens (empty: input price)."
    )
    cache_write_per_1m = models.BigIntegerField(
        null=True,
        blank=True,
        help_text="Sale price, micro-USD per 1M input tokens written to the cache (empty: input price).",
    )
    # Image, video and audio models: what the model accepts (MEDIA_OPTION_KEYS;
    # gateway/media/options.py checks requests against it) and, for images,
    # sale prices by size and quality.
    media_options = models.JSONField(
        default=dict,
        blank=True,
        help_text="What the model accepts, e.g. images: "
        '{"sizes": ["1024x1024", "1536x1024", "auto"], "max_n": 4, "qualities": ["low", "medium", "high"]}; '
        'video: {"durations": [4, 8, 12], "sizes": ["720x1280", "1280x720"]}; '
        'speech: {"voices": ["alloy"], "formats": ["mp3", "wav"]}. See docs/media.md.',
    )
    per_image_by_option = models.JSONField(
        default=dict,
        blank=True,
        help_text="Sale prices per image (micro-USD) that differ by option, keyed by quality, size, "
        'or "size/quality", e.g. {"hd": 80000, "1792x1024/hd": 120000}. Others cost the per-image price.',
    )
    # Official prices: empty (NULL) when not known.
    input_per_1m_list = models.BigIntegerField(null=True, blank=True)
    output_per_1m_list = models.BigIntegerField(null=True, blank=True)
    per_image_list = models.BigIntegerField(null=True, blank=True)
    per_video_second_list = models.BigIntegerField(null=True, blank=True)
    per_1m_chars_list = models.BigIntegerField(null=True, blank=True)
    per_minute_list = models.BigIntegerField(null=True, blank=True)
    cached_input_per_1m_list = models.BigIntegerField(null=True, blank=True)
    cache_write_per_1m_list = models.BigIntegerField(null=True, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = AIModelQuerySet.as_manager()

    class Meta:
        ordering = ["vendor", "slug"]
        verbose_name = "model"

    def __str__(self) -> str:
        return self.slug

    def clean(self) -> None:
        errors = {}
        if not isinstance(self.media_options, dict):
            errors["media_options"] = 'Must be a JSON object, e.g. {"sizes": ["1:1", "16:9"], "max_n": 4}.'
        else:
            allowed = MEDIA_OPTION_KEYS.get(self.category, ())
            unknown = sorted(set(self.media_options) - set(allowed))
            if unknown:
                errors["media_options"] = (
                    f"Unknown for a {self.category} model: {', '.join(unknown)}. "
                    f"Known: {', '.join(allowed) or 'none (leave it empty)'}."
                )
            elif "size_form" in self.media_options and (problem := size_form_error(self.media_options)):
                errors["media_options"] = problem
        prices = self.per_image_by_option
        if not isinstance(prices, dict) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in prices.values()
        ):
            errors["per_image_by_option"] = 'Must map options to whole micro-USD, e.g. {"hd": 80000}.'
        if self.alias_of_id is not None:
            if self.alias_of_id == self.pk:
                errors["alias_of"] = "A model cannot be an alias of itself."
            elif self.alias_of.alias_of_id is not None:
                errors["alias_of"] = f"'{self.alias_of.slug}' is itself an alias; name the model it stands for."
        fallbacks = self.fallbacks
        if not isinstance(fallbacks, list) or not all(isinstance(v, str) and v for v in fallbacks):
            errors["fallbacks"] = 'Must be a JSON list of model ids, e.g. ["gpt-5.4-mini"].'
        elif self.slug in fallbacks:
            errors["fallbacks"] = "A model cannot fall back to itself."
        if self.variant_of_id is not None:
            if self.variant_of_id == self.pk:
                errors["variant_of"] = "A model cannot be a variant of itself."
            elif self.variant_of.variant_of_id is not None or self.variant_of.alias_of_id is not None:
                errors["variant_of"] = f"'{self.variant_of.slug}' is itself a variant or an alias; name its model."
            elif self.alias_of_id is not None:
                errors["variant_of"] = "An alias cannot also be a variant."
            elif self.pk is not None and self.variants.exists():
                errors["variant_of"] = "This model has variants of its own: it cannot be a variant."
        for name in ("request_defaults", "request_overrides"):
            problems = request_settings_errors(getattr(self, name))
            if problems:
                errors[name] = "; ".join(problems) + "."
        if errors:
            raise ValidationError(errors)

    def missing_prices(self) -> list[str]:
        """The sale prices this model's category needs and it lacks; empty when it may be served
        (an alias has none of its own: its target's apply)."""
        if self.alias_of_id is not None:
            return []
        return [name for name in prices_required(category=self.category) if getattr(self, name) is None]

    def prices(self) -> dict[str, int | None | dict]:
        """Every sale and list price, by field name (what a PriceChange records)."""
        prices = {name: getattr(self, name) for name in PRICE_FIELDS}
        if self.per_image_by_option:
            prices["per_image_by_option"] = self.per_image_by_option
        return prices


class Upstream(models.Model):
    """A provider endpoint Beluga calls."""

    class Kind(models.TextChoices):
        OPENAI = "openai", "OpenAI-compatible"
        # OpenAI's Responses API: models offered nowhere else (gpt-5.x-codex, *-pro).
        OPENAI_RESPONSES = "openai-responses", "OpenAI Responses API"
        ANTHROPIC = "anthropic", "Anthropic Messages"
        GEMINI = "gemini", "Google Gemini"
        PREDICTIONS = "predictions", "Async predictions (image/video jobs)"

    name = models.SlugField(max_length=64, unique=True)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.OPENAI)
    base_url = models.URLField(max_length=300, help_text="e.g. https://api.openai.com/v1")
    # Either the credential itself or `env:VAR` to read it from the environment at call time.
    # More credentials (a key pool, rotated round-robin) are UpstreamCredential rows.
    api_key = models.CharField(max_length=500, blank=True)
    # Set when the upstream refused api_key (401/403): out of rotation until cleared in the admin.
    api_key_failed_at = models.DateTimeField(null=True, blank=True)
    connect_timeout = models.FloatField(default=10.0, help_text="Seconds to open a connection.")
    first_byte_timeout = models.FloatField(
        null=True,
        blank=True,
        help_text="Seconds from sending a request to the answer's headers (a whole answer's, or a stream's start). "
        "Empty: the idle timeout.",
    )
    read_timeout = models.FloatField(
        "idle timeout", default=600.0, help_text="Seconds of silence allowed between bytes (between stream chunks)."
    )
    total_timeout = models.FloatField(
        null=True,
        blank=True,
        help_text="Seconds a whole call to this upstream may take before it is cut. Empty: only the request deadline.",
    )
    max_concurrency = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Calls in flight to this upstream across every instance; a call over the cap goes to the next "
        "upstream. Empty: no cap.",
    )
    health_probe = models.BooleanField(
        default=False,
        db_default=False,
        help_text="Send a cheap request (list models) on a schedule when it sees no traffic.",
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class UpstreamCredential(models.Model):
    """One more credential for an upstream: the pool is the upstream's api_key and these, round-robin.

    A credential the upstream refuses (401/403) is taken out of rotation (`failed_at`) and shown in the
    admin until someone fixes it and clears the mark."""

    upstream = models.ForeignKey(Upstream, on_delete=models.CASCADE, related_name="credentials")
    label = models.SlugField(max_length=64, help_text="A name to tell it apart (never the key itself).")
    api_key = models.CharField(max_length=500, help_text="The credential, or env:VAR.")
    enabled = models.BooleanField(default=True)
    failed_at = models.DateTimeField(null=True, blank=True, help_text="Refused by the upstream (401/403) at.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["upstream", "label"]
        constraints = [models.UniqueConstraint(fields=["upstream", "label"], name="credential_unique_upstream_label")]

    def __str__(self) -> str:
        return f"{self.upstream.name}:{self.label}"


class Route(models.Model):
    """Public model → upstream, with the upstream's own name for it."""

    model = models.ForeignKey(AIModel, on_delete=models.CASCADE, related_name="routes")
    upstream = models.ForeignKey(Upstream, on_delete=models.CASCADE, related_name="routes")
    upstream_model = models.CharField(max_length=200)
    priority = models.PositiveSmallIntegerField(default=0, help_text="Lower is tried first.")
    weight = models.PositiveSmallIntegerField(default=1, help_text="Share of traffic among equal priorities.")
    enabled = models.BooleanField(default=True)
    params = models.JSONField(
        default=dict,
        blank=True,
        help_text="JSON object merged into the upstream request body, in the upstream's own protocol, "
        "over what the client sent (the route's values win), e.g. thinking on for a '-thinking' model: "
        '{"thinking": {"type": "enabled", "budget_tokens": 8192}, "temperature": 1}.',
    )

    class Meta:
        ordering = ["model", "priority", "id"]
        constraints = [models.UniqueConstraint(fields=["model", "upstream"], name="route_unique_model_upstream")]

    def __str__(self) -> str:
        return f"{self.model.slug} → {self.upstream.name}:{self.upstream_model}"


class PriceChange(models.Model):
    """One entry of a model's price history: its prices from `changed_at` on.

    Append-only, written by catalog.services.model_prices_record. Calls are
    charged the price of the snapshot they were routed with, and each usage
    record keeps the unit prices it was charged; this history is for operators.
    """

    class Source(models.TextChoices):
        ADMIN = "admin", "Admin"
        IMPORT = "import", "Catalog import"
        MIGRATION = "migration", "Migration"

    model = models.ForeignKey(AIModel, on_delete=models.CASCADE, related_name="price_changes")
    # Field name → integer micro-USD or null (not set), sale and list: AIModel.prices().
    prices = models.JSONField()
    changed_at = models.DateTimeField(default=timezone.now, db_index=True)
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    source = models.CharField(max_length=16, choices=Source.choices)

    class Meta:
        ordering = ["-changed_at", "-id"]
        indexes = [models.Index(fields=["model", "-changed_at"], name="pricechange_model_latest")]

    def __str__(self) -> str:
        return f"{self.model_id} prices from {self.changed_at:%Y-%m-%d %H:%M:%S}"
