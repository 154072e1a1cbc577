"""Routing and resilience (gateway/routing, pipeline._call_upstreams): several upstreams per model,
failover and retries that never duplicate, key pools, breakers, fallbacks, the retry budget.

Three fake OpenAI upstreams on 127.0.0.1 (tests/fake_upstream.py) stand for three accounts or
regions of one provider; each is told how to fail, and counts what reached it.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter

import pytest

from billing.models import UsageRecord
from catalog.models import AIModel, Route, Upstream, UpstreamCredential
from catalog.selectors import catalog_cache_clear
from tests.fake_upstream import FakeUpstream
from tests.fixtures_gateway import (
    INPUT_PER_1M,
    MODEL_ID,
    OUTPUT_PER_1M,
    UPSTREAM_MODEL,
    chat_body,
    error_of,
    expected_cost,
    post_chat,
    sse_payloads,
)
from tests.test_chat_billing import open_stream

pytestmark = pytest.mark.django_db(transaction=False)


@pytest.fixture(scope="module")
def _three_fakes():
    fakes = [FakeUpstream().start() for _ in range(3)]
    yield fakes
    for fake in fakes:
        fake.stop()


@pytest.fixture
def fakes(_three_fakes):
    for fake in _three_fakes:
        fake.reset()
    yield _three_fakes
    for fake in _three_fakes:
        fake.reset()


def _closed_port_url() -> str:
    """A base URL where nothing listens: connections are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def make_model(slug: str = MODEL_ID, *, fallbacks=(), routing: str = "priority", **prices) -> AIModel:
    return AIModel.objects.create(
        slug=slug,
        name=slug,
        vendor="OpenAI",
        category="chat",
        supports_stream=True,
        context_window=128_000,
        max_output_tokens=4096,
        input_per_1m=prices.get("input_per_1m", INPUT_PER_1M),
        output_per_1m=prices.get("output_per_1m", OUTPUT_PER_1M),
        fallbacks=list(fallbacks),
        routing=routing,
    )


def add_upstream(model: AIModel, name: str, base_url: str, *, priority: int = 0, weight: int = 1, **fields):
    upstream, _ = Upstream.objects.get_or_create(
        name=name,
        defaults={
            "kind": "openai",
            "base_url": base_url,
            "api_key": fields.pop("api_key", f"key-of-{name}"),
            "connect_timeout": 1.0,
            "read_timeout": fields.pop("read_timeout", 2.0),
            **fields,
        },
    )
    Route.objects.create(
        model=model, upstream=upstream, upstream_model=UPSTREAM_MODEL, priority=priority, weight=weight
    )
    catalog_cache_clear()
    return upstream


@pytest.fixture
def tune(settings):
    """tune(NAME=value, ...): BELUGA settings for this test only."""

    def apply(**values):
        settings.BELUGA = {**settings.BELUGA, **values}

    return apply


@pytest.fixture
def key(api_key_factory, user_factory):
    row, raw = api_key_factory(user=user_factory(plan="enterprise", password=None))
    return raw


def call(client, key, **body):
    return post_chat(client, key, chat_body(**body))


def attempts_of(record: UsageRecord) -> list[tuple[str, int | None, str]]:
    return [(a["upstream"], a["status"], a["outcome"]) for a in record.attempts]


# --- failover ---------------------------------------------------------------------------


def test_a_down_upstream_fails_over_with_no_client_visible_error(client, key, fakes):
    model = make_model()
    add_upstream(model, "down", _closed_port_url(), priority=0)
    add_upstream(model, "b", fakes[1].base_url, priority=1)

    response = call(client, key)

    assert response.status_code == 200, response.content
    assert response["X-Beluga-Upstream"] == "b"
    assert response["X-Beluga-Model"] == MODEL_ID
    assert json.loads(response.content)["model"] == MODEL_ID
    record = UsageRecord.objects.get()
    assert record.status_code == 200 and record.upstream == "b"
    assert attempts_of(record) == [("down", None, "connect_error"), ("b", 200, "ok")]
    assert record.cost_micro_usd == expected_cost(record.prompt_tokens, record.completion_tokens) > 0
    assert len(fakes[1].chat_requests) == 1


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_moves_the_call_to_the_next_upstream_and_only_the_answer_is_billed(client, key, fakes, status):
    model = make_model()
    add_upstream(model, "a", fakes[0].base_url, priority=0)
    add_upstream(model, "b", fakes[1].base_url, priority=1)
    fakes[0].fail_with(status=status)

    response = call(client, key)

    assert response.status_code == 200
    record = UsageRecord.objects.get()
    assert attempts_of(record) == [("a", status, f"http_{status}"), ("b", 200, "ok")]
    assert record.cost_micro_usd == int(response["X-Request-Cost-Micro-Usd"]) > 0
    assert (len(fakes[0].chat_requests), len(fakes[1].chat_requests)) == (1, 1)


def test_429_with_retry_after_goes_to_the_next_upstream(client, key, fakes):
    model = make_model()
    add_upstream(model, "a", fakes[0].base_url, priority=0)
    add_upstream(model, "b", fakes[1].base_url, priority=1)
    fakes[0].set(status=429, retry_after="20")

    response = call(client, key)

    assert response.status_code == 200
    assert attempts_of(UsageRecord.objects.get()) == [("a", 429, "http_429"), ("b", 200, "ok")]


def test_429_on_the_last_upstream_is_returned_with_its_retry_after(client, key, fakes):
    model = make_model()
    add_upstream(model, "a", fakes[0].base_url)
    fakes[0].set(status=429, retry_after="7")

    response = call(client, key)

    assert response.status_code == 429
    assert response["Retry-After"] == "7"
    assert error_of(response)["code"] == "upstream_rate_limited"


def test_a_route_whose_upstream_does_not_serve_the_model_moves_on_without_a_breaker_verdict(client, key, fakes):
    model = make_model()
    add_upstream(model, "a", fakes[0].base_url, priority=0)
    add_upstream(model, "b", fakes[1].base_url, priority=1)
    fakes[0].fail_with(status=404, message="The model `x` does not exist or you do not have access to it.")

    response = call(client, key)

    assert response.status_code == 200
    record = UsageRecord.objects.get()
    assert attempts_of(record) == [("a", 404, "http_404"), ("b", 200, "ok")]
    assert record.cost_micro_usd == int(response["X-Request-Cost-Micro-Usd"]) > 0
    states = {u["name"]: u["state"] for u in client.get("/v1/health").json()["upstreams"]}
    assert states["a"] == "healthy"


def test_a_route_whose_only_upstream_does_not_serve_the_model_is_a_502(client, key, fakes):
    model = make_model()
    add_upstream(model, "a", fakes[0].base_url, priority=0)
    fakes[0].fail_with(status=404, message="The model `x` does not exist.")

    response = call(client, key)

    assert response.status_code == 502
    assert error_of(response)["code"] == "upstream_model_not_found"
    assert attempts_of(UsageRecord.objects.get()) == [("a", 404, "http_404")]


@pytest.mark.parametrize("status", [400, 422])
def test_the_requests_own_faults_are_returned_as_they_are_never_retried(client, key, fakes, status):
    model = make_model()
    add_upstream(model, "a", fakes[0].base_url, priority=0)
    add_upstream(model, "b", fakes[1].base_url, priority=1)
    fakes[0].fail_with(status=status, message="Invalid value for 'messages'.")

    response = call(client, key)

    assert response.status_code == 400
    assert "Invalid value for 'messages'" in error_of(response)["message"]
    assert fakes[1].chat_requests == []
    assert attempts_of(UsageRecord.objects.get()) == [("a", status, f"http_{status}")]


def test_timeout_before_headers_moves_on(client, key, fakes):
    model = make_model()
    add_upstream(model, "slow", fakes[0].base_url, priority=0, first_byte_timeout=0.3)
    add_upstream(model, "b", fakes[1].base_url, priority=1)
    fakes[0].set(delay_before_headers=3.0)

    started = time.monotonic()
    response = call(client, key)

    assert response.status_code == 200
    assert time.monotonic() - started < 2.5  # the first byte timeout, not the idle one (2 s)
    assert attempts_of(UsageRecord.objects.get()) == [("slow", None, "timeout"), ("b", 200, "ok")]


