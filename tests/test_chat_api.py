"""POST /v1/chat/completions end to end: the real openai SDK against the live server,
and what the upstream received (mapped model, upstream credential, never the customer's key)."""

from __future__ import annotations

import json

import openai
import pytest
import requests

from billing.models import UsageRecord
from tests.fake_upstream import DEFAULT_PROMPT_TOKENS, DEFAULT_REPLY, words
from tests.fixtures_gateway import (
    MODEL_ID,
    UPSTREAM_MODEL,
    RawStream,
    chat_body,
    post_chat,
    sse_chunks,
    sse_payloads,
)

# Registers the fixtures (fake upstream, chat route, keys, live clients) for this module.
pytest_plugins = ["tests.fixtures_gateway"]

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "City name"}},
            "required": ["city"],
        },
    },
}
# A 1x1 transparent PNG.
PNG_DATA_URL = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="
)


def assert_upstream_saw_no_customer_key(fake_upstream, chat_route, raw_key: str) -> None:
    """Every request the upstream got was authenticated with Beluga's credential, and no customer key leaked."""
    assert fake_upstream.chat_requests, "nothing reached the upstream"
    for received in fake_upstream.chat_requests:
        assert received.headers["authorization"] == f"Bearer {chat_route.credential}"
        text = received.raw()
        assert "bapi_" not in text
        assert raw_key not in text
        assert "x-api-key" not in received.headers
        assert "x-goog-api-key" not in received.headers


# --- non-streamed --------------------------------------------------------------


def test_sdk_chat_returns_the_upstream_reply_under_the_public_model_id(openai_client, fake_upstream, chat_route):
    completion = openai_client.chat.completions.create(
        model=MODEL_ID,
        messages=[
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "What is the capital of France?"},
        ],
        temperature=0.7,
        max_tokens=512,
    )

    assert completion.object == "chat.completion"
    assert completion.model == MODEL_ID
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == DEFAULT_REPLY
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.prompt_tokens == DEFAULT_PROMPT_TOKENS
    assert completion.usage.completion_tokens == len(words(DEFAULT_REPLY))


def test_upstream_receives_the_mapped_model_and_beluga_credential_only(
    openai_client, fake_upstream, chat_route, raw_key
):
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    openai_client.chat.completions.create(model=MODEL_ID, messages=messages, temperature=0.5, max_tokens=64)

    [received] = fake_upstream.chat_requests
    assert received.method == "POST"
    assert received.path == "/v1/chat/completions"
    assert received.json["model"] == UPSTREAM_MODEL
    assert received.json["messages"] == messages
    assert received.json["temperature"] == 0.5
    assert received.json["max_tokens"] == 64
    assert_upstream_saw_no_customer_key(fake_upstream, chat_route, raw_key)


def test_unknown_parameters_are_passed_through_to_the_upstream(openai_client, fake_upstream, chat_route):
    extra = {"reasoning_effort": "low", "vendor_option": {"nested": [1, 2, 3]}, "safe_prompt": True}
    openai_client.chat.completions.create(
        model=MODEL_ID, messages=[{"role": "user", "content": "hi"}], seed=42, user="user-7", extra_body=extra
    )

    [received] = fake_upstream.chat_requests
    for name, value in extra.items():
        assert received.json[name] == value
    assert received.json["seed"] == 42
    assert received.json["user"] == "user-7"


def test_response_carries_a_request_id(live_api, chat_route, raw_key, fake_upstream):
    response = requests.post(
        f"{live_api}/v1/chat/completions",
        json=chat_body(),
        headers={"Authorization": f"Bearer {raw_key}"},
        timeout=20,
    )

    assert response.status_code == 200
    assert response.headers["X-Request-Id"]
    assert response.headers["Content-Type"].startswith("application/json")


def test_api_v1_base_url_serves_the_same_chat_api(live_api, chat_route, raw_key, fake_upstream):
    with openai.OpenAI(base_url=live_api + "/api/v1", api_key=raw_key, max_retries=0, timeout=20) as client:
        completion = client.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": "hi"}])
        stream = client.chat.completions.create(
            model=MODEL_ID, messages=[{"role": "user", "content": "hi"}], stream=True
        )
        streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

    assert completion.choices[0].message.content == DEFAULT_REPLY
    assert streamed == DEFAULT_REPLY
    assert [r.json["model"] for r in fake_upstream.chat_requests] == [UPSTREAM_MODEL, UPSTREAM_MODEL]


