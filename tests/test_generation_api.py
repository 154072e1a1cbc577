"""`GET /v1/generation?id=<request id>`: the stats of one of the account's calls, OpenRouter's shape."""

from __future__ import annotations

import json
import time

import pytest
import requests

from billing.models import UsageRecord
from tests.fixtures_gateway import MODEL_ID, UPSTREAM_MODEL, RawStream, chat_body, error_of, expected_cost, post_chat

pytestmark = pytest.mark.usefixtures("ledger_invariants")


def get_generation(client, raw_key: str | None, request_id: str | None, *, path: str = "/v1/generation"):
    headers = {"Authorization": f"Bearer {raw_key}"} if raw_key else {}
    params = {"id": request_id} if request_id is not None else {}
    return client.get(path, params, headers=headers)


def test_own_call_stats_match_its_usage_record(client, chat_route, api_key, fake_upstream):
    _, raw_key = api_key
    fake_upstream.reply("Paris.", prompt_tokens=1234, completion_tokens=567)
    fake_upstream.set(cached_tokens=200, reasoning_tokens=17)
    call = post_chat(client, raw_key, chat_body())
    assert call.status_code == 200
    request_id = call["X-Request-Id"]

    response = get_generation(client, raw_key, request_id)

    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/json"
    assert "no-store" in response["Cache-Control"]
    body = json.loads(response.content)
    assert set(body) == {"data"}
    data = body["data"]
    record = UsageRecord.objects.get(request_id=request_id)
    assert data["id"] == request_id
    assert data["model"] == MODEL_ID
    assert data["upstream"] == data["provider_name"] == chat_route.upstream.name
    assert data["upstream_model"] == UPSTREAM_MODEL
    assert (data["protocol"], data["endpoint"], data["upstream_kind"]) == ("openai.chat", "chat/completions", "openai")
    assert data["streamed"] is False
    assert data["cancelled"] is False
    assert data["status_code"] == 200
    assert data["error_type"] is None
    assert data["finish_reason"] == record.finish_reason == "stop"
    assert (data["tokens_prompt"], data["tokens_completion"]) == (1234, 567)
    assert (data["native_tokens_cached"], data["native_tokens_reasoning"]) == (200, 17)
    assert data["usage_estimated"] is False
    assert data["cost_micro_usd"] == record.cost_micro_usd == int(call["X-Request-Cost-Micro-Usd"])
    assert data["total_cost"] == data["usage"] == pytest.approx(record.cost_micro_usd / 1_000_000)
    assert data["prices_per_1m_micro_usd"]["input"] == record.input_price_per_1m
    assert data["latency_ms"] == data["latency"] == record.latency_ms
    assert data["upstream_latency_ms"] == data["generation_time"] == record.upstream_latency_ms
    assert data["created_at"].endswith("Z")


def test_streamed_call_cut_by_its_client_reads_as_cancelled(live_api, chat_route, raw_key, fake_upstream):
    fake_upstream.reply(" ".join(f"word{i}" for i in range(30)))
    fake_upstream.set(hold_after_events=3, chunk_delay=0.02)
    stream = RawStream(live_api, "/v1/chat/completions", chat_body(stream=True), {"Authorization": f"Bearer {raw_key}"})
    request_id = stream.headers["x-request-id"]
    stream.read_events(3)
    stream.hang_up()
    fake_upstream.release_stream()  # the upstream goes on; the gateway's next writes fail

    data = _wait_for_generation(live_api, raw_key, request_id)

    assert data["streamed"] is True
    assert data["cancelled"] is True
    record = UsageRecord.objects.get(request_id=request_id)
    assert data["cost_micro_usd"] == record.cost_micro_usd
    assert data["tokens_completion"] == record.completion_tokens


