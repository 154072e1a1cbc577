"""Each upstream call writes one usage record, priced exactly from the catalog; calls that never
reach the upstream write none; a stream is recorded when it ends, also when the client hangs up."""

from __future__ import annotations

import json

import pytest
from django.core.signals import request_finished
from django.db import close_old_connections
from django.test import RequestFactory

from billing.models import UsageRecord
from gateway.pipeline import estimate_tokens
from tests.fake_upstream import DEFAULT_REPLY, words
from tests.fixtures_gateway import (
    MODEL_ID,
    UPSTREAM_MODEL,
    RawStream,
    chat_body,
    expected_cost,
    post_chat,
    sse_chunks,
    wait_for_record,
)

# Registers the fixtures (fake upstream, chat route, keys, live clients) for this module.
pytest_plugins = ["tests.fixtures_gateway"]

LONG_REPLY = " ".join(f"word{i}" for i in range(40))


def only_record() -> UsageRecord:
    [record] = UsageRecord.objects.all()
    return record


# --- successful calls ----------------------------------------------------------------


def test_non_streamed_call_is_recorded_and_priced_exactly(client, chat_route, api_key, fake_upstream):
    key_row, raw_key = api_key
    fake_upstream.reply("Paris is the capital of France.", prompt_tokens=1234, completion_tokens=567)

    response = post_chat(client, raw_key, chat_body())

    assert response.status_code == 200
    record = only_record()
    assert record.request_id == response["X-Request-Id"]
    assert record.user_id == key_row.user_id
    assert record.api_key_id == key_row.id
    assert record.model == MODEL_ID
    assert record.upstream == chat_route.upstream.name
    assert record.upstream_model == UPSTREAM_MODEL
    assert record.endpoint == "chat/completions"
    assert record.stream is False
    assert record.status_code == 200
    assert record.prompt_tokens == 1234
    assert record.completion_tokens == 567
    assert record.usage_estimated is False
    assert record.client_disconnected is False
    # 1234 x 2 + 567 x 8 micro-USD
    assert record.cost_micro_usd == 2468 + 4536 == expected_cost(1234, 567)
    assert response["X-Request-Cost-Micro-Usd"] == str(record.cost_micro_usd)
    assert record.latency_ms >= record.upstream_latency_ms >= 0


def test_cost_rounds_the_sum_up_once_per_call(client, chat_route, raw_key, fake_upstream):
    # 0.15 and 0.60 USD per 1M tokens: 17 x 0.15 + 9 x 0.60 = 2.55 + 5.40 = 7.95 micro-USD.
    # Rounded once: 8. Rounding each part up would give 3 + 6 = 9.
    from catalog.selectors import catalog_cache_clear

    chat_route.model.input_per_1m = 150_000
    chat_route.model.output_per_1m = 600_000
    chat_route.model.save()
    catalog_cache_clear()
    fake_upstream.reply(DEFAULT_REPLY, prompt_tokens=17, completion_tokens=9)

    response = post_chat(client, raw_key, chat_body())

    assert only_record().cost_micro_usd == 8
    assert response["X-Request-Cost-Micro-Usd"] == "8"


def test_free_model_costs_nothing(client, chat_route, raw_key, fake_upstream):
    from catalog.selectors import catalog_cache_clear

    chat_route.model.input_per_1m = 0
    chat_route.model.output_per_1m = 0
    chat_route.model.save()
    catalog_cache_clear()

    response = post_chat(client, raw_key, chat_body())

    assert only_record().cost_micro_usd == 0
    assert response["X-Request-Cost-Micro-Usd"] == "0"


def test_upstream_latency_is_measured(client, chat_route, raw_key, fake_upstream):
    fake_upstream.set(delay_before_headers=0.2)

    post_chat(client, raw_key, chat_body())

    record = only_record()
    assert record.upstream_latency_ms >= 190
    assert record.latency_ms >= record.upstream_latency_ms


def test_client_request_id_becomes_the_record_request_id(client, chat_route, raw_key, fake_upstream):
    response = post_chat(client, raw_key, chat_body(), headers={"X-Request-Id": "my-trace-0001"})

    assert response["X-Request-Id"] == "my-trace-0001"
    assert only_record().request_id == "my-trace-0001"


def test_each_call_writes_its_own_record(client, chat_route, raw_key, fake_upstream):
    ids = [post_chat(client, raw_key, chat_body())["X-Request-Id"] for _ in range(3)]

    assert len(set(ids)) == 3
    assert sorted(UsageRecord.objects.values_list("request_id", flat=True)) == sorted(ids)


