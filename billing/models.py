from django.conf import settings
from django.db import models
from django.utils import timezone


class UsageRecord(models.Model):
    """One call to an upstream (success or failure) and what it cost.

    Written once, never updated. Costs are integer micro-USD from the catalog
    prices at the time of the call.
    """

    request_id = models.CharField(max_length=64, db_index=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="usage_records")
    api_key = models.ForeignKey("accounts.ApiKey", on_delete=models.SET_NULL, null=True, related_name="+")
    model = models.CharField(max_length=128, help_text="Public model id.")
    upstream = models.CharField(max_length=64, blank=True)
    upstream_model = models.CharField(max_length=200, blank=True)
    endpoint = models.CharField(max_length=64)
    # Database defaults on the columns added after the first release, so that
    # instances still running the previous code keep inserting during a rolling deploy.
    protocol = models.CharField(
        max_length=32,
        blank=True,
        db_default="",
        help_text="The client's protocol: openai.chat, anthropic.messages, gemini, ...",
    )
    upstream_kind = models.CharField(
        max_length=16, blank=True, db_default="", help_text="The protocol the upstream was called in."
    )
    stream = models.BooleanField(default=False)
    finish_reason = models.CharField(
        max_length=32, blank=True, db_default="", help_text="Why the model stopped (OpenAI's names: stop, length, ...)."
    )
    status_code = models.PositiveSmallIntegerField()
    error_type = models.CharField(max_length=64, blank=True)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    # Parts of the two counts above, priced apart where the model has a price for them.
    cached_tokens = models.PositiveIntegerField(db_default=0, help_text="Prompt tokens read from the provider's cache.")
    cache_write_tokens = models.PositiveIntegerField(db_default=0, help_text="Prompt tokens written to the cache.")
    reasoning_tokens = models.PositiveIntegerField(db_default=0, help_text="Completion tokens spent reasoning.")
    # True when the upstream gave no usage (client hung up mid-stream, upstream
    # cut off) and the tokens were counted by Beluga from what was delivered.
    usage_estimated = models.BooleanField(default=False)
    client_disconnected = models.BooleanField(default=False)
    cost_micro_usd = models.BigIntegerField(default=0)
    # The unit prices the call was charged at (micro-USD per 1M tokens), kept so
    # that a later price change never alters what an old record says.
    input_price_per_1m = models.BigIntegerField(db_default=0)
    output_price_per_1m = models.BigIntegerField(db_default=0)
    cached_input_price_per_1m = models.BigIntegerField(db_default=0)
    cache_write_price_per_1m = models.BigIntegerField(db_default=0)
    # Media calls are priced per unit (billing.pricing.MediaCharge): images,
    # seconds of video or audio, characters of speech; the unit price is kept
    # as charged (per image, per video second, per 1M characters, per minute).
    media_unit = models.CharField(max_length=16, blank=True, db_default="")
    media_units = models.BigIntegerField(db_default=0)
    media_unit_price = models.BigIntegerField(db_default=0)
    latency_ms = models.PositiveIntegerField(default=0, help_text="Whole request, as seen by Beluga.")
    upstream_latency_ms = models.PositiveIntegerField(default=0, help_text="Upstream call to its last byte.")
    # Every upstream the call tried, in order: {"upstream", "model", "credential", "status", "outcome",
    # "latency_ms"}; the last one answered (or failed last). Only the call's answer is billed.
    attempts = models.JSONField(default=list, db_default=[], blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["user", "-created_at"], name="usage_user_created"),
            models.Index(fields=["api_key", "-created_at"], name="usage_key_created"),
        ]

    def __str__(self) -> str:
        return f"{self.request_id} {self.model} {self.status_code}"

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class Balance(models.Model):
    """An account's money: the cached sums of its ledger entries, one row per user.

    Changed only by billing.services, in the same transaction as the entry that
    explains the change: `balance_micro_usd` is the sum of the entries'
    `amount_micro_usd`, `reserved_micro_usd` the sum of their `hold_micro_usd`
    (money set aside for calls in flight). What a call may spend is the
    difference. The reserve and settle statements lock this row, and only it.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, primary_key=True, related_name="balance"
    )
    balance_micro_usd = models.BigIntegerField(default=0)
    reserved_micro_usd = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.user_id}: {self.balance_micro_usd} (reserved {self.reserved_micro_usd})"

    @property
    def available_micro_usd(self) -> int:
        return self.balance_micro_usd - self.reserved_micro_usd


class Reservation(models.Model):
    """Money set aside before an upstream call, closed by a settle or a release."""

    class State(models.TextChoices):
        OPEN = "open", "Open"
        SETTLED = "settled", "Settled"
        RELEASED = "released", "Released"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="reservations")
    api_key = models.ForeignKey("accounts.ApiKey", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    request_id = models.CharField(max_length=64, db_index=True)
    amount_micro_usd = models.BigIntegerField()
    # Whether the hold counts against the account's balance (prepaid) or only
    # against the key's budget (postpaid accounts with a key spend limit).
    charges_balance = models.BooleanField(default=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.OPEN)
    created_at = models.DateTimeField(default=timezone.now)
    # Past this an open reservation belongs to a call that died with its worker: the sweeper closes it.
    expires_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["expires_at"], name="reservation_open_expiry", condition=models.Q(state="open")),
            models.Index(fields=["api_key"], name="reservation_open_key", condition=models.Q(state="open")),
        ]

    def __str__(self) -> str:
        return f"{self.request_id} {self.amount_micro_usd} {self.state}"


class LedgerEntry(models.Model):
    """One change to an account's money. Append-only: never updated, never deleted."""

    class Kind(models.TextChoices):
        GRANT = "grant", "Grant"  # admin top-up or promotion (with a reason)
        RESERVE = "reserve", "Reserve"  # money held for a call in flight
        SETTLE = "settle", "Settle"  # the call's real cost; its hold is given back
        RELEASE = "release", "Release"  # a hold given back unused
        REFUND = "refund", "Refund"
        ADJUSTMENT = "adjustment", "Adjustment"  # admin correction (with a reason), either sign

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="ledger_entries")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    amount_micro_usd = models.BigIntegerField(default=0, help_text="Change to the balance.")
    hold_micro_usd = models.BigIntegerField(default=0, help_text="Change to the reserved amount.")
    # The account's balance and reserved amount after this entry (the row's cached values).
    balance_after_micro_usd = models.BigIntegerField()
    reserved_after_micro_usd = models.BigIntegerField()
    reservation = models.ForeignKey(Reservation, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    api_key = models.ForeignKey("accounts.ApiKey", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    request_id = models.CharField(max_length=64, blank=True, db_index=True)
    reason = models.CharField(max_length=500, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "ledger entries"
        indexes = [models.Index(fields=["user", "-created_at"], name="ledger_user_created")]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount_micro_usd} ({self.user_id})"


class KeySpend(models.Model):
    """What one API key spent in one budget period, kept for keys with a spend limit.

    Updated under the account's Balance row lock, with the key's open
    reservations, so concurrent calls cannot overrun the key's budget.
    """

    api_key = models.ForeignKey("accounts.ApiKey", on_delete=models.CASCADE, related_name="+")
    period_start = models.DateField(help_text="UTC day or first of the month; 1970-01-01 for 'total'.")
    spent_micro_usd = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["api_key", "period_start"], name="keyspend_unique_period")]

    def __str__(self) -> str:
        return f"{self.api_key_id} {self.period_start}: {self.spent_micro_usd}"


class SpendAlert(models.Model):
    """A monthly spend threshold: the account's owner is emailed when the month's spend passes it."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="spend_alerts")
    threshold_micro_usd = models.BigIntegerField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["threshold_micro_usd"]
        constraints = [
            models.UniqueConstraint(fields=["user", "threshold_micro_usd"], name="spendalert_unique_threshold"),
            models.CheckConstraint(condition=models.Q(threshold_micro_usd__gt=0), name="spendalert_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} at {self.threshold_micro_usd}"


class SpendAlertSent(models.Model):
    """One alert email per threshold per UTC month: the unique row is claimed before the email goes out."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    threshold_micro_usd = models.BigIntegerField()
    month = models.DateField(help_text="First day of the UTC month.")
    spent_micro_usd = models.BigIntegerField(help_text="The month's spend when the email was sent.")
    sent_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "spend alert sent"
        verbose_name_plural = "spend alerts sent"
        constraints = [
            models.UniqueConstraint(
                fields=["user", "month", "threshold_micro_usd"], name="spendalertsent_once_per_month"
            )
        ]

    def __str__(self) -> str:
        return f"{self.user_id} {self.month:%Y-%m} at {self.threshold_micro_usd}"
