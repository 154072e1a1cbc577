"""The customer's usage page."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from billing.selectors import usage_records_for_user, usage_total, usage_totals_by_day, usage_totals_by_model

RECORDS_PER_PAGE = 50
TOTALS_DAYS = 30


@never_cache
@login_required
@require_safe
def usage(request: HttpRequest) -> HttpResponse:
    user = request.user
    page = Paginator(usage_records_for_user(user=user), RECORDS_PER_PAGE).get_page(request.GET.get("page"))
    context = {
        "page": page,
        "by_day": usage_totals_by_day(user=user, days=TOTALS_DAYS),
        "by_model": usage_totals_by_model(user=user),
        "total": usage_total(user=user),
        "totals_days": TOTALS_DAYS,
    }
    return render(request, "billing/usage.html", context)