# --- streamed --------------------------------------------------------------------


def test_sdk_stream_relays_the_reply_chunk_by_chunk(openai_client, fake_upstream, chat_route, raw_key):
    stream = openai_client.chat.completions.create(
        model=MODEL_ID, messages=[{"role": "user", "content": "Write a haiku about the sea."}], stream=True
    )
    chunks = list(stream)

    contents = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert contents == words(DEFAULT_REPLY)
    assert all(c.model == MODEL_ID for c in chunks)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"
    # The client did not ask for usage: no usage chunk, no usage field.
    assert all(c.choices for c in chunks)
    assert all(c.usage is None for c in chunks)
    [received] = fake_upstream.chat_requests
    assert received.json["stream"] is True
    assert received.json["model"] == UPSTREAM_MODEL
    # Beluga asks for usage anyway, to price the call.
    assert received.json["stream_options"]["include_usage"] is True
    assert_upstream_saw_no_customer_key(fake_upstream, chat_route, raw_key)


def test_stream_gives_the_usage_chunk_when_the_client_asks(openai_client, fake_upstream, chat_route):
    stream = openai_client.chat.completions.create(
        model=MODEL_ID,
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)

    last = chunks[-1]
    assert last.choices == []
    assert last.usage.prompt_tokens == DEFAULT_PROMPT_TOKENS
    assert last.usage.completion_tokens == len(words(DEFAULT_REPLY))
    assert last.model == MODEL_ID
    assert [c for c in chunks if not c.choices] == [last]


def test_stream_wire_format_is_sse_ending_with_done(live_api, chat_route, raw_key, fake_upstream):
    with requests.post(
        f"{live_api}/v1/chat/completions",
        json=chat_body(stream=True),
        headers={"Authorization": f"Bearer {raw_key}"},
        stream=True,
        timeout=20,
    ) as response:
        raw = b"".join(response.iter_content(chunk_size=None))

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/event-stream")
    assert response.headers["X-Request-Id"]
    payloads = sse_payloads(raw)
    assert payloads[-1] == b"[DONE]"
    assert raw.rstrip().endswith(b"data: [DONE]")
    assert b"upstream-test-model" not in raw
    chunks = sse_chunks(raw)
    assert {c["model"] for c in chunks} == {MODEL_ID}
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == DEFAULT_REPLY
    assert all("usage" not in c or c["usage"] is None for c in chunks)


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "closed-by-connection"])
def test_stream_chunks_reach_the_client_before_the_upstream_has_finished(
    live_api, chat_route, raw_key, fake_upstream, chunked
):
    # The upstream sends the role chunk and one word, then waits until the test has read them:
    # a gateway that buffered the stream would deliver nothing until the upstream finished.
    # Without chunked encoding the body ends only when the upstream closes the connection.
    fake_upstream.set(hold_after_events=2, unchunked_stream=not chunked)
    stream = RawStream(live_api, "/v1/chat/completions", chat_body(stream=True), {"Authorization": f"Bearer {raw_key}"})

    first_two = stream.read_events(2)
    upstream_done_early = fake_upstream.chat_requests[0].completed
    fake_upstream.release_stream()
    raw = stream.read_all()

    assert stream.status == 200
    assert len(first_two) == 2
    assert json.loads(first_two[1])["choices"][0]["delta"]["content"] == words(DEFAULT_REPLY)[0]
    assert upstream_done_early is False
    assert sse_payloads(raw)[-1] == b"[DONE]"
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in sse_chunks(raw)) == DEFAULT_REPLY


TRICKY_REPLY = (
    'Quote " and backslash \\ and "model":"upstream-test-model" and "usage":{"x":1} and '
    ',"usage":null and "error" and émoji 🐋 and 中文 and a tab\there'
)


