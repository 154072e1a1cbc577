"""Catalog files: import, validation, export (resilience keys and key pools included), the seeded catalog and
its migration."""

from pathlib import Path

import pytest
import yaml
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from catalog.catalog_file import CatalogFileError, catalog_file_read, catalog_text_parse
from catalog.importer import catalog_export, catalog_import
from catalog.models import CHAT_CATEGORIES, SALE_PRICES, AIModel, Route, Upstream, UpstreamCredential, prices_required
from catalog.selectors import model_get, models_public, models_unrouted
from catalog.services import upstream_credential_refused

pytestmark = pytest.mark.django_db

SEED_FILE = Path(__file__).resolve().parent.parent / "catalog" / "seed" / "catalog.yaml"

EXAMPLE = """
upstreams:
  - name: local-a
    kind: openai            # later: anthropic, gemini, predictions
    base_url: http://127.0.0.1:9100/v1
    api_key: env:LOCAL_A_KEY
    # optional: connect_timeout, read_timeout, enabled
models:
  - id: bench-model
    vendor: OpenAI
    category: chat
    price: {input_per_1m: 0, output_per_1m: 0}
    routes:
      - {upstream: local-a, upstream_model: gpt-4o-mini}   # optional: priority, weight, enabled
"""


def parse(text: str) -> dict:
    return catalog_text_parse(text=text)


def errors_of(data: dict) -> list[str]:
    with pytest.raises(CatalogFileError) as info:
        catalog_import(data=data)
    return info.value.errors


def counts(result) -> tuple:
    return tuple((c.created, c.updated, c.unchanged) for c in (result.upstreams, result.models, result.routes))


@pytest.fixture
def one_model_file():
    """Returns a builder of a one-upstream, one-model file with the model entry overridden."""

    def make(**model):
        return {
            "upstreams": [{"name": "local-a", "base_url": "http://127.0.0.1:9100/v1", "api_key": "env:LOCAL_A_KEY"}],
            "models": [{"id": "bench-model", "vendor": "OpenAI", **model}],
        }

    return make


# --- import ------------------------------------------------------------------


def test_example_file_creates_upstream_model_and_route():
    result = catalog_import(data=parse(EXAMPLE))

    assert counts(result) == ((1, 0, 0), (1, 0, 0), (1, 0, 0))
    upstream = Upstream.objects.get(name="local-a")
    assert (upstream.kind, upstream.base_url) == ("openai", "http://127.0.0.1:9100/v1")
    assert upstream.api_key == "env:LOCAL_A_KEY"
    assert (upstream.connect_timeout, upstream.read_timeout, upstream.enabled) == (10.0, 600.0, True)
    model = AIModel.objects.get(slug="bench-model")
    assert (model.name, model.vendor, model.category, model.enabled) == ("bench-model", "OpenAI", "chat", True)
    assert (model.input_per_1m, model.output_per_1m) == (0, 0)
    route = Route.objects.get(model=model)
    assert (route.upstream, route.upstream_model, route.priority, route.weight) == (upstream, "gpt-4o-mini", 0, 1)


def test_reimporting_the_same_file_changes_and_duplicates_nothing():
    catalog_import(data=parse(EXAMPLE))
    stamp = AIModel.objects.get(slug="bench-model").updated_at

    result = catalog_import(data=parse(EXAMPLE))

    assert counts(result) == ((0, 0, 1), (0, 0, 1), (0, 0, 1))
    assert Upstream.objects.filter(name="local-a").count() == 1
    assert AIModel.objects.filter(slug="bench-model").count() == 1
    assert Route.objects.filter(model__slug="bench-model").count() == 1
    assert AIModel.objects.get(slug="bench-model").updated_at == stamp


def test_reimport_with_changes_updates_the_rows():
    catalog_import(data=parse(EXAMPLE))
    changed = parse(EXAMPLE)
    changed["upstreams"][0].update(base_url="http://127.0.0.1:9200/v1", read_timeout=30, enabled=False)
    changed["models"][0].update(
        name="Bench",
        category="code",
        context_window=8192,
        capabilities={"tools": True},
        price={"input_per_1m": 150_000, "output_per_1m": 600_000},
        list_price={"input_per_1m": 200_000},
    )
    changed["models"][0]["routes"][0].update(upstream_model="gpt-4o", priority=2, weight=5)

    result = catalog_import(data=changed)

    assert counts(result) == ((0, 1, 0), (0, 1, 0), (0, 1, 0))
    upstream = Upstream.objects.get(name="local-a")
    assert (upstream.base_url, upstream.read_timeout, upstream.enabled) == ("http://127.0.0.1:9200/v1", 30.0, False)
    model = AIModel.objects.get(slug="bench-model")
    assert (model.name, model.category, model.context_window, model.supports_tools) == ("Bench", "code", 8192, True)
    assert (model.input_per_1m, model.output_per_1m) == (150_000, 600_000)
    assert (model.input_per_1m_list, model.output_per_1m_list) == (200_000, None)
    route = Route.objects.get(model=model)
    assert (route.upstream_model, route.priority, route.weight) == ("gpt-4o", 2, 5)


def test_absent_keys_keep_existing_values_and_absent_price_keeps_prices(one_model_file):
    first = one_model_file(name="Bench", description="first", price={"input_per_1m": 5, "output_per_1m": 7})
    first["models"][0]["routes"] = [{"upstream": "local-a"}]
    catalog_import(data=first)

    catalog_import(data={"models": [{"id": "bench-model"}]})

    model = AIModel.objects.get(slug="bench-model")
    assert (model.name, model.vendor, model.description) == ("Bench", "OpenAI", "first")
    assert (model.input_per_1m, model.output_per_1m) == (5, 7)
    # A route written without upstream_model calls the upstream by the public id.
    assert Route.objects.get(model=model).upstream_model == "bench-model"