@pytest.mark.django_db(transaction=True)
def test_a_stream_that_stalls_midway_is_not_retried_and_is_billed_on_what_was_delivered(client, key, fakes):
    model = make_model()
    add_upstream(model, "a", fakes[0].base_url, priority=0, read_timeout=0.5)
    add_upstream(model, "b", fakes[1].base_url, priority=1)
    fakes[0].set(hold_after_events=3)

    response = open_stream(key, chat_body(stream=True))
    payloads = sse_payloads(b"".join(response.streaming_content))
    response.close()

    assert payloads[-1] == b"[DONE]"
    assert b"error" in payloads[-2]
    assert fakes[1].chat_requests == []  # bytes had reached the client: never retried
    record = UsageRecord.objects.get()
    assert record.status_code == 502 and record.usage_estimated
    assert record.completion_tokens > 0 and record.cost_micro_usd > 0
    assert attempts_of(record) == [("a", 502, "upstream_stream_broken")]


@pytest.mark.django_db(transaction=True)
def test_a_stream_reset_midway_is_not_retried(client, key, fakes):
    model = make_model()
    add_upstream(model, "a", fakes[0].base_url, priority=0)
    add_upstream(model, "b", fakes[1].base_url, priority=1)
    fakes[0].set(reset_after_events=2)

    response = open_stream(key, chat_body(stream=True))
    b"".join(response.streaming_content)
    response.close()

    assert fakes[1].chat_requests == []
    assert UsageRecord.objects.get().status_code == 502


# --- key pools ------------------------------------------------------------------------------


def test_a_refused_credential_leaves_the_pool_and_the_call_goes_on_with_the_next(client, key, fakes):
    model = make_model()
    upstream = add_upstream(model, "a", fakes[0].base_url, api_key="bad-key")
    UpstreamCredential.objects.create(upstream=upstream, label="second", api_key="good-key")
    catalog_cache_clear()
    fakes[0].set(refused_keys=frozenset({"bad-key"}))

    first = call(client, key)
    second = call(client, key)
    third = call(client, key)

    assert [r.status_code for r in (first, second, third)] == [200, 200, 200]
    used = [r.headers["authorization"] for r in fakes[0].chat_requests]
    # The bad key was tried once, at most: then only the good one (the rotation no longer reaches it).
    assert used.count("Bearer bad-key") == 1
    assert used[-2:] == ["Bearer good-key", "Bearer good-key"]
    upstream.refresh_from_db()
    assert upstream.api_key_failed_at is not None
    records = list(UsageRecord.objects.order_by("id"))
    assert [a["credential"] for a in records[0].attempts] in (["primary", "second"], ["second"])
    assert all("bad-key" not in json.dumps(r.attempts) for r in records)


def test_the_pool_rotates_round_robin(client, key, fakes):
    model = make_model()
    upstream = add_upstream(model, "a", fakes[0].base_url, api_key="k0")
    UpstreamCredential.objects.create(upstream=upstream, label="one", api_key="k1")
    UpstreamCredential.objects.create(upstream=upstream, label="two", api_key="k2")
    catalog_cache_clear()

    for _ in range(6):
        assert call(client, key).status_code == 200

    used = Counter(r.headers["authorization"] for r in fakes[0].chat_requests)
    assert used == {"Bearer k0": 2, "Bearer k1": 2, "Bearer k2": 2}


def test_a_401_with_no_credential_left_is_not_moved_to_another_upstream(client, key, fakes):
    model = make_model()
    add_upstream(model, "a", fakes[0].base_url, api_key="bad-key", priority=0)
    add_upstream(model, "b", fakes[1].base_url, priority=1)
    fakes[0].set(refused_keys=frozenset({"bad-key"}))

    response = call(client, key)

    assert response.status_code == 502
    assert "credentials" in error_of(response)["message"]
    assert fakes[1].chat_requests == []


