"""`Idempotency-Key` on the POST model endpoints: the same key from the same account replays the
first call's answer and bills once; a duplicate while the first runs is a 409, another request
with the key a 422; failures a retry should re-run release the key; streams are not replayed.

The SDK and the concurrency tests run against the live server with real threads and a slow fake
upstream; the rest go through Django's test client.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from datetime import timedelta

import openai
import pytest
import requests
from django.test import RequestFactory
from django.utils import timezone

from accounts.services import user_set_limits
from billing.models import UsageRecord
from catalog.models import AIModel, Category, Route, Upstream
from catalog.selectors import catalog_cache_clear
from gateway.idempotency import (
    ABANDONED_AFTER_SECONDS,
    REPLAYED_HEADERS,
    idempotency_claim,
    idempotency_keys_purge,
    idempotent,
)
from gateway.models import IdempotencyKey
from gateway.tasks import idempotency_keys_purge_task
from tests.fixtures_gateway import CHAT_PATH, MODEL_ID, chat_body, error_of, expected_cost, post_chat, wait_for_record

pytest_plugins = ["tests.fixtures_gateway"]

PROMPT = "Say hello."
EMBED_ID = "test-embed"
RATE_LIMIT_HEADERS = ("X-RateLimit-Limit-Requests", "X-RateLimit-Remaining-Requests", "X-RateLimit-Reset-Requests")


def new_key() -> str:
    return "idem-" + secrets.token_hex(8)


def records() -> list[UsageRecord]:
    return list(UsageRecord.objects.order_by("id"))


@pytest.fixture
def account(user_factory):
    # Enterprise is postpaid: no balance needed for the calls below.
    return user_factory(plan="enterprise", password=None)


@pytest.fixture
def key(api_key_factory, account) -> str:
    return api_key_factory(user=account)[1]


@pytest.fixture
def sdk(live_api, chat_route, key):
    with openai.OpenAI(base_url=live_api + "/v1", api_key=key, max_retries=0, timeout=20) as client:
        yield client


def idem_post(client, key: str | None, body, *, idem: str | None, path: str = CHAT_PATH, headers: dict | None = None):
    all_headers = {**(headers or {})}
    if idem is not None:
        all_headers["Idempotency-Key"] = idem
    return post_chat(client, key, body, path=path, headers=all_headers)


def assert_replay_of(replay, first) -> None:
    assert replay.status_code == first.status_code
    assert replay.content == first.content
    assert replay["Content-Type"] == first["Content-Type"]
    assert replay["Idempotent-Replayed"] == "true"
    assert replay["X-Beluga-Original-Request-Id"] == first["X-Request-Id"]
    assert replay["X-Request-Id"] != first["X-Request-Id"]
    # Not counted again: the window as the first call left it (or a newer one, if a minute ended).
    limit, remaining, _reset = RATE_LIMIT_HEADERS
    assert replay[limit] == first[limit]
    assert int(replay[remaining]) >= int(first[remaining])
    assert [replay.get(name) for name in REPLAYED_HEADERS] == [first.get(name) for name in REPLAYED_HEADERS]


# --- replay, with the real SDK --------------------------------------------------------------


def test_a_retried_call_gets_the_first_answer_and_is_billed_once(sdk, fake_upstream):
    fake_upstream.reply("Paris.", prompt_tokens=100, completion_tokens=20)
    idem = {"Idempotency-Key": new_key()}
    messages = [{"role": "user", "content": PROMPT}]

    first = sdk.chat.completions.with_raw_response.create(model=MODEL_ID, messages=messages, extra_headers=idem)
    again = sdk.chat.completions.with_raw_response.create(model=MODEL_ID, messages=messages, extra_headers=idem)

    assert (first.status_code, again.status_code) == (200, 200)
    assert again.content == first.content
    assert again.parse().choices[0].message.content == "Paris."
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["X-Beluga-Original-Request-Id"] == first.headers["X-Request-Id"]
    assert again.headers["X-Request-Id"] != first.headers["X-Request-Id"]
    assert again.headers["X-Request-Cost-Micro-Usd"] == first.headers["X-Request-Cost-Micro-Usd"]
    # The replay is not counted: its headers show the window as the first call left it (or a newer one).
    remaining = "X-RateLimit-Remaining-Requests"
    assert again.headers["X-RateLimit-Limit-Requests"] == first.headers["X-RateLimit-Limit-Requests"]
    assert int(again.headers[remaining]) >= int(first.headers[remaining])
    [record] = records()
    assert record.request_id == first.headers["X-Request-Id"]
    assert record.cost_micro_usd == expected_cost(100, 20)
    assert len(fake_upstream.chat_requests) == 1


def test_the_same_key_with_another_body_is_422(sdk, fake_upstream):
    idem = {"Idempotency-Key": new_key()}
    sdk.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": PROMPT}], extra_headers=idem)

    with pytest.raises(openai.UnprocessableEntityError) as refused:
        sdk.chat.completions.create(
            model=MODEL_ID, messages=[{"role": "user", "content": "Other."}], extra_headers=idem
        )

    assert refused.value.status_code == 422
    assert refused.value.code == "idempotency_key_reused"
    assert refused.value.type == "invalid_request_error"
    assert len(records()) == 1
    assert len(fake_upstream.chat_requests) == 1


def test_a_streamed_call_is_not_replayed(sdk, fake_upstream):
    idem = {"Idempotency-Key": new_key()}
    messages = [{"role": "user", "content": PROMPT}]
    chunks = list(sdk.chat.completions.create(model=MODEL_ID, messages=messages, stream=True, extra_headers=idem))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

    with pytest.raises(openai.ConflictError) as refused:
        sdk.chat.completions.create(model=MODEL_ID, messages=messages, stream=True, extra_headers=idem)

    assert refused.value.code == "idempotency_stream_replay"
    [record] = records()
    assert record.stream is True
    assert record.request_id in refused.value.message
    assert refused.value.response.headers["X-Beluga-Original-Request-Id"] == record.request_id
    assert len(fake_upstream.chat_requests) == 1


# --- concurrency: real threads against the live server -----------------------------------------


def _slow_upstream(chat_route, fake_upstream, seconds: float = 1.5) -> None:
    chat_route.update_upstream(read_timeout=10.0)
    fake_upstream.set(delay_before_headers=seconds)


def _post_live(live_api: str, key: str, idem: str, body: dict) -> requests.Response:
    headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": idem}
    return requests.post(live_api + CHAT_PATH, json=body, headers=headers, timeout=20)


def _wait_for_upstream_call(fake_upstream, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not fake_upstream.chat_requests:
        assert time.monotonic() < deadline, "the first call never reached the upstream"
        time.sleep(0.02)


def test_a_duplicate_while_the_first_is_running_gets_409(live_api, chat_route, key, fake_upstream):
    _slow_upstream(chat_route, fake_upstream)
    idem, body = new_key(), chat_body()
    answers = {}
    first = threading.Thread(target=lambda: answers.update(first=_post_live(live_api, key, idem, body)))
    first.start()
    _wait_for_upstream_call(fake_upstream)  # the first call holds the key and waits on the upstream

    duplicate = _post_live(live_api, key, idem, body)
    first.join(timeout=20)

    assert duplicate.status_code == 409
    error = duplicate.json()["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "idempotency_in_progress")
    assert duplicate.headers["X-Beluga-Original-Request-Id"] == answers["first"].headers["X-Request-Id"]
    assert answers["first"].status_code == 200
    replay = _post_live(live_api, key, idem, body)
    assert replay.status_code == 200 and replay.content == answers["first"].content
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert len(records()) == 1
    assert len(fake_upstream.chat_requests) == 1


def test_simultaneous_calls_with_one_key_run_once(live_api, chat_route, key, fake_upstream):
    _slow_upstream(chat_route, fake_upstream, seconds=1.0)
    idem, body, callers = new_key(), chat_body(), 4
    start = threading.Barrier(callers)
    statuses = []

    def call() -> None:
        start.wait()
        statuses.append(_post_live(live_api, key, idem, body).status_code)

    threads = [threading.Thread(target=call) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(statuses) == [200] + [409] * (callers - 1)
    assert len(fake_upstream.chat_requests) == 1
    wait_for_record()  # written once the answer was sent
    assert len(records()) == 1


# --- what is stored, what releases the key ------------------------------------------------------


def test_a_validation_error_is_stored_and_replayed(client, chat_route, key, fake_upstream):
    idem = new_key()
    body = {"model": MODEL_ID}  # no messages

    first = idem_post(client, key, body, idem=idem)
    again = idem_post(client, key, body, idem=idem)

    assert first.status_code == 400 and error_of(first)["param"] == "messages"
    assert_replay_of(again, first)
    assert records() == [] and fake_upstream.requests == []


def test_an_upstream_failure_releases_the_key_and_the_retry_bills_once(client, chat_route, key, fake_upstream):
    fake_upstream.fail_with(503, times=1)
    idem = new_key()

    failed = idem_post(client, key, chat_body(), idem=idem)
    retried = idem_post(client, key, chat_body(), idem=idem)
    replayed = idem_post(client, key, chat_body(), idem=idem)

    assert failed.status_code == 503
    assert retried.status_code == 200 and not retried.has_header("Idempotent-Replayed")
    assert_replay_of(replayed, retried)
    failure, success = records()
    assert (failure.status_code, failure.cost_micro_usd) == (503, 0)
    assert success.status_code == 200 and success.cost_micro_usd > 0
    assert len(fake_upstream.chat_requests) == 2


def test_a_rate_limited_call_releases_the_key(client, chat_route, account, key, fake_upstream):
    user_set_limits(user=account, chat_rpm=0)
    idem = new_key()

    limited = idem_post(client, key, chat_body(), idem=idem)
    assert limited.status_code == 429 and error_of(limited)["code"] == "rate_limit_exceeded"
    assert not IdempotencyKey.objects.exists()

    user_set_limits(user=account, chat_rpm=100)
    retried = idem_post(client, key, chat_body(), idem=idem)

    assert retried.status_code == 200 and not retried.has_header("Idempotent-Replayed")
    assert len(records()) == 1


# --- keys: validity, scope, lifetime ---------------------------------------------------------------


@pytest.mark.parametrize("idem", ["k" * 256, "", "clé-accentuée", "tab\there", "new\x7fline"])
def test_an_invalid_key_is_a_400(client, chat_route, key, fake_upstream, idem):
    response = idem_post(client, key, chat_body(), idem=idem)

    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_idempotency_key"
    assert fake_upstream.requests == [] and not IdempotencyKey.objects.exists()


def test_a_key_of_255_printable_characters_is_accepted(client, chat_route, key, fake_upstream):
    idem = ("Az09 -_.:/~!" * 30)[:255]

    first = idem_post(client, key, chat_body(), idem=idem)
    again = idem_post(client, key, chat_body(), idem=idem)

    assert first.status_code == 200
    assert_replay_of(again, first)


def test_every_key_of_an_account_shares_its_idempotency_keys(
    client, chat_route, account, api_key_factory, fake_upstream
):
    one, other = api_key_factory(user=account)[1], api_key_factory(user=account)[1]
    idem = new_key()

    first = idem_post(client, one, chat_body(), idem=idem)
    again = idem_post(client, other, chat_body(), idem=idem)

    assert_replay_of(again, first)
    assert len(records()) == 1


def test_accounts_do_not_share_idempotency_keys(client, chat_route, key, api_key_factory, user_factory, fake_upstream):
    stranger = api_key_factory(user=user_factory(plan="enterprise", password=None))[1]
    idem = new_key()

    first = idem_post(client, key, chat_body(), idem=idem)
    theirs = idem_post(client, stranger, chat_body(), idem=idem)

    assert (first.status_code, theirs.status_code) == (200, 200)
    assert not theirs.has_header("Idempotent-Replayed")
    assert len(records()) == 2


def test_a_wrong_api_key_is_401_before_the_idempotency_key_is_looked_at(client, chat_route, fake_upstream):
    response = idem_post(client, "bapi_" + "N" * 43, chat_body(), idem="k" * 256)

    assert response.status_code == 401
    assert not IdempotencyKey.objects.exists()


def test_a_key_is_replayed_within_the_ttl_and_runs_again_after_it(client, settings, chat_route, key, fake_upstream):
    settings.BELUGA = {**settings.BELUGA, "IDEMPOTENCY_TTL_SECONDS": 60}
    idem = new_key()
    first = idem_post(client, key, chat_body(), idem=idem)

    IdempotencyKey.objects.update(created_at=timezone.now() - timedelta(seconds=55))
    assert_replay_of(idem_post(client, key, chat_body(), idem=idem), first)

    IdempotencyKey.objects.update(created_at=timezone.now() - timedelta(seconds=61))
    later = idem_post(client, key, chat_body(), idem=idem)

    assert later.status_code == 200 and not later.has_header("Idempotent-Replayed")
    [row] = IdempotencyKey.objects.all()
    assert row.request_id == later["X-Request-Id"]
    assert len(records()) == 2


def test_an_expired_key_may_carry_another_request(client, settings, chat_route, key, fake_upstream):
    idem = new_key()
    idem_post(client, key, chat_body(), idem=idem)
    IdempotencyKey.objects.update(created_at=timezone.now() - timedelta(days=2))

    other = idem_post(client, key, chat_body(messages=[{"role": "user", "content": "Other."}]), idem=idem)

    assert other.status_code == 200
    assert len(records()) == 2


def test_a_call_abandoned_by_a_crashed_worker_frees_its_key(client, chat_route, account, key, fake_upstream):
    idem = new_key()
    first = idem_post(client, key, chat_body(), idem=idem)
    # As a worker that died mid-call leaves it: still running.
    IdempotencyKey.objects.update(state=IdempotencyKey.State.RUNNING, status_code=None, body=b"")

    assert idem_post(client, key, chat_body(), idem=idem).status_code == 409
    IdempotencyKey.objects.update(created_at=timezone.now() - timedelta(seconds=ABANDONED_AFTER_SECONDS + 1))
    taken_over = idem_post(client, key, chat_body(), idem=idem)

    assert taken_over.status_code == 200 and taken_over["X-Request-Id"] != first["X-Request-Id"]
    assert IdempotencyKey.objects.get().state == IdempotencyKey.State.DONE
    assert len(records()) == 2


def test_a_claim_is_won_once(account):
    fields = {"user_id": account.id, "key": new_key(), "fingerprint": "f" * 64}

    row, claimed = idempotency_claim(**fields, request_id="req_first")
    again, claimed_again = idempotency_claim(**fields, request_id="req_second")

    assert (claimed, claimed_again) == (True, False)
    assert again.pk == row.pk and again.request_id == "req_first"


# --- every POST model endpoint, in its client's shape ------------------------------------------------


@pytest.fixture
def embed_route(db, fake_upstream):
    upstream = Upstream.objects.create(
        name="fake-embed", kind="openai", base_url=fake_upstream.base_url, api_key="upstream-secret", read_timeout=2.0
    )
    model = AIModel.objects.create(
        slug=EMBED_ID, name="Test Embedding", vendor="OpenAI", category=Category.EMBEDDING, input_per_1m=130_000
    )
    Route.objects.create(model=model, upstream=upstream, upstream_model="upstream-embed")
    catalog_cache_clear()


ENDPOINTS = {
    "chat": (CHAT_PATH, chat_body()),
    "messages": (
        "/v1/messages",
        {"model": MODEL_ID, "max_tokens": 64, "messages": [{"role": "user", "content": PROMPT}]},
    ),
    # A hosted tool Beluga leaves out: the answer names it in X-Beluga-Dropped-Params, which is replayed.
    "responses": ("/v1/responses", {"model": MODEL_ID, "input": PROMPT, "tools": [{"type": "web_search"}]}),
    "embeddings": ("/v1/embeddings", {"model": EMBED_ID, "input": PROMPT}),
    "gemini": (
        f"/v1beta/models/{MODEL_ID}:generateContent",
        {"contents": [{"role": "user", "parts": [{"text": PROMPT}]}]},
    ),
    "gemini under /api": (
        f"/api/v1beta/models/{MODEL_ID}:generateContent",
        {"contents": [{"role": "user", "parts": [{"text": PROMPT}]}]},
    ),
}


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_every_post_model_endpoint_replays(client, chat_route, embed_route, key, fake_upstream, endpoint):
    path, body = ENDPOINTS[endpoint]
    idem = new_key()

    first = idem_post(client, key, body, idem=idem, path=path)
    again = idem_post(client, key, body, idem=idem, path=path)

    assert first.status_code == 200, first.content
    assert_replay_of(again, first)
    assert again["X-Request-Cost-Micro-Usd"] == first["X-Request-Cost-Micro-Usd"]
    if endpoint == "responses":
        assert again["X-Beluga-Dropped-Params"] == "tools.web_search"
    assert len(records()) == 1
    assert len(fake_upstream.requests) == 1


def test_a_key_reused_on_another_endpoint_is_422(client, chat_route, key, fake_upstream):
    idem = new_key()
    idem_post(client, key, chat_body(), idem=idem)

    path, body = ENDPOINTS["messages"]
    response = idem_post(client, key, body, idem=idem, path=path)

    assert response.status_code == 422
    assert json.loads(response.content)["error"]["type"] == "invalid_request_error"  # Anthropic's shape


def test_conflicts_come_in_anthropics_shape(client, chat_route, key, fake_upstream):
    path, body = ENDPOINTS["messages"]
    idem = new_key()
    idem_post(client, key, body, idem=idem, path=path)

    reused = idem_post(client, key, {**body, "max_tokens": 32}, idem=idem, path=path)
    invalid = idem_post(client, key, body, idem="k" * 256, path=path)

    for response, status in ((reused, 422), (invalid, 400)):
        assert response.status_code == status
        error = json.loads(response.content)
        assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
        assert error["request_id"] == response["X-Request-Id"]
    assert "different request" in json.loads(reused.content)["error"]["message"]


def test_conflicts_come_in_googles_shape(client, chat_route, key, fake_upstream):
    body = ENDPOINTS["gemini"][1]
    stream_path = f"/v1beta/models/{MODEL_ID}:streamGenerateContent?alt=sse"
    idem = new_key()
    streamed = idem_post(client, key, body, idem=idem, path=stream_path)
    b"".join(streamed.streaming_content)

    replay = idem_post(client, key, body, idem=idem, path=stream_path)
    reused = idem_post(client, key, body, idem=idem, path=ENDPOINTS["gemini"][0])

    assert json.loads(replay.content) == {
        "error": {"code": 409, "message": json.loads(replay.content)["error"]["message"], "status": "ABORTED"}
    }
    assert "stream" in json.loads(replay.content)["error"]["message"]
    assert json.loads(reused.content)["error"]["status"] == "INVALID_ARGUMENT"
    assert reused.status_code == 422
    assert len(records()) == 1


def test_token_counting_ignores_the_header(client, chat_route, key, fake_upstream):
    body = {"model": MODEL_ID, "messages": [{"role": "user", "content": PROMPT}]}
    for _ in range(2):
        response = idem_post(client, key, body, idem="same", path="/v1/messages/count_tokens")
        assert response.status_code == 200 and not response.has_header("Idempotent-Replayed")
    assert not IdempotencyKey.objects.exists()


# --- cost without the header, cleanup --------------------------------------------------------------------


def test_without_the_header_the_decorator_touches_nothing(db, django_assert_num_queries):
    from django.http import HttpResponse

    calls = []
    view = idempotent(lambda request: calls.append(request) or HttpResponse("ok"))
    request = RequestFactory().post(CHAT_PATH, data=b"{}", content_type="application/json")

    with django_assert_num_queries(0):
        response = view(request)

    assert response.content == b"ok" and calls == [request]


def test_purge_deletes_what_no_call_can_use(account, settings):
    settings.BELUGA = {**settings.BELUGA, "IDEMPOTENCY_TTL_SECONDS": 3600}
    now = timezone.now()
    ages = {
        "done-fresh": ("done", timedelta(minutes=59)),
        "done-expired": ("done", timedelta(minutes=61)),
        "running-fresh": ("running", timedelta(seconds=ABANDONED_AFTER_SECONDS - 60)),
        "running-abandoned": ("running", timedelta(seconds=ABANDONED_AFTER_SECONDS + 60)),
    }
    for name, (state, age) in ages.items():
        IdempotencyKey.objects.create(user=account, key=name, fingerprint="f" * 64, state=state, created_at=now - age)

    assert idempotency_keys_purge(now=now) == 2
    assert sorted(IdempotencyKey.objects.values_list("key", flat=True)) == ["done-fresh", "running-fresh"]
    assert idempotency_keys_purge_task() == 0
