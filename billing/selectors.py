"""Reads of usage and money for the dashboard. Money stays integer micro-USD; templates format it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from accounts.models import ApiKey, User
from billing.models import Balance, LedgerEntry, SpendAlert, UsageRecord
from billing.pricing import usd_text
from billing.services import Budget


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


def utc_day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def utc_month_start(now: datetime) -> date:
    """The first day of `now`'s UTC month."""
    return now.astimezone(UTC).date().replace(day=1)


# --- balance and ledger -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BalanceSummary:
    balance_micro_usd: int
    reserved_micro_usd: int

    @property
    def available_micro_usd(self) -> int:
        return self.balance_micro_usd - self.reserved_micro_usd


def balance_summary(*, user: User) -> BalanceSummary:
    """The account's balance and what is held for calls in flight (zero for an account without a row)."""
    row = Balance.objects.filter(user=user).values_list("balance_micro_usd", "reserved_micro_usd").first()
    return BalanceSummary(*(row or (0, 0)))


def ledger_entries_for_user(
    *, user: User, kind: str = "", since: date | None = None, until: date | None = None
) -> QuerySet[LedgerEntry]:
    """The account's ledger, newest first; `since` and `until` are UTC days, both included."""
    entries = LedgerEntry.objects.filter(user=user).select_related("api_key").order_by("-created_at", "-id")
    if kind:
        entries = entries.filter(kind=kind)
    if since is not None:
        entries = entries.filter(created_at__gte=utc_day_start(since))
    if until is not None:
        entries = entries.filter(created_at__lt=utc_day_start(until + timedelta(days=1)))
    return entries