def test_a_price_left_out_keeps_its_value_and_null_removes_it(one_model_file):
    catalog_import(data=one_model_file(price={"input_per_1m": 5, "output_per_1m": 7, "per_image": 9}))

    catalog_import(data=one_model_file(price={"input_per_1m": 6, "per_image": None}))

    model = AIModel.objects.get(slug="bench-model")
    assert (model.input_per_1m, model.output_per_1m, model.per_image) == (6, 7, None)


def test_list_price_mapping_states_the_whole_list_price_and_a_key_left_out_is_not_known(one_model_file):
    catalog_import(data=one_model_file(list_price={"input_per_1m": 5, "output_per_1m": 7, "cached_input_per_1m": 1}))

    catalog_import(data=one_model_file(list_price={"input_per_1m": 6, "per_image": 0}))

    model = AIModel.objects.get(slug="bench-model")
    assert (model.input_per_1m_list, model.output_per_1m_list, model.cached_input_per_1m_list) == (6, None, None)
    assert (model.per_image_list, model.per_minute_list) == (0, None)  # 0: the provider charges nothing


def test_a_list_price_not_known_is_exported_left_out_and_imported_back_the_same(one_model_file):
    catalog_import(data=one_model_file(price={"input_per_1m": 5}, list_price={"input_per_1m": 0, "output_per_1m": 9}))

    exported = next(m for m in catalog_export()["models"] if m["id"] == "bench-model")
    assert exported["list_price"] == {"input_per_1m": 0, "output_per_1m": 9}
    AIModel.objects.filter(output_per_1m_list=9).update(output_per_1m_list=None)
    exported = next(m for m in catalog_export()["models"] if m["id"] == "bench-model")
    assert exported["list_price"] == {"input_per_1m": 0}

    AIModel.objects.filter(slug="bench-model").delete()
    catalog_import(data={"models": [exported]})

    model = AIModel.objects.get(slug="bench-model")
    assert (model.input_per_1m_list, model.output_per_1m_list, model.per_image_list) == (0, None, None)


def test_new_model_without_price_has_none_and_is_not_served(one_model_file):
    catalog_import(data=one_model_file())

    model = AIModel.objects.get(slug="bench-model")
    assert model.input_per_1m is model.output_per_1m is model.per_image is None
    assert model.missing_prices() == ["input_per_1m", "output_per_1m"]
    assert model_get(slug="bench-model").priced is False


def test_a_price_is_zero_only_where_the_file_says_zero(one_model_file):
    catalog_import(data=one_model_file(price={"input_per_1m": 0}))

    model = AIModel.objects.get(slug="bench-model")
    assert (model.input_per_1m, model.output_per_1m) == (0, None)
    assert model_get(slug="bench-model").priced is False

    catalog_import(data=one_model_file(price={"output_per_1m": 0}))

    assert model_get(slug="bench-model").priced is True  # free, on purpose


def test_route_may_name_an_upstream_already_in_the_database():
    catalog_import(data=parse(EXAMPLE))

    catalog_import(data={"models": [{"id": "second", "vendor": "X", "routes": [{"upstream": "local-a"}]}]})

    assert Route.objects.get(model__slug="second").upstream.name == "local-a"


def test_credentials_are_stored_as_given():
    data = parse(EXAMPLE)
    data["upstreams"].append({"name": "literal", "base_url": "https://example.com/v1", "api_key": "sk-literal-123"})

    catalog_import(data=data)

    assert Upstream.objects.get(name="local-a").api_key == "env:LOCAL_A_KEY"
    assert Upstream.objects.get(name="literal").api_key == "sk-literal-123"


def test_dry_run_reports_counts_and_saves_nothing():
    result = catalog_import(data=parse(EXAMPLE), dry_run=True)

    assert counts(result) == ((1, 0, 0), (1, 0, 0), (1, 0, 0))
    assert "dry run" in result.summary()
    assert not Upstream.objects.filter(name="local-a").exists()
    assert not AIModel.objects.filter(slug="bench-model").exists()


def test_import_clears_this_process_catalog_snapshot():
    assert model_get(slug="bench-model") is None  # loads the snapshot

    catalog_import(data=parse(EXAMPLE))

    info = model_get(slug="bench-model")
    assert info is not None
    assert [r.upstream_model for r in info.routes] == ["gpt-4o-mini"]


# --- validation --------------------------------------------------------------


@pytest.mark.parametrize("value", [0.5, 1.0, 1e6, "100", True, -1])
def test_a_price_that_is_not_a_non_negative_integer_is_rejected(one_model_file, value):
    errors = errors_of(one_model_file(price={"input_per_1m": value}))

    assert errors == ["models[0].price.input_per_1m: must be a non-negative integer (micro-USD)"]
    assert not AIModel.objects.filter(slug="bench-model").exists()


def test_a_null_list_price_is_not_known(one_model_file):
    catalog_import(data=one_model_file(list_price={"input_per_1m": None, "cached_input_per_1m": None, "per_image": 3}))

    model = AIModel.objects.get(slug="bench-model")
    assert (model.input_per_1m_list, model.cached_input_per_1m_list, model.per_image_list) == (None, None, 3)
    errors = errors_of(one_model_file(list_price={"input_per_1m": -1}))
    assert errors == ["models[0].list_price.input_per_1m: must be a non-negative integer (micro-USD)"]