# --- order: priority and weight -------------------------------------------------------------


def test_weights_share_the_traffic_and_priorities_are_kept(client, key, fakes):
    model = make_model()
    add_upstream(model, "a", fakes[0].base_url, priority=0, weight=3)
    add_upstream(model, "b", fakes[1].base_url, priority=0, weight=1)
    add_upstream(model, "c", fakes[2].base_url, priority=1, weight=100)

    for _ in range(400):
        assert call(client, key).status_code == 200

    a, b, c = (len(f.chat_requests) for f in fakes)
    assert c == 0  # the lower priority is only for when the first ones cannot answer
    assert a + b == 400
    # 3:1 expected (300 / 100); binomial sd ~ 8.7: 6 sd of room.
    assert 250 <= a <= 350, (a, b)


def test_lowest_latency_strategy_prefers_the_faster_upstream(client, key, fakes):
    model = make_model(routing="latency")
    add_upstream(model, "slow", fakes[0].base_url, priority=0)
    add_upstream(model, "fast", fakes[1].base_url, priority=0)
    fakes[0].set(delay_before_headers=0.15)

    for _ in range(20):
        assert call(client, key).status_code == 200

    # Each is measured once (unmeasured first), then the faster one takes the rest.
    assert len(fakes[0].chat_requests) <= 2
    assert len(fakes[1].chat_requests) >= 18


# --- breakers -------------------------------------------------------------------------------


def test_a_5xx_burst_opens_the_breaker_then_a_probe_closes_it(client, key, fakes, tune):
    tune(BREAKER_MIN_CALLS=3, BREAKER_FAILURE_RATIO=0.5, BREAKER_COOLDOWN_SECONDS=1.0, BREAKER_REFRESH_SECONDS=0.0)
    model = make_model()
    add_upstream(model, "a", fakes[0].base_url, priority=0)
    add_upstream(model, "b", fakes[1].base_url, priority=1)
    fakes[0].fail_with(status=503)

    for _ in range(3):
        assert call(client, key).status_code == 200  # each failed over to b
    assert len(fakes[0].chat_requests) == 3
    # Open: a is not even tried.
    for _ in range(5):
        assert call(client, key).status_code == 200
    assert len(fakes[0].chat_requests) == 3
    assert attempts_of(UsageRecord.objects.order_by("-id").first()) == [("b", 200, "ok")]

    fakes[0].reset()  # a recovers
    time.sleep(1.1)  # the cool-down ends: half-open
    assert call(client, key).status_code == 200
    assert len(fakes[0].chat_requests) == 1  # the probe
    for _ in range(4):
        call(client, key)
    assert len(fakes[0].chat_requests) == 5  # closed again: a takes the traffic


def test_a_failed_probe_opens_the_breaker_again(client, key, fakes, tune):
    # The cool-down must outlast the three calls after the probe, also on a loaded machine.
    tune(BREAKER_MIN_CALLS=2, BREAKER_COOLDOWN_SECONDS=2.0, BREAKER_REFRESH_SECONDS=0.0)
    model = make_model()
    add_upstream(model, "a", fakes[0].base_url, priority=0)
    add_upstream(model, "b", fakes[1].base_url, priority=1)
    fakes[0].fail_with(status=500)
    for _ in range(2):
        call(client, key)
    time.sleep(2.1)
    call(client, key)  # the probe fails
    assert len(fakes[0].chat_requests) == 3
    for _ in range(3):
        call(client, key)
    assert len(fakes[0].chat_requests) == 3


def test_every_upstream_open_answers_503_with_retry_after(client, key, fakes, tune):
    tune(BREAKER_MIN_CALLS=2, BREAKER_COOLDOWN_SECONDS=30.0, BREAKER_REFRESH_SECONDS=0.0)
    model = make_model()
    add_upstream(model, "a", fakes[0].base_url)
    fakes[0].fail_with(status=502)
    for _ in range(2):
        assert call(client, key).status_code == 502

    response = call(client, key)

    assert response.status_code == 503
    assert response["Retry-After"] == "30"
    error = error_of(response)
    assert error["type"] == "service_unavailable_error" and error["code"] == "upstream_unavailable"
    assert len(fakes[0].chat_requests) == 2


