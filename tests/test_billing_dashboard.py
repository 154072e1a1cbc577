"""The customer's money pages: balance, per-key spend, ledger, usage export, key controls, spend alerts."""

import csv
import io
from datetime import UTC, date, datetime, timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import ApiKey
from accounts.services import api_key_authenticate, api_key_set_controls
from billing.models import Balance, LedgerEntry, SpendAlert, UsageRecord
from billing.pricing import usd_text
from billing.selectors import USAGE_EXPORT_COLUMNS, DayUsage, ModelUsage, usage_chart_data
from billing.services import balance_adjust, balance_grant, usage_record
from billing.templatetags.billing_tags import usd
from catalog.models import AIModel


@pytest.fixture
def record(db):
    """Write one usage record through billing.services.usage_record; returns the row."""
    counter = {"n": 0}

    def make(*, user, key=None, cost=1234, model="demo-chat", charge=False, request_id=None, **fields):
        counter["n"] += 1
        request_id = request_id or f"req-{counter['n']}"
        usage_record(
            request_id=request_id,
            user_id=user.id,
            api_key_id=key.id if key else None,
            model=model,
            upstream="local",
            upstream_model=model,
            endpoint="chat/completions",
            stream=False,
            status_code=fields.pop("status_code", 200),
            prompt_tokens=fields.pop("prompt_tokens", 10),
            completion_tokens=fields.pop("completion_tokens", 5),
            cost_micro_usd=cost,
            charge_balance=charge,
            **fields,
        )
        return UsageRecord.objects.get(request_id=request_id)

    return make


def _backdate(row, when):
    type(row).objects.filter(id=row.id).update(created_at=when)


@pytest.fixture
def logged_in(client, user_factory):
    user = user_factory()
    client.force_login(user)
    return client, user


# --- the dashboard: balance and spend ------------------------------------------------


@pytest.mark.django_db
def test_dashboard_totals_equal_the_sum_of_usage_records(logged_in, user_factory, api_key_factory, record):
    client, user = logged_in
    budgeted, _ = api_key_factory(user=user, name="budgeted")
    api_key_set_controls(
        user=user,
        key_id=budgeted.id,
        spend_limit_micro_usd=2_000_000,
        spend_limit_period="month",
        allowed_models=[],
        chat_rpm=None,
    )
    plain, _ = api_key_factory(user=user, name="plain")
    now = timezone.now()
    records = [
        record(user=user, key=budgeted, cost=1_500, charge=True),
        record(user=user, key=budgeted, cost=250_001, model="model-b", charge=True),
        record(user=user, key=plain, cost=7, charge=True),
        record(user=user, key=None, cost=40_000, charge=True),  # a key deleted since
    ]
    last_month = record(user=user, key=budgeted, cost=900_000, charge=True)
    _backdate(last_month, now - timedelta(days=40))
    other = user_factory()
    record(user=other, key=api_key_factory(user=other)[0], cost=555_555, charge=True)

    dashboard = client.get(reverse("dashboard"))
    usage_page = client.get(reverse("usage"))

    mine = UsageRecord.objects.filter(user=user)
    total = sum(r.cost_micro_usd for r in mine)
    assert total == sum(r.cost_micro_usd for r in records) + 900_000
    rows = {row.key.name: row for row in dashboard.context["keys"]}
    assert rows["budgeted"].spent_total_micro_usd == 1_500 + 250_001 + 900_000
    assert rows["budgeted"].spent_period_micro_usd == 1_500 + 250_001  # this month only
    assert rows["plain"].spent_total_micro_usd == 7
    assert rows["plain"].spent_period_micro_usd is None  # no limit, no period
    assert sum(row.spent_total_micro_usd for row in rows.values()) == sum(
        r.cost_micro_usd for r in mine.filter(api_key__isnull=False)
    )
    assert dashboard.context["month_spent"] == sum(r.cost_micro_usd for r in records)
    balance = Balance.objects.get(user=user)
    assert balance.balance_micro_usd == sum(
        e.amount_micro_usd for e in LedgerEntry.objects.filter(user=user)
    )  # grants minus every settle
    content = dashboard.content.decode()
    for micro in (balance.balance_micro_usd, balance.available_micro_usd, 1_500 + 250_001 + 900_000):
        assert usd(micro) in content
    assert "$0.251501 of $2.00" in content  # the budget in its period

    assert usage_page.context["total"].cost_micro_usd == total
    chart = usage_page.context["chart_data"]
    assert len(chart["days"]) == 30
    assert sum(day["cost_micro_usd"] for day in chart["days"]) == sum(r.cost_micro_usd for r in records)
    assert sum(row["cost_micro_usd"] for row in chart["models"]) == total
    assert 'id="usage-chart-data"' in usage_page.content.decode()  # json_script
    assert "555555" not in usage_page.content.decode()


