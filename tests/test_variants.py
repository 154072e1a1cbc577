"""Model variants and request settings (catalog/request_settings.py, gateway/protocols/variants.py).

A variant is served by its base model's routes with settings merged into
every call: defaults where the client set nothing, overrides over what it
set. Each test calls through a client protocol and reads what the fake
upstream received, in the upstream's own protocol.
"""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import ValidationError

from billing.models import UsageRecord
from catalog.catalog_file import CatalogFileError, catalog_text_parse
from catalog.importer import catalog_export, catalog_import
from catalog.models import AIModel
from catalog.selectors import catalog_cache_clear
from tests.fixtures_gateway import INPUT_PER_1M, MODEL_ID, wait_for_record

VARIANT = "test-model-thinking"
pytestmark = pytest.mark.django_db


def make_variant(route, *, defaults=None, overrides=None, upstream_model=None, slug=VARIANT, **prices):
    """A variant of the fixture's model (which keeps the routes), priced apart."""
    if upstream_model is not None:
        route.route.upstream_model = upstream_model
        route.route.save()
    variant = AIModel.objects.create(
        slug=slug,
        name="Test Model Thinking",
        vendor="OpenAI",
        category="reasoning",
        variant_of=route.model,
        request_defaults=defaults or {},
        request_overrides=overrides or {},
        max_output_tokens=32_000,
        input_per_1m=prices.get("input_per_1m", 3 * INPUT_PER_1M),
        output_per_1m=prices.get("output_per_1m", 5_000_000),
    )
    catalog_cache_clear()
    return variant


def call(client, raw_key, protocol: str, body: dict, *, model: str = VARIANT, stream: bool = False):
    """POST `body` in a client protocol; the answer (streams read whole)."""
    if protocol == "gemini":
        action = "streamGenerateContent?alt=sse" if stream else "generateContent"
        path, headers = f"/v1beta/models/{model}:{action}", {"x-goog-api-key": raw_key}
    else:
        path = {"chat": "/v1/chat/completions", "responses": "/v1/responses", "anthropic": "/v1/messages"}[protocol]
        headers = {"Authorization": f"Bearer {raw_key}"}
        body = {"model": model, **body, **({"stream": True} if stream else {})}
    response = client.post(path, data=json.dumps(body), content_type="application/json", headers=headers)
    if stream and response.status_code == 200:
        response.streamed = b"".join(response.streaming_content).decode()
    return response


def sent(fake_upstream) -> dict:
    return fake_upstream.requests[-1].json


HI = [{"role": "user", "content": "Hi"}]
GEMINI_HI = {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}


# --- defaults: the client may change them -------------------------------------------------


def test_thinking_default_reaches_anthropic_from_an_openai_chat_client(client, route_to, raw_key, fake_upstream):
    make_variant(route_to("anthropic"), defaults={"thinking_budget": 4096})
    response = call(client, raw_key, "chat", {"messages": HI, "max_tokens": 8000, "temperature": 0.3})
    assert response.status_code == 200, response.content
    body = sent(fake_upstream)
    assert body["model"] == "upstream-test-model"
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 4096}
    assert "temperature" not in body  # Anthropic takes temperature 1 only with thinking
    assert response["X-Beluga-Dropped-Params"] == "temperature"
    assert response.json()["model"] == VARIANT


def test_a_client_effort_replaces_the_thinking_default(client, route_to, raw_key, fake_upstream):
    make_variant(route_to("anthropic"), defaults={"thinking_budget": 4096})
    response = call(client, raw_key, "chat", {"messages": HI, "max_tokens": 30000, "reasoning_effort": "high"})
    assert response.status_code == 200, response.content
    assert sent(fake_upstream)["thinking"] == {"type": "enabled", "budget_tokens": 24576}