def test_streams_reuse_the_upstream_connection(openai_client, fake_upstream, chat_route):
    # A stream left unread past [DONE] makes urllib3 drop the connection, and every
    # stream then paid for a new TCP connection upstream (docs/performance.md).
    for _ in range(3):
        stream = openai_client.chat.completions.create(
            model=MODEL_ID, messages=[{"role": "user", "content": "hi"}], stream=True
        )
        assert "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices) == DEFAULT_REPLY
    ports = {received.client_port for received in fake_upstream.chat_requests}
    assert len(fake_upstream.chat_requests) == 3
    assert len(ports) == 1, ports


@pytest.mark.parametrize("include_usage", [False, True], ids=["usage-not-asked", "usage-asked"])
def test_stream_text_that_looks_like_json_is_relayed_intact(client, chat_route, raw_key, fake_upstream, include_usage):
    fake_upstream.reply(TRICKY_REPLY)
    body = chat_body(stream=True)
    if include_usage:
        body["stream_options"] = {"include_usage": True}

    raw = b"".join(post_chat(client, raw_key, body).streaming_content)

    chunks = sse_chunks(raw)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == TRICKY_REPLY
    assert {c["model"] for c in chunks} == {MODEL_ID}
    assert sse_payloads(raw)[-1] == b"[DONE]"
    assert sum(1 for c in chunks if c.get("usage")) == (1 if include_usage else 0)


# --- tools and vision --------------------------------------------------------------


def test_tool_calls_are_passed_through(openai_client, fake_upstream, chat_route):
    fake_upstream.call_tool("get_weather", {"city": "Paris"})

    completion = openai_client.chat.completions.create(
        model=MODEL_ID,
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[WEATHER_TOOL],
        tool_choice="auto",
    )

    [call] = completion.choices[0].message.tool_calls
    assert call.type == "function"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    assert completion.choices[0].finish_reason == "tool_calls"
    [received] = fake_upstream.chat_requests
    assert received.json["tools"] == [WEATHER_TOOL]
    assert received.json["tool_choice"] == "auto"


def test_streamed_tool_calls_are_passed_through(openai_client, fake_upstream, chat_route):
    fake_upstream.call_tool("get_weather", {"city": "Paris"}, call_id="call_abc")

    stream = openai_client.chat.completions.create(
        model=MODEL_ID,
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        stream=True,
    )
    chunks = list(stream)

    deltas = [tc for c in chunks for tc in (c.choices[0].delta.tool_calls or [])]
    assert deltas[0].id == "call_abc"
    assert deltas[0].function.name == "get_weather"
    arguments = "".join(d.function.arguments or "" for d in deltas)
    assert json.loads(arguments) == {"city": "Paris"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert fake_upstream.chat_requests[0].json["tool_choice"] == {
        "type": "function",
        "function": {"name": "get_weather"},
    }


def test_tool_results_conversation_is_forwarded_unchanged(openai_client, fake_upstream, chat_route):
    messages = [
        {"role": "user", "content": "What is the weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c": 21}'},
    ]

    completion = openai_client.chat.completions.create(model=MODEL_ID, messages=messages, tools=[WEATHER_TOOL])

    assert completion.choices[0].message.content == DEFAULT_REPLY
    assert fake_upstream.chat_requests[0].json["messages"] == messages


def test_vision_content_parts_are_passed_through(openai_client, fake_upstream, chat_route):
    content = [
        {"type": "text", "text": "What is in these images?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/image.jpg"}},
        {"type": "image_url", "image_url": {"url": PNG_DATA_URL, "detail": "low"}},
    ]

    completion = openai_client.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": content}])

    assert completion.choices[0].message.content == DEFAULT_REPLY
    assert fake_upstream.chat_requests[0].json["messages"] == [{"role": "user", "content": content}]


# --- the hot path stays off the database -------------------------------------------


def _non_cache_queries(captured) -> list[str]:
    """SQL that is not the embedded cache's (the cache is the database when REDIS_URL is unset)."""
    return [q["sql"] for q in captured if "beluga_cache" not in q["sql"] and "SAVEPOINT" not in q["sql"].upper()]


@pytest.fixture
def postpaid_key(api_key_factory, user_factory) -> str:
    """A key of a postpaid (Enterprise) account: nothing is held or charged at call time."""
    return api_key_factory(user=user_factory(plan="enterprise", password=None))[1]


