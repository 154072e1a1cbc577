"""GET /v1/models and /v1/models/{id}: OpenAI's list shape plus Beluga's fields, filters, only the
models a call can be served for (a route and a price), 404 in OpenAI's shape, and auth optional but
checked when given."""

from __future__ import annotations

import json

import pytest

from tests.fixtures_gateway import error_of

# Registers the fixtures (fake upstream, chat route, keys, live clients) for this module.
pytest_plugins = ["tests.fixtures_gateway"]

ACME = "Acme Labs"
PRICES = {"input_per_1m": 1_000, "output_per_1m": 2_000}


@pytest.fixture
def acme_upstream(db):
    from catalog.models import Upstream

    return Upstream.objects.create(name="acme-upstream", kind="openai", base_url="http://127.0.0.1:9/v1")


def routed(model, upstream, **route):
    from catalog.models import Route
    from catalog.selectors import catalog_cache_clear

    Route.objects.create(model=model, upstream=upstream, upstream_model=model.slug, **route)
    catalog_cache_clear()
    return model


@pytest.fixture
def acme_models(db, acme_upstream):
    from catalog.models import AIModel
    from catalog.selectors import catalog_cache_clear

    rows = {
        "chat": AIModel.objects.create(
            slug="acme-chat-1",
            name="Acme Chat One",
            vendor=ACME,
            category="chat",
            description="A fast multilingual assistant.",
            supports_stream=True,
            supports_tools=True,
            supports_json=True,
            context_window=200_000,
            max_output_tokens=32_000,
            input_per_1m=1_500_000,
            output_per_1m=6_000_000,
            input_per_1m_list=3_000_000,
            output_per_1m_list=12_000_000,
        ),
        "vision": AIModel.objects.create(
            slug="acme-vision-2",
            name="Acme Vision Two",
            vendor=ACME,
            category="vision",
            supports_vision=True,
            input_per_1m=500_000,
            output_per_1m=2_000_000,
        ),
        "image": AIModel.objects.create(
            slug="acme-image-3",
            name="Acme Image Three",
            vendor=ACME,
            category="image",
            supports_stream=False,
            per_image=40_000,
            per_image_list=80_000,
        ),
        "disabled": AIModel.objects.create(
            slug="acme-disabled", name="Acme Retired", vendor=ACME, category="chat", enabled=False
        ),
        "zeta": AIModel.objects.create(
            slug="zeta-chat",
            name="Zeta Chat",
            vendor="Zeta AI",
            category="chat",
            description="Multilingual too.",
            input_per_1m=1,
            output_per_1m=1,
        ),
    }
    for model in rows.values():
        routed(model, acme_upstream)
    catalog_cache_clear()
    return rows


def listed(client, query: str = "", **headers) -> list[dict]:
    response = client.get(f"/v1/models{query}", headers=headers)
    assert response.status_code == 200, response.content
    body = json.loads(response.content)
    assert body["object"] == "list"
    return body["data"]


def ids(items) -> list[str]:
    return [item["id"] for item in items]


def test_list_has_openai_shape_and_beluga_fields(client, acme_models):
    items = {item["id"]: item for item in listed(client)}

    item = items["acme-chat-1"]
    assert item["object"] == "model"
    assert isinstance(item["created"], int) and item["created"] > 1_600_000_000
    assert item["owned_by"] == "acme-labs"
    assert item["name"] == "Acme Chat One"
    assert item["provider"] == ACME
    assert item["category"] == "chat"
    assert item["context_window"] == 200_000
    assert item["capabilities"] == {"stream": True, "vision": False, "tools": True, "json_output": True}
    pricing = item["pricing"]
    assert pricing["sale"]["input_per_1m_tokens"] == 1_500_000
    assert pricing["sale"]["output_per_1m_tokens"] == 6_000_000
    assert pricing["list"]["input_per_1m_tokens"] == 3_000_000
    assert pricing["list"]["output_per_1m_tokens"] == 12_000_000
    assert items["acme-image-3"]["pricing"]["sale"]["per_image"] == 40_000
    for entry in items.values():
        assert {"id", "object", "created", "owned_by"} <= set(entry)
        assert isinstance(entry["owned_by"], str) and entry["owned_by"]


