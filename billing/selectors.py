"""Reads of usage for the dashboard. Money stays integer micro-USD; templates format it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from django.db.models import Count, QuerySet, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from accounts.models import User
from billing.models import UsageRecord


@dataclass(frozen=True, slots=True)
class UsageTotals:
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost_micro_usd: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class DayUsage(UsageTotals):
    day: date


@dataclass(frozen=True, slots=True)
class ModelUsage(UsageTotals):
    model: str


_TOTALS = {
    "requests": Count("id"),
    "prompt_tokens": Sum("prompt_tokens", default=0),
    "completion_tokens": Sum("completion_tokens", default=0),
    "cost_micro_usd": Sum("cost_micro_usd", default=0),
}


def usage_records_for_user(*, user: User) -> QuerySet[UsageRecord]:
    """The user's records, newest first (served by the (user, -created_at) index)."""
    return UsageRecord.objects.filter(user=user).order_by("-created_at", "-id")


def usage_totals_by_day(*, user: User, days: int = 30) -> list[DayUsage]:
    """Totals per UTC day for the last `days` days, today included, newest first; idle days are left out."""
    today = timezone.now().astimezone(UTC).date()
    since = datetime.combine(today - timedelta(days=days - 1), time.min, tzinfo=UTC)
    rows = (
        UsageRecord.objects.filter(user=user, created_at__gte=since)
        .annotate(day=TruncDate("created_at", tzinfo=UTC))
        .values("day")
        .annotate(**_TOTALS)
        .order_by("-day")
    )
    return [DayUsage(**row) for row in rows]


def usage_totals_by_model(*, user: User) -> list[ModelUsage]:
    """All-time totals per public model id, most expensive first."""
    rows = (
        UsageRecord.objects.filter(user=user)
        .values("model")
        .annotate(**_TOTALS)
        .order_by("-cost_micro_usd", "-requests", "model")
    )
    return [ModelUsage(**row) for row in rows]


def usage_total(*, user: User) -> UsageTotals:
    """All-time totals of the user."""
    return UsageTotals(**UsageRecord.objects.filter(user=user).aggregate(**_TOTALS))