@pytest.mark.parametrize("include_usage", [False, True], ids=["usage-not-asked", "usage-asked"])
def test_streamed_call_is_recorded_from_upstream_usage(client, chat_route, api_key, fake_upstream, include_usage):
    key_row, raw_key = api_key
    fake_upstream.reply(DEFAULT_REPLY, prompt_tokens=321, completion_tokens=45)
    body = chat_body(stream=True)
    if include_usage:
        body["stream_options"] = {"include_usage": True}

    response = post_chat(client, raw_key, body)
    raw = b"".join(response.streaming_content)

    assert raw.endswith(b"data: [DONE]\n\n")
    record = only_record()
    assert record.request_id == response["X-Request-Id"]
    assert record.api_key_id == key_row.id
    assert record.stream is True
    assert record.status_code == 200
    assert (record.prompt_tokens, record.completion_tokens) == (321, 45)
    assert record.usage_estimated is False
    assert record.client_disconnected is False
    assert record.cost_micro_usd == expected_cost(321, 45)
    usage_chunks = [c for c in sse_chunks(raw) if c.get("usage")]
    assert len(usage_chunks) == (1 if include_usage else 0)


def test_stream_from_upstream_without_usage_is_estimated(client, chat_route, raw_key, fake_upstream):
    fake_upstream.set(omit_usage=True)

    response = post_chat(client, raw_key, chat_body(stream=True))
    b"".join(response.streaming_content)

    record = only_record()
    assert record.status_code == 200
    assert record.usage_estimated is True
    assert record.completion_tokens == estimate_tokens(len(DEFAULT_REPLY))
    assert record.prompt_tokens > 0
    assert record.cost_micro_usd == expected_cost(record.prompt_tokens, record.completion_tokens)


def test_answer_without_usage_is_estimated_from_its_text(client, chat_route, raw_key, fake_upstream):
    fake_upstream.set(omit_usage=True)

    response = post_chat(client, raw_key, chat_body())

    assert response.status_code == 200
    record = only_record()
    assert record.usage_estimated is True
    assert record.completion_tokens == estimate_tokens(len(DEFAULT_REPLY))
    assert record.prompt_tokens > 0
    assert response["X-Request-Cost-Micro-Usd"] == str(record.cost_micro_usd)
    assert record.cost_micro_usd == expected_cost(record.prompt_tokens, record.completion_tokens)


# --- failed calls ------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("upstream_status", [500, 503, 429, 400])
def test_failed_upstream_call_is_recorded_at_no_cost(
    client, chat_route, api_key, fake_upstream, upstream_status, stream
):
    key_row, raw_key = api_key
    fake_upstream.fail_with(upstream_status)

    response = post_chat(client, raw_key, chat_body(stream=stream))

    assert response.status_code >= 400
    record = only_record()
    assert record.request_id == response["X-Request-Id"]
    assert record.api_key_id == key_row.id
    assert record.model == MODEL_ID
    assert record.upstream == chat_route.upstream.name
    assert record.status_code == response.status_code
    assert record.error_type
    assert record.prompt_tokens == record.completion_tokens == 0
    assert record.cost_micro_usd == 0


def test_upstream_timeout_is_recorded_at_no_cost(client, chat_route, raw_key, fake_upstream):
    chat_route.update_upstream(read_timeout=0.3)
    fake_upstream.set(delay_before_headers=10)

    response = post_chat(client, raw_key, chat_body())

    record = only_record()
    assert record.status_code == response.status_code
    assert record.cost_micro_usd == 0


def test_unreadable_upstream_answer_is_recorded_at_no_cost(client, chat_route, raw_key, fake_upstream):
    fake_upstream.set(invalid_json=True)

    response = post_chat(client, raw_key, chat_body())

    record = only_record()
    assert record.status_code == response.status_code
    assert record.cost_micro_usd == 0


def test_stream_broken_by_upstream_is_recorded_once(client, chat_route, raw_key, fake_upstream):
    fake_upstream.set(reset_after_events=3)

    response = post_chat(client, raw_key, chat_body(stream=True))
    b"".join(response.streaming_content)

    record = only_record()
    assert record.status_code in (502, 503)
    assert record.usage_estimated is True
    assert record.completion_tokens == estimate_tokens(len("".join(words(DEFAULT_REPLY)[:2])))
    assert record.cost_micro_usd == expected_cost(record.prompt_tokens, record.completion_tokens)


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        pytest.param({}, chat_body(), id="no-key"),
        pytest.param({"Authorization": "Bearer bapi_notarealkeyatallnotarealkeyatall"}, chat_body(), id="bad-key"),
        pytest.param(None, chat_body(temperature=5), id="invalid-parameter"),
        pytest.param(None, chat_body(model="no-such-model"), id="unknown-model"),
        pytest.param(None, "{broken", id="invalid-json"),
    ],
)
def test_calls_that_never_reach_the_upstream_write_no_record(client, chat_route, raw_key, fake_upstream, headers, body):
    if headers is None:
        response = post_chat(client, raw_key, body)
    else:
        response = post_chat(client, None, body, headers=headers)

    assert response.status_code >= 400
    assert fake_upstream.requests == []
    assert UsageRecord.objects.count() == 0