def test_thinking_default_in_an_anthropic_clients_own_request(client, route_to, raw_key, fake_upstream):
    """Not translated (Anthropic on both sides): the setting is written into the client's body."""
    make_variant(route_to("anthropic"), defaults={"thinking_budget": 4096})
    base = {"messages": HI, "max_tokens": 8000, "temperature": 0.2, "top_k": 5, "metadata": {"user_id": "u1"}}
    response = call(client, raw_key, "anthropic", base)
    assert response.status_code == 200, response.content
    body = sent(fake_upstream)
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 4096}
    assert "temperature" not in body and "top_k" not in body
    assert body["metadata"] == {"user_id": "u1"}  # the rest as the client sent it
    assert response["X-Beluga-Dropped-Params"] == "temperature, top_k"

    # The client's own thinking is kept as it sent it, and so is its temperature.
    own = {**base, "thinking": {"type": "enabled", "budget_tokens": 2048}, "temperature": 1}
    del own["top_k"]
    assert call(client, raw_key, "anthropic", own).status_code == 200
    body = sent(fake_upstream)
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 2048} and body["temperature"] == 1

    off = {**base, "thinking": {"type": "disabled"}}
    assert call(client, raw_key, "anthropic", off).status_code == 200
    assert sent(fake_upstream)["thinking"] == {"type": "disabled"}


