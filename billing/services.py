"""Writes of the billing app: usage records, and the ledger that moves money.

Money moves only through ledger entries (LedgerEntry). Each entry and the
change it makes to the account's cached Balance row are written in one
transaction; the row is locked only by the statements that change it, never
across an upstream call. A call's life on a prepaid account:

    reserve (before the upstream call)  → hold the most the call can cost
    usage_record(..., hold=...)         → the usage record, and in the same
                                          transaction a settle (the real cost;
                                          the hold given back) or a release
    reservation_release(hold)           → a call that ended before it could be
                                          recorded (an error in Beluga itself)
    reservations_sweep()                → holds of calls whose worker died

Postpaid accounts are not held or charged at call time (their usage records are
invoiced), unless the key has a spend limit: then a hold counts against the
key's budget only.
"""

from __future__ import annotations

import calendar
import functools
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import orjson
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Sum
from django.utils import timezone

from billing.models import Balance, KeySpend, LedgerEntry, Reservation, UsageRecord
from billing.pricing import ChargedPrices, MediaCharge
from billing.usage_writer import is_batching, usage_writer

# The columns written for every upstream call, in INSERT order.
_USAGE_FIELDS = (
    "request_id",
    "user_id",
    "api_key_id",
    "model",
    "upstream",
    "upstream_model",
    "endpoint",
    "protocol",
    "upstream_kind",
    "stream",
    "finish_reason",
    "status_code",
    "error_type",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "usage_estimated",
    "client_disconnected",
    "cost_micro_usd",
    "input_price_per_1m",
    "output_price_per_1m",
    "cached_input_price_per_1m",
    "cache_write_price_per_1m",
    "media_unit",
    "media_units",
    "media_unit_price",
    "latency_ms",
    "upstream_latency_ms",
    "attempts",
    "created_at",
)


def _quoted_table(model) -> str:
    return connection.ops.quote_name(model._meta.db_table)


# The statements run on every billed call, built once from the models' metadata
# (so a renamed column cannot drift) instead of through the ORM's compiler.


@functools.cache
def _usage_insert() -> str:
    opts = UsageRecord._meta
    columns = ", ".join(connection.ops.quote_name(opts.get_field(f).column) for f in _USAGE_FIELDS)
    placeholders = ", ".join(["%s"] * len(_USAGE_FIELDS))
    return f"INSERT INTO {_quoted_table(UsageRecord)} ({columns}) VALUES ({placeholders})"  # noqa: S608 - names from model metadata, values bound