def test_warm_chat_call_only_inserts_the_usage_record(
    client, chat_route, postpaid_key, fake_upstream, django_assert_max_num_queries, settings
):
    raw_key = postpaid_key
    assert post_chat(client, raw_key, chat_body()).status_code == 200  # warms key cache and catalog
    redis = "redis" in settings.CACHES["default"]["BACKEND"].lower()

    # With Redis the key check and the rate limit cost no query at all; on the embedded
    # database cache they are cache-table statements, counted separately below.
    with django_assert_max_num_queries(1 if redis else 20) as captured:
        response = post_chat(client, raw_key, chat_body())

    assert response.status_code == 200
    queries = _non_cache_queries(captured.captured_queries)
    assert len(queries) == 1, queries
    assert "billing_usagerecord" in queries[0] and queries[0].upper().startswith("INSERT")
    assert UsageRecord.objects.count() == 2


def test_warm_streamed_chat_call_only_inserts_the_usage_record(
    client, chat_route, postpaid_key, fake_upstream, django_assert_max_num_queries, settings
):
    raw_key = postpaid_key
    warm = post_chat(client, raw_key, chat_body(stream=True))
    b"".join(warm.streaming_content)
    redis = "redis" in settings.CACHES["default"]["BACKEND"].lower()

    with django_assert_max_num_queries(1 if redis else 20) as captured:
        response = post_chat(client, raw_key, chat_body(stream=True))
        raw = b"".join(response.streaming_content)

    assert sse_payloads(raw)[-1] == b"[DONE]"
    queries = _non_cache_queries(captured.captured_queries)
    assert len(queries) == 1, queries
    assert "billing_usagerecord" in queries[0]


def test_warm_prepaid_call_writes_only_the_ledger_statements(
    client, chat_route, raw_key, fake_upstream, django_assert_max_num_queries, settings
):
    assert post_chat(client, raw_key, chat_body()).status_code == 200
    redis = "redis" in settings.CACHES["default"]["BACKEND"].lower()

    # Eight statements, plus a SAVEPOINT and its RELEASE for each of the two transactions
    # (the test runs inside a transaction of its own).
    with django_assert_max_num_queries(8 + 4 if redis else 30) as captured:
        response = post_chat(client, raw_key, chat_body())

    assert response.status_code == 200
    queries = [q.split()[0].upper() + " " + _table_of(q) for q in _non_cache_queries(captured.captured_queries)]
    # The hold: one guarded UPDATE of the balance row, the reservation and its ledger entry.
    # The settle, in one transaction: the usage record, the reservation closed, the balance and its entry.
    assert queries == [
        "UPDATE billing_balance",
        "INSERT billing_reservation",
        "INSERT billing_ledgerentry",
        "INSERT billing_usagerecord",
        "UPDATE billing_reservation",
        "UPDATE billing_balance",
        "INSERT billing_ledgerentry",
        "UPDATE billing_keyspend",  # the key's budget count, where one is kept (none here)
    ]


def _table_of(sql: str) -> str:
    for table in (
        "billing_balance",
        "billing_reservation",
        "billing_ledgerentry",
        "billing_usagerecord",
        "billing_keyspend",
    ):
        if table in sql:
            return table
    return "?"


def test_cold_chat_call_reads_key_and_catalog_once(
    client, chat_route, raw_key, fake_upstream, django_assert_max_num_queries
):
    with django_assert_max_num_queries(40) as captured:
        response = post_chat(client, raw_key, chat_body())

    assert response.status_code == 200
    queries = _non_cache_queries(captured.captured_queries)
    # key lookup, last_used_at update, catalog snapshot (routes, models), then the hold and the
    # settle (see test_warm_prepaid_call_writes_only_the_ledger_statements)
    assert len(queries) <= 5 + 8, queries


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/api/v1/chat/completions"])
def test_in_process_chat_answers_on_both_prefixes(client, chat_route, raw_key, fake_upstream, path):
    response = post_chat(client, raw_key, chat_body(), path=path)

    assert response.status_code == 200
    assert json.loads(response.content)["model"] == MODEL_ID
