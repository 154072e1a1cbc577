"""API keys on the API: what is stored, the three ways to present a key, and the 401 for missing,
unknown, revoked and expired keys, immediate even when the key was cached by an earlier call."""

from __future__ import annotations

import hashlib
import json
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from accounts.models import ApiKey
from accounts.services import api_key_revoke
from tests.fixtures_gateway import chat_body, error_of, post_chat

# Registers the fixtures (fake upstream, chat route, keys, live clients) for this module.
pytest_plugins = ["tests.fixtures_gateway"]

INVALID_KEY_ERROR = {"type": "authentication_error", "code": "invalid_api_key", "param": None}


def assert_invalid_key(response, *, not_echoing: str | None = None) -> None:
    assert response.status_code == 401
    error = error_of(response)
    assert {k: error[k] for k in INVALID_KEY_ERROR} == INVALID_KEY_ERROR
    assert response["X-Request-Id"]
    if not_echoing:
        assert not_echoing not in response.content.decode()


# --- what is stored ----------------------------------------------------------------


def test_created_key_is_random_and_stored_only_as_hash_and_prefix(api_key_factory, user_factory):
    user = user_factory(password=None)
    row, raw_key = api_key_factory(user=user)
    _, other_raw = api_key_factory(user=user)

    assert raw_key.startswith("bapi_")
    assert len(raw_key) >= len("bapi_") + 32
    assert raw_key != other_raw
    row.refresh_from_db()
    assert row.hashed_key == hashlib.sha256(raw_key.encode()).hexdigest()
    assert raw_key.startswith(row.prefix)
    assert len(row.prefix) < len(raw_key) - 20
    stored = json.dumps({f.name: str(getattr(row, f.attname)) for f in ApiKey._meta.fields})
    assert raw_key not in stored
    assert raw_key[len(row.prefix) :] not in stored


# --- presenting a key ----------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(lambda k: {"Authorization": f"Bearer {k}"}, id="bearer"),
        pytest.param(lambda k: {"Authorization": f"bearer {k}"}, id="bearer-lowercase"),
        pytest.param(lambda k: {"x-api-key": k}, id="x-api-key"),
        pytest.param(lambda k: {"x-goog-api-key": k}, id="x-goog-api-key"),
    ],
)
def test_key_is_accepted_in_each_supported_header(client, chat_route, raw_key, fake_upstream, header):
    response = post_chat(client, None, chat_body(), headers=header(raw_key))

    assert response.status_code == 200, response.content
    [received] = fake_upstream.chat_requests
    assert raw_key not in received.raw()
    assert received.headers["authorization"] == f"Bearer {chat_route.credential}"


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="missing"),
        pytest.param({"Authorization": "Bearer "}, id="empty-bearer"),
        pytest.param({"Authorization": "Bearer bapi_" + "A" * 43}, id="unknown-key"),
        pytest.param({"Authorization": "Bearer sk-proj-abcdefghijklmnopqrstuvwxyz0123456789"}, id="not-a-beluga-key"),
        pytest.param({"Authorization": "Basic dXNlcjpwYXNz"}, id="basic-auth"),
        pytest.param({"x-api-key": "bapi_" + "B" * 43}, id="unknown-x-api-key"),
        pytest.param({"x-goog-api-key": "bapi_" + "C" * 43}, id="unknown-x-goog-api-key"),
        pytest.param({"Authorization": "Bearer bapi_" + "D" * 5000}, id="very-long"),
    ],
)
def test_missing_or_unknown_key_is_401_and_never_echoed(client, chat_route, fake_upstream, headers):
    response = post_chat(client, None, chat_body(), headers=headers)

    presented = next(iter(headers.values()), "").removeprefix("Bearer ").strip()
    assert_invalid_key(response, not_echoing=presented or None)
    assert fake_upstream.requests == []


def test_rejected_stream_request_is_a_plain_401(client, chat_route, fake_upstream):
    response = post_chat(client, "bapi_" + "E" * 43, chat_body(stream=True))

    assert_invalid_key(response)
    assert not response.streaming