def usage_rows_per_insert() -> int:
    """How many usage records one INSERT may carry on this database (SQLite before 3.32 binds 999 values)."""
    limit = connection.features.max_query_params or 65_535  # PostgreSQL: the protocol's 65,535
    return max(1, limit // len(_USAGE_FIELDS))


def usage_records_written(rows: list[tuple]) -> set[tuple[str, datetime]]:
    """Which of these records are in the table already, as (request_id, created_at): a retried
    INSERT whose commit went through before the connection broke must not write them twice."""
    request_ids = {values[0] for values in rows}
    found = UsageRecord.objects.filter(request_id__in=request_ids).values_list("request_id", "created_at")
    return set(found)


def usage_records_insert(rows: list[tuple]) -> None:
    """Several usage records (each a tuple in `_USAGE_FIELDS` order) in one INSERT, in autocommit."""
    opts = UsageRecord._meta
    columns = ", ".join(connection.ops.quote_name(opts.get_field(f).column) for f in _USAGE_FIELDS)
    row = "(" + ", ".join(["%s"] * len(_USAGE_FIELDS)) + ")"
    sql = f"INSERT INTO {_quoted_table(UsageRecord)} ({columns}) VALUES {', '.join([row] * len(rows))}"  # noqa: S608 - names from model metadata, values bound
    with connection.cursor() as cursor:
        cursor.execute(sql, [value for values in rows for value in values])


TOTAL_PERIOD_START = date(1970, 1, 1)  # KeySpend's period for "total" budgets


@dataclass(frozen=True, slots=True)
class Budget:
    """A key's spend limit, as the request pipeline knows it (from the cached key)."""

    limit_micro_usd: int
    period: str  # "day", "month" or "total"

    def period_start(self, now: datetime) -> date:
        today = now.astimezone(UTC).date()
        if self.period == "day":
            return today
        if self.period == "month":
            return today.replace(day=1)
        return TOTAL_PERIOD_START

    def period_end(self, now: datetime) -> datetime | None:
        """When the current period ends (UTC), for the error message; None for 'total'."""
        start = self.period_start(now)
        if self.period == "day":
            return datetime.combine(start + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
        if self.period == "month":
            days = calendar.monthrange(start.year, start.month)[1]
            return datetime.combine(start + timedelta(days=days), datetime.min.time(), tzinfo=UTC)
        return None


@dataclass(frozen=True, slots=True)
class Hold:
    """An open reservation, handed back to usage_record or reservation_release to close it."""

    reservation_id: int
    user_id: int
    api_key_id: int | None
    amount_micro_usd: int
    charges_balance: bool
    budget_period_start: date | None  # set when the key has a spend limit


class InsufficientBalance(Exception):
    def __init__(self, *, available_micro_usd: int, needed_micro_usd: int) -> None:
        super().__init__("insufficient balance")
        self.available_micro_usd = available_micro_usd
        self.needed_micro_usd = needed_micro_usd


class BudgetExceeded(Exception):
    def __init__(self, *, budget: Budget, spent_micro_usd: int, held_micro_usd: int, needed_micro_usd: int) -> None:
        super().__init__("key budget exceeded")
        self.budget = budget
        self.spent_micro_usd = spent_micro_usd
        self.held_micro_usd = held_micro_usd
        self.needed_micro_usd = needed_micro_usd


def usage_record(
    *,
    request_id: str,
    user_id: int,
    api_key_id: int | None,
    model: str,
    upstream: str,
    upstream_model: str,
    endpoint: str,
    stream: bool,
    protocol: str = "",
    upstream_kind: str = "",
    status_code: int,
    finish_reason: str = "",
    error_type: str = "",
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    cached_tokens: int = 0,
    cache_write_tokens: int = 0,
    reasoning_tokens: int = 0,
    usage_estimated: bool = False,
    client_disconnected: bool = False,
    cost_micro_usd: int = 0,
    prices: ChargedPrices = ChargedPrices(),  # noqa: B008 - frozen, shared safely
    media: MediaCharge | None = None,
    latency_ms: int = 0,
    upstream_latency_ms: int = 0,
    attempts: list[dict] | None = None,
    hold: Hold | None = None,
    charge_balance: bool = False,
) -> None:
    """Record one upstream call, and settle its money in the same transaction.

    `media` is a media call's charge (its unit, count and unit price are kept;
    `cost_micro_usd` is its cost). `hold` is the call's reservation (closed here: settled at `cost_micro_usd`,
    or released when the call cost nothing). `charge_balance` charges a
    prepaid account that had no hold. Without either (postpaid), the record is
    one INSERT in autocommit: a plain parameterised INSERT instead of
    `UsageRecord.objects.create`, because this runs on every call and building
    a model instance and compiling the statement cost more CPU than the rest
    of the pipeline's database work (see docs/performance.md).
    """
    values = (
        request_id,
        user_id,
        api_key_id,
        model,
        upstream,
        upstream_model,
        endpoint,
        protocol,
        upstream_kind,
        stream,
        finish_reason,
        status_code,
        error_type,
        prompt_tokens,
        completion_tokens,
        cached_tokens,
        cache_write_tokens,
        reasoning_tokens,
        usage_estimated,
        client_disconnected,
        cost_micro_usd,
        prices.input_per_1m,
        prices.output_per_1m,
        prices.cached_input_per_1m,
        prices.cache_write_per_1m,
        media.unit if media else "",
        media.units if media else 0,
        media.unit_price if media else 0,
        latency_ms,
        upstream_latency_ms,
        orjson.dumps(attempts or []).decode(),
        timezone.now(),
    )
    if hold is None and not (charge_balance and cost_micro_usd):
        if is_batching() and usage_writer.add(values):
            return  # written with others in a moment (billing/usage_writer.py)
        with connection.cursor() as cursor:
            cursor.execute(_usage_insert(), values)
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(_usage_insert(), values)
        if hold is None:
            _entry(
                user_id=user_id,
                kind=LedgerEntry.Kind.SETTLE,
                amount=-cost_micro_usd,
                api_key_id=api_key_id,
                request_id=request_id,
            )
        else:
            _hold_close(hold, cost_micro_usd=cost_micro_usd, request_id=request_id)


# --- balances and the ledger ------------------------------------------------------


def balance_open(*, user_id: int, signup_grant_micro_usd: int = 0) -> None:
    """Give a new account its balance row, and its plan's sign-up credit."""
    Balance.objects.get_or_create(user_id=user_id)
    if signup_grant_micro_usd > 0:
        _entry(
            user_id=user_id,
            kind=LedgerEntry.Kind.GRANT,
            amount=signup_grant_micro_usd,
            reason="Sign-up credit",
        )


def balance_grant(*, user_id: int, amount_micro_usd: int, reason: str, created_by_id: int | None = None) -> LedgerEntry:
    """Add credit (a top-up or a promotion). The reason is required and shown to the customer."""
    if amount_micro_usd <= 0:
        raise ValueError("A grant must be a positive amount.")
    return _entry(
        user_id=user_id,
        kind=LedgerEntry.Kind.GRANT,
        amount=amount_micro_usd,
        reason=_reason_required(reason),
        created_by_id=created_by_id,
    )


def balance_adjust(
    *, user_id: int, amount_micro_usd: int, reason: str, created_by_id: int | None = None
) -> LedgerEntry:
    """An admin's correction, either sign. The reason is required."""
    if amount_micro_usd == 0:
        raise ValueError("An adjustment must not be zero.")
    return _entry(
        user_id=user_id,
        kind=LedgerEntry.Kind.ADJUSTMENT,
        amount=amount_micro_usd,
        reason=_reason_required(reason),
        created_by_id=created_by_id,
    )


def balance_refund(
    *, user_id: int, amount_micro_usd: int, reason: str, request_id: str = "", created_by_id: int | None = None
) -> LedgerEntry:
    """Money given back for a charge (a failed generation, a goodwill refund)."""
    if amount_micro_usd <= 0:
        raise ValueError("A refund must be a positive amount.")
    return _entry(
        user_id=user_id,
        kind=LedgerEntry.Kind.REFUND,
        amount=amount_micro_usd,
        reason=_reason_required(reason),
        request_id=request_id,
        created_by_id=created_by_id,
    )


def _reason_required(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise ValueError("A reason is required.")
    return reason[:500]


@functools.cache
def _balance_update() -> str:
    return (
        f"UPDATE {_quoted_table(Balance)} SET balance_micro_usd = balance_micro_usd + %s, "  # noqa: S608 - table from model metadata, values bound
        "reserved_micro_usd = reserved_micro_usd + %s, updated_at = %s "
        "WHERE user_id = %s RETURNING balance_micro_usd, reserved_micro_usd"
    )


def _entry(
    *,
    user_id: int,
    kind: str,
    amount: int = 0,
    hold: int = 0,
    reservation_id: int | None = None,
    api_key_id: int | None = None,
    request_id: str = "",
    reason: str = "",
    created_by_id: int | None = None,
) -> LedgerEntry:
    """Write one ledger entry and apply it to the account's Balance row, in one transaction.

    Inside a caller's transaction it joins it (no savepoint: a savepoint is two
    more round trips on every settle, and a failure here must undo the caller's
    writes anyway).
    """
    now = timezone.now()
    with transaction.atomic(savepoint=False):
        with connection.cursor() as cursor:
            cursor.execute(_balance_update(), [amount, hold, now, user_id])
            row = cursor.fetchone()
        if row is None:
            Balance.objects.get_or_create(user_id=user_id)
            with connection.cursor() as cursor:
                cursor.execute(_balance_update(), [amount, hold, now, user_id])
                row = cursor.fetchone()
        return LedgerEntry.objects.create(
            user_id=user_id,
            kind=kind,
            amount_micro_usd=amount,
            hold_micro_usd=hold,
            balance_after_micro_usd=row[0],
            reserved_after_micro_usd=row[1],
            reservation_id=reservation_id,
            api_key_id=api_key_id,
            request_id=request_id,
            reason=reason,
            created_by_id=created_by_id,
            created_at=now,
        )


# --- reservations -----------------------------------------------------------------


@functools.cache
def _reserve_update() -> str:
    # One statement: the hold is taken only if what is left covers it (row locked by the UPDATE itself).
    return (
        f"UPDATE {_quoted_table(Balance)} SET reserved_micro_usd = reserved_micro_usd + %s, updated_at = %s "  # noqa: S608 - table from model metadata, values bound
        "WHERE user_id = %s AND balance_micro_usd - reserved_micro_usd >= %s "
        "RETURNING balance_micro_usd, reserved_micro_usd"
    )


def reserve(
    *,
    user_id: int,
    api_key_id: int | None,
    request_id: str,
    amount_micro_usd: int,
    charges_balance: bool,
    budget: Budget | None = None,
    expires_in_seconds: float | None = None,
) -> Hold:
    """Hold the most a call can cost before calling the upstream.

    Raises InsufficientBalance when the account's available balance (balance
    minus open holds) does not cover it, BudgetExceeded when the key's spend
    in the period plus its open holds would pass its limit. Both checks run
    under the account's row lock, so concurrent calls cannot overspend.
    """
    amount = max(0, int(amount_micro_usd))
    now = timezone.now()
    expires_in = expires_in_seconds or settings.BELUGA["RESERVATION_TIMEOUT_SECONDS"]
    with transaction.atomic():
        balance_row = None
        with connection.cursor() as cursor:
            if charges_balance:
                cursor.execute(_reserve_update(), [amount, now, user_id, amount])
                balance_row = cursor.fetchone()
                if balance_row is None:
                    raise InsufficientBalance(
                        available_micro_usd=balance_available(user_id=user_id), needed_micro_usd=amount
                    )
            else:
                # A postpaid account with a key budget: lock the account row all the same, so
                # that the budget check below sees every concurrent hold of this account.
                Balance.objects.get_or_create(user_id=user_id)
                list(Balance.objects.select_for_update().filter(user_id=user_id).values_list("user_id"))
        period_start = None
        if budget is not None and api_key_id is not None:
            period_start = budget.period_start(now)
            spent = _key_spent(api_key_id=api_key_id, period_start=period_start, budget=budget, now=now)
            held = key_held_micro_usd(api_key_id=api_key_id)
            if spent + held + amount > budget.limit_micro_usd:
                raise BudgetExceeded(budget=budget, spent_micro_usd=spent, held_micro_usd=held, needed_micro_usd=amount)
        reservation = Reservation.objects.create(
            user_id=user_id,
            api_key_id=api_key_id,
            request_id=request_id,
            amount_micro_usd=amount,
            charges_balance=charges_balance,
            created_at=now,
            expires_at=now + timedelta(seconds=expires_in),
        )
        if balance_row is not None:
            LedgerEntry.objects.create(
                user_id=user_id,
                kind=LedgerEntry.Kind.RESERVE,
                hold_micro_usd=amount,
                balance_after_micro_usd=balance_row[0],
                reserved_after_micro_usd=balance_row[1],
                reservation_id=reservation.id,
                api_key_id=api_key_id,
                request_id=request_id,
                created_at=now,
            )
    return Hold(
        reservation_id=reservation.id,
        user_id=user_id,
        api_key_id=api_key_id,
        amount_micro_usd=amount,
        charges_balance=charges_balance,
        budget_period_start=period_start,
    )


def key_held_micro_usd(*, api_key_id: int) -> int:
    """What the key's calls in flight hold (its open reservations)."""
    open_holds = Reservation.objects.filter(api_key_id=api_key_id, state=Reservation.State.OPEN)
    return open_holds.aggregate(total=Sum("amount_micro_usd"))["total"] or 0


def _key_spent(*, api_key_id: int, period_start: date, budget: Budget, now: datetime) -> int:
    """The key's spend in the period: its KeySpend row, started from its usage records when missing."""
    row = KeySpend.objects.filter(api_key_id=api_key_id, period_start=period_start).values_list(
        "spent_micro_usd", flat=True
    )
    for spent in row:
        return spent
    since = datetime.combine(period_start, datetime.min.time(), tzinfo=UTC)
    spent = (
        UsageRecord.objects.filter(api_key_id=api_key_id, created_at__gte=since).aggregate(total=Sum("cost_micro_usd"))[
            "total"
        ]
        or 0
    )
    KeySpend.objects.get_or_create(
        api_key_id=api_key_id, period_start=period_start, defaults={"spent_micro_usd": spent}
    )
    return spent


def _hold_close(hold: Hold, *, cost_micro_usd: int, request_id: str, state: str | None = None) -> bool:
    """Close a hold: settle it at the cost (release it when the cost is 0). False if it was closed already.

    A hold the sweeper released before the call ended (a call longer than
    RESERVATION_TIMEOUT_SECONDS) is still charged: the cost is real.
    """
    now = timezone.now()
    state = state or (Reservation.State.SETTLED if cost_micro_usd else Reservation.State.RELEASED)
    with transaction.atomic(savepoint=False):
        if not hold.charges_balance and hold.budget_period_start is not None:
            # Postpaid with a budget: the account row orders this settle with the holds that read the budget.
            list(Balance.objects.select_for_update().filter(user_id=hold.user_id).values_list("user_id"))
        was_open = bool(
            Reservation.objects.filter(id=hold.reservation_id, state=Reservation.State.OPEN).update(
                state=state, closed_at=now
            )
        )
        held = hold.amount_micro_usd if was_open and hold.charges_balance else 0
        if hold.charges_balance and (held or cost_micro_usd):
            _entry(
                user_id=hold.user_id,
                kind=LedgerEntry.Kind.SETTLE if cost_micro_usd else LedgerEntry.Kind.RELEASE,
                amount=-cost_micro_usd,
                hold=-held,
                reservation_id=hold.reservation_id,
                api_key_id=hold.api_key_id,
                request_id=request_id,
            )
        if hold.api_key_id is not None and cost_micro_usd:
            _key_spend_add(api_key_id=hold.api_key_id, cost_micro_usd=cost_micro_usd, now=now)
    return was_open


def _key_spend_add(*, api_key_id: int, cost_micro_usd: int, now: datetime) -> None:
    """Add a settled cost to the key's count for the current period, where one is kept.

    Only an existing row is updated (whatever the hold knew of the budget: a
    budget set while the call ran counts it too); a missing row is rebuilt by
    the next hold from the usage records, which include this call's.
    """
    today = now.astimezone(UTC).date()
    KeySpend.objects.filter(
        api_key_id=api_key_id, period_start__in=(today, today.replace(day=1), TOTAL_PERIOD_START)
    ).update(spent_micro_usd=F("spent_micro_usd") + cost_micro_usd)


def reservation_release(hold: Hold, *, request_id: str = "") -> bool:
    """Give a hold back unused (the call ended before anything was billed). False if already closed."""
    return _hold_close(hold, cost_micro_usd=0, request_id=request_id, state=Reservation.State.RELEASED)


def reservations_sweep(*, now: datetime | None = None, limit: int = 500) -> int:
    """Release holds past their expiry: their calls died with their worker. Returns how many were released.

    A call's record and its settle are one transaction, so an open hold past
    its expiry never has a record to settle from: releasing it is the right
    close. Safe to run from several workers at once (each hold closes once).
    """
    now = now or timezone.now()
    stale = Reservation.objects.filter(state=Reservation.State.OPEN, expires_at__lt=now).order_by("expires_at")[:limit]
    released = 0
    for row in stale:
        hold = Hold(
            reservation_id=row.id,
            user_id=row.user_id,
            api_key_id=row.api_key_id,
            amount_micro_usd=row.amount_micro_usd,
            charges_balance=row.charges_balance,
            budget_period_start=None,
        )
        released += reservation_release(hold, request_id=row.request_id)
    return released


def key_budget_reset(*, api_key_id: int) -> None:
    """A key's budget changed: its period counts start again from its usage records."""
    KeySpend.objects.filter(api_key_id=api_key_id).delete()


def balance_available(*, user_id: int) -> int:
    """Balance minus open holds: what the account may still spend."""
    row = Balance.objects.filter(user_id=user_id).values_list("balance_micro_usd", "reserved_micro_usd").first()
    return row[0] - row[1] if row else 0