@pytest.mark.django_db
def test_dashboard_shows_the_balance_held_for_calls_in_flight(logged_in):
    client, user = logged_in
    from billing.services import reserve

    reserve(user_id=user.id, api_key_id=None, request_id="held", amount_micro_usd=300_000, charges_balance=True)

    response = client.get(reverse("dashboard"))

    balance = response.context["balance"]
    assert balance.reserved_micro_usd == 300_000
    assert balance.available_micro_usd == balance.balance_micro_usd - 300_000
    content = response.content.decode()
    assert "$0.300000" in content
    assert "prepaid" in content


@pytest.mark.django_db
def test_dashboard_says_postpaid_for_a_postpaid_plan(client, user_factory, plan_factory):
    plan_factory("enterprise", prepaid=False)
    client.force_login(user_factory(plan="enterprise", credit_micro_usd=0))

    content = client.get(reverse("dashboard")).content.decode()

    assert "Postpaid" in content


@pytest.mark.django_db  # only because conftest clears the (database) cache around every test
def test_chart_data_fills_idle_days_and_sums_the_tail_of_models():
    today = date(2026, 3, 31)
    by_day = [DayUsage(requests=1, prompt_tokens=0, completion_tokens=0, cost_micro_usd=5, day=date(2026, 3, 30))]
    by_model = [
        ModelUsage(requests=1, prompt_tokens=0, completion_tokens=0, cost_micro_usd=100 - n, model=f"m{n}")
        for n in range(12)
    ]

    data = usage_chart_data(by_day=by_day, by_model=by_model, days=3, today=today)

    assert data["days"] == [
        {"day": "2026-03-29", "cost_micro_usd": 0},
        {"day": "2026-03-30", "cost_micro_usd": 5},
        {"day": "2026-03-31", "cost_micro_usd": 0},
    ]
    assert [row["model"] for row in data["models"]] == [f"m{n}" for n in range(10)] + ["2 other models"]
    assert data["models"][-1]["cost_micro_usd"] == 90 + 89  # m10 and m11
    assert sum(row["cost_micro_usd"] for row in data["models"]) == sum(row.cost_micro_usd for row in by_model)


# --- the ledger ----------------------------------------------------------------------


@pytest.mark.django_db
def test_ledger_is_newest_first_paginated_and_keeps_the_filter_across_pages(logged_in):
    client, user = logged_in
    for i in range(55):
        balance_grant(user_id=user.id, amount_micro_usd=1_000 + i, reason=f"grant {i}")
    balance_adjust(user_id=user.id, amount_micro_usd=-5, reason="not a grant")

    first = client.get(reverse("ledger"), {"kind": "grant"})
    grants = LedgerEntry.objects.filter(user=user, kind="grant").count()  # the fixture's grants too
    second = client.get(reverse("ledger"), {"kind": "grant", "page": 2})

    entries = list(first.context["page"].object_list)
    assert len(entries) == 50
    assert entries[0].reason == "grant 54"
    assert [e.created_at for e in entries] == sorted((e.created_at for e in entries), reverse=True)
    assert all(e.kind == "grant" for e in entries)
    assert 'href="?kind=grant&amp;page=2"' in first.content.decode()
    assert len(second.context["page"].object_list) == grants - 50
    assert "+$0.001054" in first.content.decode()  # amounts as USD


