"""Per-key, per-minute chat limits by plan: headers on every authenticated answer, 429 with
Retry-After past the limit, and a refused call never reaches the upstream. Also the dashboard
log-in's throttle, per email address."""

from __future__ import annotations

import time
from types import SimpleNamespace

import django_ratelimit.core
import pytest
from django.urls import reverse

from billing.models import UsageRecord
from tests.fixtures_gateway import chat_body, error_of, in_one_window, post_chat

# Registers the fixtures (fake upstream, chat route, keys, live clients) for this module.
pytest_plugins = ["tests.fixtures_gateway"]

LIMIT_HEADERS = ("X-RateLimit-Limit-Requests", "X-RateLimit-Remaining-Requests", "X-RateLimit-Reset-Requests")


@pytest.fixture
def free_key(api_key_factory, user_factory):
    return api_key_factory(user=user_factory(plan="free", password=None))


def test_free_plan_allows_ten_chat_calls_a_minute_then_429(client, chat_route, free_key, fake_upstream):
    _, raw_key = free_key

    def burst():
        fake_upstream.requests.clear()
        return [post_chat(client, raw_key, chat_body()) for _ in range(11)]

    responses = in_one_window(burst)

    assert [r.status_code for r in responses] == [200] * 10 + [429]
    assert [r["X-RateLimit-Remaining-Requests"] for r in responses[:10]] == [str(n) for n in range(9, -1, -1)]
    assert {r["X-RateLimit-Limit-Requests"] for r in responses} == {"10"}
    refused = responses[10]
    error = error_of(refused)
    assert error["type"] == "rate_limit_error"
    assert refused["X-RateLimit-Remaining-Requests"] == "0"
    retry_after = int(refused["Retry-After"])
    assert 1 <= retry_after <= 60
    assert refused["X-Request-Id"]
    assert len(fake_upstream.chat_requests) == 10


def test_refused_call_is_not_sent_upstream_nor_recorded(
    client, chat_route, api_key_factory, user_factory, fake_upstream
):
    user = user_factory(plan="free", password=None)
    user.chat_rpm_override = 2
    user.save()
    _, raw_key = api_key_factory(user=user)

    responses = in_one_window(lambda: [post_chat(client, raw_key, chat_body(stream=True)) for _ in range(3)])

    assert [r.status_code for r in responses] == [200, 200, 429]
    assert not responses[2].streaming  # a refused stream is a plain JSON error
    assert error_of(responses[2])["type"] == "rate_limit_error"
    for ok in responses[:2]:
        b"".join(ok.streaming_content)
    assert UsageRecord.objects.filter(status_code=429).count() == 0


def test_limit_headers_on_every_authenticated_answer(client, chat_route, free_key, fake_upstream):
    _, raw_key = free_key
    before = int(time.time())

    ok = post_chat(client, raw_key, chat_body())
    streamed = post_chat(client, raw_key, chat_body(stream=True))
    b"".join(streamed.streaming_content)
    invalid = post_chat(client, raw_key, chat_body(temperature=7))
    unknown_model = post_chat(client, raw_key, chat_body(model="nope"))
    fake_upstream.fail_with(500)
    upstream_failed = post_chat(client, raw_key, chat_body())

    answers = [ok, streamed, invalid, unknown_model, upstream_failed]
    assert [r.status_code for r in answers] == [200, 200, 400, 404, upstream_failed.status_code]
    for response in answers:
        for header in LIMIT_HEADERS:
            assert response.has_header(header), (response.status_code, header)
        assert response["X-RateLimit-Limit-Requests"] == "10"
        reset = int(response["X-RateLimit-Reset-Requests"])
        # UTC epoch seconds, at most a minute ahead.
        assert before <= reset <= int(time.time()) + 61


def test_keys_have_separate_buckets(client, chat_route, api_key_factory, user_factory, fake_upstream):
    user = user_factory(plan="free", password=None)
    user.chat_rpm_override = 1
    user.save()
    _, first_key = api_key_factory(user=user, name="first")
    _, second_key = api_key_factory(user=user, name="second")

    first = in_one_window(lambda: [post_chat(client, first_key, chat_body()) for _ in range(2)])
    second = post_chat(client, second_key, chat_body())

    assert [r.status_code for r in first] == [200, 429]
    assert second.status_code == 200


@pytest.mark.parametrize(("plan", "limit"), [("free", 10), ("standard", 60), ("pro", 300), ("enterprise", 3000)])
def test_limit_follows_the_plan(client, chat_route, api_key_factory, user_factory, fake_upstream, plan, limit):
    _, raw_key = api_key_factory(user=user_factory(plan=plan, password=None))

    response = post_chat(client, raw_key, chat_body())

    assert response["X-RateLimit-Limit-Requests"] == str(limit)
    assert response["X-RateLimit-Remaining-Requests"] == str(limit - 1)


def test_per_account_override_replaces_the_plan_limit(client, chat_route, api_key_factory, user_factory, fake_upstream):
    user = user_factory(plan="enterprise", password=None)
    user.chat_rpm_override = 5000
    user.save()
    _, raw_key = api_key_factory(user=user)

    response = post_chat(client, raw_key, chat_body())

    assert response["X-RateLimit-Limit-Requests"] == "5000"


def test_plan_change_applies_to_a_key_already_in_use(client, chat_route, api_key_factory, user_factory, fake_upstream):
    from accounts.models import Plan
    from accounts.services import user_set_plan

    user = user_factory(plan="free", password=None)
    _, raw_key = api_key_factory(user=user)
    assert post_chat(client, raw_key, chat_body())["X-RateLimit-Limit-Requests"] == "10"

    user_set_plan(user=user, plan=Plan.objects.get(slug="pro"))

    assert post_chat(client, raw_key, chat_body())["X-RateLimit-Limit-Requests"] == "300"


def test_sdk_sees_429_as_rate_limit_error(live_api, chat_route, api_key_factory, user_factory, fake_upstream):
    import openai

    user = user_factory(plan="free", password=None)
    user.chat_rpm_override = 1
    user.save()
    _, raw_key = api_key_factory(user=user)
    refused = None
    with openai.OpenAI(base_url=live_api + "/v1", api_key=raw_key, max_retries=0, timeout=20) as sdk:
        # Three tries: if a window ends between the first two calls, the third is refused.
        for _ in range(3):
            try:
                sdk.chat.completions.create(model="test-model", messages=[{"role": "user", "content": "hi"}])
            except openai.RateLimitError as error:
                refused = error
                break

    assert refused is not None
    assert refused.status_code == 429
    assert int(refused.response.headers["retry-after"]) >= 1
    assert refused.response.headers["x-ratelimit-remaining-requests"] == "0"


# --- dashboard log-in ----------------------------------------------------------------


def test_failed_logins_are_counted_per_email_whatever_its_case_or_spaces(client, user_factory, monkeypatch):
    password = "correct-horse-battery-staple"
    # Hold django-ratelimit's clock still so the minute window cannot roll over mid-test.
    monkeypatch.setattr(django_ratelimit.core, "time", SimpleNamespace(time=lambda: 1_700_000_000.0))
    user_factory(email="target@example.com", password=password)
    spellings = ["target@example.com", "Target@example.com", "TARGET@EXAMPLE.COM", " target@Example.com "]
    for n in range(10):
        guess = {"username": spellings[n % len(spellings)], "password": f"guess-{n}"}
        assert client.post(reverse("login"), guess).status_code == 200

    response = client.post(reverse("login"), {"username": "tArGeT@example.com", "password": password})

    assert response.status_code == 403
    assert "_auth_user_id" not in client.session