def test_a_list_price_not_known_is_null_and_a_free_price_is_zero(client, acme_models, acme_upstream):
    from catalog.models import AIModel

    free = AIModel.objects.create(
        slug="acme-free",
        name="Acme Free",
        vendor=ACME,
        input_per_1m=0,
        output_per_1m=0,
        cached_input_per_1m=0,
        input_per_1m_list=0,
    )
    routed(free, acme_upstream)
    items = {item["id"]: item for item in listed(client)}

    vision = items["acme-vision-2"]["pricing"]
    assert vision["sale"] == {"input_per_1m_tokens": 500_000, "output_per_1m_tokens": 2_000_000}
    assert vision["list"] == {"input_per_1m_tokens": None, "output_per_1m_tokens": None}
    assert items["acme-free"]["pricing"]["sale"] == {"input_per_1m_tokens": 0, "output_per_1m_tokens": 0}
    assert items["acme-free"]["pricing"]["list"] == {"input_per_1m_tokens": 0, "output_per_1m_tokens": None}
    assert items["acme-image-3"]["pricing"]["sale"] == {"per_image": 40_000}
    assert items["acme-image-3"]["pricing"]["list"] == {"per_image": 80_000}
    detail = json.loads(client.get("/v1/models/acme-vision-2").content)
    assert detail["pricing"] == vision


def test_a_cache_price_is_shown_even_when_its_list_price_is_not_known(client, acme_models):
    from catalog.models import AIModel

    AIModel.objects.filter(slug="acme-chat-1").update(cached_input_per_1m=150_000)
    [chat] = [item for item in listed(client) if item["id"] == "acme-chat-1"]

    assert chat["pricing"]["sale"]["cached_input_per_1m_tokens"] == 150_000
    assert chat["pricing"]["list"]["cached_input_per_1m_tokens"] is None


@pytest.mark.parametrize("case", ["no-route", "route-disabled", "upstream-disabled", "unpriced"])
def test_a_model_no_call_can_be_served_for_is_neither_listed_nor_retrievable(client, acme_models, case):
    from catalog.models import AIModel, Upstream
    from catalog.selectors import catalog_cache_clear, model_get

    prices = {} if case == "unpriced" else {"input_per_1m": 1, "output_per_1m": 2}
    model = AIModel.objects.create(slug="acme-odd", name="Acme Odd", vendor=ACME, **prices)
    if case != "no-route":
        upstream = Upstream.objects.create(
            name="acme-odd-up", base_url="http://127.0.0.1:9/v1", enabled=case != "upstream-disabled"
        )
        routed(model, upstream, enabled=case != "route-disabled")
    catalog_cache_clear()

    assert "acme-odd" not in ids(listed(client))
    assert "acme-odd" not in ids(listed(client, f"?provider={ACME}"))
    response = client.get("/v1/models/acme-odd")
    assert response.status_code == 404
    assert error_of(response)["code"] == "model_not_found"
    info = model_get(slug="acme-odd")  # the router agrees: a call gets a 503
    assert not (info.routes and info.priced)


