"""Monthly spend alerts: one email per threshold per UTC month, whatever runs the check and how often."""

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

import billing.alerts
from billing.alerts import spend_alerts_send, spend_alerts_set
from billing.models import SpendAlertSent, UsageRecord
from billing.services import usage_record


@pytest.fixture
def spend(db):
    """Record a call costing `micro_usd` for `user` (through billing.services.usage_record)."""
    counter = {"n": 0}

    def make(user, micro_usd, *, at=None):
        counter["n"] += 1
        request_id = f"alert-req-{counter['n']}"
        usage_record(
            request_id=request_id,
            user_id=user.id,
            api_key_id=None,
            model="demo-chat",
            upstream="local",
            upstream_model="demo-chat",
            endpoint="chat/completions",
            stream=False,
            status_code=200,
            cost_micro_usd=micro_usd,
            charge_balance=True,
        )
        if at is not None:
            UsageRecord.objects.filter(request_id=request_id).update(created_at=at)

    return make


@pytest.mark.django_db
def test_crossing_a_threshold_sends_one_email_and_the_next_threshold_one_more(user_factory, spend, mailoutbox):
    user = user_factory(email="spender@example.com")
    spend_alerts_set(user=user, thresholds_micro_usd=[1_000_000, 5_000_000])
    spend(user, 999_999)

    assert spend_alerts_send() == 0  # not there yet
    spend(user, 1)
    assert spend_alerts_send() == 1
    assert spend_alerts_send() == 0  # the same threshold is not emailed twice
    spend(user, 2_000_000)
    assert spend_alerts_send() == 0  # $3: below the next one
    spend(user, 2_000_000)
    assert spend_alerts_send() == 1

    assert [mail.to for mail in mailoutbox] == [["spender@example.com"], ["spender@example.com"]]
    assert mailoutbox[0].subject == "Beluga: your spend this month passed $1.00"
    assert "is $1.00" in mailoutbox[0].body and "at $1.00" in mailoutbox[0].body
    assert mailoutbox[1].subject == "Beluga: your spend this month passed $5.00"
    assert "is $5.00." in mailoutbox[1].body
    sent = SpendAlertSent.objects.filter(user=user).order_by("threshold_micro_usd")
    assert [(s.threshold_micro_usd, s.spent_micro_usd) for s in sent] == [
        (1_000_000, 1_000_000),
        (5_000_000, 5_000_000),
    ]


@pytest.mark.django_db
def test_a_jump_over_two_thresholds_is_one_email_naming_both(user_factory, spend, mailoutbox):
    user = user_factory()
    spend_alerts_set(user=user, thresholds_micro_usd=[1_000_000, 2_000_000, 10_000_000])
    spend(user, 2_500_000)

    assert spend_alerts_send() == 1
    assert spend_alerts_send() == 0

    assert "at $1.00, $2.00" in mailoutbox[0].body
    assert SpendAlertSent.objects.filter(user=user).count() == 2


@pytest.mark.django_db
def test_only_this_utc_months_spend_counts_and_each_month_alerts_again(user_factory, spend, mailoutbox):
    user = user_factory()
    spend_alerts_set(user=user, thresholds_micro_usd=[1_000_000])
    now = datetime(2026, 5, 1, 0, 30, tzinfo=UTC)
    spend(user, 5_000_000, at=datetime(2026, 4, 30, 23, 59, tzinfo=UTC))  # April

    assert spend_alerts_send(now=now) == 0  # May has no spend yet
    assert spend_alerts_send(now=datetime(2026, 4, 30, 23, 59, 30, tzinfo=UTC)) == 1  # April's run
    spend(user, 1_000_000, at=now)
    assert spend_alerts_send(now=now + timedelta(minutes=1)) == 1  # May's own alert

    assert [s.month.isoformat() for s in SpendAlertSent.objects.order_by("month")] == ["2026-04-01", "2026-05-01"]
    assert "April 2026" in mailoutbox[0].body and "May 2026" in mailoutbox[1].body


@pytest.mark.django_db
def test_each_account_is_alerted_on_its_own_spend(user_factory, spend, mailoutbox):
    light, heavy, silent = user_factory(), user_factory(), user_factory()
    for user in (light, heavy):
        spend_alerts_set(user=user, thresholds_micro_usd=[1_000_000])
    spend(light, 10)
    spend(heavy, 3_000_000)
    spend(silent, 9_000_000)  # no alerts set

    assert spend_alerts_send() == 1

    assert [mail.to for mail in mailoutbox] == [[heavy.email]]


@pytest.mark.django_db
def test_a_failed_send_is_tried_again_on_the_next_run(user_factory, spend, mailoutbox, monkeypatch):
    user = user_factory()
    spend_alerts_set(user=user, thresholds_micro_usd=[1_000_000])
    spend(user, 1_000_000)
    real_send = billing.alerts.send_mail

    def refuse(**kwargs):
        raise OSError("mail server down")

    monkeypatch.setattr(billing.alerts, "send_mail", refuse)
    assert spend_alerts_send() == 0
    assert not SpendAlertSent.objects.exists()  # the claim was rolled back with the failed send

    monkeypatch.setattr(billing.alerts, "send_mail", real_send)
    assert spend_alerts_send() == 1
    assert len(mailoutbox) == 1


@pytest.mark.django_db
def test_a_threshold_set_again_after_its_email_is_not_sent_twice(user_factory, spend, mailoutbox):
    user = user_factory()
    spend_alerts_set(user=user, thresholds_micro_usd=[1_000_000])
    spend(user, 1_500_000)
    assert spend_alerts_send(now=timezone.now()) == 1

    spend_alerts_set(user=user, thresholds_micro_usd=[])
    spend_alerts_set(user=user, thresholds_micro_usd=[1_000_000])

    assert spend_alerts_send() == 0
    assert len(mailoutbox) == 1


@pytest.mark.django_db
@pytest.mark.parametrize("thresholds", [[0], [-1], list(range(1, 12))])
def test_spend_alerts_set_refuses_bad_thresholds(user_factory, thresholds):
    with pytest.raises(ValueError):
        spend_alerts_set(user=user_factory(), thresholds_micro_usd=thresholds)
