from django.db import models


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


class AIModel(models.Model):
    """A model customers can call, with its public id and prices.

    Prices are integer micro-USD (1 USD = 1,000,000). `*_list` fields hold the
    provider's official price, shown beside Beluga's sale price.
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

    input_per_1m = models.BigIntegerField(default=0, help_text="Sale price, micro-USD per 1M input tokens.")
    output_per_1m = models.BigIntegerField(default=0, help_text="Sale price, micro-USD per 1M output tokens.")
    per_image = models.BigIntegerField(default=0, help_text="Sale price, micro-USD per image.")
    per_video_second = models.BigIntegerField(default=0, help_text="Sale price, micro-USD per second of video.")
    per_1m_chars = models.BigIntegerField(default=0, help_text="Sale price, micro-USD per 1M TTS characters.")
    per_minute = models.BigIntegerField(default=0, help_text="Sale price, micro-USD per minute of audio (STT).")
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
    input_per_1m_list = models.BigIntegerField(default=0)
    output_per_1m_list = models.BigIntegerField(default=0)
    per_image_list = models.BigIntegerField(default=0)
    per_video_second_list = models.BigIntegerField(default=0)
    per_1m_chars_list = models.BigIntegerField(default=0)
    per_minute_list = models.BigIntegerField(default=0)
    cached_input_per_1m_list = models.BigIntegerField(null=True, blank=True)
    cache_write_per_1m_list = models.BigIntegerField(null=True, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["vendor", "slug"]
        verbose_name = "model"

    def __str__(self) -> str:
        return self.slug


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
    api_key = models.CharField(max_length=500, blank=True)
    connect_timeout = models.FloatField(default=10.0, help_text="Seconds.")
    read_timeout = models.FloatField(default=600.0, help_text="Seconds between bytes from the upstream.")
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


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