def test_every_error_is_reported_with_its_path():
    data = parse(
        """
upstreams:
  - {name: ok, base_url: http://127.0.0.1:1/v1}
  - {name: bad name, kind: grpc, base_url: ftp://x, api_key: "env:", connect_timeout: 0}
  - {kind: openai}
models:
  - {id: a, vendor: V, category: chat}
  - {id: b, vendor: V, category: sound, pirce: {}}
  - {id: c, vendor: V, list_price: {per_image: 2.5, per_token: 1}, capabilities: {stream: "yes"}}
  - {id: d, vendor: V, context_window: 0, routes: [{upstream: ok, weight: 1.5}, {upstream: ok}, {priority: 1}]}
  - {id: a, vendor: V}
  - just a string
extra: 1
"""
    )

    errors = errors_of(data)

    assert errors == [
        "extra: unknown top-level key (expected `upstreams` and `models`)",
        "upstreams[1].name: must contain only letters, digits, '-' and '_'",
        "upstreams[1].kind: must be one of: openai, openai-responses, anthropic, gemini, predictions (got 'grpc')",
        "upstreams[1].base_url: must be an http:// or https:// URL",
        "upstreams[1].api_key: env: must be followed by a variable name, e.g. env:OPENAI_API_KEY",
        "upstreams[1].connect_timeout: must be a number of seconds greater than 0",
        "upstreams[2].name: is required",
        "models[1]: unknown key 'pirce' (expected one of: id, name, vendor, category, description, enabled, "
        "context_window, max_output_tokens, capabilities, price, list_price, media, routing, fallbacks, alias_of, "
        "variant_of, request_defaults, request_overrides, routes)",
        "models[1].category: must be one of: chat, code, reasoning, vision, image, video, audio-tts, audio-stt, embedding "
        "(got 'sound')",
        "models[2].capabilities.stream: must be true or false",
        "models[2].list_price: unknown key 'per_token' (expected one of: input_per_1m, output_per_1m, per_image, "
        "per_video_second, per_1m_chars, per_minute, cached_input_per_1m, cache_write_per_1m)",
        "models[2].list_price.per_image: must be a non-negative integer (micro-USD)",
        "models[3].context_window: must be a positive integer",
        "models[3].routes[0].weight: must be an integer from 0 to 32767",
        "models[3].routes[1]: a second route to upstream 'ok'",
        "models[3].routes[2].upstream: is required",
        "models[4].id: 'a' is also models[0]",
        "models[5]: must be a mapping",
    ]
    assert not Upstream.objects.filter(name="ok").exists()


def test_errors_found_while_writing_roll_back_the_whole_file():
    data = parse(EXAMPLE)
    data["models"].append({"id": "orphan", "vendor": "X", "routes": [{"upstream": "nowhere"}]})
    data["models"].append({"id": "no-vendor"})

    errors = errors_of(data)

    assert errors == [
        "models[1].routes[0].upstream: no upstream named 'nowhere' in this file or the database",
        "models[2].vendor: is required for a new model",
    ]
    assert not Upstream.objects.filter(name="local-a").exists()
    assert not AIModel.objects.filter(slug__in=["bench-model", "orphan"]).exists()


def test_top_level_must_be_a_mapping():
    with pytest.raises(CatalogFileError, match="top level must be a mapping"):
        catalog_text_parse(text="- a\n- b\n")
    with pytest.raises(CatalogFileError, match="not valid YAML"):
        catalog_text_parse(text="models: [\n")


# --- export ------------------------------------------------------------------


def test_export_round_trips_through_import():
    data = parse(EXAMPLE)
    data["upstreams"].append({"name": "literal", "base_url": "https://example.com/v1", "api_key": "sk-literal-123"})
    data["models"][0].update(
        description="A model.",
        capabilities={"vision": True},
        list_price={"input_per_1m": 10, "output_per_1m": 20},
    )
    catalog_import(data=data)
    exported = catalog_export()

    result = catalog_import(data=yaml.safe_load(yaml.safe_dump(exported)))

    assert result.upstreams.created == result.models.created == result.routes.created == 0
    assert result.upstreams.updated == result.models.updated == result.routes.updated == 0
    assert catalog_export() == exported
    assert Upstream.objects.get(name="literal").api_key == "sk-literal-123"
    bench = next(m for m in exported["models"] if m["id"] == "bench-model")
    assert bench["capabilities"] == {"stream": True, "vision": True, "tools": False, "json": False}
    assert bench["routes"] == [
        {"upstream": "local-a", "upstream_model": "gpt-4o-mini", "priority": 0, "weight": 1, "enabled": True}
    ]


def test_export_keeps_free_and_unpriced_apart_through_import(one_model_file):
    data = one_model_file(price={"input_per_1m": 0, "output_per_1m": 0})
    data["models"].append({"id": "unpriced", "vendor": "OpenAI", "category": "image"})
    catalog_import(data=data)

    exported = catalog_export()
    by_id = {m["id"]: m for m in exported["models"]}
    assert by_id["bench-model"]["price"] == {"input_per_1m": 0, "output_per_1m": 0}
    assert by_id["unpriced"]["price"] == {}

    AIModel.objects.filter(slug__in=["bench-model", "unpriced"]).delete()
    catalog_import(data=yaml.safe_load(yaml.safe_dump(exported)))

    free, unpriced = AIModel.objects.get(slug="bench-model"), AIModel.objects.get(slug="unpriced")
    assert (free.input_per_1m, free.output_per_1m, free.per_image) == (0, 0, None)
    assert unpriced.per_image is None
    assert (free.missing_prices(), unpriced.missing_prices()) == ([], ["per_image"])
    assert catalog_export() == exported