def test_thinking_default_gives_way_to_a_tool_turn_without_its_thinking(client, route_to, raw_key, fake_upstream):
    """Anthropic refuses thinking when the turn's tool calls come back without their signed thinking
    (a client that had thinking off): the call goes on without thinking, and says so."""
    make_variant(route_to("anthropic"), defaults={"thinking_budget": 4096})
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}]},
    ]
    tools = [{"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]
    response = call(client, raw_key, "anthropic", {"messages": messages, "max_tokens": 8000, "tools": tools})
    assert response.status_code == 200, response.content
    assert "thinking" not in sent(fake_upstream)
    assert response["X-Beluga-Dropped-Params"] == "thinking"


def test_effort_default_on_the_fast_path(client, route_to, raw_key, fake_upstream):
    """OpenAI chat to an OpenAI reasoning model, forwarded as sent: the default effort is added."""
    make_variant(route_to("openai"), defaults={"reasoning_effort": "high"}, upstream_model="o4-mini")
    response = call(client, raw_key, "chat", {"messages": HI, "seed": 7})
    assert response.status_code == 200, response.content
    body = sent(fake_upstream)
    assert (body["reasoning_effort"], body["seed"]) == ("high", 7)

    assert call(client, raw_key, "chat", {"messages": HI, "reasoning_effort": "low"}).status_code == 200
    assert sent(fake_upstream)["reasoning_effort"] == "low"


def test_thinking_is_not_sent_to_a_chat_server_that_is_not_a_reasoning_model(client, route_to, raw_key, fake_upstream):
    make_variant(route_to("openai"), defaults={"thinking_budget": 4096})
    response = call(client, raw_key, "chat", {"messages": HI})
    assert response.status_code == 200, response.content
    assert "reasoning_effort" not in sent(fake_upstream)
    assert response["X-Beluga-Dropped-Params"] == "thinking"


def test_effort_default_in_a_responses_clients_own_request(client, route_to, raw_key, fake_upstream):
    make_variant(route_to("openai-responses"), defaults={"reasoning_effort": "low", "max_tokens": 900})
    response = call(client, raw_key, "responses", {"input": "Hi"})
    assert response.status_code == 200, response.content
    body = sent(fake_upstream)
    assert body["reasoning"] == {"effort": "low", "summary": "auto"}
    assert body["max_output_tokens"] == 900

    own = {"input": "Hi", "reasoning": {"effort": "high"}, "max_output_tokens": 50}
    assert call(client, raw_key, "responses", own).status_code == 200
    body = sent(fake_upstream)
    assert (body["reasoning"], body["max_output_tokens"]) == ({"effort": "high"}, 50)


def test_gemini_3_takes_the_effort_as_a_thinking_level(client, route_to, raw_key, fake_upstream):
    make_variant(
        route_to("gemini"),
        defaults={"reasoning_effort": "medium", "include_thoughts": True},
        upstream_model="gemini-3-pro-preview",
    )
    response = call(client, raw_key, "chat", {"messages": HI})
    assert response.status_code == 200, response.content
    config = sent(fake_upstream)["generationConfig"]["thinkingConfig"]
    assert config == {"thinkingLevel": "high", "includeThoughts": True}  # Pro has two levels: low and high


# --- overrides: the client may not change them ---------------------------------------------


@pytest.mark.parametrize(
    ("upstream_model", "expected"),
    [
        ("gemini-2.5-flash", {"thinkingBudget": 0}),
        ("gemini-2.5-pro", {"thinkingBudget": 128}),  # 2.5 Pro cannot turn thinking off: its minimum
        ("gemini-3-flash-preview", {"thinkingLevel": "minimal"}),  # nor can Gemini 3: its lowest level
    ],
)
def test_thinking_off_override_beats_a_gemini_clients_own_config(
    client, route_to, raw_key, fake_upstream, upstream_model, expected
):
    make_variant(route_to("gemini"), overrides={"thinking": False}, upstream_model=upstream_model)
    own = {**GEMINI_HI, "generationConfig": {"temperature": 0.4, "thinkingConfig": {"thinkingBudget": 9000}}}
    response = call(client, raw_key, "gemini", own)
    assert response.status_code == 200, response.content
    config = sent(fake_upstream)["generationConfig"]
    assert config["thinkingConfig"] == expected
    assert config["temperature"] == 0.4


def test_thinking_off_override_beats_an_openai_clients_effort(client, route_to, raw_key, fake_upstream):
    make_variant(route_to("gemini"), overrides={"thinking": False}, upstream_model="gemini-2.5-flash")
    response = call(client, raw_key, "chat", {"messages": HI, "reasoning_effort": "high"}, stream=True)
    assert response.status_code == 200, response.content
    assert sent(fake_upstream)["generationConfig"]["thinkingConfig"] == {"thinkingBudget": 0}


def test_max_tokens_override_beats_the_clients_cap(client, route_to, raw_key, fake_upstream):
    make_variant(route_to("openai"), overrides={"max_tokens": 100, "temperature": 0.0})
    response = call(client, raw_key, "chat", {"messages": HI, "max_tokens": 5000, "temperature": 1.5})
    assert response.status_code == 200, response.content
    body = sent(fake_upstream)
    assert (body["max_tokens"], body["temperature"]) == (100, 0.0)
    assert "max_completion_tokens" not in body


# --- the variant is its own model ------------------------------------------------------------


def test_a_variant_is_billed_at_its_own_prices_and_named_in_the_answer(client, route_to, raw_key, fake_upstream):
    make_variant(route_to("anthropic"), defaults={"thinking_budget": 2048}, output_per_1m=7_000_000)
    fake_upstream.set(reasoning_text="Let me think.", reasoning_tokens=4, completion_tokens=12)
    response = call(client, raw_key, "anthropic", {"messages": HI, "max_tokens": 4000})
    assert response.status_code == 200, response.content
    answer = response.json()
    assert answer["model"] == VARIANT
    assert answer["content"][0]["type"] == "thinking"
    record = UsageRecord.objects.get(request_id=response["X-Request-Id"])
    assert record.model == VARIANT
    prompt, output = record.prompt_tokens, record.completion_tokens
    assert output == 12
    assert record.cost_micro_usd == -(-(prompt * 3 * INPUT_PER_1M + output * 7_000_000) // 1_000_000)


def test_the_base_model_is_unchanged_by_its_variant(client, route_to, raw_key, fake_upstream):
    make_variant(route_to("anthropic"), defaults={"thinking_budget": 4096})
    response = call(client, raw_key, "chat", {"messages": HI}, model=MODEL_ID)
    assert response.status_code == 200, response.content
    assert "thinking" not in sent(fake_upstream)


def test_variant_is_listed_with_its_settings(client, route_to):
    make_variant(route_to("anthropic"), defaults={"thinking_budget": 4096}, overrides={"top_k": 3})
    listed = client.get(f"/v1/models/{VARIANT}").json()
    assert listed["variant_of"] == MODEL_ID
    assert listed["request_settings"] == {"defaults": {"thinking_budget": 4096}, "overrides": {"top_k": 3}}


# --- the catalog: admin validation and catalog files -------------------------------------------


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ({"thinking_budget": -1}, "thinking_budget must be"),
        ({"reasoning_effort": "extreme"}, "reasoning_effort must be one of"),
        ({"temprature": 1}, "unknown setting 'temprature'"),
        ({"thinking": False, "thinking_budget": 2048}, "thinking is false"),
        (["thinking"], "must be a JSON object"),
    ],
)
def test_bad_settings_are_refused_by_the_model(route_to, value, problem):
    variant = make_variant(route_to("anthropic"))
    variant.request_overrides = value
    with pytest.raises(ValidationError) as caught:
        variant.full_clean()
    assert problem in str(caught.value.message_dict["request_overrides"])


def test_a_variant_cannot_name_a_variant(route_to):
    variant = make_variant(route_to("anthropic"))
    second = AIModel(slug="again", name="x", vendor="x", variant_of=variant, input_per_1m=1, output_per_1m=1)
    with pytest.raises(ValidationError) as caught:
        second.full_clean()
    assert "variant_of" in caught.value.message_dict


def test_catalog_file_variants_import_export_and_errors(db):
    text = """
upstreams:
  - {name: up-a, kind: anthropic, base_url: "http://127.0.0.1:9/", api_key: k}
models:
  - id: base-x
    vendor: Anthropic
    price: {input_per_1m: 1, output_per_1m: 2}
    routes: [{upstream: up-a, upstream_model: claude-x}]
  - id: base-x-thinking
    vendor: Anthropic
    category: reasoning
    variant_of: base-x
    request_defaults: {thinking_budget: 8192}
    request_overrides: {reasoning_effort: high, include_thoughts: true}
    price: {input_per_1m: 1, output_per_1m: 2}
"""
    catalog_import(data=catalog_text_parse(text=text))
    variant = AIModel.objects.get(slug="base-x-thinking")
    assert variant.variant_of.slug == "base-x"
    assert (variant.request_defaults, variant.request_overrides) == (
        {"thinking_budget": 8192},
        {"reasoning_effort": "high", "include_thoughts": True},
    )
    exported = {m["id"]: m for m in catalog_export()["models"]}["base-x-thinking"]
    assert exported["variant_of"] == "base-x" and exported["request_defaults"] == {"thinking_budget": 8192}
    assert catalog_import(data=catalog_export()).models.updated == 0  # the export imports as it is

    bad = text.replace("{thinking_budget: 8192}", "{thinking_budget: lots}").replace(
        "variant_of: base-x", "variant_of: nope"
    )
    with pytest.raises(CatalogFileError) as caught:
        catalog_import(data=catalog_text_parse(text=bad))
    assert "models[1].request_defaults: thinking_budget must be a whole number of tokens" in str(caught.value)


@pytest.mark.django_db(transaction=True)
def test_variant_migration_turns_seeded_route_params_into_settings_and_reverses():
    from django.core.management import call_command

    from catalog.catalog_file import catalog_file_read
    from catalog.models import Route
    from tests.test_catalog_import import SEED_FILE

    catalog_import(data=catalog_file_read(path=SEED_FILE))  # an earlier transactional test may have flushed it

    call_command("migrate", "catalog", "0010", verbosity=0)
    old = Route.objects.get(model__slug="claude-sonnet-4-6-thinking")
    assert (old.upstream.name, old.upstream_model) == ("anthropic", "claude-sonnet-4-6")
    assert old.params == {"thinking": {"type": "enabled", "budget_tokens": 8192}, "temperature": 1}
    # An admin's own change to a seeded route is kept by the migration.
    changed = Route.objects.get(model__slug="gemini-2.5-flash-thinking")
    changed.params = {"generationConfig": {"thinkingConfig": {"thinkingBudget": 2048}}}
    changed.save()

    call_command("migrate", verbosity=0)

    variant = AIModel.objects.get(slug="claude-sonnet-4-6-thinking")
    assert (variant.variant_of.slug, variant.request_defaults) == ("claude-sonnet-4-6", {"thinking_budget": 8192})
    assert not Route.objects.filter(model=variant).exists()
    nothinking = AIModel.objects.get(slug="gemini-2.5-flash-nothinking")
    assert nothinking.request_overrides == {"thinking": False} and not nothinking.routes.exists()
    kept = AIModel.objects.get(slug="gemini-2.5-flash-thinking")
    assert kept.routes.get().params == {"generationConfig": {"thinkingConfig": {"thinkingBudget": 2048}}}
    # No base model in the seed: its own route stays, its params now said by its settings.
    sonnet37 = AIModel.objects.get(slug="claude-3-7-sonnet-20250219-thinking")
    assert (sonnet37.variant_of, sonnet37.request_defaults) == (None, {"thinking_budget": 8192})
    assert sonnet37.routes.get().params == {}

    call_command("migrate", "catalog", "0010", verbosity=0)
    assert Route.objects.get(model__slug="claude-3-7-sonnet-20250219-thinking").params == old.params
    call_command("migrate", verbosity=0)


def test_a_max_tokens_setting_counts_in_a_prepaid_calls_hold(client, route_to, user_factory, fake_upstream):
    """An override caps what the call may produce over the client's cap; a default stands in for none."""
    from tests.test_ledger import funded_key

    route = route_to("openai")
    make_variant(route, overrides={"max_tokens": 500}, input_per_1m=0, output_per_1m=1_000_000)
    _, raw_key = funded_key(user_factory, 300)  # 300 micro-USD: 300 output tokens at most

    refused = call(client, raw_key, "chat", {"messages": HI, "max_tokens": 100})
    assert refused.status_code == 402
    assert "up to 500 output tokens" in refused.json()["error"]["message"]

    AIModel.objects.filter(slug=VARIANT).update(request_overrides={}, request_defaults={"max_tokens": 200})
    catalog_cache_clear()
    assert call(client, raw_key, "chat", {"messages": HI}).status_code == 200
    assert sent(fake_upstream)["max_tokens"] == 200
    refused = call(client, raw_key, "chat", {"messages": HI, "max_tokens": 1000})  # the client's own cap
    assert "up to 1000 output tokens" in refused.json()["error"]["message"]


# --- through the real SDKs, streamed ----------------------------------------------------------


def test_anthropic_sdk_streams_the_thinking_a_variant_turned_on(live_api, raw_key, route_to, fake_upstream):
    import anthropic

    make_variant(route_to("anthropic"), defaults={"thinking_budget": 2048})
    fake_upstream.set(reasoning_text="First I weigh it.", reasoning_tokens=4, completion_tokens=10)
    client = anthropic.Anthropic(base_url=live_api, api_key=raw_key, max_retries=0, timeout=20)
    with client.messages.stream(model=VARIANT, max_tokens=4000, messages=HI) as stream:
        kinds = [event.delta.type for event in stream if event.type == "content_block_delta"]
        final = stream.get_final_message()
    assert "thinking_delta" in kinds and "signature_delta" in kinds
    thinking = final.content[0]
    assert (thinking.type, thinking.thinking) == ("thinking", "First I weigh it.")
    assert sent(fake_upstream)["thinking"] == {"type": "enabled", "budget_tokens": 2048}


def test_openai_sdk_streams_the_thoughts_of_a_gemini_thinking_variant(live_api, raw_key, route_to, fake_upstream):
    import openai

    make_variant(route_to("gemini"), defaults={"thinking": True, "include_thoughts": True})
    fake_upstream.set(reasoning_text="Counting the letters.", reasoning_tokens=5, completion_tokens=11)
    client = openai.OpenAI(base_url=live_api + "/v1", api_key=raw_key, max_retries=0, timeout=20)
    chunks = list(
        client.chat.completions.create(model=VARIANT, messages=HI, stream=True, stream_options={"include_usage": True})
    )
    reasoning = "".join(getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in chunks if c.choices)
    assert reasoning == "Counting the letters."
    assert chunks[-1].usage.completion_tokens_details.reasoning_tokens == 5
    assert sent(fake_upstream)["generationConfig"]["thinkingConfig"] == {"includeThoughts": True}
    record = wait_for_record()
    assert (record.model, record.reasoning_tokens, record.completion_tokens) == (VARIANT, 5, 11)


def test_xhigh_effort_is_high_for_an_upstream_that_takes_a_budget(client, route_to, raw_key, fake_upstream):
    route_to("anthropic")
    response = call(
        client, raw_key, "chat", {"messages": HI, "max_tokens": 30000, "reasoning_effort": "xhigh"}, model=MODEL_ID
    )
    assert response.status_code == 200, response.content
    assert sent(fake_upstream)["thinking"] == {"type": "enabled", "budget_tokens": 24576}


def test_a_thinking_variant_of_gpt_oss_sends_an_effort(client, route_to, raw_key, fake_upstream):
    """gpt-oss on an OpenAI-compatible server takes reasoning_effort, as OpenAI's o-series and gpt-5 do."""
    make_variant(route_to("openai"), defaults={"thinking_budget": 2048}, upstream_model="gpt-oss-120b")
    response = call(client, raw_key, "chat", {"messages": HI, "max_tokens": 300})
    assert response.status_code == 200, response.content
    body = sent(fake_upstream)
    assert (body["reasoning_effort"], body["max_tokens"]) == ("low", 300)  # the client's own cap, as it sent it


# --- edges found in review ---------------------------------------------------------------------


def _closed_port_url() -> str:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def test_a_fallback_is_held_to_the_clients_cap_not_to_the_first_models_setting(
    client, route_to, user_factory, fake_upstream
):
    """The first model's max_tokens setting is not the fallback's: a prepaid hold sized by it must not
    let a fallback that could cost more take the call."""
    from catalog.models import Route, Upstream
    from tests.test_ledger import funded_key

    route_to("openai")  # test-model: the fallback, 8 micro-USD per output token, up to 4096 tokens
    dead = Upstream.objects.create(name="dead", kind="openai", base_url=_closed_port_url(), connect_timeout=1)
    first = AIModel.objects.create(
        slug="first-model",
        name="First",
        vendor="OpenAI",
        category="chat",
        request_defaults={"max_tokens": 10},
        fallbacks=[MODEL_ID],
        input_per_1m=0,
        output_per_1m=100_000_000,  # 100 micro-USD per output token: its hold for 10 tokens covers test-model's
    )
    Route.objects.create(model=first, upstream=dead, upstream_model="first")
    catalog_cache_clear()
    _, raw_key = funded_key(user_factory, 5000)

    refused = call(client, raw_key, "chat", {"messages": HI}, model="first-model")
    assert refused.status_code == 503, refused.content  # test-model could cost 4096 x 8 micro-USD
    assert not fake_upstream.requests

    answered = call(client, raw_key, "chat", {"messages": HI, "max_tokens": 10}, model="first-model")
    assert answered.status_code == 200, answered.content
    assert (answered["X-Beluga-Model"], sent(fake_upstream)["max_tokens"]) == (MODEL_ID, 10)


def test_a_max_tokens_override_keeps_an_anthropic_clients_budget_below_it(client, route_to, raw_key, fake_upstream):
    make_variant(route_to("anthropic"), overrides={"max_tokens": 2000})
    body = {"messages": HI, "max_tokens": 8000, "thinking": {"type": "enabled", "budget_tokens": 4000}}
    response = call(client, raw_key, "anthropic", body)
    assert response.status_code == 200, response.content
    assert sent(fake_upstream)["thinking"] == {"type": "enabled", "budget_tokens": 1999}
    assert sent(fake_upstream)["max_tokens"] == 2000
    assert response["X-Beluga-Dropped-Params"] == "thinking.budget_tokens"


def test_a_gemini_generation_config_that_is_not_an_object_is_a_400(client, route_to, raw_key, fake_upstream):
    make_variant(route_to("gemini"), overrides={"thinking": False})
    response = call(client, raw_key, "gemini", {**GEMINI_HI, "generationConfig": "oops"})
    assert response.status_code == 400, response.content
    assert response.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert not fake_upstream.requests


@pytest.mark.parametrize(
    ("upstream_model", "lowest"), [("gpt-5", "minimal"), ("gpt-5.1", "none"), ("o3", "low"), ("gpt-oss-120b", "low")]
)
def test_thinking_off_is_an_openai_models_lowest_effort(
    client, route_to, raw_key, fake_upstream, upstream_model, lowest
):
    make_variant(route_to("openai"), overrides={"thinking": False}, upstream_model=upstream_model)
    response = call(client, raw_key, "chat", {"messages": HI, "reasoning_effort": "high"})
    assert response.status_code == 200, response.content
    assert sent(fake_upstream)["reasoning_effort"] == lowest


def test_include_thoughts_alone_and_an_alias_that_is_a_variant_are_refused(db):
    from catalog.request_settings import request_settings_errors

    assert request_settings_errors({"include_thoughts": False}) == [
        "include_thoughts goes with thinking, thinking_budget or reasoning_effort"
    ]
    text = """
models:
  - {id: base-y, vendor: Acme, price: {input_per_1m: 1, output_per_1m: 1}}
  - {id: both, vendor: Acme, alias_of: base-y, variant_of: base-y}
"""
    with pytest.raises(CatalogFileError) as caught:
        catalog_import(data=catalog_text_parse(text=text))
    assert "models[1].variant_of: a model is an alias or a variant, not both" in str(caught.value)
