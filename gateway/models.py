from django.conf import settings
from django.db import models
from django.utils import timezone


class IdempotencyKey(models.Model):
    """One `Idempotency-Key` of one account: the call it started and, once done, its answer.

    Claimed by an INSERT that the unique constraint lets only one instance win;
    read, finished and released by gateway/idempotency.py only.
    """

    class State(models.TextChoices):
        RUNNING = "running"
        DONE = "done"

    # No index of its own: the unique constraint's index starts with the user.
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False)
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64, help_text="SHA-256 of method, path and body, hex.")
    state = models.CharField(max_length=8, choices=State.choices, default=State.RUNNING)
    request_id = models.CharField(max_length=64, help_text="The first call's X-Request-Id.")
    streamed = models.BooleanField(default=False, help_text="The answer was a stream: nothing to replay.")
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    content_type = models.CharField(max_length=255, blank=True)
    body = models.BinaryField(blank=True, default=b"")
    headers = models.JSONField(default=dict, blank=True, help_text="The answer's headers worth replaying.")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "key"], name="idempotency_user_key_unique")]

    def __str__(self) -> str:
        return f"{self.key} {self.state} {self.status_code or ''}".rstrip()


class MediaTask(models.Model):
    """One media generation of one account: an image set, a video, a speech or a transcription.

    Written by gateway/media/jobs.py only. Async upstream jobs (prediction
    APIs, OpenAI's videos) are submitted and polled by Celery workers under a
    lease (`lease_until`), so that exactly one worker moves a task at a time and
    a dead worker's task is picked up again when its lease runs out. The money
    is held at submit (`reservation`) and settled once, when the task ends
    (`billed`, set in the usage record's transaction).
    """

    class Kind(models.TextChoices):
        IMAGE = "image"
        VIDEO = "video"
        SPEECH = "speech"
        TRANSCRIPTION = "transcription"

    class Status(models.TextChoices):
        QUEUED = "queued"
        IN_PROGRESS = "in_progress"
        COMPLETED = "completed"
        FAILED = "failed"
        CANCELLED = "cancelled"

    public_id = models.CharField(max_length=48, unique=True, help_text="The id clients see.")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="media_tasks")
    api_key = models.ForeignKey("accounts.ApiKey", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    request_id = models.CharField(max_length=64, help_text="The submitting call's X-Request-Id.")
    model = models.CharField(max_length=128, help_text="Public model id.")
    upstream = models.CharField(max_length=64, blank=True)
    upstream_kind = models.CharField(max_length=16, blank=True)
    upstream_model = models.CharField(max_length=200, blank=True)
    # The upstream's job: its id and where to poll it (never shown to clients).
    upstream_job_id = models.CharField(max_length=200, blank=True)
    upstream_poll_url = models.CharField(max_length=500, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    progress = models.PositiveSmallIntegerField(default=0)
    # What was asked, checked and normalised (prompt, n, size, seconds, ...), and
    # what came out: [{"name": <storage name>, "content_type", "size", ...}].
    params = models.JSONField(default=dict, blank=True)
    results = models.JSONField(default=list, blank=True)
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)
    # Money: the hold taken at submit, the cost charged at the end (once).
    reservation = models.ForeignKey(
        "billing.Reservation", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    charges_balance = models.BooleanField(default=False, help_text="A prepaid account: the cost comes off its balance.")
    hold_micro_usd = models.BigIntegerField(default=0)
    cost_micro_usd = models.BigIntegerField(default=0)
    billed = models.BooleanField(default=False, help_text="Its usage record is written and its hold closed.")
    # Polling: when the next look is due, until when a worker holds it, when it gives up.
    attempts = models.PositiveIntegerField(default=0)
    next_poll_at = models.DateTimeField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    lease_token = models.CharField(max_length=32, blank=True, help_text="Which claim holds the lease.")
    deadline_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    completed_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True, help_text="Its files were deleted by the client.")

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["user", "-created_at"], name="mediatask_user_created"),
            models.Index(fields=["status", "next_poll_at"], name="mediatask_status_due"),
        ]

    def __str__(self) -> str:
        return f"{self.public_id} {self.status}"

    @property
    def finished(self) -> bool:
        return self.status in (self.Status.COMPLETED, self.Status.FAILED, self.Status.CANCELLED)