@pytest.mark.django_db
def test_ledger_filters_by_kind_and_date_range(logged_in, record):
    client, user = logged_in
    old = balance_grant(user_id=user.id, amount_micro_usd=1_000_000, reason="old grant")
    _backdate(old, datetime(2026, 1, 10, 23, 59, tzinfo=UTC))
    edge = balance_adjust(user_id=user.id, amount_micro_usd=-2_000, reason="edge adjustment")
    _backdate(edge, datetime(2026, 1, 20, 0, 0, tzinfo=UTC))
    later = balance_adjust(user_id=user.id, amount_micro_usd=3_000, reason="later adjustment")
    _backdate(later, datetime(2026, 1, 21, 0, 0, tzinfo=UTC))
    record(user=user, cost=77, charge=True)  # a settle, today

    in_range = client.get(reverse("ledger"), {"since": "2026-01-10", "until": "2026-01-20"})
    adjustments = client.get(reverse("ledger"), {"kind": "adjustment"})
    settles = client.get(reverse("ledger"), {"kind": "settle"})

    assert [e.reason for e in in_range.context["page"].object_list] == ["edge adjustment", "old grant"]
    assert {e.reason for e in adjustments.context["page"].object_list} == {"edge adjustment", "later adjustment"}
    [settle] = settles.context["page"].object_list
    assert settle.amount_micro_usd == -77
    assert "-$0.000077" in settles.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "params", [{"since": "2026-02-01", "until": "2026-01-01"}, {"kind": "bogus"}, {"since": "yesterday"}]
)
def test_ledger_rejects_a_bad_filter(logged_in, params):
    client, _ = logged_in

    response = client.get(reverse("ledger"), params)

    assert response.status_code == 400
    assert not response.context["page"].object_list


# --- one user never sees another's ------------------------------------------------------


@pytest.mark.django_db
def test_a_user_never_sees_another_users_ledger_keys_or_usage(client, user_factory, api_key_factory, record):
    alice, bob = user_factory(), user_factory()
    bobs_key, _ = api_key_factory(user=bob, name="bob-secret-key")
    balance_grant(user_id=bob.id, amount_micro_usd=123_456_789, reason="bob-secret-reason")
    record(user=bob, key=bobs_key, cost=424_242, request_id="bob-secret-request", charge=True)
    client.force_login(alice)

    pages = [
        client.get(reverse("dashboard")),
        client.get(reverse("ledger")),
        client.get(reverse("ledger"), {"user": bob.id}),  # not a filter anyone may set
        client.get(reverse("usage")),
        client.get(reverse("spend-alerts")),
    ]
    export = b"".join(client.get(reverse("usage-export")).streaming_content).decode()

    for text in [page.content.decode() for page in pages] + [export]:
        for secret in ("bob-secret", bobs_key.prefix, "$123.456789", "424242", "$0.424242"):
            assert secret not in text


@pytest.mark.django_db
def test_another_users_key_controls_cannot_be_seen_or_edited(client, user_factory, api_key_factory):
    alice, bob = user_factory(), user_factory()
    bobs_key, _ = api_key_factory(user=bob)
    client.force_login(alice)
    url = reverse("key-controls", args=[bobs_key.id])

    assert client.get(url).status_code == 404
    response = client.post(url, {"spend_limit_usd": "0.01", "spend_limit_period": "day", "chat_rpm": "1"})

    assert response.status_code == 404
    bobs_key.refresh_from_db()
    assert (bobs_key.spend_limit_micro_usd, bobs_key.chat_rpm_override) == (None, None)


# --- key controls ------------------------------------------------------------------------