def test_variants_and_aliases_are_listed_as_the_router_serves_them(client, acme_models):
    from catalog.models import AIModel
    from catalog.selectors import catalog_cache_clear, model_get

    base = acme_models["chat"]
    AIModel.objects.create(
        slug="acme-chat-1-thinking", name="T", vendor=ACME, category="reasoning", variant_of=base, **PRICES
    )
    AIModel.objects.create(slug="acme-latest", name="L", vendor=ACME, alias_of=base)
    lonely = AIModel.objects.create(slug="acme-lonely", name="Lonely", vendor=ACME, **PRICES)
    AIModel.objects.create(slug="acme-lonely-latest", name="LL", vendor=ACME, alias_of=lonely)
    AIModel.objects.create(slug="acme-lonely-thinking", name="LT", vendor=ACME, variant_of=lonely, **PRICES)
    catalog_cache_clear()

    shown = set(ids(listed(client)))
    assert {"acme-chat-1-thinking", "acme-latest"} <= shown
    assert not shown & {"acme-lonely", "acme-lonely-latest", "acme-lonely-thinking"}
    assert client.get("/v1/models/acme-latest").status_code == 200
    assert client.get("/v1/models/acme-lonely-latest").status_code == 404

    # A variant of a disabled model is still served by that model's routes, and so still listed.
    AIModel.objects.filter(pk=base.pk).update(enabled=False)
    catalog_cache_clear()
    shown = set(ids(listed(client)))
    assert "acme-chat-1-thinking" in shown and model_get(slug="acme-chat-1-thinking").routes
    assert not shown & {"acme-chat-1", "acme-latest"}


def test_the_list_is_exactly_the_models_the_router_can_serve(client, acme_models, chat_route):
    """Over the whole seeded catalog: listed iff the snapshot the router uses has a route and a price."""
    from catalog.models import AIModel
    from catalog.selectors import model_get

    servable = set()
    for slug in AIModel.objects.filter(enabled=True).values_list("slug", flat=True):
        info = model_get(slug=slug)
        if info is not None and info.routes and info.priced:
            servable.add(slug)
    shown = ids(listed(client))

    assert set(shown) == servable
    assert len(shown) == len(servable)
    for model_id in shown:
        assert client.get(f"/v1/models/{model_id}").status_code == 200, model_id
    assert {"wan2.7-image", "z-image-turbo"} <= set(shown)  # routed through Replicate with their size_form


def test_disabled_models_are_not_listed_nor_retrievable(client, acme_models):
    assert "acme-disabled" not in ids(listed(client))
    assert "acme-disabled" not in ids(listed(client, f"?provider={ACME}"))

    response = client.get("/v1/models/acme-disabled")

    assert response.status_code == 404
    assert error_of(response)["code"] == "model_not_found"


def test_filter_by_provider_is_case_insensitive(client, acme_models):
    assert sorted(ids(listed(client, "?provider=Acme Labs"))) == ["acme-chat-1", "acme-image-3", "acme-vision-2"]
    assert sorted(ids(listed(client, "?provider=acme labs"))) == ["acme-chat-1", "acme-image-3", "acme-vision-2"]
    assert ids(listed(client, "?provider=Nobody")) == []


@pytest.mark.parametrize("provider", ["acme-labs", "ACME-Labs", "acme", "Acme"])
def test_filter_by_provider_takes_the_owned_by_slug_or_its_leading_words(client, acme_models, provider):
    found = listed(client, f"?provider={provider}")

    assert sorted(ids(found)) == ["acme-chat-1", "acme-image-3", "acme-vision-2"]
    assert {item["owned_by"] for item in found} == {"acme-labs"}


@pytest.mark.parametrize("provider", ["labs", "acme-lab", "acm", "acme%25", "acme_labs"])
def test_filter_by_provider_matches_whole_words_only(client, acme_models, provider):
    assert ids(listed(client, f"?provider={provider}")) == []


@pytest.mark.parametrize("provider", ["moonshot", "moonshot-ai", "Moonshot AI", "MOONSHOT"])
def test_the_seeded_moonshot_models_are_found_by_vendor_or_slug(client, db, provider):
    found = listed(client, f"?provider={provider}")

    assert sorted(ids(found)) == ["kimi-k2-instruct", "kimi-k2-thinking"]
    assert {(item["provider"], item["owned_by"]) for item in found} == {("Moonshot AI", "moonshot-ai")}


def test_filter_by_category(client, acme_models):
    images = listed(client, "?category=image")

    assert "acme-image-3" in ids(images)
    assert {item["category"] for item in images} == {"image"}
    assert ids(listed(client, f"?category=vision&provider={ACME}")) == ["acme-vision-2"]
    assert ids(listed(client, f"?category=chat&provider={ACME}")) == ["acme-chat-1"]


