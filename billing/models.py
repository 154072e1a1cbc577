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
    latency_ms = models.PositiveIntegerField(default=0, help_text="Whole request, as seen by Beluga.")
    upstream_latency_ms = models.PositiveIntegerField(default=0, help_text="Upstream call to its last byte.")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user", "-created_at"], name="usage_user_created")]

    def __str__(self) -> str:
        return f"{self.request_id} {self.model} {self.status_code}"

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens
