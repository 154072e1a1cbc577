"""Catalog files: their format, reading and validation (catalog/importer.py writes them).

A catalog file is YAML (read with PyYAML, so `2_500_000` is an integer; JSON
works too) of this shape::

    upstreams:
      - name: local-a                 # required, a slug
        kind: openai                  # openai | openai-responses | anthropic | gemini | predictions
        base_url: http://127.0.0.1:9100/v1   # required for a new upstream
        api_key: env:LOCAL_A_KEY      # `env:VAR` (read at call time) or the key itself
        connect_timeout: 10           # seconds; optional, as is read_timeout (the idle timeout)
        first_byte_timeout: 30        # seconds to the answer's headers, or null (the idle timeout)
        total_timeout: 300            # seconds for a whole call, or null (only the request's deadline)
        max_concurrency: 8            # calls in flight across every instance (1 or more), or null (no cap)
        health_probe: false           # probe the upstream on a schedule when it sees no traffic
        enabled: true
        credentials:                  # more keys, rotated round-robin with api_key
          - {label: backup, api_key: env:LOCAL_A_KEY_2, enabled: true}
    models:
      - id: bench-model               # required: the public model id
        vendor: OpenAI                # required for a new model
        category: chat                # chat | code | reasoning | vision | image | video | audio-tts | audio-stt
        name: Bench model             # default: the id
        description: One line.
        enabled: true
        context_window: 128000        # tokens, or null
        max_output_tokens: 16384
        capabilities: {stream: true, vision: false, tools: true, json: true}
        price: {input_per_1m: 150000, output_per_1m: 600000}   # sale price, integer micro-USD
        list_price: {input_per_1m: 150000, output_per_1m: 600000}   # official price, micro-USD; absent: unknown
        media: {sizes: ["1:1", "16:9"], max_n: 4}   # image, video and audio models: see docs/media.md
        routing: priority             # priority (at random by weight) | latency, among routes of one priority
        fallbacks: [other-model]      # model ids tried in order when no upstream of this one answers
      - id: gpt-latest
        alias_of: gpt-4o-mini         # another name: that model's routes, prices and fallbacks; answers name it
      - id: claude-x-thinking
        vendor: Anthropic
        variant_of: claude-x          # served by claude-x's routes (when it has none of its own)
        request_defaults: {thinking_budget: 8192}   # merged into every call where the client sets none
        request_overrides: {}         # merged into every call, over the client's (catalog/request_settings.py)
        routes:
          - {upstream: local-a, upstream_model: gpt-4o-mini, priority: 0, weight: 1, enabled: true}
          # params: merged into the upstream request body (its own protocol), over the client's values
          - {upstream: anthropic, upstream_model: claude-x, params: {thinking: {type: enabled, budget_tokens: 8192}}}

Price keys: input_per_1m, output_per_1m (per 1M tokens), per_image,
per_video_second, per_1m_chars (TTS), per_minute (STT); optional
cached_input_per_1m and cache_write_per_1m (prompt caching; null: the input
price), and for images per_image_by_option (a mapping of quality, size or
"size/quality" to the per-image price). Money is integer micro-USD (1 USD =
1,000,000); floats are rejected rather than rounded.

A sale price is 0 only where the file says 0 (free, on purpose). In `price`, a
key left out keeps the model's price as it is, and a new model has none; null
removes it. A model without a price its category needs (chat, code, reasoning,
vision: input_per_1m and output_per_1m; embedding: input_per_1m; image:
per_image; video: per_video_second; audio-tts: per_1m_chars; audio-stt:
per_minute) is refused with 503 model_not_priced until it has one. In
`list_price` (the official price, only shown) a key left out or null is not
known (null; 0: the provider charges nothing): the mapping states the whole
list price.

An upstream's `credentials` are matched by label (a slug; "primary" names
`api_key`). A credential absent from the file is left as it is, and so is an
upstream without `credentials`; a new one needs `api_key`. A model's
`fallbacks` must name models in the file or already in the database; an
`alias_of` or a `variant_of` a model above it in the file or already in the
database (an alias needs no vendor, prices or routes of its own; a variant
needs no routes). `request_defaults` and `request_overrides` take the keys of
catalog/request_settings.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from catalog.models import (
    CACHE_PRICES,
    MEDIA_OPTION_KEYS,
    SALE_PRICES,
    AIModel,
    Category,
    Upstream,
    size_form_error,
)
from catalog.request_settings import request_settings_errors

PRICE_KEYS = SALE_PRICES
# Prices that may be left empty (null): cached input tokens then cost the input price.
OPTIONAL_PRICE_KEYS = CACHE_PRICES
# File key → model field.
CAPABILITIES = {
    "stream": "supports_stream",
    "vision": "supports_vision",
    "tools": "supports_tools",
    "json": "supports_json",
}
REDACTED = "***"

_UPSTREAM_KEYS = (
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
    "credentials",
)
_CREDENTIAL_KEYS = ("label", "api_key", "enabled")
# The label of the upstream's own api_key in its key pool (catalog.selectors.PRIMARY_CREDENTIAL).
PRIMARY_LABEL = "primary"
ROUTING_CHOICES = [value for value, _ in AIModel._meta.get_field("routing").choices]
_MODEL_KEYS = (
    "id",
    "name",
    "vendor",
    "category",
    "description",
    "enabled",
    "context_window",
    "max_output_tokens",
    "capabilities",
    "price",
    "list_price",
    "media",
    "routing",
    "fallbacks",
    "alias_of",
    "variant_of",
    "request_defaults",
    "request_overrides",
    "routes",
)
_MEDIA_KEYS = tuple(dict.fromkeys(key for keys in MEDIA_OPTION_KEYS.values() for key in keys))
PER_IMAGE_BY_OPTION = "per_image_by_option"
_ROUTE_KEYS = ("upstream", "upstream_model", "priority", "weight", "enabled", "params")
_SLUG_RE = re.compile(r"[-a-zA-Z0-9_]+")
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SMALLINT_MAX = 32767
_UINT_MAX = 2147483647


class CatalogFileError(ValueError):
    """The file is not a valid catalog. `errors` lists every problem, each prefixed by its path."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


