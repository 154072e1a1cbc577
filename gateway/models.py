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
