"""Forms for the dashboard (sign-up, log-in, keys, ledger, usage export, spend alerts) and the admin.

Money is typed in dollars as a decimal and cleaned to integer micro-USD by
UsdField: exact, never through a float.
"""

from __future__ import annotations

from contextlib import suppress
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from django import forms
from django.contrib.auth import password_validation
from django.contrib.auth.forms import AdminUserCreationForm, AuthenticationForm, UserChangeForm
from django.db.models import Q
from django.utils import timezone

from accounts.models import ApiKey, Plan, User
from billing.models import LedgerEntry
from billing.templatetags.billing_tags import usd_input
from catalog.selectors import models_public

MICRO_PER_USD = 1_000_000


def email_normalise(value: str) -> str:
    """An address as Beluga stores and compares it."""
    # Addresses are matched without regard to case everywhere, so keep one spelling.
    return value.strip().lower()


class SignupForm(forms.Form):
    email = forms.EmailField(
        label="Email",
        max_length=254,
        widget=forms.EmailInput(attrs={"autocomplete": "email", "autofocus": True}),
    )
    password1 = forms.CharField(
        label="Password",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text=password_validation.password_validators_help_text_html(),
    )
    password2 = forms.CharField(
        label="Confirm password",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def clean_email(self) -> str:
        email = email_normalise(self.cleaned_data["email"])
        # username mirrors email, so an old address left in username would collide too.
        if User.objects.filter(Q(email__iexact=email) | Q(username__iexact=email)).exists():
            raise forms.ValidationError("An account with this email already exists.", code="duplicate_email")
        return email

    def clean(self) -> dict:
        cleaned = super().clean()
        password1 = cleaned.get("password1")
        password2 = cleaned.get("password2")
        if password1 and password2 and password1 != password2:
            self.add_error("password2", forms.ValidationError("The two passwords differ.", code="password_mismatch"))
        elif password1:
            try:
                # An unsaved user lets the similarity validator compare against the email.
                password_validation.validate_password(password1, user=User(email=cleaned.get("email", "")))
            except forms.ValidationError as error:
                self.add_error("password1", error)
        return cleaned


class EmailAuthenticationForm(AuthenticationForm):
    """Django's log-in form, labelled and typed for an email address."""

    username = forms.EmailField(
        label="Email",
        max_length=254,
        widget=forms.EmailInput(attrs={"autocomplete": "email", "autofocus": True}),
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["username"].label = "Email"

    def clean_username(self) -> str:
        email = self.cleaned_data["username"].strip()
        # Accounts made by an admin or the CLI may keep mixed case; log in with the stored spelling.
        stored = User.objects.filter(email__iexact=email).values_list("email", flat=True).first()
        return stored or email


class ApiKeyCreateForm(forms.Form):
    name = forms.CharField(
        label="Name",
        max_length=100,
        widget=forms.TextInput(attrs={"placeholder": "e.g. production server", "autocomplete": "off"}),
    )
    expires_on = forms.DateField(
        label="Expires (optional)",
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="The key stops working at the end of this day (UTC).",
    )

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if not name:
            raise forms.ValidationError("Give the key a name.", code="required")
        return name

    def clean_expires_on(self) -> date | None:
        expires_on = self.cleaned_data["expires_on"]
        if expires_on is not None and expires_on < timezone.now().astimezone(UTC).date():
            raise forms.ValidationError("The expiry date is in the past.", code="past")
        return expires_on

    @property
    def expires_at(self) -> datetime | None:
        """The end of the chosen day, UTC, as the moment the key stops working."""
        expires_on = self.cleaned_data.get("expires_on")
        if expires_on is None:
            return None
        return datetime.combine(expires_on + timedelta(days=1), time.min, tzinfo=UTC)


class UsdField(forms.DecimalField):
    """Dollars as a decimal with up to six places ("5", "5.25", "$0.000001"), cleaned to integer micro-USD."""

    def __init__(self, *, allow_negative: bool = False, allow_zero: bool = False, **kwargs) -> None:
        kwargs.setdefault("widget", forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off"}))
        super().__init__(max_digits=18, decimal_places=6, **kwargs)
        self.allow_negative = allow_negative
        self.allow_zero = allow_zero

    def to_python(self, value):
        if isinstance(value, str):
            value = value.strip().replace("$", "", 1)
        return super().to_python(value)

    def clean(self, value) -> int | None:
        amount: Decimal | None = super().clean(value)
        if amount is None:
            return None
        if amount < 0 and not self.allow_negative:
            raise forms.ValidationError("Enter a positive amount.", code="negative")
        if amount == 0 and not self.allow_zero:
            raise forms.ValidationError("Enter an amount other than zero.", code="zero")
        # At most six decimal places were validated, so this product is a whole number.
        return int(amount * MICRO_PER_USD)

    def prepare_value(self, value):
        # Initial values are micro-USD; show them as dollars.
        return usd_input(value) if isinstance(value, int) else value

    def has_changed(self, initial, data) -> bool:
        try:
            amount = self.to_python(data)
        except forms.ValidationError:
            return True
        return (None if amount is None else int(amount * MICRO_PER_USD)) != initial


def _model_choices(*, keep: list[str]) -> list[tuple[str, str]]:
    """Every enabled model, and the ids in `keep` (a key may name a model disabled since)."""
    enabled = list(models_public().order_by("vendor", "slug").values_list("slug", "vendor"))
    slugs = {slug for slug, _ in enabled}
    return [(slug, f"{slug} ({vendor})") for slug, vendor in enabled] + [
        (slug, f"{slug} (disabled)") for slug in sorted(set(keep) - slugs)
    ]


class ApiKeyControlsForm(forms.Form):
    """The owner's controls on one key: a spend limit per period, the models it may call, a lower rate."""

    spend_limit_usd = UsdField(
        label="Spend limit (USD)",
        required=False,
        help_text="The most this key may spend in each period. Empty: no limit.",
    )
    spend_limit_period = forms.ChoiceField(label="Period", choices=ApiKey.SpendPeriod.choices)
    allowed_models = forms.MultipleChoiceField(
        label="Allowed models",
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: every model.",
    )
    chat_rpm = forms.IntegerField(label="Requests per minute", required=False, min_value=1)

    def __init__(self, *args, api_key: ApiKey, account_chat_rpm: int, **kwargs) -> None:
        kwargs.setdefault(
            "initial",
            {
                "spend_limit_usd": api_key.spend_limit_micro_usd,
                "spend_limit_period": api_key.spend_limit_period,
                "allowed_models": api_key.allowed_models,
                "chat_rpm": api_key.chat_rpm_override,
            },
        )
        super().__init__(*args, **kwargs)
        self.account_chat_rpm = account_chat_rpm
        self.fields["allowed_models"].choices = _model_choices(keep=api_key.allowed_models or [])
        self.fields["chat_rpm"].help_text = f"At most your plan's {account_chat_rpm}. Empty: the plan's."

    def clean_chat_rpm(self) -> int | None:
        chat_rpm = self.cleaned_data["chat_rpm"]
        if chat_rpm is not None and chat_rpm > self.account_chat_rpm:
            raise forms.ValidationError(
                f"A key's rate can only be lower than your plan's {self.account_chat_rpm} requests per minute.",
                code="above_plan",
            )
        return chat_rpm

    @property
    def controls(self) -> dict:
        """The cleaned values, as accounts.services.api_key_set_controls takes them."""
        return {
            "spend_limit_micro_usd": self.cleaned_data["spend_limit_usd"],
            "spend_limit_period": self.cleaned_data["spend_limit_period"],
            "allowed_models": self.cleaned_data["allowed_models"],
            "chat_rpm": self.cleaned_data["chat_rpm"],
        }


class DateRangeForm(forms.Form):
    """An optional range of UTC days, both included (GET parameters `since` and `until`)."""

    since = forms.DateField(label="From", required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(label="To", required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def clean(self) -> dict:
        cleaned = super().clean()
        since, until = cleaned.get("since"), cleaned.get("until")
        if since and until and since > until:
            self.add_error("until", forms.ValidationError("The end is before the start.", code="reversed"))
        return cleaned


class LedgerFilterForm(DateRangeForm):
    kind = forms.ChoiceField(label="Kind", required=False, choices=[("", "All"), *LedgerEntry.Kind.choices])

    field_order = ("kind", "since", "until")


class SpendAlertsForm(forms.Form):
    thresholds = forms.CharField(
        label="Email me when this month's spend passes (USD)",
        required=False,
        max_length=500,
        widget=forms.TextInput(attrs={"placeholder": "e.g. 10, 50, 100", "autocomplete": "off"}),
        help_text="Amounts in dollars, separated by commas. Empty: no alerts.",
    )

    def __init__(self, *args, max_thresholds: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.max_thresholds = max_thresholds

    def clean_thresholds(self) -> list[int]:
        amount = UsdField()
        values = set()
        for part in self.cleaned_data["thresholds"].split(","):
            if part.strip():
                try:
                    values.add(amount.clean(part))
                except forms.ValidationError as error:
                    raise forms.ValidationError(
                        f"“{part.strip()}”: {' '.join(error.messages)}", code="amount"
                    ) from None
        if len(values) > self.max_thresholds:
            raise forms.ValidationError(f"At most {self.max_thresholds} thresholds.", code="too_many")
        return sorted(values)


# --- admin ---------------------------------------------------------------


class BalanceChangeForm(forms.Form):
    """An admin's grant (positive) or adjustment (either sign) of an account's balance."""

    amount = UsdField(label="Amount (USD)")
    reason = forms.CharField(
        label="Reason",
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Required. Kept on the ledger entry and shown to the customer.",
    )

    def __init__(self, *args, allow_negative: bool, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["amount"].allow_negative = allow_negative
        if allow_negative:
            self.fields["amount"].help_text = "Positive adds to the balance, negative takes from it."


class ApiKeyAdminForm(forms.ModelForm):
    """An admin's edit of a key: its name and expiry here, its controls through api_key_set_controls.

    The control fields are named apart from the model's, so that saving the
    form never writes them to the row directly.
    """

    spend_limit_usd = UsdField(label="Spend limit (USD)", required=False, help_text="Empty: no limit.")
    spend_period = forms.ChoiceField(label="Spend limit period", choices=ApiKey.SpendPeriod.choices, required=False)
    allowed_model_ids = forms.MultipleChoiceField(
        label="Allowed models",
        required=False,
        widget=forms.SelectMultiple(attrs={"size": 12}),
        help_text="None selected: every model.",
    )
    chat_rpm = forms.IntegerField(
        label="Chat requests per minute",
        required=False,
        min_value=1,
        help_text="This key's own limit; only lower than the account's takes effect. Empty: the account's.",
    )

    class Meta:
        model = ApiKey
        fields = ("name", "expires_at")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        key = self.instance
        self.controls_before = {
            "spend_limit_micro_usd": key.spend_limit_micro_usd,
            "spend_limit_period": key.spend_limit_period,
            "allowed_models": sorted(key.allowed_models or []),
            "chat_rpm": key.chat_rpm_override,
        }
        self.fields["allowed_model_ids"].choices = _model_choices(keep=key.allowed_models or [])
        self.initial.update(
            spend_limit_usd=key.spend_limit_micro_usd,
            spend_period=key.spend_limit_period,
            allowed_model_ids=key.allowed_models,
            chat_rpm=key.chat_rpm_override,
        )

    @property
    def controls(self) -> dict:
        """The cleaned values, as accounts.services.api_key_set_controls takes them."""
        return {
            "spend_limit_micro_usd": self.cleaned_data["spend_limit_usd"],
            # Not sent (an older form): the key's period stays.
            "spend_limit_period": self.cleaned_data["spend_period"] or self.controls_before["spend_limit_period"],
            "allowed_models": sorted(self.cleaned_data["allowed_model_ids"]),
            "chat_rpm": self.cleaned_data["chat_rpm"],
        }

    @property
    def controls_changed(self) -> bool:
        return self.controls != self.controls_before


class PlanDefaultMovesForm(forms.ModelForm):
    """A plan form whose "default" tick moves the default here (accounts.services.plan_save).

    The one-default constraint is then the save's to keep, not the form's to
    refuse: without this, a plan could become the default only after the
    previous default had been unticked and saved.
    """

    def _get_validation_exclusions(self) -> set[str]:
        return super()._get_validation_exclusions() | {"is_default"}


class PlanChangelistFormSet(forms.BaseModelFormSet):
    """The plan list's inline edits: at most one plan may be ticked as the default."""

    def clean(self) -> None:
        super().clean()
        ticked = [form for form in self.forms if form.cleaned_data.get("is_default")]
        if len(ticked) > 1:
            raise forms.ValidationError(
                "Only one plan can be the default: untick all but one.", code="several_defaults"
            )


class PlanAdminForm(PlanDefaultMovesForm):
    signup_grant_micro_usd = forms.IntegerField(
        label="Sign-up grant (micro-USD)",
        required=False,
        min_value=0,
        help_text="Credit granted to each new sign-up on this plan (1 USD = 1,000,000). Empty: none.",
    )

    class Meta:
        model = Plan
        fields = (
            "name",
            "slug",
            "chat_rpm",
            "image_rpm",
            "is_default",
            "prepaid",
            "signup_grant_micro_usd",
            "sort_order",
        )

    def clean_signup_grant_micro_usd(self) -> int:
        return self.cleaned_data["signup_grant_micro_usd"] or 0


class UserAdminCreationForm(AdminUserCreationForm):
    class Meta:
        model = User
        fields = ("email", "plan")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        plan = self.fields["plan"]
        plan.required = False
        plan.help_text = "Empty: the default plan. The account gets the plan's sign-up credit, as a sign-up does."
        with suppress(Plan.DoesNotExist):
            plan.initial = Plan.objects.default()

    def clean_plan(self) -> Plan:
        if self.cleaned_data["plan"] is not None:
            return self.cleaned_data["plan"]
        try:
            return Plan.objects.default()
        except Plan.DoesNotExist:
            raise forms.ValidationError("No plan exists yet: add one first.", code="no_plan") from None

    def clean_email(self) -> str:
        email = email_normalise(self.cleaned_data["email"])
        if User.objects.filter(Q(email__iexact=email) | Q(username__iexact=email)).exists():
            raise forms.ValidationError("An account with this email already exists.", code="duplicate_email")
        return email

    def save(self, commit: bool = True) -> User:
        # Django's admin needs `username`; it mirrors the email (see EmailUserManager).
        self.instance.username = self.cleaned_data["email"]
        return super().save(commit=commit)


class UserAdminChangeForm(UserChangeForm):
    class Meta:
        model = User
        fields = "__all__"

    def save(self, commit: bool = True) -> User:
        if "email" in self.cleaned_data:
            self.instance.username = self.cleaned_data["email"]
        return super().save(commit=commit)