# --- reading and validating ------------------------------------------------


def catalog_file_read(*, path: str | Path) -> dict:
    """Parse a catalog file; syntax errors become CatalogFileError."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CatalogFileError([f"{path}: {exc.strerror or exc}"]) from exc
    return catalog_text_parse(text=text, source=str(path))


def catalog_text_parse(*, text: str, source: str = "<catalog>") -> dict:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CatalogFileError([f"{source}: not valid YAML: {exc}"]) from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise CatalogFileError([f"{source}: the top level must be a mapping with `upstreams` and `models`"])
    return data


@dataclass
class RouteSpec:
    path: str
    upstream: str
    fields: dict[str, Any]


@dataclass
class ModelSpec:
    path: str
    slug: str
    fields: dict[str, Any]
    routes: list[RouteSpec]


@dataclass
class CredentialSpec:
    path: str
    label: str
    fields: dict[str, Any]


@dataclass
class UpstreamSpec:
    path: str
    name: str
    fields: dict[str, Any]
    credentials: list[CredentialSpec] | None = None  # None: the file leaves the pool alone


class _Validator:
    """Turns the parsed file into specs of model field values, collecting every error."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def error(self, path: str, message: str) -> None:
        self.errors.append(f"{path}: {message}")

    def mapping(self, value: Any, path: str, allowed: tuple[str, ...]) -> dict | None:
        if not isinstance(value, dict):
            self.error(path, "must be a mapping")
            return None
        for key in value:
            if key not in allowed:
                self.error(path, f"unknown key {key!r} (expected one of: {', '.join(allowed)})")
        return value

    def entries(self, data: dict, key: str) -> list:
        value = data.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.error(key, "must be a list")
            return []
        return value

    def string(self, value: Any, path: str, *, max_length: int, blank: bool = True) -> str | None:
        if not isinstance(value, str):
            self.error(path, "must be a string")
            return None
        if not blank and not value.strip():
            self.error(path, "must not be empty")
            return None
        if len(value) > max_length:
            self.error(path, f"must be at most {max_length} characters")
            return None
        return value

    def boolean(self, value: Any, path: str) -> bool | None:
        if not isinstance(value, bool):
            self.error(path, "must be true or false")
            return None
        return value

    def integer(self, value: Any, path: str, *, minimum: int, maximum: int, what: str) -> int | None:
        # bool is an int subclass; floats are refused, not rounded.
        if type(value) is not int or not minimum <= value <= maximum:
            self.error(path, f"must be {what}")
            return None
        return value

    def price(self, value: Any, path: str, *, nullable: bool) -> int | None:
        if value is None and nullable:
            return None
        return self.integer(value, path, minimum=0, maximum=2**62, what="a non-negative integer (micro-USD)")

    def option_prices(self, value: Any, path: str) -> dict[str, int]:
        if not isinstance(value, dict):
            self.error(path, "must be a mapping of option to price")
            return {}
        prices = {}
        for option, price in value.items():
            if not isinstance(option, str) or not option:
                self.error(path, "keys must be option names (a quality, a size or size/quality)")
                continue
            checked = self.price(price, f"{path}.{option}", nullable=False)
            if checked is not None:
                prices[option] = checked
        return prices

    def seconds(self, value: Any, path: str) -> float | None:
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 86400:
            self.error(path, "must be a number of seconds greater than 0")
            return None
        return float(value)

    def choice(self, value: Any, path: str, choices: list[str]) -> str | None:
        if value not in choices:
            self.error(path, f"must be one of: {', '.join(choices)} (got {value!r})")
            return None
        return value

    # --- entries -----------------------------------------------------------

    def upstream(self, raw: Any, path: str) -> UpstreamSpec | None:
        entry = self.mapping(raw, path, _UPSTREAM_KEYS)
        if entry is None:
            return None
        name = None
        if "name" not in entry:
            self.error(f"{path}.name", "is required")
        elif (name := self.string(entry["name"], f"{path}.name", max_length=64, blank=False)) is not None:
            if not _SLUG_RE.fullmatch(name):
                self.error(f"{path}.name", "must contain only letters, digits, '-' and '_'")
                name = None
        fields: dict[str, Any] = {}
        if "kind" in entry:
            fields["kind"] = self.choice(entry["kind"], f"{path}.kind", Upstream.Kind.values)
        if "base_url" in entry:
            fields["base_url"] = self.url(entry["base_url"], f"{path}.base_url")
        if "api_key" in entry:
            fields["api_key"] = self.api_key(entry["api_key"], f"{path}.api_key", blank=True)
        for key in ("connect_timeout", "read_timeout"):
            if key in entry:
                fields[key] = self.seconds(entry[key], f"{path}.{key}")
        for key in ("first_byte_timeout", "total_timeout"):
            if key in entry:
                fields[key] = None if entry[key] is None else self.seconds(entry[key], f"{path}.{key}")
        if "max_concurrency" in entry:
            value, key_path = entry["max_concurrency"], f"{path}.max_concurrency"
            what = "an integer of 1 or more, or null (no cap)"
            fields["max_concurrency"] = (
                None if value is None else self.integer(value, key_path, minimum=1, maximum=_UINT_MAX, what=what)
            )
        for key in ("health_probe", "enabled"):
            if key in entry:
                fields[key] = self.boolean(entry[key], f"{path}.{key}")
        credentials = self.credentials(entry["credentials"], f"{path}.credentials") if "credentials" in entry else None
        return UpstreamSpec(path=path, name=name, fields=fields, credentials=credentials) if name else None

    def api_key(self, value: Any, path: str, *, blank: bool) -> str | None:
        key = self.string(value, path, max_length=500, blank=blank)
        if key and key.startswith("env:") and not _ENV_NAME_RE.fullmatch(key[4:]):
            self.error(path, "env: must be followed by a variable name, e.g. env:OPENAI_API_KEY")
        return key

    def credentials(self, raw: Any, path: str) -> list[CredentialSpec]:
        if not isinstance(raw, list):
            self.error(path, "must be a list of {label, api_key, enabled}")
            return []
        specs, seen = [], {}
        for i, item in enumerate(raw):
            item_path = f"{path}[{i}]"
            entry = self.mapping(item, item_path, _CREDENTIAL_KEYS)
            if entry is None:
                continue
            label = None
            if "label" not in entry:
                self.error(f"{item_path}.label", "is required")
            elif (label := self.string(entry["label"], f"{item_path}.label", max_length=64, blank=False)) is not None:
                if not _SLUG_RE.fullmatch(label):
                    self.error(f"{item_path}.label", "must contain only letters, digits, '-' and '_'")
                    label = None
                elif label == PRIMARY_LABEL:
                    self.error(f"{item_path}.label", f"{PRIMARY_LABEL!r} names the upstream's own api_key")
                    label = None
                elif label in seen:
                    self.error(f"{item_path}.label", f"{label!r} is also {seen[label]}")
                    label = None
            fields: dict[str, Any] = {}
            if "api_key" in entry:
                fields["api_key"] = self.api_key(entry["api_key"], f"{item_path}.api_key", blank=False)
            if "enabled" in entry:
                fields["enabled"] = self.boolean(entry["enabled"], f"{item_path}.enabled")
            if label:
                seen[label] = item_path
                specs.append(CredentialSpec(path=item_path, label=label, fields=fields))
        return specs

    def url(self, value: Any, path: str) -> str | None:
        url = self.string(value, path, max_length=300, blank=False)
        if url is None:
            return None
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            self.error(path, "must be an http:// or https:// URL")
            return None
        return url

    def model(self, raw: Any, path: str) -> ModelSpec | None:
        entry = self.mapping(raw, path, _MODEL_KEYS)
        if entry is None:
            return None
        slug = None
        if "id" not in entry:
            self.error(f"{path}.id", "is required")
        elif (slug := self.string(entry["id"], f"{path}.id", max_length=128, blank=False)) is not None:
            if any(ch.isspace() for ch in slug):
                self.error(f"{path}.id", "must not contain spaces")
                slug = None
        fields: dict[str, Any] = {}
        if "name" in entry:
            fields["name"] = self.string(entry["name"], f"{path}.name", max_length=200, blank=False)
        if "vendor" in entry:
            fields["vendor"] = self.string(entry["vendor"], f"{path}.vendor", max_length=64, blank=False)
        if "category" in entry:
            fields["category"] = self.choice(entry["category"], f"{path}.category", Category.values)
        if "description" in entry:
            fields["description"] = self.string(entry["description"] or "", f"{path}.description", max_length=2000)
        if "enabled" in entry:
            fields["enabled"] = self.boolean(entry["enabled"], f"{path}.enabled")
        for key in ("context_window", "max_output_tokens"):
            if key in entry:
                value = entry[key]
                fields[key] = (
                    None
                    if value is None
                    else self.integer(value, f"{path}.{key}", minimum=1, maximum=_UINT_MAX, what="a positive integer")
                )
        if "capabilities" in entry:
            caps = self.mapping(entry["capabilities"], f"{path}.capabilities", tuple(CAPABILITIES)) or {}
            for key, field_name in CAPABILITIES.items():
                if key in caps:
                    fields[field_name] = self.boolean(caps[key], f"{path}.capabilities.{key}")
        if "price" in entry:
            allowed = (*PRICE_KEYS, *OPTIONAL_PRICE_KEYS, PER_IMAGE_BY_OPTION)
            prices = self.mapping(entry["price"], f"{path}.price", allowed) or {}
            for price_key in PRICE_KEYS + OPTIONAL_PRICE_KEYS:
                if price_key in prices:
                    fields[price_key] = self.price(prices[price_key], f"{path}.price.{price_key}", nullable=True)
            if PER_IMAGE_BY_OPTION in prices:
                fields[PER_IMAGE_BY_OPTION] = self.option_prices(
                    prices[PER_IMAGE_BY_OPTION], f"{path}.price.{PER_IMAGE_BY_OPTION}"
                )
        if "media" in entry:
            media = self.mapping(entry["media"] or {}, f"{path}.media", _MEDIA_KEYS) or {}
            if "size_form" in media and (problem := size_form_error(media)):
                self.error(f"{path}.media.size_form", problem)
            fields["media_options"] = media
        if "routing" in entry:
            fields["routing"] = self.choice(entry["routing"], f"{path}.routing", ROUTING_CHOICES)
        if "fallbacks" in entry:
            fields["fallbacks"] = self.fallbacks(entry["fallbacks"] or [], f"{path}.fallbacks", slug=slug)
        for key, kind in (("alias_of", "an alias"), ("variant_of", "a variant")):
            if key in entry:
                target = entry[key]
                if target is not None and (not isinstance(target, str) or not target.strip()):
                    self.error(f"{path}.{key}", "must be a model id, or null")
                elif target is not None and target == slug:
                    self.error(f"{path}.{key}", f"a model cannot be {kind} of itself")
                else:
                    fields[key] = target  # a model id here; the importer resolves it
        if entry.get("alias_of") is not None and entry.get("variant_of") is not None:
            self.error(f"{path}.variant_of", "a model is an alias or a variant, not both")
        for key in ("request_defaults", "request_overrides"):
            if key in entry:
                value = entry[key] if entry[key] is not None else {}
                problems = request_settings_errors(value)
                for problem in problems:
                    self.error(f"{path}.{key}", problem)
                if not problems:
                    fields[key] = value
        if "list_price" in entry:
            prices = self.mapping(entry["list_price"], f"{path}.list_price", PRICE_KEYS + OPTIONAL_PRICE_KEYS) or {}
            for price_key in PRICE_KEYS + OPTIONAL_PRICE_KEYS:
                path_key = f"{path}.list_price.{price_key}"
                fields[price_key + "_list"] = self.price(prices.get(price_key), path_key, nullable=True)
        routes = []
        if "routes" in entry:
            if not isinstance(entry["routes"], list):
                self.error(f"{path}.routes", "must be a list")
            else:
                seen: set[str] = set()
                for i, raw_route in enumerate(entry["routes"]):
                    route = self.route(raw_route, f"{path}.routes[{i}]")
                    if route is None:
                        continue
                    if route.upstream in seen:
                        self.error(route.path, f"a second route to upstream {route.upstream!r}")
                        continue
                    seen.add(route.upstream)
                    routes.append(route)
        return ModelSpec(path=path, slug=slug, fields=fields, routes=routes) if slug else None

    def fallbacks(self, value: Any, path: str, *, slug: str | None) -> list[str]:
        """Model ids, in order; whether each exists is checked on import (it may be in the database)."""
        if not isinstance(value, list):
            self.error(path, "must be a list of model ids")
            return []
        ids = []
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                self.error(f"{path}[{i}]", "must be a model id")
            elif item == slug:
                self.error(f"{path}[{i}]", "a model cannot fall back to itself")
            elif item in ids:
                self.error(f"{path}[{i}]", f"{item!r} is listed twice")
            else:
                ids.append(item)
        return ids

    def route(self, raw: Any, path: str) -> RouteSpec | None:
        entry = self.mapping(raw, path, _ROUTE_KEYS)
        if entry is None:
            return None
        upstream = None
        if "upstream" not in entry:
            self.error(f"{path}.upstream", "is required")
        else:
            upstream = self.string(entry["upstream"], f"{path}.upstream", max_length=64, blank=False)
        fields: dict[str, Any] = {}
        if "upstream_model" in entry:
            fields["upstream_model"] = self.string(
                entry["upstream_model"], f"{path}.upstream_model", max_length=200, blank=False
            )
        for key in ("priority", "weight"):
            if key in entry:
                fields[key] = self.integer(
                    entry[key], f"{path}.{key}", minimum=0, maximum=_SMALLINT_MAX, what="an integer from 0 to 32767"
                )
        if "enabled" in entry:
            fields["enabled"] = self.boolean(entry["enabled"], f"{path}.enabled")
        if "params" in entry:
            if isinstance(entry["params"], dict):
                fields["params"] = entry["params"]
            else:
                self.error(f"{path}.params", "must be a mapping (merged into the upstream request body)")
        return RouteSpec(path=path, upstream=upstream, fields=fields) if upstream else None