def test_key_check_comes_before_validation(client, chat_route, fake_upstream):
    response = post_chat(client, "bapi_" + "F" * 43, "{not json")

    assert_invalid_key(response)


def test_sdk_with_a_bad_key_gets_authentication_error(live_api, chat_route, fake_upstream):
    import openai

    with openai.OpenAI(base_url=live_api + "/v1", api_key="bapi_" + "G" * 43, max_retries=0, timeout=20) as sdk:
        with pytest.raises(openai.AuthenticationError) as caught:
            sdk.chat.completions.create(model="test-model", messages=[{"role": "user", "content": "hi"}])

    assert caught.value.code == "invalid_api_key"


# --- revocation, expiry, inactive users ----------------------------------------------


def test_revoked_key_is_rejected_at_once_though_cached(client, chat_route, api_key, fake_upstream):
    row, raw_key = api_key
    assert post_chat(client, raw_key, chat_body()).status_code == 200  # now in the shared cache

    api_key_revoke(user=row.user, key_id=row.id)

    assert_invalid_key(post_chat(client, raw_key, chat_body()), not_echoing=raw_key)
    assert len(fake_upstream.chat_requests) == 1


@pytest.mark.parametrize("header", ["Authorization", "x-api-key", "x-goog-api-key"])
def test_revoked_key_is_rejected_in_every_header(client, chat_route, api_key, fake_upstream, header):
    row, raw_key = api_key
    value = f"Bearer {raw_key}" if header == "Authorization" else raw_key
    assert post_chat(client, None, chat_body(), headers={header: value}).status_code == 200

    api_key_revoke(user=row.user, key_id=row.id)

    assert_invalid_key(post_chat(client, None, chat_body(), headers={header: value}))


def test_key_revoked_from_the_dashboard_is_rejected_at_once(
    client, chat_route, user_factory, api_key_factory, fake_upstream
):
    user = user_factory(plan="pro")
    row, raw_key = api_key_factory(user=user)
    assert post_chat(client, raw_key, chat_body()).status_code == 200

    client.force_login(user)
    page = client.post(reverse("key-revoke", args=[row.id]))

    assert page.status_code == 302
    row.refresh_from_db()
    assert row.revoked_at is not None
    assert_invalid_key(post_chat(client, raw_key, chat_body()))


def test_another_users_key_cannot_be_revoked(client, chat_route, user_factory, api_key_factory, fake_upstream):
    owner_row, owner_key = api_key_factory(user=user_factory(plan="pro", password=None))
    intruder = user_factory(plan="pro", password=None)

    with pytest.raises(ApiKey.DoesNotExist):
        api_key_revoke(user=intruder, key_id=owner_row.id)
    client.force_login(intruder)
    page = client.post(reverse("key-revoke", args=[owner_row.id]))

    assert page.status_code == 404
    owner_row.refresh_from_db()
    assert owner_row.revoked_at is None
    assert post_chat(client, owner_key, chat_body()).status_code == 200


def test_expired_key_is_rejected(client, chat_route, api_key_factory, user_factory, fake_upstream):
    _, raw_key = api_key_factory(
        user=user_factory(plan="pro", password=None), expires_at=timezone.now() - timedelta(seconds=1)
    )

    assert_invalid_key(post_chat(client, raw_key, chat_body()), not_echoing=raw_key)
    assert fake_upstream.requests == []


def test_key_not_yet_expired_works(client, chat_route, api_key_factory, user_factory, fake_upstream):
    _, raw_key = api_key_factory(
        user=user_factory(plan="pro", password=None), expires_at=timezone.now() + timedelta(days=1)
    )

    assert post_chat(client, raw_key, chat_body()).status_code == 200


def test_key_of_an_inactive_user_is_rejected(client, chat_route, api_key_factory, user_factory, fake_upstream):
    user = user_factory(plan="pro", password=None)
    user.is_active = False
    user.save()
    _, raw_key = api_key_factory(user=user)

    assert_invalid_key(post_chat(client, raw_key, chat_body()))