def test_rate_limited_call_writes_no_record(client, chat_route, api_key_factory, user_factory, fake_upstream):
    user = user_factory(plan="free", password=None)
    user.chat_rpm_override = 1
    user.save()
    _, raw_key = api_key_factory(user=user)

    first = post_chat(client, raw_key, chat_body())
    second = post_chat(client, raw_key, chat_body())
    if second.status_code == 200:  # a rate-limit window ended between the two calls
        second = post_chat(client, raw_key, chat_body())

    assert first.status_code == 200
    assert second.status_code == 429
    assert UsageRecord.objects.count() == len(fake_upstream.chat_requests)
    assert UsageRecord.objects.filter(status_code=429).count() == 0


# --- the client hangs up mid-stream ----------------------------------------------------


def open_stream(raw_key: str, body: dict):
    """The gateway's streaming response as a WSGI server holds it: unread, not yet closed.

    Built through the middleware with a RequestFactory rather than the test client,
    whose wrapper assumes a response is read to the end.
    """
    from gateway.middleware import RequestIdMiddleware
    from gateway.views import chat_completions

    request = RequestFactory().post(
        "/v1/chat/completions",
        data=json.dumps(body),
        content_type="application/json",
        headers={"Authorization": f"Bearer {raw_key}"},
    )
    return RequestIdMiddleware(chat_completions)(request)


def hang_up(response) -> None:
    """Close a half-read response, as a WSGI server does when its client has gone.

    Closing fires request_finished; keep it from closing the test's own database
    connection, which is inside the test transaction (Django's test client does the same).
    """
    request_finished.disconnect(close_old_connections)
    try:
        response.close()
    finally:
        request_finished.connect(close_old_connections)


def test_stream_cut_by_client_is_billed_for_delivered_tokens(chat_route, raw_key, fake_upstream):
    fake_upstream.reply(LONG_REPLY, prompt_tokens=50)

    response = open_stream(raw_key, chat_body(stream=True))
    chunks = iter(response.streaming_content)
    delivered = [next(chunks) for _ in range(3)]  # role chunk, then two words
    hang_up(response)

    record = only_record()
    assert record.request_id == response["X-Request-Id"]
    assert record.client_disconnected is True
    assert record.usage_estimated is True
    assert record.stream is True
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in sse_chunks(b"".join(delivered)))
    assert text == "".join(words(LONG_REPLY)[:2])
    assert record.completion_tokens == estimate_tokens(len(text))
    assert record.prompt_tokens > 0
    assert record.cost_micro_usd == expected_cost(record.prompt_tokens, record.completion_tokens)
    assert record.cost_micro_usd > 0


def test_stream_closed_before_its_first_chunk_is_still_recorded(chat_route, raw_key, fake_upstream):
    """The upstream was called and answered 200; the server closed the response unread
    (its client was already gone). That call still gets its record."""
    response = open_stream(raw_key, chat_body(stream=True))
    hang_up(response)

    assert len(fake_upstream.chat_requests) == 1
    record = only_record()
    assert record.client_disconnected is True
    assert record.completion_tokens == 0


def test_stream_cut_by_client_over_the_network_is_recorded(live_api, chat_route, raw_key, fake_upstream):
    """A real socket hung up mid-stream against the live server."""
    fake_upstream.reply(LONG_REPLY, prompt_tokens=50)
    fake_upstream.set(hold_after_events=3, chunk_delay=0.02)
    stream = RawStream(live_api, "/v1/chat/completions", chat_body(stream=True), {"Authorization": f"Bearer {raw_key}"})

    first = stream.read_events(3)
    stream.hang_up()
    fake_upstream.release_stream()  # the upstream goes on; the gateway's next writes fail
    record = wait_for_record()

    assert stream.status == 200
    assert json.loads(first[2])["choices"][0]["delta"]["content"] == words(LONG_REPLY)[1]
    assert record.request_id == stream.headers["x-request-id"]
    assert record.client_disconnected is True
    assert record.usage_estimated is True
    assert record.stream is True
    full = len(words(LONG_REPLY))
    assert 2 <= record.completion_tokens < estimate_tokens(len(LONG_REPLY))
    assert record.completion_tokens < full
    assert record.cost_micro_usd == expected_cost(record.prompt_tokens, record.completion_tokens)
    assert record.cost_micro_usd > 0
    assert UsageRecord.objects.count() == 1
