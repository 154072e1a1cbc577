"""Prepaid balances: a hold before every call, a settle (or release) after it, never an overspend.

Each test ends with the ledger's invariants checked (tests/conftest.py `ledger_invariants`):
cached balance == sum of entries, reserved == sum of holds == open reservations.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
import requests

from accounts.services import api_key_create, api_key_set_controls
from billing.models import Balance, LedgerEntry, Reservation, UsageRecord
from billing.services import balance_grant
from catalog.selectors import catalog_cache_clear
from gateway.pipeline import request_size, requested_choices
from tests.fake_upstream import words
from tests.fixtures_gateway import (
    MODEL_ID,
    RawStream,
    chat_body,
    error_of,
    expected_cost,
    in_one_window,
    post_chat,
)
from tests.test_chat_billing import LONG_REPLY, hang_up, open_stream, wait_for_record

pytest_plugins = ["tests.fixtures_gateway"]
pytestmark = pytest.mark.usefixtures("ledger_invariants")


def funded_key(user_factory, micro_usd: int, plan: str = "standard") -> tuple[object, str]:
    """(user, raw key) of a prepaid account holding exactly `micro_usd`."""
    user = user_factory(plan=plan, password=None, credit_micro_usd=0)
    if micro_usd:
        balance_grant(user_id=user.id, amount_micro_usd=micro_usd, reason="test")
    _, raw_key = api_key_create(user=user, name="ledger test")
    return user, raw_key


def balance_of(user) -> Balance:
    return Balance.objects.get(user=user)


def entry_kinds(user) -> list[str]:
    return list(LedgerEntry.objects.filter(user=user).order_by("id").values_list("kind", flat=True))


def wait_for_settles(timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while Reservation.objects.filter(state=Reservation.State.OPEN).exists():
        assert time.monotonic() < deadline, "holds still open"
        time.sleep(0.02)


def output_only_prices(chat_route, *, output_per_1m: int = 1_000_000) -> None:
    """One micro-USD per output token and free input: a call's cost is exactly its output tokens."""
    model = chat_route.model
    model.input_per_1m, model.output_per_1m = 0, output_per_1m
    model.save()
    catalog_cache_clear()


# --- one call ------------------------------------------------------------------------


def test_call_holds_then_settles_its_real_cost(client, chat_route, user_factory, fake_upstream):
    user, raw_key = funded_key(user_factory, 5_000_000)
    fake_upstream.set(prompt_tokens=20, completion_tokens=7)

    response = post_chat(client, raw_key, chat_body(max_tokens=100))

    assert response.status_code == 200
    cost = expected_cost(20, 7)
    assert response["X-Request-Cost-Micro-Usd"] == str(cost)
    usage = json.loads(response.content)["usage"]
    assert usage["cost_micro_usd"] == cost
    assert usage["cost"] == f"0.{cost:06d}"
    assert entry_kinds(user) == ["grant", "reserve", "settle"]
    reserve, settle = LedgerEntry.objects.filter(user=user).order_by("id")[1:]
    # The hold: a token per character of the request's strings (model, role, content) and max_tokens output.
    chars = len(MODEL_ID) + len("user") + len("Say hello.") + 1  # and a token for the number max_tokens
    assert request_size(chat_body(max_tokens=100)) == (chars, 0)
    assert reserve.hold_micro_usd == expected_cost(chars, 100)
    assert settle.amount_micro_usd == -cost and settle.hold_micro_usd == -reserve.hold_micro_usd
    assert settle.request_id == response["X-Request-Id"] == reserve.request_id
    balance = balance_of(user)
    assert (balance.balance_micro_usd, balance.reserved_micro_usd) == (5_000_000 - cost, 0)
    assert Reservation.objects.get().state == Reservation.State.SETTLED
    record = UsageRecord.objects.get()
    assert record.cost_micro_usd == cost
    assert (record.input_price_per_1m, record.output_price_per_1m) == (
        chat_route.model.input_per_1m,
        chat_route.model.output_per_1m,
    )