def test_revoked_key_is_rejected_on_the_live_server(live_api, chat_route, api_key, fake_upstream):
    import openai

    row, raw_key = api_key
    with openai.OpenAI(base_url=live_api + "/v1", api_key=raw_key, max_retries=0, timeout=20) as sdk:
        sdk.chat.completions.create(model="test-model", messages=[{"role": "user", "content": "hi"}])
        api_key_revoke(user=row.user, key_id=row.id)
        with pytest.raises(openai.AuthenticationError):
            sdk.chat.completions.create(model="test-model", messages=[{"role": "user", "content": "hi"}])


def test_last_used_time_is_recorded(client, chat_route, api_key, fake_upstream):
    from accounts import services

    # The once-a-minute throttle is remembered per process by key id, and ids repeat
    # between tests whose transactions were rolled back.
    services._last_used_seen.clear()
    row, raw_key = api_key
    assert row.last_used_at is None

    post_chat(client, raw_key, chat_body())

    row.refresh_from_db()
    assert row.last_used_at is not None


def test_revocation_committed_later_is_not_undone_by_a_lookup_in_between(live_api, chat_route, api_key, fake_upstream):
    """Revoking inside a longer transaction (the admin's change form is one): a call served by
    another worker before the commit reads the key as still active and caches it; once the
    revocation commits, the key must still be refused at once."""
    import requests

    from accounts import services

    row, raw_key = api_key

    def call():
        return requests.post(
            f"{live_api}/v1/chat/completions",
            json=chat_body(),
            headers={"Authorization": f"Bearer {raw_key}"},
            timeout=20,
        )

    before = call()
    # The once-a-minute last_used_at UPDATE would wait for this test's row lock: mark it done.
    services._last_used_seen[row.id] = time.monotonic()
    with ThreadPoolExecutor(max_workers=1) as pool, transaction.atomic():
        api_key_revoke(user=row.user, key_id=row.id)
        # Another worker serves a call before the revocation commits. Its usage record
        # waits for this transaction's row lock, so let it run alongside and commit as
        # soon as its key check is done (its request has reached the upstream).
        during = pool.submit(call)
        deadline = time.monotonic() + 15
        while len(fake_upstream.chat_requests) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    after = call()

    assert before.status_code == during.result().status_code == 200
    assert after.status_code == 401


def test_a_lookup_that_read_before_the_commit_cannot_store_its_answer_after_it(transactional_db, api_key, monkeypatch):
    """The narrowest interleaving: a lookup reads the key while the revocation is still
    uncommitted, and tries to store what it read only after the commit re-marked the entry.
    Each invalidation writes its own marker, and the answer is stored only over the marker
    it followed (cache.set_if_unchanged), so the stale answer is dropped."""
    import threading

    from accounts import services

    row, raw_key = api_key
    services.api_key_authenticate(raw_key=raw_key)
    # An earlier change marked the entry (the embedded cache writes the revocation's own
    # first marker inside its transaction, so only an earlier one is seen before the commit).
    services._keys_invalidate([row.hashed_key])
    services._last_used_seen[row.id] = time.monotonic()  # no last_used_at UPDATE behind the row lock
    read, store = threading.Event(), threading.Event()
    real_lookup = services._key_lookup

    def lookup_then_wait(hashed):
        answer = real_lookup(hashed)
        read.set()
        store.wait(15)
        return answer

    monkeypatch.setattr(services, "_key_lookup", lookup_then_wait)

    def other_worker():
        from django.db import connection

        try:
            return services.api_key_authenticate(raw_key=raw_key)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=1) as pool:
        with transaction.atomic():
            api_key_revoke(user=row.user, key_id=row.id)  # marks the entry before the commit
            during = pool.submit(other_worker)
            assert read.wait(15)  # it saw a marker and read the key: still active, uncommitted
        # committed, and the entry marked again
        store.set()
        assert during.result().key_id == row.id  # served: it began before the revocation committed

    monkeypatch.setattr(services, "_key_lookup", real_lookup)
    with pytest.raises(services.KeyRejected):
        services.api_key_authenticate(raw_key=raw_key)