def test_export_never_contains_a_literal_secret(capsys):
    Upstream.objects.create(name="literal", base_url="https://example.com/v1", api_key="sk-very-secret-value")

    exported = catalog_export()
    call_command("catalog_export")

    row = next(u for u in exported["upstreams"] if u["name"] == "literal")
    assert row["api_key"] == "***"
    assert "sk-very-secret-value" not in yaml.safe_dump(exported)
    out = capsys.readouterr().out
    assert "sk-very-secret-value" not in out
    assert "env:OPENAI_API_KEY" in out  # references are not secrets


def test_redacted_key_for_a_new_upstream_is_an_error():
    errors = errors_of({"upstreams": [{"name": "new", "base_url": "https://example.com/v1", "api_key": "***"}]})

    assert errors == [
        "upstreams[0].api_key: '***' keeps the stored key, but there is no upstream 'new' yet; give the key or env:VAR"
    ]


# --- resilience keys: timeouts, capacity, the key pool, routing, fallbacks ----

RESILIENT = """
upstreams:
  - name: local-a
    base_url: http://127.0.0.1:9100/v1
    api_key: sk-primary-literal
    first_byte_timeout: 20
    total_timeout: 120.5
    max_concurrency: 8
    health_probe: true
    credentials:
      - {label: backup, api_key: env:LOCAL_A_KEY_2}
      - {label: spare, api_key: sk-spare-literal-secret, enabled: false}
models:
  - id: bench-model
    vendor: OpenAI
    price: {input_per_1m: 1, output_per_1m: 2}
    routing: latency
    fallbacks: [bench-small, gpt-4o-mini]
    routes: [{upstream: local-a}]
  - id: bench-small
    vendor: OpenAI
    price: {input_per_1m: 1, output_per_1m: 1}
    routes: [{upstream: local-a}]
"""


def credentials_of(upstream: str) -> dict[str, tuple]:
    rows = UpstreamCredential.objects.filter(upstream__name=upstream)
    return {c.label: (c.api_key, c.enabled, c.failed_at) for c in rows}


def test_resilience_keys_are_imported():
    result = catalog_import(data=parse(RESILIENT))

    assert (result.credentials.created, result.credentials.updated, result.credentials.unchanged) == (2, 0, 0)
    upstream = Upstream.objects.get(name="local-a")
    assert (upstream.first_byte_timeout, upstream.total_timeout, upstream.read_timeout) == (20.0, 120.5, 600.0)
    assert (upstream.max_concurrency, upstream.health_probe) == (8, True)
    assert credentials_of("local-a") == {
        "backup": ("env:LOCAL_A_KEY_2", True, None),
        "spare": ("sk-spare-literal-secret", False, None),
    }
    model = AIModel.objects.get(slug="bench-model")
    assert (model.routing, model.fallbacks) == ("latency", ["bench-small", "gpt-4o-mini"])
    assert AIModel.objects.get(slug="bench-small").routing == "priority"
    info = model_get(slug="bench-model")
    assert (info.routing, info.fallbacks) == ("latency", ("bench-small", "gpt-4o-mini"))
    assert [label for label, _ in info.routes[0].credentials] == ["primary"]  # backup's variable is unset


def test_resilience_keys_left_out_take_the_model_defaults():
    catalog_import(data=parse(EXAMPLE))

    upstream = Upstream.objects.get(name="local-a")
    assert (upstream.first_byte_timeout, upstream.total_timeout, upstream.max_concurrency) == (None, None, None)
    assert upstream.health_probe is False
    assert not upstream.credentials.exists()
    model = AIModel.objects.get(slug="bench-model")
    assert (model.routing, model.fallbacks) == ("priority", [])


def test_reimporting_resilience_keys_changes_nothing():
    catalog_import(data=parse(RESILIENT))

    result = catalog_import(data=parse(RESILIENT))

    assert counts(result) == ((0, 0, 1), (0, 0, 2), (0, 0, 2))
    assert (result.credentials.created, result.credentials.updated, result.credentials.unchanged) == (0, 0, 2)
    assert result.summary().endswith("; credentials: 0 created, 0 updated, 2 unchanged")


def test_null_clears_the_optional_timeouts_and_the_cap():
    catalog_import(data=parse(RESILIENT))
    data = parse(RESILIENT)
    data["upstreams"][0].update(first_byte_timeout=None, total_timeout=None, max_concurrency=None, health_probe=False)
    data["models"][0].update(routing="priority", fallbacks=[])

    result = catalog_import(data=data)

    assert (result.upstreams.updated, result.models.updated) == (1, 1)
    upstream = Upstream.objects.get(name="local-a")
    assert (upstream.first_byte_timeout, upstream.total_timeout, upstream.max_concurrency) == (None, None, None)
    assert upstream.health_probe is False
    assert AIModel.objects.get(slug="bench-model").fallbacks == []


def test_credentials_are_matched_by_label_and_those_not_in_the_file_are_left_alone():
    catalog_import(data=parse(RESILIENT))
    data = parse(RESILIENT)
    data["upstreams"][0]["credentials"] = [{"label": "backup", "api_key": "env:OTHER_VAR", "enabled": False}]

    result = catalog_import(data=data)

    assert (result.credentials.created, result.credentials.updated, result.credentials.unchanged) == (0, 1, 0)
    assert credentials_of("local-a") == {
        "backup": ("env:OTHER_VAR", False, None),
        "spare": ("sk-spare-literal-secret", False, None),  # not in the file: as it was
    }

    del data["upstreams"][0]["credentials"]
    catalog_import(data=data)
    assert set(credentials_of("local-a")) == {"backup", "spare"}