def test_balance_too_low_is_402_insufficient_quota_and_saying_what_is_left(
    client, chat_route, user_factory, fake_upstream
):
    user, raw_key = funded_key(user_factory, 300)

    response = post_chat(client, raw_key, chat_body(max_tokens=1000))

    assert response.status_code == 402
    error = error_of(response)
    assert (error["type"], error["code"]) == ("insufficient_quota", "insufficient_quota")
    assert "$0.000300 available" in error["message"]
    assert "max_tokens" in error["message"]
    assert response.has_header("X-Request-Id")
    assert fake_upstream.chat_requests == []
    assert UsageRecord.objects.count() == 0 and Reservation.objects.count() == 0
    assert balance_of(user).balance_micro_usd == 300


def test_smaller_max_tokens_fits_a_small_balance(client, chat_route, user_factory, fake_upstream):
    output_only_prices(chat_route)
    user, raw_key = funded_key(user_factory, 300)
    fake_upstream.set(completion_tokens=50)

    assert post_chat(client, raw_key, chat_body(max_tokens=1000)).status_code == 402
    assert post_chat(client, raw_key, chat_body(max_tokens=300)).status_code == 200
    assert balance_of(user).balance_micro_usd == 250


def test_upstream_failing_before_any_byte_releases_the_hold(client, chat_route, user_factory, fake_upstream):
    user, raw_key = funded_key(user_factory, 1_000_000)
    fake_upstream.fail_with(500, "boom")

    response = post_chat(client, raw_key, chat_body(max_tokens=100))

    assert response.status_code == 502
    assert entry_kinds(user) == ["grant", "reserve", "release"]
    assert UsageRecord.objects.get().cost_micro_usd == 0
    assert Reservation.objects.get().state == Reservation.State.RELEASED
    balance = balance_of(user)
    assert (balance.balance_micro_usd, balance.reserved_micro_usd) == (1_000_000, 0)


def test_error_inside_beluga_after_the_hold_releases_it(client, chat_route, user_factory, fake_upstream):
    """n > 1 to a translating upstream is refused after the hold was taken: nothing stays held."""
    chat_route.upstream.kind = "anthropic"
    chat_route.upstream.base_url = chat_route.upstream.base_url.removesuffix("/v1")
    chat_route.upstream.save()
    catalog_cache_clear()
    user, raw_key = funded_key(user_factory, 1_000_000)

    response = post_chat(client, raw_key, chat_body(max_tokens=100, n=2))

    assert response.status_code == 400
    assert entry_kinds(user) == ["grant", "reserve", "release"]
    assert balance_of(user).reserved_micro_usd == 0
    assert UsageRecord.objects.count() == 0


def test_postpaid_account_is_neither_held_nor_charged(client, chat_route, user_factory, fake_upstream):
    user = user_factory(plan="enterprise", password=None, credit_micro_usd=0)
    _, raw_key = api_key_create(user=user, name="postpaid")

    response = post_chat(client, raw_key, chat_body())

    assert response.status_code == 200
    assert int(response["X-Request-Cost-Micro-Usd"]) > 0
    assert entry_kinds(user) == [] and Reservation.objects.count() == 0
    assert UsageRecord.objects.get().cost_micro_usd == int(response["X-Request-Cost-Micro-Usd"])


def test_new_free_account_gets_the_plans_signup_credit(user_factory):
    user = user_factory(plan="free", password=None, credit_micro_usd=0)

    assert balance_of(user).balance_micro_usd == 1_000_000
    assert LedgerEntry.objects.get(user=user).kind == LedgerEntry.Kind.GRANT


# --- streams -----------------------------------------------------------------------


def test_stream_settles_on_the_usage_chunk_and_reports_its_cost(client, chat_route, user_factory, fake_upstream):
    user, raw_key = funded_key(user_factory, 5_000_000)
    fake_upstream.set(prompt_tokens=30)

    response = post_chat(client, raw_key, chat_body(stream=True, stream_options={"include_usage": True}))
    payloads = [line[6:] for line in b"".join(response.streaming_content).split(b"\n\n") if line.startswith(b"data: ")]

    usage = json.loads(payloads[-2])["usage"]
    record = UsageRecord.objects.get()
    assert usage["cost_micro_usd"] == record.cost_micro_usd == expected_cost(30, record.completion_tokens)
    assert entry_kinds(user) == ["grant", "reserve", "settle"]
    assert balance_of(user).balance_micro_usd == 5_000_000 - record.cost_micro_usd


