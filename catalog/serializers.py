"""The public shape of a catalog model: OpenAI's model object plus Beluga's fields."""

from rest_framework import serializers

from catalog.models import AIModel, prices_required, vendor_slug


class PublicModelSerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="slug")
    object = serializers.SerializerMethodField()
    created = serializers.SerializerMethodField()
    owned_by = serializers.SerializerMethodField()
    provider = serializers.CharField(source="vendor")
    capabilities = serializers.SerializerMethodField()
    pricing = serializers.SerializerMethodField()
    media = serializers.SerializerMethodField()

    class Meta:
        model = AIModel
        fields = [
            "id",
            "object",
            "created",
            "owned_by",
            "name",
            "provider",
            "category",
            "description",
            "capabilities",
            "context_window",
            "max_output_tokens",
            "pricing",
            "media",
        ]

    def to_representation(self, instance: AIModel) -> dict:
        """An alias is shown with its target's capabilities, prices and settings, and names its target."""
        data = super().to_representation(instance.alias_of or instance)
        data["id"] = instance.slug
        data["alias_of"] = instance.alias_of.slug if instance.alias_of_id else None
        shown = instance.alias_of or instance
        data["variant_of"] = shown.variant_of.slug if shown.variant_of_id else None
        data["request_settings"] = {"defaults": shown.request_defaults, "overrides": shown.request_overrides}
        return data

    def get_object(self, obj: AIModel) -> str:
        return "model"

    def get_created(self, obj: AIModel) -> int:
        return int(obj.created_at.timestamp())

    def get_owned_by(self, obj: AIModel) -> str:
        return vendor_slug(obj.vendor)

    def get_capabilities(self, obj: AIModel) -> dict:
        return {
            "stream": obj.supports_stream,
            "vision": obj.supports_vision,
            "tools": obj.supports_tools,
            "json_output": obj.supports_json,
        }

    def get_pricing(self, obj: AIModel) -> dict:
        """Integer micro-USD (1 USD = 1,000,000); only the units that apply to the model's category.

        The units its category needs are always there (a model without a sale price for one is
        refused, and not listed); others only when they have a sale price. A list (official)
        price is null where it is not known.
        """
        required = prices_required(category=obj.category)
        units = {
            "input_per_1m_tokens": ("input_per_1m", "input_per_1m_list"),
            "output_per_1m_tokens": ("output_per_1m", "output_per_1m_list"),
            "cached_input_per_1m_tokens": ("cached_input_per_1m", "cached_input_per_1m_list"),
            "cache_write_per_1m_tokens": ("cache_write_per_1m", "cache_write_per_1m_list"),
            "per_image": ("per_image", "per_image_list"),
            "per_video_second": ("per_video_second", "per_video_second_list"),
            "per_1m_characters": ("per_1m_chars", "per_1m_chars_list"),
            "per_minute": ("per_minute", "per_minute_list"),
        }
        sale, official = {}, {}
        for name, (sale_field, list_field) in units.items():
            sale_value, list_value = getattr(obj, sale_field), getattr(obj, list_field)
            if sale_field in required or (sale_value is not None and (sale_value or list_value)):
                sale[name] = sale_value
                official[name] = list_value
        if obj.per_image_by_option:
            sale["per_image_by_option"] = obj.per_image_by_option
        return {"currency": "USD", "unit": "micro_usd", "sale": sale, "list": official}

    def get_media(self, obj: AIModel) -> dict | None:
        """What an image, video or audio model accepts (sizes, durations, voices, ...); null for others."""
        # How the upstream names and shapes its inputs is the route's business, not the client's.
        options = {k: v for k, v in (obj.media_options or {}).items() if k not in ("input_names", "size_form")}
        return options or None