def test_a_new_key_in_the_file_puts_a_refused_credential_back_and_the_same_key_does_not():
    catalog_import(data=parse(RESILIENT))
    upstream = Upstream.objects.get(name="local-a")
    upstream_credential_refused(upstream_id=upstream.pk, label="primary")
    upstream_credential_refused(upstream_id=upstream.pk, label="backup")
    upstream_credential_refused(upstream_id=upstream.pk, label="spare")

    result = catalog_import(data=parse(RESILIENT))

    assert result.credentials.unchanged == 2 and result.upstreams.unchanged == 1
    upstream.refresh_from_db()
    assert upstream.api_key_failed_at is not None
    assert all(failed_at is not None for _, _, failed_at in credentials_of("local-a").values())

    data = parse(RESILIENT)
    data["upstreams"][0]["api_key"] = "sk-new-primary"
    data["upstreams"][0]["credentials"][0]["api_key"] = "env:LOCAL_A_KEY_3"
    catalog_import(data=data)

    upstream.refresh_from_db()
    assert (upstream.api_key, upstream.api_key_failed_at) == ("sk-new-primary", None)
    pool = credentials_of("local-a")
    assert pool["backup"] == ("env:LOCAL_A_KEY_3", True, None)
    assert pool["spare"][2] is not None  # its key did not change


def test_export_round_trips_the_resilience_keys_without_secrets():
    catalog_import(data=parse(RESILIENT))
    UpstreamCredential.objects.filter(label="backup").update(failed_at=timezone.now())
    exported = catalog_export()

    text = yaml.safe_dump(exported)
    result = catalog_import(data=yaml.safe_load(text))

    local = next(u for u in exported["upstreams"] if u["name"] == "local-a")
    assert local == {
        "name": "local-a",
        "kind": "openai",
        "base_url": "http://127.0.0.1:9100/v1",
        "api_key": "***",
        "connect_timeout": 10.0,
        "first_byte_timeout": 20.0,
        "read_timeout": 600.0,
        "total_timeout": 120.5,
        "max_concurrency": 8,
        "health_probe": True,
        "enabled": True,
        "credentials": [
            {"label": "backup", "api_key": "env:LOCAL_A_KEY_2", "enabled": True},
            {"label": "spare", "api_key": "***", "enabled": False},
        ],
    }
    assert "sk-spare-literal-secret" not in text and "sk-primary-literal" not in text
    bench = next(m for m in exported["models"] if m["id"] == "bench-model")
    assert (bench["routing"], bench["fallbacks"]) == ("latency", ["bench-small", "gpt-4o-mini"])
    assert "fallbacks" not in next(m for m in exported["models"] if m["id"] == "bench-small")
    assert "credentials" not in next(u for u in exported["upstreams"] if u["name"] == "local-simulator")
    kinds = (result.upstreams, result.models, result.routes, result.credentials)
    assert [(kind.created, kind.updated) for kind in kinds] == [(0, 0)] * 4
    assert result.credentials.unchanged == 2
    assert credentials_of("local-a")["spare"][0] == "sk-spare-literal-secret"  # "***" kept the stored key
    assert credentials_of("local-a")["backup"][2] is not None  # the refusal is not configuration
    assert catalog_export() == exported


def test_a_fallback_may_name_a_model_already_in_the_database(one_model_file):
    catalog_import(data=one_model_file(fallbacks=["gpt-4o-mini"]))

    assert AIModel.objects.get(slug="bench-model").fallbacks == ["gpt-4o-mini"]


def test_dry_run_counts_credentials_and_saves_none():
    result = catalog_import(data=parse(RESILIENT), dry_run=True)

    assert result.credentials.created == 2
    assert not UpstreamCredential.objects.exists()


def test_resilience_keys_are_validated_with_their_paths():
    data = parse(
        """
upstreams:
  - name: a
    base_url: http://127.0.0.1:1/v1
    first_byte_timeout: 0
    total_timeout: "60"
    max_concurrency: -1
    health_probe: "yes"
    credentials:
      - {api_key: sk-no-label}
      - {label: primary, api_key: sk-x}
      - {label: "bad label", api_key: sk-x}
      - {label: twice, api_key: sk-x}
      - {label: twice, api_key: sk-y}
      - {label: empty, api_key: ""}
      - {label: env, api_key: "env:"}
      - {label: extra, api_key: sk-x, failed_at: null}
  - {name: b, base_url: "http://127.0.0.1:1/v1", max_concurrency: 0, credentials: {label: x}}
models:
  - {id: m, vendor: V, routing: fastest, fallbacks: [m, "", n, n]}
  - {id: n, vendor: V, fallbacks: gpt-4o}
"""
    )

    errors = errors_of(data)

    assert errors == [
        "upstreams[0].first_byte_timeout: must be a number of seconds greater than 0",
        "upstreams[0].total_timeout: must be a number of seconds greater than 0",
        "upstreams[0].max_concurrency: must be an integer of 1 or more, or null (no cap)",
        "upstreams[0].health_probe: must be true or false",
        "upstreams[0].credentials[0].label: is required",
        "upstreams[0].credentials[1].label: 'primary' names the upstream's own api_key",
        "upstreams[0].credentials[2].label: must contain only letters, digits, '-' and '_'",
        "upstreams[0].credentials[4].label: 'twice' is also upstreams[0].credentials[3]",
        "upstreams[0].credentials[5].api_key: must not be empty",
        "upstreams[0].credentials[6].api_key: env: must be followed by a variable name, e.g. env:OPENAI_API_KEY",
        "upstreams[0].credentials[7]: unknown key 'failed_at' (expected one of: label, api_key, enabled)",
        "upstreams[1].max_concurrency: must be an integer of 1 or more, or null (no cap)",
        "upstreams[1].credentials: must be a list of {label, api_key, enabled}",
        "models[0].routing: must be one of: priority, latency (got 'fastest')",
        "models[0].fallbacks[0]: a model cannot fall back to itself",
        "models[0].fallbacks[1]: must be a model id",
        "models[0].fallbacks[3]: 'n' is listed twice",
        "models[1].fallbacks: must be a list of model ids",
    ]
    assert not Upstream.objects.filter(name="a").exists()