def test_stream_cut_by_the_client_settles_on_delivered_tokens(chat_route, user_factory, fake_upstream):
    user, raw_key = funded_key(user_factory, 5_000_000)
    fake_upstream.reply(LONG_REPLY, prompt_tokens=50)

    response = open_stream(raw_key, chat_body(stream=True))
    chunks = iter(response.streaming_content)
    [next(chunks) for _ in range(3)]
    assert balance_of(user).reserved_micro_usd > 0  # held while the stream runs
    hang_up(response)

    record = UsageRecord.objects.get()
    assert record.client_disconnected and record.usage_estimated
    assert 0 < record.cost_micro_usd < expected_cost(50, len(words(LONG_REPLY)))
    settle = LedgerEntry.objects.get(user=user, kind=LedgerEntry.Kind.SETTLE)
    assert settle.amount_micro_usd == -record.cost_micro_usd
    assert balance_of(user).balance_micro_usd == 5_000_000 - record.cost_micro_usd
    assert balance_of(user).reserved_micro_usd == 0


def test_stream_broken_by_the_upstream_midway_is_billed_on_what_was_delivered(
    client, chat_route, user_factory, fake_upstream
):
    user, raw_key = funded_key(user_factory, 5_000_000)
    fake_upstream.reply(LONG_REPLY, prompt_tokens=50)
    fake_upstream.set(reset_after_events=5)

    response = post_chat(client, raw_key, chat_body(stream=True))
    b"".join(response.streaming_content)

    record = UsageRecord.objects.get()
    assert record.status_code == 502 and record.usage_estimated
    assert record.cost_micro_usd > 0
    assert entry_kinds(user) == ["grant", "reserve", "settle"]
    assert balance_of(user).balance_micro_usd == 5_000_000 - record.cost_micro_usd


def test_stream_cut_over_the_network_settles_once(live_api, chat_route, user_factory, fake_upstream):
    user, raw_key = funded_key(user_factory, 5_000_000)
    fake_upstream.reply(LONG_REPLY, prompt_tokens=50)
    fake_upstream.set(hold_after_events=3, chunk_delay=0.02)
    stream = RawStream(live_api, "/v1/chat/completions", chat_body(stream=True), {"Authorization": f"Bearer {raw_key}"})

    stream.read_events(3)
    stream.hang_up()
    fake_upstream.release_stream()
    record = wait_for_record()

    assert record.client_disconnected
    assert LedgerEntry.objects.filter(user=user, kind=LedgerEntry.Kind.SETTLE).count() == 1
    assert balance_of(user).balance_micro_usd == 5_000_000 - record.cost_micro_usd


# --- concurrency -------------------------------------------------------------------