# --- fallbacks ------------------------------------------------------------------------------


def test_a_fallback_model_answers_only_when_the_models_own_upstreams_cannot(client, key, fakes):
    backup = make_model("test-backup", input_per_1m=1_000_000, output_per_1m=4_000_000)
    add_upstream(backup, "b", fakes[1].base_url)
    model = make_model(fallbacks=["test-backup"])
    add_upstream(model, "a", fakes[0].base_url)

    healthy = call(client, key)
    assert healthy["X-Beluga-Model"] == MODEL_ID and fakes[1].chat_requests == []

    fakes[0].fail_with(status=503)
    response = call(client, key)

    assert response.status_code == 200
    assert response["X-Beluga-Model"] == "test-backup"
    assert response["X-Beluga-Upstream"] == "b"
    assert json.loads(response.content)["model"] == "test-backup"
    record = UsageRecord.objects.order_by("-id").first()
    assert record.model == "test-backup"
    assert [(a["model"], a["status"]) for a in record.attempts] == [(MODEL_ID, 503), ("test-backup", 200)]
    # Billed at the model that answered.
    expected = -(-(record.prompt_tokens * 1_000_000 + record.completion_tokens * 4_000_000) // 1_000_000)
    assert record.cost_micro_usd == expected


# --- limits on retries ----------------------------------------------------------------------


def test_the_retry_budget_bounds_the_extra_load_of_an_outage(client, key, fakes, tune):
    # Breakers out of the way (they would stop the retries themselves): only the budget acts.
    tune(BREAKER_MIN_CALLS=10**6, MAX_ATTEMPTS=3, RETRY_BUDGET_RATIO=0.2, RETRY_BUDGET_MIN=2)
    model = make_model()
    for i, fake in enumerate(fakes):
        add_upstream(model, f"u{i}", fake.base_url, priority=i)
        fake.fail_with(status=503)

    for _ in range(50):
        assert call(client, key).status_code == 503

    reached = sum(len(f.chat_requests) for f in fakes)
    # Without the budget: 150 (three attempts each). With it: 50 calls + at most 0.2 x 50 + 2 retries.
    assert 50 < reached <= 62, reached


def test_max_attempts_caps_one_call(client, key, fakes, tune):
    tune(BREAKER_MIN_CALLS=10**6, MAX_ATTEMPTS=2)
    model = make_model()
    for i, fake in enumerate(fakes):
        add_upstream(model, f"u{i}", fake.base_url, priority=i)
        fake.fail_with(status=500)

    assert call(client, key).status_code == 502
    assert [len(f.chat_requests) for f in fakes] == [1, 1, 0]
    assert len(UsageRecord.objects.get().attempts) == 2


@pytest.mark.django_db(transaction=True)
def test_an_upstream_at_its_concurrency_cap_is_skipped(client, key, fakes):
    model = make_model()
    add_upstream(model, "a", fakes[0].base_url, priority=0, max_concurrency=1)
    add_upstream(model, "b", fakes[1].base_url, priority=1)
    fakes[0].set(hold_after_events=1)

    held = open_stream(key, chat_body(stream=True))  # takes a's only slot until it ends
    chunks = iter(held.streaming_content)
    next(chunks)
    second = call(client, key)
    assert second.status_code == 200 and second["X-Beluga-Upstream"] == "b"
    fakes[0].release_stream()
    b"".join(chunks)
    held.close()
    third = call(client, key)
    assert third["X-Beluga-Upstream"] == "a"  # the slot came back


def test_generation_lists_every_attempt(client, key, fakes):
    model = make_model()
    add_upstream(model, "a", fakes[0].base_url, priority=0)
    add_upstream(model, "b", fakes[1].base_url, priority=1)
    fakes[0].fail_with(status=502)
    response = call(client, key)

    detail = client.get(f"/v1/generation?id={response['X-Request-Id']}", headers={"Authorization": f"Bearer {key}"})

    assert detail.status_code == 200
    attempts = detail.json()["data"]["attempts"]
    assert [(a["upstream"], a["status"]) for a in attempts] == [("a", 502), ("b", 200)]
    assert all(set(a) == {"upstream", "model", "credential", "status", "outcome", "latency_ms"} for a in attempts)


@pytest.mark.django_db(transaction=True)
def test_threads_calling_at_once_each_record_once(client, key, fakes):
    """The live path under concurrency: no attempt or record lost or doubled."""
    model = make_model()
    add_upstream(model, "a", fakes[0].base_url, priority=0)
    add_upstream(model, "b", fakes[1].base_url, priority=1)
    fakes[0].fail_with(status=503, times=5)
    results = []

    def run():
        results.append(call(client, key).status_code)

    threads = [threading.Thread(target=run) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * 10
    assert UsageRecord.objects.count() == 10


# --- health -----------------------------------------------------------------------------


def test_health_reports_each_upstreams_state_without_credentials(client, key, fakes, tune):
    tune(BREAKER_MIN_CALLS=2, BREAKER_COOLDOWN_SECONDS=30.0, BREAKER_REFRESH_SECONDS=0.0)
    model = make_model()
    add_upstream(model, "a", fakes[0].base_url, priority=0, api_key="secret-of-a")
    add_upstream(model, "b", fakes[1].base_url, priority=1, api_key="secret-of-b")
    fakes[0].fail_with(status=503)
    for _ in range(2):
        call(client, key)

    response = client.get("/v1/health")

    body = response.json()
    assert response.status_code == 200 and body["status"] == "degraded"
    states = {u["name"]: u for u in body["upstreams"]}
    # 503s are the model's: its breaker on `a` opened, `a` itself answered and stays closed.
    assert states["a"]["state"] == "degraded" and states["a"]["breaker"] == "closed"
    assert states["a"]["models_open"] == [MODEL_ID]
    assert states["b"]["state"] == "healthy"
    assert "secret-of" not in response.content.decode()


def test_an_unreachable_upstream_opens_its_own_breaker(client, key, fakes, tune):
    tune(BREAKER_MIN_CALLS=2, BREAKER_COOLDOWN_SECONDS=30.0, BREAKER_REFRESH_SECONDS=0.0)
    model = make_model()
    other = make_model("test-other")
    down = _closed_port_url()
    add_upstream(model, "down", down, priority=0)
    add_upstream(other, "down", down, priority=0)
    add_upstream(model, "b", fakes[1].base_url, priority=1)
    add_upstream(other, "b", fakes[1].base_url, priority=1)
    for _ in range(2):
        assert call(client, key).status_code == 200

    states = {u["name"]: u for u in client.get("/v1/health").json()["upstreams"]}
    assert states["down"]["state"] == "open" and states["down"]["window"] == {"calls": 2, "failures": 2}
    # The whole upstream is skipped, for its other models too.
    response = post_chat(client, key, chat_body(model="test-other"))
    assert response.status_code == 200
    assert attempts_of(UsageRecord.objects.order_by("-id").first()) == [("b", 200, "ok")]


def test_one_broken_model_does_not_open_its_upstream_for_the_others(client, key, fakes, tune):
    tune(BREAKER_MIN_CALLS=2, BREAKER_COOLDOWN_SECONDS=30.0, BREAKER_REFRESH_SECONDS=0.0)
    model = make_model()
    other = make_model("test-other")
    add_upstream(model, "a", fakes[0].base_url, priority=0)
    add_upstream(other, "a", fakes[0].base_url, priority=0)
    fakes[0].fail_with(status=500, times=2)
    for _ in range(2):
        assert call(client, key).status_code == 502

    assert call(client, key).status_code == 503  # test-model's breaker on `a` is open
    assert post_chat(client, key, chat_body(model="test-other")).status_code == 200  # `a` itself is not


def test_an_active_probe_closes_the_breaker_of_a_recovered_upstream(client, key, fakes, tune):
    from gateway.routing.probes import upstreams_probe

    tune(BREAKER_MIN_CALLS=2, BREAKER_COOLDOWN_SECONDS=300.0, BREAKER_REFRESH_SECONDS=0.0)
    model = make_model()
    upstream = add_upstream(model, "a", fakes[0].base_url, priority=0, health_probe=True)
    add_upstream(model, "b", fakes[1].base_url, priority=1)
    fakes[0].fail_with(status=503)
    for _ in range(2):
        call(client, key)
    assert call(client, key)["X-Beluga-Upstream"] == "b"  # open for five minutes

    fakes[0].reset()  # recovered
    assert upstreams_probe() == 1
    probe = fakes[0].requests[-1]
    assert (probe.method, probe.path) == ("GET", "/v1/models")
    assert probe.headers["authorization"] == f"Bearer {upstream.api_key}"

    assert call(client, key)["X-Beluga-Upstream"] == "a"  # closed by the probe, long before the cool-down


@pytest.mark.django_db(transaction=True)
def test_a_stream_past_its_upstreams_total_timeout_is_cut_cleanly(key, fakes):
    model = make_model()
    add_upstream(model, "a", fakes[0].base_url, total_timeout=0.5)
    fakes[0].set(chunk_delay=0.1, reply_text=" ".join(["word"] * 30))  # about 3 s of chunks, none idle

    response = open_stream(key, chat_body(stream=True))
    payloads = sse_payloads(b"".join(response.streaming_content))
    response.close()

    assert payloads[-1] == b"[DONE]"
    assert b"total timeout" in payloads[-2]
    record = UsageRecord.objects.get()
    assert (record.status_code, record.error_type) == (502, "upstream_total_timeout")
    assert 0 < record.completion_tokens < 30


def test_a_held_call_never_falls_back_to_a_model_dearer_than_its_hold(client, api_key_factory, user_factory, fakes):
    raw = api_key_factory(user=user_factory(plan="pro", password=None))[1]  # prepaid: the call is held
    dear = make_model("test-dear", input_per_1m=INPUT_PER_1M * 10, output_per_1m=OUTPUT_PER_1M * 10)
    add_upstream(dear, "b", fakes[1].base_url)
    cheap = make_model("test-cheap", input_per_1m=1, output_per_1m=1)
    add_upstream(cheap, "c", fakes[2].base_url)
    model = make_model(fallbacks=["test-dear", "test-cheap"])
    add_upstream(model, "a", fakes[0].base_url)
    fakes[0].fail_with(status=503)

    response = post_chat(client, raw, chat_body())

    assert response.status_code == 200
    assert response["X-Beluga-Model"] == "test-cheap"  # the dear one could cost more than was held
    assert fakes[1].chat_requests == []


@pytest.mark.django_db(transaction=True)
def test_a_stream_that_stalls_before_its_first_event_moves_on(key, fakes):
    """Headers came, then nothing: no byte reached the client yet, so another upstream takes the call."""
    model = make_model()
    add_upstream(model, "a", fakes[0].base_url, priority=0, first_byte_timeout=0.3)
    add_upstream(model, "b", fakes[1].base_url, priority=1)
    fakes[0].set(hold_after_events=0)

    response = open_stream(key, chat_body(stream=True))
    payloads = sse_payloads(b"".join(response.streaming_content))
    response.close()
    fakes[0].release_stream()

    assert payloads[-1] == b"[DONE]" and not any(b'"error"' in p for p in payloads)
    assert response["X-Beluga-Upstream"] == "b"
    record = UsageRecord.objects.get()
    assert record.status_code == 200
    assert attempts_of(record) == [("a", None, "timeout_first_event"), ("b", 200, "ok")]


def test_an_attempt_refused_by_beluga_itself_gives_its_slot_back(client, key, fakes):
    from gateway.routing.slots import slots_taken

    model = make_model()
    upstream = add_upstream(model, "jobs", fakes[0].base_url, kind="predictions", max_concurrency=1)

    for _ in range(2):
        response = call(client, key)
        assert response.status_code == 503  # a job API cannot serve chat
        assert "cannot call for chat" in error_of(response)["message"]
    assert slots_taken(upstream.id) == 0


# --- aliases --------------------------------------------------------------------------------


def test_an_alias_is_its_models_calls_under_another_name(client, key, fakes):
    model = make_model()
    add_upstream(model, "a", fakes[0].base_url)
    AIModel.objects.create(slug="test-latest", name="Test latest", vendor="OpenAI", category="chat", alias_of=model)
    catalog_cache_clear()

    response = post_chat(client, key, chat_body(model="test-latest"))

    assert response.status_code == 200
    assert json.loads(response.content)["model"] == MODEL_ID  # answers name the model that answered
    assert response["X-Beluga-Model"] == MODEL_ID
    assert fakes[0].chat_requests[-1].json["model"] == UPSTREAM_MODEL
    record = UsageRecord.objects.get()
    assert record.model == MODEL_ID
    assert record.cost_micro_usd == expected_cost(record.prompt_tokens, record.completion_tokens)

    listed = {m["id"]: m for m in client.get("/v1/models").json()["data"]}
    assert listed["test-latest"]["alias_of"] == MODEL_ID and listed[MODEL_ID]["alias_of"] is None
    assert listed["test-latest"]["pricing"] == listed[MODEL_ID]["pricing"]
    assert client.get("/v1/models/test-latest").json()["alias_of"] == MODEL_ID


def test_an_alias_of_a_disabled_model_is_gone_with_it(client, key, fakes):
    model = make_model()
    add_upstream(model, "a", fakes[0].base_url)
    AIModel.objects.create(slug="test-latest", name="Test latest", vendor="OpenAI", category="chat", alias_of=model)
    AIModel.objects.filter(pk=model.pk).update(enabled=False)
    catalog_cache_clear()

    assert post_chat(client, key, chat_body(model="test-latest")).status_code == 404
    assert client.get("/v1/models/test-latest").status_code == 404


def test_a_catalog_file_declares_an_alias():
    from catalog.importer import catalog_export, catalog_import

    data = {
        "upstreams": [{"name": "a", "kind": "openai", "base_url": "http://127.0.0.1:9/v1"}],
        "models": [
            {
                "id": "base-model",
                "vendor": "OpenAI",
                "category": "chat",
                "price": {"input_per_1m": 1, "output_per_1m": 2},
                "routes": [{"upstream": "a"}],
            },
            {"id": "base-latest", "alias_of": "base-model"},
        ],
    }
    catalog_import(data=data)
    alias = AIModel.objects.get(slug="base-latest")
    assert alias.alias_of.slug == "base-model" and alias.vendor == "OpenAI"
    assert catalog_import(data=data).models.unchanged == 2
    exported = {m["id"]: m for m in catalog_export()["models"]}
    assert exported["base-latest"]["alias_of"] == "base-model"

    from catalog.catalog_file import CatalogFileError

    bad = {"models": [{"id": "x-latest", "alias_of": "nowhere"}]}
    with pytest.raises(CatalogFileError, match=r"models\[0\]\.alias_of: no model 'nowhere'"):
        catalog_import(data=bad)


def test_a_403_to_a_pooled_credential_takes_it_out_too(client, key, fakes):
    model = make_model()
    upstream = add_upstream(model, "a", fakes[0].base_url, api_key="denied-key")
    UpstreamCredential.objects.create(upstream=upstream, label="second", api_key="good-key")
    catalog_cache_clear()
    fakes[0].set(refused_keys=frozenset({"denied-key"}), refused_status=403)

    responses = [call(client, key) for _ in range(3)]

    assert [r.status_code for r in responses] == [200, 200, 200]
    used = [r.headers["authorization"] for r in fakes[0].chat_requests]
    assert used.count("Bearer denied-key") == 1
    upstream.refresh_from_db()
    assert upstream.api_key_failed_at is not None