def test_errors_that_need_the_database_name_fallbacks_and_credentials():
    catalog_import(data=parse(RESILIENT))
    data = parse(RESILIENT)
    data["upstreams"][0]["credentials"] = [{"label": "new-one"}, {"label": "new-two", "api_key": "***"}]
    data["models"][0]["fallbacks"] = ["bench-small", "no-such-model"]
    data["models"][1]["price"] = {"input_per_1m": 5}

    errors = errors_of(data)

    assert errors == [
        "upstreams[0].credentials[0].api_key: is required for a new credential",
        "upstreams[0].credentials[1].api_key: '***' keeps the stored key, but upstream 'local-a' has no credential "
        "'new-two' yet; give the key or env:VAR",
        "models[0].fallbacks[1]: no model 'no-such-model' in this file or the database",
    ]
    assert set(credentials_of("local-a")) == {"backup", "spare"}
    assert AIModel.objects.get(slug="bench-small").input_per_1m == 1  # rolled back


# --- commands ----------------------------------------------------------------


def test_import_command_prints_a_summary_and_export_command_writes_a_file(tmp_path, capsys):
    path = tmp_path / "catalog.yaml"
    path.write_text(EXAMPLE)

    call_command("catalog_import", str(path))
    call_command("catalog_import", str(path), "--dry-run")
    call_command("catalog_export", "--output", str(tmp_path / "out.yaml"))

    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{path}: upstreams: 1 created, 0 updated, 0 unchanged; models: 1 created, 0 updated, " + (
        "0 unchanged; routes: 1 created, 0 updated, 0 unchanged; credentials: 0 created, 0 updated, 0 unchanged"
    )
    assert lines[1].endswith("(dry run, nothing saved)")
    assert any(m["id"] == "bench-model" for m in catalog_file_read(path=tmp_path / "out.yaml")["models"])


def test_import_command_turns_file_errors_into_a_command_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("models:\n  - {id: x, vendor: V, price: {input_per_1m: 0.25}}\n")

    with pytest.raises(CommandError, match=r"models\[0\]\.price\.input_per_1m: must be a non-negative integer"):
        call_command("catalog_import", str(path))
    with pytest.raises(CommandError, match="No such file"):
        call_command("catalog_import", str(tmp_path / "missing.yaml"))


# --- the seeded catalog ------------------------------------------------------

REPRESENTATIVE_IDS = [
    "gpt-5.4",
    "gpt-5.2-codex",
    "gpt-5-mini-2025-08-07",
    "o3-2025-04-16",
    "claude-opus-4-7",
    "claude-sonnet-4-5-20250929-thinking",
    "claude-sonnet-4-20250514",
    "gemini-3-flash-preview-nothinking",
    "gemini-2.5-pro",
    "deepseek-r1-250528",
    "deepseek-ocr",
    "glm-5.1",
    "minimax-m2.1",
    "kimi-k2-thinking",
    "llama3.1-8b",
    "zai-glm-4.7",
    "gpt-4o",
    "gpt-4o-mini",
    "beluga-demo",
]


# Every model id of the product spec: its LLM table (/work/shared/spec/001_*, 68 ids) and its image
# table (003_*, 17 ids), copied here so that a seed edit cannot drop one unnoticed.
SPEC_LLM_IDS = [
    "gpt-5.2-codex", "gpt-5.2-pro", "gpt-5.2-chat-latest", "gpt-5.2", "gpt-5.1-chat-latest", "gpt-5.1",
    "gpt-5.1-2025-11-13", "gpt-5.1-codex", "gpt-5.1-codex-mini", "gpt-5-pro-2025-10-06", "gpt-5-2025-08-07",
    "gpt-5-mini-2025-08-07", "gpt-5-nano-2025-08-07", "gpt-5-search-api", "gpt-5-search-api-2025-10-14",
    "gpt-4o-transcribe", "gpt-4o-mini-transcribe", "gpt-4.1-mini-2025-04-14", "gpt-4.1-nano-2025-04-14",
    "gpt-4-1106-preview", "gpt-3.5-turbo-16k", "o3-2025-04-16", "o4-mini-2025-04-16", "o3-mini-2025-01-31",
    "o1-2024-12-17", "o1-mini-2024-09-12", "claude-opus-4-7", "claude-opus-4-6", "claude-opus-4-6-thinking",
    "claude-opus-4-5-20251101", "claude-opus-4-5-20251101-thinking", "claude-sonnet-4-6",
    "claude-sonnet-4-6-thinking", "claude-sonnet-4-5-20250929", "claude-sonnet-4-5-20250929-thinking",
    "claude-haiku-4-5-20251001", "claude-haiku-4-5-20251001-thinking", "claude-3-7-sonnet-20250219-thinking",
    "gemini-3.1-pro-preview", "gemini-3-pro-preview", "gemini-3-pro-preview-thinking", "gemini-3-flash-preview",
    "gemini-3-flash-preview-nothinking", "gemini-2.5-pro", "gemini-2.5-pro-thinking", "gemini-2.5-pro-nothinking",
    "gemini-2.5-flash", "gemini-2.5-flash-thinking", "gemini-2.5-flash-nothinking", "gemini-2.5-flash-lite",
    "gemini-2.0-flash", "deepseek-v3.2", "deepseek-v3.2-exp", "deepseek-v3.1-terminus", "deepseek-v3-0324",
    "deepseek-r1-250528", "deepseek-r1-0528", "deepseek-ocr", "glm-5.1", "glm-4.7", "glm-4.6", "minimax-m2.1",
    "kimi-k2-instruct", "kimi-k2-thinking", "llama3.1-8b", "gpt-oss-120b", "qwen-3-235b-a22b-instruct-2507",
    "zai-glm-4.7",
]  # fmt: skip
SPEC_IMAGE_IDS = [
    "gpt-image-2", "gpt-image-2-official", "gpt-image-1-official", "gpt-image-1.5-official",
    "gemini-3-pro-image-preview-official", "gemini-2.5-flash-image-preview-official", "seedream-4.0",
    "seedream-4.5", "seedream-5.0-lite", "wan2.7-image", "wan2.7-image-pro", "qwen-image-2.0-pro", "z-image-turbo",
    "grok-imagine-1.0-apimart", "grok-imagine-1.0-edit-apimart", "flux-kontext", "flux-2.0",
]  # fmt: skip
# Seeded and enabled, but no upstream Beluga knows takes them yet: calls are refused (503) and
# /v1/models does not list them. None since migration 0015 routed the last four (tests/test_media_sizes.py).
SEEDED_WITHOUT_ROUTE: set[str] = set()
# Routed through Replicate by migration 0014 (they had no route): model id → Replicate model.
REPLICATE_ROUTES = {
    "seedream-5.0-lite": "bytedance/seedream-5-lite",
    "qwen-image-2.0-pro": "qwen/qwen-image-2-pro",
    "grok-imagine-1.0-apimart": "xai/grok-imagine-image",
    "veo-3.1": "google/veo-3.1",
    "veo-3.1-fast": "google/veo-3.1-fast",
}


