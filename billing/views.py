"""The customer's money pages: usage (tables and charts), the ledger, the usage export, spend alerts."""

from __future__ import annotations

import csv
from itertools import chain

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_safe

from accounts.forms import DateRangeForm, LedgerFilterForm, SpendAlertsForm
from billing.alerts import MAX_THRESHOLDS, spend_alerts_set
from billing.selectors import (
    USAGE_EXPORT_COLUMNS,
    balance_summary,
    ledger_entries_for_user,
    spend_alert_thresholds,
    usage_chart_data,
    usage_export_rows,
    usage_records_for_user,
    usage_spent_this_month,
    usage_total,
    usage_totals_by_day,
    usage_totals_by_model,
    utc_month_start,
)
from billing.templatetags.billing_tags import usd_input

RECORDS_PER_PAGE = 50
LEDGER_PER_PAGE = 50
TOTALS_DAYS = 30


@never_cache
@login_required
@require_safe
def usage(request: HttpRequest) -> HttpResponse:
    user = request.user
    page = Paginator(usage_records_for_user(user=user), RECORDS_PER_PAGE).get_page(request.GET.get("page"))
    by_day = usage_totals_by_day(user=user, days=TOTALS_DAYS)
    by_model = usage_totals_by_model(user=user)
    context = {
        "page": page,
        "by_day": by_day,
        "by_model": by_model,
        "chart_data": usage_chart_data(by_day=by_day, by_model=by_model, days=TOTALS_DAYS),
        "total": usage_total(user=user),
        "totals_days": TOTALS_DAYS,
        "export_form": DateRangeForm(),
    }
    return render(request, "billing/usage.html", context)


@never_cache
@login_required
@require_safe
def ledger(request: HttpRequest) -> HttpResponse:
    form = LedgerFilterForm(request.GET)
    if form.is_valid():
        entries = ledger_entries_for_user(user=request.user, **form.cleaned_data)
        status = 200
    else:
        entries = ledger_entries_for_user(user=request.user).none()
        status = 400
    page = Paginator(entries, LEDGER_PER_PAGE).get_page(request.GET.get("page"))
    context = {"form": form, "page": page, "balance": balance_summary(user=request.user)}
    return render(request, "billing/ledger.html", context, status=status)


class _Echo:
    """csv.writer's file: each row comes back as text, to stream."""

    def write(self, value: str) -> str:
        return value


@never_cache
@login_required
@require_safe
def usage_export(request: HttpRequest) -> HttpResponse:
    form = DateRangeForm(request.GET)
    if not form.is_valid():
        problems = "; ".join(f"{name}: {' '.join(errors)}" for name, errors in form.errors.items())
        return HttpResponse(f"Bad date range. {problems}\n", status=400, content_type="text/plain; charset=utf-8")
    since, until = form.cleaned_data["since"], form.cleaned_data["until"]
    rows = usage_export_rows(user=request.user, since=since, until=until)
    writer = csv.writer(_Echo())
    # Streamed: a long history is written as it is read, never held whole in memory.
    response = StreamingHttpResponse(
        (writer.writerow(row) for row in chain([USAGE_EXPORT_COLUMNS], rows)), content_type="text/csv; charset=utf-8"
    )
    name = "-".join(["beluga-usage", *(day.isoformat() for day in (since, until) if day)])
    response["Content-Disposition"] = f'attachment; filename="{name}.csv"'
    return response


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def spend_alerts(request: HttpRequest) -> HttpResponse:
    user = request.user
    thresholds = spend_alert_thresholds(user=user)
    initial = {"thresholds": ", ".join(usd_input(value) for value in thresholds)}
    form = SpendAlertsForm(request.POST or None, initial=initial, max_thresholds=MAX_THRESHOLDS)
    if request.method == "POST" and form.is_valid():
        saved = spend_alerts_set(user=user, thresholds_micro_usd=form.cleaned_data["thresholds"])
        messages.success(request, "Spend alerts saved." if saved else "Spend alerts turned off.")
        return redirect("spend-alerts")
    now = timezone.now()
    context = {
        "form": form,
        "thresholds": thresholds,
        "month": utc_month_start(now),
        "month_spent": usage_spent_this_month(user=user, now=now),
    }
    return render(request, "billing/alerts.html", context, status=400 if form.errors else 200)