@pytest.mark.django_db
def test_key_controls_are_saved_exactly_and_reach_the_cached_key(logged_in, api_key_factory):
    client, user = logged_in
    key, raw_key = api_key_factory(user=user)
    assert api_key_authenticate(raw_key=raw_key).spend_limit_micro_usd is None  # now cached
    enabled = list(AIModel.objects.filter(enabled=True).order_by("slug").values_list("slug", flat=True)[:2])

    form_page = client.get(reverse("key-controls", args=[key.id]))
    response = client.post(
        reverse("key-controls", args=[key.id]),
        {"spend_limit_usd": "$1234.567891", "spend_limit_period": "day", "allowed_models": enabled, "chat_rpm": "3"},
    )

    assert form_page.status_code == 200
    assert enabled[0] in form_page.content.decode()
    assert response.status_code == 302
    key.refresh_from_db()
    assert key.spend_limit_micro_usd == 1_234_567_891  # exact: never through a float
    assert (key.spend_limit_period, key.allowed_models, key.chat_rpm_override) == ("day", sorted(enabled), 3)
    cached = api_key_authenticate(raw_key=raw_key)
    assert (cached.spend_limit_micro_usd, cached.spend_limit_period) == (1_234_567_891, "day")
    assert cached.allowed_models == tuple(sorted(enabled))
    assert cached.chat_rpm == 3
    again = client.get(reverse("key-controls", args=[key.id])).content.decode()
    assert 'value="1234.567891"' in again


@pytest.mark.django_db
def test_key_controls_empty_fields_remove_the_controls(logged_in, api_key_factory):
    client, user = logged_in
    key, _ = api_key_factory(user=user)
    api_key_set_controls(
        user=user, key_id=key.id, spend_limit_micro_usd=5, spend_limit_period="total", allowed_models=[], chat_rpm=2
    )

    response = client.post(
        reverse("key-controls", args=[key.id]), {"spend_limit_usd": "", "spend_limit_period": "month"}
    )

    assert response.status_code == 302
    key.refresh_from_db()
    assert (key.spend_limit_micro_usd, key.chat_rpm_override, key.allowed_models) == (None, None, [])


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"spend_limit_usd": "1.0000001"}, "spend_limit_usd"),  # finer than a micro-USD
        ({"spend_limit_usd": "-1"}, "spend_limit_usd"),
        ({"spend_limit_usd": "0"}, "spend_limit_usd"),
        ({"spend_limit_usd": "1e400"}, "spend_limit_usd"),
        ({"spend_limit_usd": "NaN"}, "spend_limit_usd"),
        ({"spend_limit_period": "week"}, "spend_limit_period"),
        ({"allowed_models": ["no-such-model"]}, "allowed_models"),
        ({"chat_rpm": "100000"}, "chat_rpm"),  # above the plan's
        ({"chat_rpm": "0"}, "chat_rpm"),
    ],
)
def test_key_controls_reject_bad_values(logged_in, api_key_factory, data, field):
    client, user = logged_in
    key, _ = api_key_factory(user=user)

    response = client.post(reverse("key-controls", args=[key.id]), {"spend_limit_period": "month", **data})

    assert response.status_code == 400
    assert field in response.context["form"].errors
    key.refresh_from_db()
    assert (key.spend_limit_micro_usd, key.chat_rpm_override, key.allowed_models) == (None, None, [])


@pytest.mark.django_db
def test_key_controls_enforce_csrf(user_factory, api_key_factory):
    user = user_factory()
    key, _ = api_key_factory(user=user)
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)

    response = client.post(
        reverse("key-controls", args=[key.id]), {"spend_limit_usd": "1", "spend_limit_period": "day"}
    )

    assert response.status_code == 403
    assert ApiKey.objects.get(id=key.id).spend_limit_micro_usd is None


# --- CSV export ----------------------------------------------------------------------------


def _csv_rows(response) -> list[dict]:
    assert response.streaming
    text = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(text)))