@pytest.mark.parametrize(
    ("search", "expected"),
    [
        ("acme-chat", {"acme-chat-1"}),
        ("Acme Vision", {"acme-vision-2"}),
        ("multilingual", {"acme-chat-1", "zeta-chat"}),
    ],
)
def test_search_matches_id_name_and_description(client, acme_models, search, expected):
    found = set(ids(listed(client, f"?search={search}")))

    assert expected <= found
    assert "acme-disabled" not in found


def test_search_without_match_is_an_empty_list(client, acme_models):
    assert listed(client, "?search=qwertyuiopasdfgh") == []


def test_search_combines_with_other_filters(client, acme_models):
    assert ids(listed(client, f"?search=multilingual&provider={ACME}")) == ["acme-chat-1"]


def test_detail_returns_the_same_object_as_the_list(client, acme_models):
    response = client.get("/v1/models/acme-chat-1")

    assert response.status_code == 200
    detail = json.loads(response.content)
    [in_list] = [m for m in listed(client) if m["id"] == "acme-chat-1"]
    assert detail == in_list
    assert response["X-Request-Id"]


@pytest.mark.parametrize("prefix", ["/v1", "/api/v1"])
def test_unknown_model_is_404_model_not_found(client, acme_models, prefix):
    response = client.get(f"{prefix}/models/no-such-model")

    assert response.status_code == 404
    error = error_of(response)
    # OpenAI's type under /v1; the /api/v1 reference's own table names a 404 not_found_error.
    assert error["type"] == ("invalid_request_error" if prefix == "/v1" else "not_found_error")
    assert error["code"] == "model_not_found"
    assert error["param"] == "model"
    assert "no-such-model" in error["message"]
    assert response["X-Request-Id"]


def test_api_v1_prefix_lists_the_same_models(client, acme_models):
    response = client.get("/api/v1/models")

    assert json.loads(response.content)["data"] == listed(client)


def test_listing_needs_no_key_but_accepts_a_valid_one(client, acme_models, raw_key):
    assert ids(listed(client, Authorization=f"Bearer {raw_key}")) == ids(listed(client))


@pytest.mark.parametrize("path", ["/v1/models", "/v1/models/acme-chat-1"])
def test_an_invalid_key_on_the_listing_is_401(client, acme_models, path):
    response = client.get(path, headers={"Authorization": "Bearer bapi_" + "Z" * 43})

    assert response.status_code == 401
    assert error_of(response)["code"] == "invalid_api_key"


def test_sdk_lists_and_retrieves_models(openai_client, acme_models):
    import openai

    listed_ids = [m.id for m in openai_client.models.list()]
    model = openai_client.models.retrieve("acme-chat-1")

    assert "acme-chat-1" in listed_ids
    assert "test-model" in listed_ids
    assert "acme-disabled" not in listed_ids
    assert model.id == "acme-chat-1"
    assert model.owned_by == "acme-labs"
    with pytest.raises(openai.NotFoundError):
        openai_client.models.retrieve("no-such-model")


@pytest.mark.parametrize(
    "query",
    [
        pytest.param("?search=%27", id="quote"),
        pytest.param("?search=%26%7C%21(", id="tsquery-operators"),
        pytest.param("?search=gpt-5:*", id="prefix-syntax"),
        pytest.param("?search=%22unterminated", id="unterminated-phrase"),
        pytest.param("?search=a%00b", id="nul-in-search"),
        pytest.param("?category=%00", id="nul-in-category"),
        pytest.param("?provider=a%00", id="nul-in-provider"),
    ],
)
def test_odd_filter_input_is_answered_not_a_server_error(client, acme_models, query):
    response = client.get(f"/v1/models{query}")

    assert response.status_code == 200, response.content
    assert json.loads(response.content)["object"] == "list"


def test_odd_model_id_is_404_not_a_server_error(client, acme_models):
    response = client.get("/v1/models/acme%00chat")

    assert response.status_code == 404
    assert error_of(response)["code"] == "model_not_found"
