"""`GET /v1/key` (and `/v1/auth/key`): the calling key, its account's balance, its spend and its limits."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import requests

from accounts.services import api_key_set_controls, user_set_limits
from billing.models import Balance, UsageRecord
from billing.services import reserve
from tests.fixtures_gateway import chat_body, error_of, expected_cost, post_chat

pytestmark = pytest.mark.usefixtures("ledger_invariants")

CREDIT = 100_000_000  # what user_factory grants: 100 USD


def get_key(client, raw_key: str | None, *, path: str = "/v1/key", header: str = "Authorization") -> dict:
    headers = {}
    if raw_key is not None:
        headers[header] = f"Bearer {raw_key}" if header == "Authorization" else raw_key
    return client.get(path, headers=headers)


def data_of(response) -> dict:
    assert response.status_code == 200, response.content
    body = json.loads(response.content)
    assert set(body) == {"data"}
    return body["data"]


def test_fresh_key_shows_its_name_balance_and_plan_limits(client, api_key):
    key_row, raw_key = api_key

    data = data_of(get_key(client, raw_key))

    assert data["name"] == "test key"
    assert data["label"] == f"{key_row.prefix}…"
    assert raw_key not in json.dumps(data)
    assert data["balance_micro_usd"] == CREDIT
    assert data["balance"] == 100.0
    assert data["reserved_micro_usd"] == 0
    assert data["usage_micro_usd"] == data["usage_daily_micro_usd"] == data["usage_monthly_micro_usd"] == 0
    assert data["usage"] == 0
    assert data["plan"] == {"slug": "pro", "name": "Pro", "prepaid": True}
    assert data["is_free_tier"] is False
    assert data["rate_limit"] == {
        "requests": 300,
        "interval": "60s",
        "chat_requests_per_minute": 300,
        "image_requests_per_minute": 60,
    }
    assert data["limit"] is None
    assert data["limit_remaining"] is None
    assert data["limit_reset"] is None
    assert data["spend_limit"] is None
    assert data["expires_at"] is None
    assert data["created_at"].endswith("Z")


def test_after_a_call_balance_is_reduced_by_its_cost_and_usage_equals_it(client, chat_route, api_key, fake_upstream):
    key_row, raw_key = api_key
    fake_upstream.reply("Paris.", prompt_tokens=1234, completion_tokens=567)
    call = post_chat(client, raw_key, chat_body())
    assert call.status_code == 200
    record = UsageRecord.objects.get(request_id=call["X-Request-Id"])
    assert record.cost_micro_usd == expected_cost(1234, 567) > 0

    data = data_of(get_key(client, raw_key))

    assert data["balance_micro_usd"] == CREDIT - record.cost_micro_usd
    assert data["usage_micro_usd"] == record.cost_micro_usd
    assert data["usage_daily_micro_usd"] == data["usage_monthly_micro_usd"] == record.cost_micro_usd
    assert data["usage"] == pytest.approx(record.cost_micro_usd / 1_000_000)
    assert data["reserved_micro_usd"] == 0


def test_usage_counts_this_key_only_and_balance_is_the_accounts(
    client, chat_route, api_key_factory, user_factory, fake_upstream
):
    user = user_factory(plan="pro", password=None)
    _, first_key = api_key_factory(user=user, name="first")
    _, second_key = api_key_factory(user=user, name="second")
    post_chat(client, first_key, chat_body())
    cost = UsageRecord.objects.get().cost_micro_usd

    data = data_of(get_key(client, second_key))

    assert data["name"] == "second"
    assert data["usage_micro_usd"] == 0
    assert data["balance_micro_usd"] == CREDIT - cost


def test_balance_leaves_out_the_holds_of_calls_in_flight(client, api_key):
    key_row, raw_key = api_key
    reserve(
        user_id=key_row.user_id,
        api_key_id=key_row.id,
        request_id="req_in_flight",
        amount_micro_usd=2_500_000,
        charges_balance=True,
    )

    data = data_of(get_key(client, raw_key))

    assert data["balance_micro_usd"] == CREDIT - 2_500_000
    assert data["reserved_micro_usd"] == 2_500_000
    assert Balance.objects.get(user_id=key_row.user_id).balance_micro_usd == CREDIT


def test_key_with_a_budget_shows_its_limit_and_what_remains(client, chat_route, api_key, fake_upstream):
    key_row, raw_key = api_key
    api_key_set_controls(
        user=key_row.user,
        key_id=key_row.id,
        spend_limit_micro_usd=5_000_000,
        spend_limit_period="day",
        allowed_models=[],
        chat_rpm=None,
    )
    fake_upstream.reply("Paris.", prompt_tokens=1234, completion_tokens=567)
    assert post_chat(client, raw_key, chat_body()).status_code == 200
    cost = UsageRecord.objects.get().cost_micro_usd

    data = data_of(get_key(client, raw_key))

    assert data["limit"] == 5.0
    assert data["limit_remaining"] == pytest.approx((5_000_000 - cost) / 1_000_000)
    assert data["limit_reset"] == "daily"
    tomorrow = datetime.now(UTC).date().toordinal() + 1
    assert data["spend_limit"] == {
        "period": "day",
        "limit_micro_usd": 5_000_000,
        "spent_micro_usd": cost,
        "held_micro_usd": 0,
        "remaining_micro_usd": 5_000_000 - cost,
        "resets_at": datetime.fromordinal(tomorrow).strftime("%Y-%m-%dT00:00:00Z"),
    }


def test_budget_remaining_counts_holds_and_never_goes_below_zero(client, api_key):
    key_row, raw_key = api_key
    api_key_set_controls(
        user=key_row.user,
        key_id=key_row.id,
        spend_limit_micro_usd=1_000_000,
        spend_limit_period="total",
        allowed_models=[],
        chat_rpm=None,
    )
    reserve(
        user_id=key_row.user_id,
        api_key_id=key_row.id,
        request_id="req_in_flight",
        amount_micro_usd=400_000,
        charges_balance=True,
    )

    budget = data_of(get_key(client, raw_key))["spend_limit"]
    assert (budget["held_micro_usd"], budget["remaining_micro_usd"], budget["resets_at"]) == (400_000, 600_000, None)

    api_key_set_controls(
        user=key_row.user,
        key_id=key_row.id,
        spend_limit_micro_usd=300_000,
        spend_limit_period="total",
        allowed_models=[],
        chat_rpm=None,
    )
    data = data_of(get_key(client, raw_key))
    assert data["spend_limit"]["remaining_micro_usd"] == 0
    assert data["limit_remaining"] == 0
    assert data["limit_reset"] is None


def test_rate_limit_shows_the_accounts_and_the_keys_overrides(client, user_factory, api_key_factory):
    user = user_factory(plan="free", password=None)
    key_row, raw_key = api_key_factory(user=user)
    data = data_of(get_key(client, raw_key))
    assert data["is_free_tier"] is True
    assert data["balance_micro_usd"] == CREDIT + key_row.user.plan.signup_grant_micro_usd
    assert (data["rate_limit"]["chat_requests_per_minute"], data["rate_limit"]["image_requests_per_minute"]) == (10, 5)

    user_set_limits(user=user, chat_rpm=50, image_rpm=7)
    data = data_of(get_key(client, raw_key))
    assert (data["rate_limit"]["requests"], data["rate_limit"]["image_requests_per_minute"]) == (50, 7)

    api_key_set_controls(
        user=user,
        key_id=key_row.id,
        spend_limit_micro_usd=None,
        spend_limit_period="month",
        allowed_models=[],
        chat_rpm=3,
    )
    assert data_of(get_key(client, raw_key))["rate_limit"]["chat_requests_per_minute"] == 3


@pytest.mark.parametrize("path", ["/v1/key", "/v1/auth/key", "/api/v1/key", "/api/v1/auth/key"])
def test_served_under_every_prefix(client, raw_key, path):
    assert data_of(get_key(client, raw_key, path=path))["name"] == "test key"


def test_key_accepted_as_x_api_key(client, raw_key):
    assert data_of(get_key(client, raw_key, header="x-api-key"))["name"] == "test key"


def test_without_a_valid_key_is_a_401(client, db):
    for raw_key in (None, "bapi_not-a-real-key"):
        response = get_key(client, raw_key)

        assert response.status_code == 401
        assert error_of(response)["type"] == "authentication_error"


def test_revoked_key_is_a_401(client, api_key):
    from accounts.services import api_key_revoke

    key_row, raw_key = api_key
    api_key_revoke(user=key_row.user, key_id=key_row.id)

    assert get_key(client, raw_key).status_code == 401


@pytest.mark.parametrize("method", ["post", "patch", "delete"])
def test_other_methods_are_a_405_with_allow(client, raw_key, method):
    response = getattr(client, method)("/v1/auth/key", headers={"Authorization": f"Bearer {raw_key}"})

    assert response.status_code == 405
    assert response["Allow"] == "GET, HEAD"
    assert error_of(response)["code"] == "method_not_allowed"


def test_key_read_is_bounded_in_queries(client, api_key, django_assert_max_num_queries):
    key_row, raw_key = api_key
    api_key_set_controls(
        user=key_row.user,
        key_id=key_row.id,
        spend_limit_micro_usd=1_000_000,
        spend_limit_period="month",
        allowed_models=[],
        chat_rpm=None,
    )
    get_key(client, raw_key)  # the key lookup, cached from here on

    # key, balance, usage sums, the budget's period count and its holds (+ on SQLite's database
    # cache, a read of the key's entry and one of its rate-limit window for the headers).
    with django_assert_max_num_queries(7):
        assert get_key(client, raw_key).status_code == 200


def test_over_the_network_with_requests(live_api, raw_key):
    response = requests.get(f"{live_api}/api/v1/auth/key", headers={"Authorization": f"Bearer {raw_key}"}, timeout=10)

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.json()["data"]["balance_micro_usd"] == CREDIT