def catalog_file_validate(data: Any) -> tuple[list[UpstreamSpec], list[ModelSpec]]:
    check = _Validator()
    if not isinstance(data, dict):
        raise CatalogFileError(["<catalog>: the top level must be a mapping with `upstreams` and `models`"])
    for key in data:
        if key not in ("upstreams", "models"):
            check.error(str(key), "unknown top-level key (expected `upstreams` and `models`)")
    upstreams, seen_upstreams = [], {}
    for i, raw in enumerate(check.entries(data, "upstreams")):
        spec = check.upstream(raw, f"upstreams[{i}]")
        if spec is None:
            continue
        if spec.name in seen_upstreams:
            check.error(f"{spec.path}.name", f"{spec.name!r} is also {seen_upstreams[spec.name]}")
            continue
        seen_upstreams[spec.name] = spec.path
        upstreams.append(spec)
    models, seen_models = [], {}
    for i, raw in enumerate(check.entries(data, "models")):
        spec = check.model(raw, f"models[{i}]")
        if spec is None:
            continue
        if spec.slug in seen_models:
            check.error(f"{spec.path}.id", f"{spec.slug!r} is also {seen_models[spec.slug]}")
            continue
        seen_models[spec.slug] = spec.path
        models.append(spec)
    if check.errors:
        raise CatalogFileError(check.errors)
    return upstreams, models


# --- writing -----------------------------------------------------------------


def catalog_yaml_dump(data: dict) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=120)
