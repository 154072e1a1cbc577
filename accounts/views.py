"""The customer dashboard: sign-up, log-in, balance, and API keys with their controls and spend."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import LoginView
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST, require_safe
from django_ratelimit.decorators import ratelimit

from accounts.forms import ApiKeyControlsForm, ApiKeyCreateForm, EmailAuthenticationForm, SignupForm, email_normalise
from accounts.models import ApiKey, User
from accounts.services import api_key_create, api_key_revoke, api_key_set_controls, user_create
from billing.selectors import (
    balance_summary,
    keys_with_spend,
    spend_alert_thresholds,
    usage_spent_this_month,
    utc_month_start,
)
from catalog.selectors import model_example_slug


@require_safe
def landing(request: HttpRequest) -> HttpResponse:
    return redirect("dashboard" if request.user.is_authenticated else "login")


@never_cache
@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("dashboard")
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = user_create(email=form.cleaned_data["email"], password=form.cleaned_data["password1"])
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        messages.success(request, "Welcome to Beluga. Create an API key to start calling models.")
        return redirect("dashboard")
    return render(request, "accounts/signup.html", {"form": form})


class EmailLoginView(LoginView):
    form_class = EmailAuthenticationForm
    template_name = "accounts/login.html"
    redirect_authenticated_user = True


def _login_attempt_email(group: str, request: HttpRequest) -> str:
    # Log-in matches the address without regard to case, so the count must too: "A@x.com" is "a@x.com".
    return email_normalise(request.POST.get("username", ""))


# Per submitted email, so guessing one account's password is slow wherever it comes from.
login_view = ratelimit(key=_login_attempt_email, rate="10/m", method="POST", block=True)(EmailLoginView.as_view())


@never_cache
@login_required
@require_safe
def dashboard(request: HttpRequest) -> HttpResponse:
    return _dashboard_render(request, form=ApiKeyCreateForm())


@never_cache
@login_required
@require_POST
def key_create(request: HttpRequest) -> HttpResponse:
    form = ApiKeyCreateForm(request.POST)
    if not form.is_valid():
        return _dashboard_render(request, form=form, status=400)
    api_key, raw_key = api_key_create(user=request.user, name=form.cleaned_data["name"], expires_at=form.expires_at)
    # The full key lives only in this response: not in a URL, the session or the database.
    # beluga.js swaps the address back to the dashboard, so a reload is a plain GET.
    return _dashboard_render(request, form=ApiKeyCreateForm(), new_key=raw_key, new_key_row=api_key)


@login_required
@require_POST
def key_revoke(request: HttpRequest, key_id: int) -> HttpResponse:
    try:
        api_key = api_key_revoke(user=request.user, key_id=key_id)
    except ApiKey.DoesNotExist:
        raise Http404("No such key.") from None
    messages.success(request, f"Key “{api_key.name}” revoked. Requests using it are now rejected.")
    return redirect("dashboard")


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def key_controls(request: HttpRequest, key_id: int) -> HttpResponse:
    user: User = request.user
    api_key = get_object_or_404(ApiKey, id=key_id, user=user)
    form = ApiKeyControlsForm(request.POST or None, api_key=api_key, account_chat_rpm=user.chat_rpm)
    if request.method == "POST" and form.is_valid():
        api_key_set_controls(user=user, key_id=api_key.id, **form.controls)
        messages.success(request, f"Controls of “{api_key.name}” saved. They apply to its next request.")
        return redirect("dashboard")
    status = 400 if form.errors else 200
    return render(request, "accounts/key_controls.html", {"key": api_key, "form": form}, status=status)


def _dashboard_render(
    request: HttpRequest,
    *,
    form: ApiKeyCreateForm,
    new_key: str = "",
    new_key_row: ApiKey | None = None,
    status: int = 200,
) -> HttpResponse:
    user: User = request.user
    now = timezone.now()
    context = {
        "plan": user.plan,
        "balance": balance_summary(user=user),
        "month": utc_month_start(now),
        "month_spent": usage_spent_this_month(user=user, now=now),
        "alert_thresholds": spend_alert_thresholds(user=user),
        "chat_rpm": user.chat_rpm,
        "image_rpm": user.image_rpm,
        "has_override": user.chat_rpm_override is not None or user.image_rpm_override is not None,
        "keys": keys_with_spend(user=user, now=now),
        "form": form,
        "new_key": new_key,
        "new_key_row": new_key_row,
        "api_base": request.build_absolute_uri("/v1"),
        "example_model": model_example_slug() or "MODEL_ID",
        "dashboard_url": reverse("dashboard"),
    }
    return render(request, "accounts/dashboard.html", context, status=status)