@pytest.mark.django_db
def test_csv_export_matches_the_usage_records(logged_in, api_key_factory, record):
    client, user = logged_in
    key, _ = api_key_factory(user=user, name="exported")
    made = [
        record(user=user, key=key, cost=1, prompt_tokens=3, completion_tokens=4),
        record(user=user, key=None, cost=1_234_567, model="model-b", charge=True),
        record(user=user, key=key, cost=0, status_code=502, error_type="upstream_error"),
    ]

    response = client.get(reverse("usage-export"))

    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="beluga-usage.csv"'
    rows = _csv_rows(response)
    assert list(rows[0]) == list(USAGE_EXPORT_COLUMNS)
    assert [row["request_id"] for row in rows] == [r.request_id for r in made]  # oldest first
    for row, stored in zip(rows, made, strict=True):
        assert int(row["cost_micro_usd"]) == stored.cost_micro_usd
        assert row["cost_usd"] == usd_text(stored.cost_micro_usd)
        assert row["model"] == stored.model
        assert int(row["prompt_tokens"]) == stored.prompt_tokens
        assert datetime.fromisoformat(row["created_at"]) == stored.created_at
    assert rows[0]["api_key_name"] == "exported" and rows[0]["api_key_prefix"] == key.prefix
    assert rows[1]["cost_usd"] == "1.234567"
    assert rows[2]["status_code"] == "502" and rows[2]["error_type"] == "upstream_error"
    assert sum(int(row["cost_micro_usd"]) for row in rows) == sum(r.cost_micro_usd for r in made)


@pytest.mark.django_db
def test_csv_export_date_range_includes_both_utc_days(logged_in, record):
    client, user = logged_in
    for request_id, when in [
        ("before", datetime(2026, 3, 9, 23, 59, 59, tzinfo=UTC)),
        ("first", datetime(2026, 3, 10, 0, 0, tzinfo=UTC)),
        ("last", datetime(2026, 3, 11, 23, 59, 59, tzinfo=UTC)),
        ("after", datetime(2026, 3, 12, 0, 0, tzinfo=UTC)),
    ]:
        _backdate(record(user=user, request_id=request_id), when)

    response = client.get(reverse("usage-export"), {"since": "2026-03-10", "until": "2026-03-11"})

    assert [row["request_id"] for row in _csv_rows(response)] == ["first", "last"]
    assert response["Content-Disposition"] == 'attachment; filename="beluga-usage-2026-03-10-2026-03-11.csv"'


@pytest.mark.django_db
def test_csv_export_keeps_client_text_from_running_as_a_formula(logged_in, record):
    client, user = logged_in
    record(user=user, request_id="=HYPERLINK(1)")

    [row] = _csv_rows(client.get(reverse("usage-export")))

    assert row["request_id"] == "'=HYPERLINK(1)"


@pytest.mark.django_db
def test_csv_export_rejects_a_reversed_range(logged_in):
    client, _ = logged_in

    response = client.get(reverse("usage-export"), {"since": "2026-03-10", "until": "2026-03-01"})

    assert response.status_code == 400


# --- spend alerts ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_spend_alert_thresholds_are_set_in_dollars_and_cleared(logged_in):
    client, user = logged_in

    response = client.post(reverse("spend-alerts"), {"thresholds": "50, 10.5,$0.000001, 10.50"})

    assert response.status_code == 302
    stored = list(SpendAlert.objects.filter(user=user).values_list("threshold_micro_usd", flat=True))
    assert stored == [1, 10_500_000, 50_000_000]
    page = client.get(reverse("spend-alerts")).content.decode()
    assert 'value="0.000001, 10.50, 50.00"' in page
    dashboard = client.get(reverse("dashboard")).content.decode()
    assert "$10.50" in dashboard and "$50.00" in dashboard

    assert client.post(reverse("spend-alerts"), {"thresholds": ""}).status_code == 302
    assert not SpendAlert.objects.filter(user=user).exists()


@pytest.mark.django_db
@pytest.mark.parametrize("thresholds", ["ten", "-5", "0", "1.0000001", ",".join(str(n) for n in range(1, 12))])
def test_spend_alert_thresholds_reject_bad_amounts(logged_in, thresholds):
    client, user = logged_in

    response = client.post(reverse("spend-alerts"), {"thresholds": thresholds})

    assert response.status_code == 400
    assert response.context["form"].errors["thresholds"]
    assert not SpendAlert.objects.filter(user=user).exists()


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["ledger", "usage-export", "spend-alerts"])
def test_money_pages_require_login(client, name):
    response = client.get(reverse(name))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))