def test_fifty_concurrent_calls_against_a_balance_for_ten(live_api, chat_route, user_factory, fake_upstream):
    """Exactly the affordable calls succeed: every call may cost 100 micro-USD and costs exactly that."""
    output_only_prices(chat_route)
    user, raw_key = funded_key(user_factory, 1_000)
    fake_upstream.set(completion_tokens=100, delay_before_headers=0.05)
    start = threading.Barrier(50)
    statuses: list[int] = []
    codes: list[str] = []

    def call() -> None:
        start.wait()
        try:
            response = requests.post(
                f"{live_api}/v1/chat/completions",
                json=chat_body(max_tokens=100),
                headers={"Authorization": f"Bearer {raw_key}"},
                timeout=30,
            )
        except requests.RequestException as error:
            statuses.append(repr(error))  # shown by the assertion below
            return
        statuses.append(response.status_code)
        if response.status_code != 200:
            codes.append(response.json()["error"]["code"])

    threads = [threading.Thread(target=call) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(statuses, key=str) == [200] * 10 + [402] * 40
    assert set(codes) == {"insufficient_quota"}
    wait_for_settles()  # the server settles each call once its answer was sent
    balance = balance_of(user)
    assert (balance.balance_micro_usd, balance.reserved_micro_usd) == (0, 0)
    assert UsageRecord.objects.filter(status_code=200).count() == 10
    assert len(fake_upstream.chat_requests) == 10


# --- key controls ------------------------------------------------------------------


def test_key_budget_is_402_budget_exceeded_naming_the_limit(client, chat_route, user_factory, fake_upstream):
    output_only_prices(chat_route)
    user, raw_key = funded_key(user_factory, 1_000_000)
    key = user.api_keys.get()
    api_key_set_controls(
        user=user, key_id=key.id, spend_limit_micro_usd=250, spend_limit_period="day", allowed_models=[], chat_rpm=None
    )
    fake_upstream.set(completion_tokens=100)

    statuses = [post_chat(client, raw_key, chat_body(max_tokens=100)).status_code for _ in range(2)]
    refused = post_chat(client, raw_key, chat_body(max_tokens=100))

    assert statuses == [200, 200]
    assert refused.status_code == 402
    error = error_of(refused)
    assert error["code"] == "budget_exceeded"
    assert "daily spend limit of $0.000250" in error["message"]
    assert "$0.000200 spent" in error["message"]
    # The account still has money: only this key is stopped.
    assert balance_of(user).balance_micro_usd == 1_000_000 - 200


def test_key_budget_on_a_postpaid_account(client, chat_route, user_factory, fake_upstream):
    output_only_prices(chat_route)
    user = user_factory(plan="enterprise", password=None, credit_micro_usd=0)
    key, raw_key = api_key_create(user=user, name="capped")
    api_key_set_controls(
        user=user,
        key_id=key.id,
        spend_limit_micro_usd=100,
        spend_limit_period="total",
        allowed_models=[],
        chat_rpm=None,
    )
    fake_upstream.set(completion_tokens=100)

    assert post_chat(client, raw_key, chat_body(max_tokens=100)).status_code == 200
    assert error_of(post_chat(client, raw_key, chat_body(max_tokens=100)))["code"] == "budget_exceeded"
    assert entry_kinds(user) == []  # postpaid: the budget is counted, the balance is not touched


def test_key_limited_to_some_models_gets_403_for_others(client, chat_route, user_factory, fake_upstream):
    user, raw_key = funded_key(user_factory, 1_000_000)
    key = user.api_keys.get()
    api_key_set_controls(
        user=user,
        key_id=key.id,
        spend_limit_micro_usd=None,
        spend_limit_period="month",
        allowed_models=["gpt-4o"],
        chat_rpm=None,
    )

    response = post_chat(client, raw_key, chat_body())

    assert response.status_code == 403
    error = error_of(response)
    assert (error["type"], error["code"], error["param"]) == ("permission_error", "model_not_allowed", "model")
    assert MODEL_ID in error["message"]
    assert fake_upstream.chat_requests == []


def test_key_rpm_override_lowers_the_plans_limit(client, chat_route, user_factory, fake_upstream):
    user, raw_key = funded_key(user_factory, 1_000_000)
    key = user.api_keys.get()
    api_key_set_controls(
        user=user, key_id=key.id, spend_limit_micro_usd=None, spend_limit_period="month", allowed_models=[], chat_rpm=2
    )

    responses = in_one_window(lambda: [post_chat(client, raw_key, chat_body()) for _ in range(3)])

    assert [r.status_code for r in responses] == [200, 200, 429]


# --- prices ------------------------------------------------------------------------


def test_price_change_applies_to_new_calls_and_never_to_old_records(client, chat_route, user_factory, fake_upstream):
    user, raw_key = funded_key(user_factory, 5_000_000)
    fake_upstream.set(prompt_tokens=10, completion_tokens=10)
    post_chat(client, raw_key, chat_body())
    old = UsageRecord.objects.get()

    model = chat_route.model
    model.input_per_1m, model.output_per_1m = 10 * model.input_per_1m, 10 * model.output_per_1m
    model.save()
    catalog_cache_clear()
    post_chat(client, raw_key, chat_body())

    old.refresh_from_db()
    new = UsageRecord.objects.exclude(id=old.id).get()
    assert old.cost_micro_usd == expected_cost(10, 10)
    assert new.cost_micro_usd > old.cost_micro_usd
    assert new.input_price_per_1m == 10 * old.input_price_per_1m


def test_enabled_model_without_a_price_is_refused(client, chat_route, user_factory, fake_upstream):
    _, raw_key = funded_key(user_factory, 1_000_000)
    chat_route.model.output_per_1m = None
    chat_route.model.save()
    catalog_cache_clear()

    response = post_chat(client, raw_key, chat_body())

    assert response.status_code == 503
    error = error_of(response)
    assert error["code"] == "model_not_priced"
    assert fake_upstream.chat_requests == []


# --- the cost, where the client protocol has room for it -------------------------------


def test_translated_stream_reports_its_cost_in_the_final_usage(client, route_to, user_factory, fake_upstream):
    route_to("anthropic")  # OpenAI chat in, Anthropic Messages out: the chunk writer adds the cost
    user, raw_key = funded_key(user_factory, 5_000_000)

    response = post_chat(client, raw_key, chat_body(stream=True, stream_options={"include_usage": True}))
    payloads = [line[6:] for line in b"".join(response.streaming_content).split(b"\n\n") if line.startswith(b"data: ")]

    usage = json.loads(payloads[-2])["usage"]
    record = UsageRecord.objects.get()
    assert record.upstream_kind == "anthropic"
    assert usage["cost_micro_usd"] == record.cost_micro_usd > 0
    assert balance_of(user).balance_micro_usd == 5_000_000 - record.cost_micro_usd


def test_anthropic_answer_carries_its_cost_in_usage(client, route_to, user_factory, fake_upstream):
    route_to("anthropic")
    _, raw_key = funded_key(user_factory, 5_000_000)
    body = {"model": MODEL_ID, "max_tokens": 100, "messages": [{"role": "user", "content": "Hi"}]}

    response = client.post(
        "/v1/messages", data=json.dumps(body), content_type="application/json", headers={"x-api-key": raw_key}
    )

    assert response.status_code == 200
    record = UsageRecord.objects.get()
    assert json.loads(response.content)["usage"]["cost_micro_usd"] == record.cost_micro_usd
    assert response["X-Request-Cost-Micro-Usd"] == str(record.cost_micro_usd)


@pytest.mark.parametrize("stream", [False, True])
def test_the_record_keeps_why_the_model_stopped(client, chat_route, user_factory, fake_upstream, stream):
    _, raw_key = funded_key(user_factory, 5_000_000)

    response = post_chat(client, raw_key, chat_body(stream=stream))
    if stream:
        b"".join(response.streaming_content)

    record = UsageRecord.objects.get()
    assert record.finish_reason == "stop"
    generation = client.get(f"/v1/generation?id={record.request_id}", headers={"Authorization": f"Bearer {raw_key}"})
    assert generation.json()["data"]["finish_reason"] == "stop"


def test_claude_code_passthrough_stream_reports_its_cost_in_message_delta(
    client, route_to, user_factory, fake_upstream
):
    """Anthropic to Anthropic: the provider's events pass as they are but for the model and the cost."""
    route_to("anthropic")
    user, raw_key = funded_key(user_factory, 5_000_000)
    body = {"model": MODEL_ID, "max_tokens": 100, "stream": True, "messages": [{"role": "user", "content": "Hi"}]}

    response = client.post(
        "/v1/messages", data=json.dumps(body), content_type="application/json", headers={"x-api-key": raw_key}
    )
    events = [
        json.loads(line[6:]) for line in b"".join(response.streaming_content).split(b"\n") if line.startswith(b"data: ")
    ]

    [delta] = [event for event in events if event["type"] == "message_delta"]
    record = UsageRecord.objects.get()
    assert record.protocol == "anthropic.messages" and record.upstream_kind == "anthropic"
    assert delta["usage"]["cost_micro_usd"] == record.cost_micro_usd > 0
    assert balance_of(user).balance_micro_usd == 5_000_000 - record.cost_micro_usd


def test_the_hold_covers_every_answer_and_every_input():
    """Upper bounds, not guesses: n answers cost n outputs; documents inline count their data; images and files by
    reference get the media allowance; tool-call arguments count."""
    assert requested_choices({"n": 3}) == 3
    assert requested_choices({"generationConfig": {"candidateCount": 4}}) == 4
    assert requested_choices({"n": True}) == 1
    pdf = {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "A" * 5000}}
    assert request_size({"messages": [{"content": [pdf]}]}) == (5000 + len("document") + len("base64") + 15, 0)
    assert (
        request_size({"contents": [{"parts": [{"fileData": {"mimeType": "application/pdf", "fileUri": "x"}}]}]})[1] == 1
    )
    assert request_size({"contents": [{"parts": [{"inlineData": {"mimeType": "image/png", "data": "B" * 900}}]}]}) == (
        0,
        1,
    )
    call = {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": '{"q": "' + "x" * 300 + '"}'}}]}
    assert request_size({"messages": [call]})[0] > 300


def test_n_answers_hold_n_outputs(client, chat_route, user_factory, fake_upstream):
    output_only_prices(chat_route)
    _, raw_key = funded_key(user_factory, 250)

    assert error_of(post_chat(client, raw_key, chat_body(max_tokens=100, n=3)))["code"] == "insufficient_quota"
    assert post_chat(client, raw_key, chat_body(max_tokens=100, n=2)).status_code == 200


def test_a_record_that_cannot_be_written_gives_the_hold_back(
    client, chat_route, user_factory, fake_upstream, monkeypatch
):
    """The database refused the usage record (down, locked): the account's money is not left held."""
    from django.db import DatabaseError

    import gateway.pipeline

    user, raw_key = funded_key(user_factory, 5_000_000)

    def refuse(**_fields):
        raise DatabaseError("the database is gone")

    monkeypatch.setattr(gateway.pipeline, "usage_record", refuse)
    # The answer was sent first; the record is written when the server closes the response,
    # and its failure reaches the server (which logs it), as Django's test client shows.
    with pytest.raises(DatabaseError):
        post_chat(client, raw_key, chat_body(max_tokens=100))

    assert entry_kinds(user) == ["grant", "reserve", "release"]
    assert balance_of(user).reserved_micro_usd == 0


def test_a_budget_set_while_a_call_runs_counts_that_call(client, chat_route, user_factory, fake_upstream):
    """The key's budget count takes every settle of the key, whatever the call's hold knew."""
    output_only_prices(chat_route)
    user, raw_key = funded_key(user_factory, 1_000_000)
    key = user.api_keys.get()
    fake_upstream.set(completion_tokens=100)
    running = open_stream(raw_key, chat_body(stream=True, max_tokens=100, stream_options={"include_usage": True}))
    chunks = iter(running.streaming_content)
    next(chunks)  # the call runs; its hold was taken before the key had a budget

    api_key_set_controls(
        user=user, key_id=key.id, spend_limit_micro_usd=250, spend_limit_period="day", allowed_models=[], chat_rpm=None
    )
    assert post_chat(client, raw_key, chat_body(max_tokens=100)).status_code == 200  # counts 100 of 250
    for _ in chunks:
        pass
    hang_up(running)  # settles the running call: 200 of 250

    refused = post_chat(client, raw_key, chat_body(max_tokens=100))
    assert error_of(refused)["code"] == "budget_exceeded"
    assert "$0.000200 spent" in error_of(refused)["message"]


def test_a_whole_answer_is_recorded_once_it_was_sent(chat_route, user_factory, fake_upstream):
    """The record (and the settle) waits for the server to close the response: the client does not wait for it."""
    from django.test import RequestFactory

    from gateway.middleware import RequestIdMiddleware
    from gateway.views import chat_completions

    user, raw_key = funded_key(user_factory, 5_000_000)
    request = RequestFactory().post(
        "/v1/chat/completions",
        data=json.dumps(chat_body(max_tokens=100)),
        content_type="application/json",
        headers={"Authorization": f"Bearer {raw_key}"},
    )
    response = RequestIdMiddleware(chat_completions)(request)

    assert response.status_code == 200 and int(response["X-Request-Cost-Micro-Usd"]) > 0
    assert UsageRecord.objects.count() == 0 and balance_of(user).reserved_micro_usd > 0
    hang_up(response)  # what the WSGI server does after the last byte
    record = UsageRecord.objects.get()
    assert record.cost_micro_usd == int(response["X-Request-Cost-Micro-Usd"])
    assert balance_of(user).reserved_micro_usd == 0


def test_a_routes_own_output_cap_sets_the_hold(client, chat_route, user_factory, fake_upstream):
    """Route params are merged over the client's request: a route's max_tokens is what the call may produce."""
    output_only_prices(chat_route)
    chat_route.route.params = {"max_tokens": 500}
    chat_route.route.save()
    catalog_cache_clear()
    _, raw_key = funded_key(user_factory, 300)

    response = post_chat(client, raw_key, chat_body(max_tokens=100))

    assert error_of(response)["code"] == "insufficient_quota"
    assert "up to 500 output tokens" in error_of(response)["message"]
