"""Usage records in the admin: a read-only view of the ledger of calls."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from billing.models import UsageRecord
from billing.templatetags.billing_tags import usd


@admin.register(UsageRecord)
class UsageRecordAdmin(admin.ModelAdmin):
    list_display = (
        "created_at",
        "request_id",
        "user",
        "model",
        "endpoint",
        "status_code",
        "stream",
        "prompt_tokens",
        "completion_tokens",
        "cost",
        "latency_ms",
    )
    list_filter = ("model", "status_code", "stream")
    list_select_related = ("user",)
    search_fields = ("request_id", "user__email")
    date_hierarchy = "created_at"
    # Counting a large table on every page view is slow; the admin shows "Show all" instead.
    show_full_result_count = False

    @admin.display(description="cost", ordering="cost_micro_usd")
    def cost(self, obj: UsageRecord) -> str:
        return usd(obj.cost_micro_usd)

    # Records are written once by the request pipeline and never edited.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: UsageRecord | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: UsageRecord | None = None) -> bool:
        return False