def test_every_spec_model_is_seeded_enabled_and_priced():
    assert (len(SPEC_LLM_IDS), len(set(SPEC_LLM_IDS)), len(SPEC_IMAGE_IDS), len(set(SPEC_IMAGE_IDS))) == (
        68,
        68,
        17,
        17,
    )
    spec_ids = SPEC_LLM_IDS + SPEC_IMAGE_IDS
    seeded = {m.slug: m for m in AIModel.objects.filter(slug__in=spec_ids)}

    assert sorted(set(spec_ids) - set(seeded)) == []
    assert [slug for slug in spec_ids if not seeded[slug].enabled] == []
    assert [slug for slug in spec_ids if seeded[slug].missing_prices()] == []
    assert [slug for slug in spec_ids if not model_get(slug=slug).priced] == []
    assert {seeded[slug].category for slug in SPEC_IMAGE_IDS} == {"image"}


def test_every_enabled_seeded_model_is_routed_or_deliberately_not_listed():
    seed_ids = [m["id"] for m in catalog_file_read(path=SEED_FILE)["models"]]
    enabled = AIModel.objects.filter(slug__in=seed_ids, enabled=True)
    assert enabled.count() == len(seed_ids)
    unrouted = {m.slug for m in enabled if not model_get(slug=m.slug).routes}
    listed = set(models_public().filter(slug__in=seed_ids).values_list("slug", flat=True))

    assert unrouted == SEEDED_WITHOUT_ROUTE
    assert set(models_unrouted()) >= SEEDED_WITHOUT_ROUTE
    assert listed == set(seed_ids) - SEEDED_WITHOUT_ROUTE  # the rest are priced and routed: all listed
    routes = Route.objects.filter(model__slug__in=REPLICATE_ROUTES).select_related("model", "upstream")
    assert {r.model.slug: (r.upstream.name, r.upstream_model) for r in routes} == {
        slug: ("replicate", name) for slug, name in REPLICATE_ROUTES.items()
    }


def test_the_new_replicate_routes_send_inputs_the_replicate_models_take():
    """As the Replicate models take them: Veo's length is `duration`; Qwen Image 2 Pro takes nine aspect
    ratios (not 21:9) and Grok Imagine xAI's seven, one image per prediction each; Seedream 5 Lite takes
    what Seedream 4.5 does."""
    veo = model_get(slug="veo-3.1").media_options
    assert veo["input_names"] == {"seconds": "duration"} == model_get(slug="veo-3.1-fast").media_options["input_names"]
    assert (veo["durations"], veo["sizes"], veo["resolutions"]) == ([4, 6, 8], ["16:9", "9:16"], ["720p", "1080p"])
    qwen = model_get(slug="qwen-image-2.0-pro").media_options
    assert (qwen["max_n"], "21:9" in qwen["sizes"], {"2:1", "1:2"} <= set(qwen["sizes"])) == (1, False, True)
    grok = model_get(slug="grok-imagine-1.0-apimart").media_options
    assert (grok["max_n"], "21:9" in grok["sizes"]) == (1, False)
    assert model_get(slug="seedream-5.0-lite").media_options == model_get(slug="seedream-4.5").media_options


def test_seeded_catalog_has_the_spec_models_with_routes():
    slugs = set(AIModel.objects.values_list("slug", flat=True))
    assert set(REPRESENTATIVE_IDS) <= slugs
    assert {"gpt-image-2", "seedream-4.5", "flux-2.0", "dall-e-3", "dall-e-2"} <= slugs
    assert {"whisper-1", "gpt-4o-transcribe", "tts-1", "gpt-4o-mini-tts", "sora-2", "veo-3.1"} <= slugs

    chat_models = AIModel.objects.filter(category__in=CHAT_CATEGORIES)
    assert chat_models.count() >= 68
    # Variants ('-thinking', '-nothinking') are served by their base model's routes.
    unrouted = [m.slug for m in chat_models if not model_get(slug=m.slug).routes]
    assert unrouted == []
    assert AIModel.objects.get(slug="llama3.1-8b").vendor == "Beluga Edge"
    assert AIModel.objects.get(slug="gpt-4o-transcribe").category == "audio-stt"
    thinking = AIModel.objects.get(slug="claude-opus-4-6-thinking")
    assert (thinking.variant_of.slug, thinking.request_defaults) == ("claude-opus-4-6", {"thinking_budget": 8192})
    assert not thinking.routes.exists()
    assert [r.upstream_model for r in model_get(slug="claude-opus-4-6-thinking").routes] == ["claude-opus-4-6"]
    assert AIModel.objects.get(slug="gemini-2.5-flash-nothinking").request_overrides == {"thinking": False}