def _wait_for_generation(base_url: str, raw_key: str, request_id: str) -> dict:
    """A hung-up stream is recorded by the server's thread a moment later: 404 until then."""
    deadline = time.monotonic() + 10
    while True:
        response = requests.get(
            f"{base_url}/v1/generation", params={"id": request_id}, headers={"x-api-key": raw_key}, timeout=10
        )
        if response.status_code == 200:
            return response.json()["data"]
        assert response.status_code == 404, response.text
        assert time.monotonic() < deadline, "the stream was never recorded"
        time.sleep(0.05)


def test_another_accounts_call_is_not_found(client, chat_route, api_key_factory, user_factory, fake_upstream):
    _, owner_key = api_key_factory(user=user_factory(plan="pro", password=None))
    _, other_key = api_key_factory(user=user_factory(plan="pro", password=None))
    request_id = post_chat(client, owner_key, chat_body())["X-Request-Id"]

    response = get_generation(client, other_key, request_id)

    assert response.status_code == 404
    error = error_of(response)
    assert error["code"] == "not_found"
    assert error["param"] == "id"
    assert request_id in error["message"]


def test_any_key_of_the_account_reads_its_calls(client, chat_route, api_key_factory, user_factory, fake_upstream):
    user = user_factory(plan="pro", password=None)
    _, first_key = api_key_factory(user=user)
    _, second_key = api_key_factory(user=user, name="second")
    request_id = post_chat(client, first_key, chat_body())["X-Request-Id"]

    response = get_generation(client, second_key, request_id, path="/api/v1/generation")

    assert response.status_code == 200
    assert json.loads(response.content)["data"]["id"] == request_id


def test_unknown_id_is_not_found(client, raw_key):
    response = get_generation(client, raw_key, "req_does_not_exist")

    assert response.status_code == 404
    assert error_of(response)["type"] == "invalid_request_error"


@pytest.mark.parametrize("request_id", [None, "", "   "], ids=["absent", "empty", "blank"])
def test_missing_id_is_a_400_naming_the_parameter(client, raw_key, request_id):
    response = get_generation(client, raw_key, request_id)

    assert response.status_code == 400
    error = error_of(response)
    assert error["param"] == "id"
    assert error["type"] == "invalid_request_error"


def test_without_a_valid_key_is_a_401(client, db):
    for raw_key in (None, "bapi_not-a-real-key"):
        response = get_generation(client, raw_key, "req_anything")

        assert response.status_code == 401
        assert error_of(response)["code"] == "invalid_api_key"


@pytest.mark.parametrize("method", ["post", "put", "delete"])
def test_other_methods_are_a_405_with_allow(client, raw_key, method):
    response = getattr(client, method)("/v1/generation?id=x", headers={"Authorization": f"Bearer {raw_key}"})

    assert response.status_code == 405
    assert response["Allow"] == "GET, HEAD"
    assert error_of(response)["code"] == "method_not_allowed"


def test_a_reused_client_request_id_reads_the_latest_call(client, chat_route, raw_key, fake_upstream):
    fake_upstream.reply("one", prompt_tokens=10, completion_tokens=1)
    post_chat(client, raw_key, chat_body(), headers={"X-Request-Id": "my-trace-0001"})
    fake_upstream.reply("two", prompt_tokens=20, completion_tokens=2)
    post_chat(client, raw_key, chat_body(), headers={"X-Request-Id": "my-trace-0001"})

    data = json.loads(get_generation(client, raw_key, "my-trace-0001").content)["data"]

    assert data["tokens_prompt"] == 20
    assert data["cost_micro_usd"] == expected_cost(20, 2)


def test_lookup_is_one_query_after_the_key_is_cached(
    client, chat_route, raw_key, fake_upstream, django_assert_num_queries
):
    request_id = post_chat(client, raw_key, chat_body())["X-Request-Id"]

    # The key lookup is cached by the call above (on SQLite the cache is a table: its reads count,
    # the key's entry and its rate-limit window for the headers).
    from django.conf import settings

    cache_reads = 0 if settings.REDIS_URL else 2
    with django_assert_num_queries(1 + cache_reads):
        assert get_generation(client, raw_key, request_id).status_code == 200
