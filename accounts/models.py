from __future__ import annotations

from asgiref.sync import sync_to_async
from django.contrib.auth.models import AbstractUser, UserManager
from django.db import models
from django.utils import timezone


class PlanQuerySet(models.QuerySet):
    def default(self) -> Plan:
        """The plan new accounts get: the one marked default, else the first in order.

        Raises Plan.DoesNotExist when there is no plan at all (migration 0002 seeds four).
        """
        plan = self.filter(is_default=True).order_by("sort_order", "id").first()
        plan = plan or self.order_by("sort_order", "id").first()
        if plan is None:
            raise self.model.DoesNotExist("No plan exists: add one in the admin.")
        return plan


class Plan(models.Model):
    """A subscription tier: its per-minute request limits per bucket."""

    slug = models.SlugField(max_length=32, unique=True)
    name = models.CharField(max_length=64)
    chat_rpm = models.PositiveIntegerField(help_text="Chat requests per minute, per API key.")
    image_rpm = models.PositiveIntegerField(help_text="Image/video requests per minute, per API key.")
    is_default = models.BooleanField(
        default=False, help_text="Plan given to new accounts. Only one plan is the default: ticking it here moves it."
    )
    prepaid = models.BooleanField(default=True, help_text="Balance required (off: postpaid, invoiced later).")
    signup_grant_micro_usd = models.BigIntegerField(
        default=0, help_text="Credit granted to each new sign-up on this plan, micro-USD (1 USD = 1,000,000)."
    )
    sort_order = models.PositiveSmallIntegerField(default=0)

    objects = PlanQuerySet.as_manager()

    class Meta:
        ordering = ["sort_order", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"],
                condition=models.Q(is_default=True),
                name="plan_one_default",
                violation_error_message="Another plan is already the default.",
            )
        ]

    def __str__(self) -> str:
        return self.name


class EmailUserManager(UserManager):
    """Users log in with their email; `username` mirrors it for Django's admin.

    Every user made here (`user_create`, `manage.py createsuperuser`, tests) is
    saved by accounts.services.user_open: on the default plan unless given one,
    with its balance opened.
    """

    def _create_user(self, username, email, password, **extra_fields):
        from accounts.services import user_open  # services imports this module

        email = self.normalize_email(email or username)
        return user_open(user=self._create_user_object(email, email, password, **extra_fields))

    async def _acreate_user(self, username, email, password, **extra_fields):
        return await sync_to_async(self._create_user)(username, email, password, **extra_fields)

    def create_user(self, email=None, password=None, **extra_fields):
        return super().create_user(email, email, password, **extra_fields)

    def create_superuser(self, email=None, password=None, **extra_fields):
        return super().create_superuser(email, email, password, **extra_fields)


class User(AbstractUser):
    email = models.EmailField(unique=True)
    # Required: a user without a plan would have no request limits at all.
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="users")
    # Per-account limits (Enterprise contracts); empty means the plan's.
    chat_rpm_override = models.PositiveIntegerField(null=True, blank=True)
    image_rpm_override = models.PositiveIntegerField(null=True, blank=True)

    USERNAME_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    objects = EmailUserManager()

    def __str__(self) -> str:
        return self.email

    @property
    def chat_rpm(self) -> int:
        if self.chat_rpm_override is not None:
            return self.chat_rpm_override
        return self.plan.chat_rpm

    @property
    def image_rpm(self) -> int:
        if self.image_rpm_override is not None:
            return self.image_rpm_override
        return self.plan.image_rpm


class ApiKey(models.Model):
    """A customer's API key. Only its SHA-256 and a display prefix are stored."""

    class SpendPeriod(models.TextChoices):
        DAY = "day", "Daily"
        MONTH = "month", "Monthly"
        TOTAL = "total", "Total"

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, help_text="First characters, for display only.")
    hashed_key = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # Controls the owner sets per key (empty: none).
    spend_limit_micro_usd = models.BigIntegerField(
        null=True, blank=True, help_text="Most this key may spend per period, micro-USD (empty: no limit)."
    )
    spend_limit_period = models.CharField(max_length=8, choices=SpendPeriod.choices, default=SpendPeriod.MONTH)
    allowed_models = models.JSONField(
        default=list, blank=True, help_text="Public model ids this key may call (empty: every model)."
    )
    chat_rpm_override = models.PositiveIntegerField(
        null=True, blank=True, help_text="Chat requests per minute for this key, below the plan's (empty: the plan's)."
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or self.expires_at > timezone.now()

    @property
    def status(self) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= timezone.now():
            return "expired"
        return "active"
