"""Monthly spend alerts: the thresholds an account sets, and the emails sent when its spend passes them.

A month's spend is the sum of the account's usage records' cost in that UTC
month. `spend_alerts_send` runs periodically (a Celery beat task calls it);
each (account, threshold, month) is emailed at most once, however often it runs
and however many workers run it at the same time.
"""

from __future__ import annotations

import logging
from datetime import date, datetime

from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import User
from billing.models import SpendAlert, SpendAlertSent
from billing.selectors import usage_spent_in_month, utc_month_start
from billing.templatetags.billing_tags import usd_short

logger = logging.getLogger(__name__)

MAX_THRESHOLDS = 10
_USERS_PER_BATCH = 500


def spend_alerts_set(*, user: User, thresholds_micro_usd: list[int]) -> list[int]:
    """Replace the account's thresholds (positive micro-USD amounts). Returns them, lowest first.

    Thresholds already emailed this month stay emailed: setting one again does
    not send it twice.
    """
    thresholds = sorted(set(thresholds_micro_usd))
    if any(value <= 0 for value in thresholds):
        raise ValueError("A spend alert threshold must be a positive amount.")
    if len(thresholds) > MAX_THRESHOLDS:
        raise ValueError(f"At most {MAX_THRESHOLDS} spend alert thresholds.")
    with transaction.atomic():
        SpendAlert.objects.filter(user=user).exclude(threshold_micro_usd__in=thresholds).delete()
        have = set(SpendAlert.objects.filter(user=user).values_list("threshold_micro_usd", flat=True))
        SpendAlert.objects.bulk_create(
            [SpendAlert(user=user, threshold_micro_usd=value) for value in thresholds if value not in have]
        )
    return thresholds


def spend_alerts_send(now: datetime | None = None) -> int:
    """Email every account whose spend this UTC month passed a threshold not yet emailed. Returns emails sent.

    One email per account per run names every threshold it newly passed (a
    jump over two thresholds is one email, and each threshold is still
    emailed once a month). The thresholds' "sent" rows are written in the same
    transaction as the email is handed to the mail backend: a failed send
    rolls them back, to be tried on the next run, and a concurrent run waits on
    the unique rows and skips them.
    """
    now = now or timezone.now()
    month = utc_month_start(now)
    user_ids = list(SpendAlert.objects.order_by("user_id").values_list("user_id", flat=True).distinct())
    sent = 0
    for start in range(0, len(user_ids), _USERS_PER_BATCH):
        sent += _batch_send(user_ids[start : start + _USERS_PER_BATCH], month=month, now=now)
    return sent


def _batch_send(user_ids: list[int], *, month: date, now: datetime) -> int:
    spent = usage_spent_in_month(user_ids=user_ids, month=month)
    if not spent:
        return 0
    due: dict[int, list[int]] = {}
    for user_id, threshold in SpendAlert.objects.filter(user_id__in=list(spent)).values_list(
        "user_id", "threshold_micro_usd"
    ):
        if spent[user_id] >= threshold:
            due.setdefault(user_id, []).append(threshold)
    for user_id, threshold in SpendAlertSent.objects.filter(user_id__in=list(due), month=month).values_list(
        "user_id", "threshold_micro_usd"
    ):
        if threshold in due[user_id]:
            due[user_id].remove(threshold)
    emails = dict(
        User.objects.filter(id__in=[u for u, t in due.items() if t], is_active=True).values_list("id", "email")
    )
    sent = 0
    for user_id, email in emails.items():
        try:
            sent += _alert_send(
                user_id=user_id, email=email, thresholds=due[user_id], spent=spent[user_id], month=month, now=now
            )
        except Exception:
            # One account's failure (the mail server refusing an address) must not stop the others.
            logger.exception("spend alert email to user %s failed; it is tried again on the next run", user_id)
    return sent


def _alert_send(*, user_id: int, email: str, thresholds: list[int], spent: int, month: date, now: datetime) -> int:
    with transaction.atomic():
        claimed = []
        for threshold in sorted(thresholds):
            try:
                with transaction.atomic():
                    SpendAlertSent.objects.create(
                        user_id=user_id, threshold_micro_usd=threshold, month=month, spent_micro_usd=spent, sent_at=now
                    )
            except IntegrityError:
                continue  # another run emailed this one
            claimed.append(threshold)
        if not claimed:
            return 0
        send_mail(
            subject=f"Beluga: your spend this month passed {usd_short(max(claimed))}",
            message=_alert_text(thresholds=claimed, spent=spent, month=month),
            from_email=None,  # DEFAULT_FROM_EMAIL
            recipient_list=[email],
        )
    return 1


def _alert_text(*, thresholds: list[int], spent: int, month: date) -> str:
    passed = ", ".join(usd_short(value) for value in thresholds)
    return (
        f"Your Beluga spend in {month:%B %Y} (UTC) is {usd_short(spent)}.\n"
        f"It has passed your spend alert{'s' if len(thresholds) > 1 else ''} at {passed}.\n\n"
        "You set these alerts on your dashboard, where you can also see your usage, "
        "set spend limits on your API keys, or change the alerts.\n"
        "\n-- \nBeluga\n"
    )
