"""Forms for the dashboard (sign-up, log-in, keys) and the user admin."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from django import forms
from django.contrib.auth import password_validation
from django.contrib.auth.forms import AdminUserCreationForm, AuthenticationForm, UserChangeForm
from django.db.models import Q
from django.utils import timezone

from accounts.models import User


def _email_normalise(value: str) -> str:
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
        email = _email_normalise(self.cleaned_data["email"])
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


# --- admin ---------------------------------------------------------------


class UserAdminCreationForm(AdminUserCreationForm):
    class Meta:
        model = User
        fields = ("email", "plan")

    def clean_email(self) -> str:
        email = _email_normalise(self.cleaned_data["email"])
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