def test_seeded_prices_are_sane():
    assert list(AIModel.objects.unpriced()) == []
    for m in AIModel.objects.exclude(slug="beluga-demo"):
        for key in SALE_PRICES:
            sale, listed = getattr(m, key), getattr(m, key + "_list")
            if not sale and key not in prices_required(category=m.category):
                continue  # a price the model's category does not use
            assert listed is not None, (m.slug, key)  # the seed states the official price of what it sells
            assert 0 <= sale <= listed, (m.slug, key)
            assert sale >= listed * 3 // 10, (m.slug, key)  # never more than 70% below official
        assert all(getattr(m, key) for key in prices_required(category=m.category)), m.slug
    gpt4o = AIModel.objects.get(slug="gpt-4o")
    assert (gpt4o.input_per_1m_list, gpt4o.output_per_1m_list) == (2_500_000, 10_000_000)


def test_demo_model_is_routed_to_the_local_simulator():
    demo = AIModel.objects.get(slug="beluga-demo")
    assert (demo.name, demo.vendor, demo.category) == ("Beluga Demo (local simulator)", "Beluga", "chat")
    assert (demo.supports_stream, demo.supports_vision, demo.supports_tools, demo.supports_json) == (True,) * 4
    assert (demo.input_per_1m, demo.output_per_1m) == (100_000, 200_000)
    route = Route.objects.select_related("upstream").get(model=demo)
    assert (route.upstream.name, route.upstream.base_url, route.upstream_model) == (
        "local-simulator",
        "http://127.0.0.1:8001/v1",
        "beluga-demo",
    )


def test_seed_file_reimport_is_a_no_op():
    seed = catalog_file_read(path=SEED_FILE)
    result = catalog_import(data=seed)

    assert result.upstreams.unchanged == len(seed["upstreams"])
    assert (result.models.created, result.models.updated) == (0, 0)
    assert (result.routes.created, result.routes.updated) == (0, 0)


@pytest.mark.django_db(transaction=True)
def test_seed_migration_reverses_and_reapplies():
    # An earlier transactional test may have flushed the seed; put it back first.
    catalog_import(data=catalog_file_read(path=SEED_FILE))
    AIModel.objects.create(slug="admin-added", name="Admin added", vendor="Acme")

    call_command("migrate", "catalog", "0001", verbosity=0)

    assert list(AIModel.objects.values_list("slug", flat=True)) == ["admin-added"]
    assert not Upstream.objects.exists()
    assert not Route.objects.exists()

    call_command("migrate", "catalog", "zero", verbosity=0)
    call_command("migrate", verbosity=0)

    assert AIModel.objects.filter(slug__in=REPRESENTATIVE_IDS).count() == len(REPRESENTATIVE_IDS)
    assert Upstream.objects.filter(name="local-simulator").exists()


@pytest.mark.django_db(transaction=True)
def test_the_replicate_routes_migration_routes_models_without_one_and_keeps_admin_edits():
    catalog_import(data=catalog_file_read(path=SEED_FILE))  # an earlier transactional test may have flushed it

    def replicate_routes() -> dict:
        rows = Route.objects.filter(model__slug__in=REPLICATE_ROUTES).select_related("model", "upstream")
        return {r.model.slug: (r.upstream.name, r.upstream_model) for r in rows}

    def media(slug: str) -> dict:
        return AIModel.objects.get(slug=slug).media_options

    call_command("migrate", "catalog", "0013", verbosity=0)
    # As an install migrated before 0014 has them: no route, the seed's earlier media options.
    assert replicate_routes() == {}
    assert "input_names" not in media("veo-3.1")
    assert (media("qwen-image-2.0-pro")["max_n"], media("grok-imagine-1.0-apimart")["max_n"]) == (4, 4)
    # An admin's edits: Qwen's media options, and a route of their own for Grok.
    AIModel.objects.filter(slug="qwen-image-2.0-pro").update(media_options={"sizes": ["1:1"], "max_n": 2})
    grok = AIModel.objects.get(slug="grok-imagine-1.0-apimart")
    Route.objects.create(model=grok, upstream=Upstream.objects.get(name="openai"), upstream_model="by-admin")

    call_command("migrate", "catalog", verbosity=0)

    assert replicate_routes() == {
        **{slug: ("replicate", name) for slug, name in REPLICATE_ROUTES.items()},
        "grok-imagine-1.0-apimart": ("openai", "by-admin"),
    }
    assert media("veo-3.1")["input_names"] == media("veo-3.1-fast")["input_names"] == {"seconds": "duration"}
    assert media("qwen-image-2.0-pro") == {"sizes": ["1:1"], "max_n": 2}
    assert media("grok-imagine-1.0-apimart")["max_n"] == 1

    call_command("migrate", "catalog", "0013", verbosity=0)

    assert replicate_routes() == {"grok-imagine-1.0-apimart": ("openai", "by-admin")}
    assert "input_names" not in media("veo-3.1-fast")
    assert media("qwen-image-2.0-pro") == {"sizes": ["1:1"], "max_n": 2}
    assert media("grok-imagine-1.0-apimart")["max_n"] == 4
    call_command("migrate", "catalog", verbosity=0)