# --- spend per key, per month ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeySpendRow:
    """A key with what it spent: all time, and in its current budget period when it has a spend limit."""

    key: ApiKey
    spent_total_micro_usd: int
    spent_period_micro_usd: int | None  # None: the key has no spend limit
    period_ends_at: datetime | None  # None: no limit, or a "total" limit

    @property
    def limit_used_percent(self) -> int | None:
        if self.spent_period_micro_usd is None:
            return None
        if self.key.spend_limit_micro_usd <= 0:
            return 100
        return min(100, self.spent_period_micro_usd * 100 // self.key.spend_limit_micro_usd)


def key_spend_sums(*, records: QuerySet[UsageRecord], now: datetime) -> dict[int, dict[str, int]]:
    """Spend per key among `records`, from their costs: all time, this UTC day, this UTC month (one query)."""
    today = now.astimezone(UTC).date()
    cost = "cost_micro_usd"
    rows = (
        records.filter(api_key__isnull=False)
        .values("api_key_id")
        .annotate(
            total=Sum(cost, default=0),
            day=Sum(cost, default=0, filter=Q(created_at__gte=utc_day_start(today))),
            month=Sum(cost, default=0, filter=Q(created_at__gte=utc_day_start(today.replace(day=1)))),
        )
        .order_by()
    )
    return {row.pop("api_key_id"): row for row in rows}


NO_SPEND = {"total": 0, "day": 0, "month": 0}


def keys_with_spend(*, user: User, now: datetime | None = None) -> list[KeySpendRow]:
    """The user's keys, newest first, each with its spend from the usage records (two queries)."""
    now = now or timezone.now()
    sums = key_spend_sums(records=UsageRecord.objects.filter(user=user), now=now)
    rows = []
    for key in ApiKey.objects.filter(user=user).order_by("-created_at", "-id"):
        spent = sums.get(key.id, NO_SPEND)
        period_spent = period_end = None
        if key.spend_limit_micro_usd is not None:
            period = key.spend_limit_period
            period_spent = spent[period] if period in ("day", "month") else spent["total"]
            period_end = Budget(limit_micro_usd=key.spend_limit_micro_usd, period=period).period_end(now)
        rows.append(KeySpendRow(key, spent["total"], period_spent, period_end))
    return rows


def usage_spent_in_month(*, user_ids: list[int], month: date) -> dict[int, int]:
    """Each user's spend in the UTC month starting on `month` (users without records are left out)."""
    next_month = (month.replace(day=28) + timedelta(days=4)).replace(day=1)
    rows = (
        UsageRecord.objects.filter(
            user_id__in=user_ids,
            created_at__gte=utc_day_start(month),
            created_at__lt=utc_day_start(next_month),
        )
        .values("user_id")
        .annotate(spent=Sum("cost_micro_usd", default=0))
        .order_by()
    )
    return {row["user_id"]: row["spent"] for row in rows}


def usage_spent_this_month(*, user: User, now: datetime | None = None) -> int:
    """The user's spend in the current UTC month."""
    return usage_spent_in_month(user_ids=[user.id], month=utc_month_start(now or timezone.now())).get(user.id, 0)


def spend_alert_thresholds(*, user: User) -> list[int]:
    """The account's monthly alert thresholds, micro-USD, lowest first."""
    return list(
        SpendAlert.objects.filter(user=user)
        .order_by("threshold_micro_usd")
        .values_list("threshold_micro_usd", flat=True)
    )


# --- charts and export ----------------------------------------------------------------

CHART_MODELS = 10  # the dearest models get a bar each; the rest share one


def usage_chart_data(
    *, by_day: list[DayUsage], by_model: list[ModelUsage], days: int, today: date | None = None
) -> dict:
    """What the usage page's charts draw (the same numbers as its tables): every day of the
    window, idle days as zero, oldest first; models dearest first, the tail summed as "other"."""
    today = today or timezone.now().astimezone(UTC).date()
    cost_by_day = {row.day: row.cost_micro_usd for row in by_day}
    window = [today - timedelta(days=offset) for offset in range(days - 1, -1, -1)]
    models = [{"model": row.model, "cost_micro_usd": row.cost_micro_usd} for row in by_model[:CHART_MODELS]]
    rest = sum(row.cost_micro_usd for row in by_model[CHART_MODELS:])
    if len(by_model) > CHART_MODELS:
        models.append({"model": f"{len(by_model) - CHART_MODELS} other models", "cost_micro_usd": rest})
    return {
        "days": [{"day": day.isoformat(), "cost_micro_usd": cost_by_day.get(day, 0)} for day in window],
        "models": models,
    }


USAGE_EXPORT_COLUMNS = (
    "created_at",
    "request_id",
    "api_key_prefix",
    "api_key_name",
    "model",
    "endpoint",
    "protocol",
    "stream",
    "status_code",
    "error_type",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "usage_estimated",
    "cost_usd",
    "cost_micro_usd",
    "input_price_per_1m_usd",
    "input_price_per_1m_micro_usd",
    "output_price_per_1m_usd",
    "output_price_per_1m_micro_usd",
    "cached_input_price_per_1m_usd",
    "cached_input_price_per_1m_micro_usd",
    "cache_write_price_per_1m_usd",
    "cache_write_price_per_1m_micro_usd",
    "latency_ms",
    "finish_reason",
)
_EXPORT_FIELDS = (
    "created_at",
    "request_id",
    "api_key__prefix",
    "api_key__name",
    "model",
    "endpoint",
    "protocol",
    "stream",
    "status_code",
    "error_type",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "usage_estimated",
    "cost_micro_usd",
    "input_price_per_1m",
    "output_price_per_1m",
    "cached_input_price_per_1m",
    "cache_write_price_per_1m",
    "latency_ms",
    "finish_reason",
)
# A spreadsheet runs a cell starting with one of these as a formula; request ids and key names come from clients.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(text: str) -> str:
    return "'" + text if text.startswith(_FORMULA_START) else text


def usage_export_rows(*, user: User, since: date | None = None, until: date | None = None) -> Iterator[list]:
    """The user's usage records as CSV rows (USAGE_EXPORT_COLUMNS), oldest first, read in chunks.

    `since` and `until` are UTC days, both included. Money is given twice: an
    exact decimal USD string and the integer micro-USD it came from.
    """
    records = UsageRecord.objects.filter(user=user)
    if since is not None:
        records = records.filter(created_at__gte=utc_day_start(since))
    if until is not None:
        records = records.filter(created_at__lt=utc_day_start(until + timedelta(days=1)))
    for row in records.order_by("created_at", "id").values_list(*_EXPORT_FIELDS).iterator(chunk_size=2000):
        (created_at, request_id, prefix, name, model, endpoint, protocol, stream, status_code, error_type) = row[:10]
        yield [
            created_at.astimezone(UTC).isoformat(),
            _cell(request_id),
            prefix or "",
            _cell(name or ""),
            _cell(model),
            endpoint,
            protocol,
            int(stream),
            status_code,
            _cell(error_type),
            *row[10:15],  # tokens
            int(row[15]),  # usage_estimated
            *_money(row[16:21]),  # the cost and the four unit prices
            row[21],  # latency
            row[22],  # finish_reason
        ]


def _money(values: tuple[int, ...]) -> list:
    cells = []
    for micro_usd in values:
        cells += [usd_text(micro_usd), micro_usd]
    return cells
