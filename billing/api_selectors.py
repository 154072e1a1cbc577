"""Reads behind the account API (`GET /v1/generation`, `GET /v1/key`), scoped to the caller's account.

Plain reads: nothing here writes, so a lookup can never start a key's budget
count (billing.services does that when a call reserves).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from accounts.models import ApiKey
from billing.models import Balance, KeySpend, UsageRecord
from billing.selectors import NO_SPEND, key_spend_sums
from billing.services import Budget, key_held_micro_usd


def generation_get(*, user_id: int, request_id: str) -> UsageRecord | None:
    """The usage record of one call of the account, by its request id; None for anyone else's.

    A client may send its own X-Request-Id, so an id can name several calls:
    the latest one is returned.
    """
    return UsageRecord.objects.filter(user_id=user_id, request_id=request_id).order_by("-created_at", "-id").first()


@dataclass(frozen=True, slots=True)
class KeyBudget:
    """A key's spend limit in its current period."""

    limit_micro_usd: int
    period: str  # "day", "month" or "total"
    spent_micro_usd: int  # settled in this period
    held_micro_usd: int  # held by the key's calls in flight
    resets_at: datetime | None  # None for a "total" limit

    @property
    def remaining_micro_usd(self) -> int:
        """What the key's next calls may still hold, as the pipeline counts it."""
        return max(0, self.limit_micro_usd - self.spent_micro_usd - self.held_micro_usd)


@dataclass(frozen=True, slots=True)
class KeyOverview:
    key: ApiKey  # with user and plan
    balance_micro_usd: int  # the account's balance, open holds included
    reserved_micro_usd: int  # the account's open holds
    usage_micro_usd: int  # everything this key spent
    usage_day_micro_usd: int  # since 00:00 UTC
    usage_month_micro_usd: int  # since the first of the month, UTC
    budget: KeyBudget | None

    @property
    def available_micro_usd(self) -> int:
        return self.balance_micro_usd - self.reserved_micro_usd


def key_overview(*, key_id: int, now: datetime | None = None) -> KeyOverview:
    """The key, its account's balance, its spend, and its budget: three queries, five with a budget."""
    now = now or timezone.now()
    key = ApiKey.objects.select_related("user__plan").get(id=key_id)
    balance = Balance.objects.filter(user_id=key.user_id).values_list("balance_micro_usd", "reserved_micro_usd").first()
    balance_micro_usd, reserved_micro_usd = balance or (0, 0)
    usage = key_spend_sums(records=UsageRecord.objects.filter(api_key_id=key.id), now=now).get(key.id, NO_SPEND)
    budget = None
    if key.spend_limit_micro_usd is not None:
        budget = _key_budget(key=key, now=now, usage_by_period=usage)
    return KeyOverview(
        key=key,
        balance_micro_usd=balance_micro_usd,
        reserved_micro_usd=reserved_micro_usd,
        usage_micro_usd=usage["total"],
        usage_day_micro_usd=usage["day"],
        usage_month_micro_usd=usage["month"],
        budget=budget,
    )


def _key_budget(*, key: ApiKey, now: datetime, usage_by_period: dict[str, int]) -> KeyBudget:
    budget = Budget(limit_micro_usd=key.spend_limit_micro_usd, period=key.spend_limit_period)
    period_start = budget.period_start(now)
    # The count the pipeline enforces (billing.services.reserve); until a call starts it,
    # it would start from the key's usage records, as here.
    rows = KeySpend.objects.filter(api_key_id=key.id, period_start=period_start).values_list(
        "spent_micro_usd", flat=True
    )
    spent = next(iter(rows), None)
    if spent is None:
        spent = usage_by_period[budget.period]
    held = key_held_micro_usd(api_key_id=key.id)
    return KeyBudget(
        limit_micro_usd=budget.limit_micro_usd,
        period=budget.period,
        spent_micro_usd=spent,
        held_micro_usd=held,
        resets_at=budget.period_end(now),
    )
