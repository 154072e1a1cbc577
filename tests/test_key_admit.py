"""The key check and the rate-limit count in one Redis call (accounts.limits.key_admit).

A key this process has checked is kept with the bytes of its shared cache
entry; the rate-limit count reads that entry in the same Lua call, and the
copy is used only while it is unchanged. These tests need Redis: on the
embedded cache every call reads the key as before.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from accounts.models import Plan
from accounts.services import api_key_revoke, api_key_set_controls, user_set_plan
from tests.fixtures_gateway import chat_body, error_of, in_one_window, post_chat
from tests.redis_watch import redis_commands as watched

pytest_plugins = ["tests.fixtures_gateway"]


@pytest.fixture(autouse=True)
def _needs_redis():
    from django.core.cache import caches

    from gateway.cache import RequestCounterRedisCache

    if not isinstance(caches[settings.RATELIMIT_USE_CACHE], RequestCounterRedisCache):
        pytest.skip("REDIS_URL not set: the embedded cache reads the key on every call")


def redis_commands(raw_key: str):
    """The commands that touch the key's shared cache entry (tests/redis_watch.py)."""
    from accounts.services import api_key_shared_entry_name, hash_key

    return watched(touching=api_key_shared_entry_name(hash_key(raw_key)))


def test_a_known_key_costs_one_redis_call(client, chat_route, api_key, fake_upstream):
    _, raw_key = api_key
    with redis_commands(raw_key) as first:
        assert post_chat(client, raw_key, chat_body()).status_code == 200
    with redis_commands(raw_key) as later:
        for _ in range(3):
            assert post_chat(client, raw_key, chat_body()).status_code == 200

    assert first[0] == "GET" and first[-1] == "EVALSHA"  # the first call reads the entry, then counts
    assert later == ["EVALSHA"] * 3  # then the count alone, reading the entry along


def test_a_key_revoked_after_it_became_known_is_rejected_at_once(client, chat_route, api_key, fake_upstream):
    row, raw_key = api_key
    for _ in range(2):
        assert post_chat(client, raw_key, chat_body()).status_code == 200

    api_key_revoke(user=row.user, key_id=row.id)  # writes the shared entry only, as on another instance

    response = post_chat(client, raw_key, chat_body())
    assert response.status_code == 401
    assert error_of(response)["code"] == "invalid_api_key"
    assert len(fake_upstream.chat_requests) == 2


def test_a_plan_change_on_a_known_key_counts_under_the_new_limit(client, chat_route, api_key, fake_upstream):
    row, raw_key = api_key
    for _ in range(2):
        assert post_chat(client, raw_key, chat_body())["X-RateLimit-Limit-Requests"] == "300"  # Pro

    user_set_plan(user=row.user, plan=Plan.objects.get(slug="free"))

    after = in_one_window(lambda: [post_chat(client, raw_key, chat_body()) for _ in range(11)])
    assert [r["X-RateLimit-Limit-Requests"] for r in after] == ["10"] * 11
    assert [r.status_code for r in after] == [200] * 10 + [429]  # the new window counts from the change


def test_a_changed_key_control_holds_on_the_next_call(client, chat_route, api_key, fake_upstream):
    row, raw_key = api_key
    for _ in range(2):
        assert post_chat(client, raw_key, chat_body()).status_code == 200

    api_key_set_controls(
        user=row.user,
        key_id=row.id,
        spend_limit_micro_usd=None,
        spend_limit_period="month",
        allowed_models=["another-model"],
        chat_rpm=None,
    )

    response = post_chat(client, raw_key, chat_body())
    assert response.status_code == 403
    assert response["X-RateLimit-Remaining-Requests"] == str(300 - 3)  # counted once, not twice


def test_a_known_key_is_read_again_when_the_cache_lost_it(client, chat_route, api_key, fake_upstream):
    _, raw_key = api_key
    assert post_chat(client, raw_key, chat_body()).status_code == 200

    cache.clear()  # Redis flushed or restarted

    with redis_commands(raw_key) as seen:
        for _ in range(2):  # the lost entry is seen, then the key is read and known again
            assert post_chat(client, raw_key, chat_body()).status_code == 200
    assert seen.count("GET") >= 1
    with redis_commands(raw_key) as seen:
        assert post_chat(client, raw_key, chat_body()).status_code == 200
    assert seen == ["EVALSHA"]


def test_a_known_key_expires_on_time(client, chat_route, api_key_factory, user_factory, fake_upstream):
    _, raw_key = api_key_factory(
        user=user_factory(plan="pro", password=None), expires_at=timezone.now() + timedelta(seconds=1.5)
    )
    for _ in range(2):
        assert post_chat(client, raw_key, chat_body()).status_code == 200

    time.sleep(1.6)

    response = post_chat(client, raw_key, chat_body())
    assert response.status_code == 401
    assert error_of(response)["code"] == "invalid_api_key"
