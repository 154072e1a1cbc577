"""Money in the admin: usage records, balances (moved only by grants and adjustments), the ledger, holds.

Everything here is read-only: balances change only through billing.services,
which write the ledger entry that explains each change. The Balance pages
link to two small forms (grant, adjust) that call those services with the
admin as the entry's author.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from accounts.forms import BalanceChangeForm
from billing.models import Balance, LedgerEntry, Reservation, SpendAlert, SpendAlertSent, UsageRecord
from billing.services import balance_adjust, balance_grant
from billing.templatetags.billing_tags import usd, usd_signed


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written by billing.services only: viewable, never added, edited or deleted here."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(UsageRecord)
class UsageRecordAdmin(ReadOnlyAdmin):
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
        "tries",
    )
    list_filter = ("model", "status_code", "stream")
    list_select_related = ("user",)
    search_fields = ("request_id", "user__email")
    date_hierarchy = "created_at"
    # Counting a large table on every page view is slow; the admin shows "Show all" instead.
    show_full_result_count = False
    exclude = ("attempts",)
    readonly_fields = ("attempts_made",)

    @admin.display(description="cost", ordering="cost_micro_usd")
    def cost(self, obj: UsageRecord) -> str:
        return usd(obj.cost_micro_usd)

    @admin.display(description="upstreams tried")
    def tries(self, obj: UsageRecord) -> int:
        return len(obj.attempts)

    @admin.display(description="attempts")
    def attempts_made(self, obj: UsageRecord) -> str:
        """Each upstream the call tried, in order: the last one answered (or failed last)."""
        if not obj.attempts:
            return "—"
        lines = ((attempt_text(attempt),) for attempt in obj.attempts)
        return format_html("<ol>{}</ol>", format_html_join("", "<li>{}</li>", lines))


def attempt_text(attempt: dict) -> str:
    """One attempt as a line: "openai-a · gpt-4o · primary · 503 · http_503 · 812 ms"."""
    parts = [attempt.get(key) for key in ("upstream", "model", "credential", "status", "outcome")]
    latency = attempt.get("latency_ms")
    parts.append(None if latency is None else f"{latency} ms")
    return " · ".join("—" if part in (None, "") else str(part) for part in parts)


# --- balances -------------------------------------------------------------------------

_MONEY_ACTIONS = {
    # url name part: (title, service, negative amounts allowed)
    "grant": ("Grant credit", balance_grant, False),
    "adjust": ("Adjust balance", balance_adjust, True),
}


@admin.register(Balance)
class BalanceAdmin(ReadOnlyAdmin):
    list_display = ("user", "balance", "reserved", "available", "updated_at", "money_links")
    list_select_related = ("user",)
    search_fields = ("user__email",)
    ordering = ("user__email",)
    fields = ("user", "balance", "reserved", "available", "updated_at", "ledger_link")
    readonly_fields = fields
    change_form_template = "admin/billing/balance/change_form.html"

    @admin.display(description="balance", ordering="balance_micro_usd")
    def balance(self, obj: Balance) -> str:
        return usd(obj.balance_micro_usd)

    @admin.display(description="held for calls in flight", ordering="reserved_micro_usd")
    def reserved(self, obj: Balance) -> str:
        return usd(obj.reserved_micro_usd)

    @admin.display(description="available")
    def available(self, obj: Balance) -> str:
        return usd(obj.available_micro_usd)

    @admin.display(description="ledger")
    def ledger_link(self, obj: Balance) -> str:
        url = reverse("admin:billing_ledgerentry_changelist") + f"?user__id__exact={obj.user_id}"
        return format_html('<a href="{}">Ledger entries of {}</a>', url, obj.user)

    @admin.display(description="")
    def money_links(self, obj: Balance) -> str:
        return format_html(
            '<a href="{}">Grant</a> · <a href="{}">Adjust</a>',
            reverse("admin:billing_balance_grant", args=[obj.user_id]),
            reverse("admin:billing_balance_adjust", args=[obj.user_id]),
        )

    def get_urls(self):
        urls = [
            path(
                f"<int:user_id>/{action}/",
                self.admin_site.admin_view(self.money_view),
                {"action": action},
                name=f"billing_balance_{action}",
            )
            for action in _MONEY_ACTIONS
        ]
        return urls + super().get_urls()

    def has_money_permission(self, request: HttpRequest) -> bool:
        # Moving money is "changing" a balance; the row itself is never edited.
        return request.user.has_perm("billing.change_balance")

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context=None):
        extra_context = {**(extra_context or {}), "may_move_money": self.has_money_permission(request)}
        return super().change_view(request, object_id, form_url, extra_context)

    def money_view(self, request: HttpRequest, user_id: int, action: str) -> HttpResponse:
        """The grant or adjust form for one account; a valid POST writes one ledger entry."""
        if not self.has_money_permission(request):
            raise PermissionDenied
        balance = Balance.objects.select_related("user").filter(user_id=user_id).first()
        if balance is None:
            raise Http404("No such balance.")
        title, service, allow_negative = _MONEY_ACTIONS[action]
        form = BalanceChangeForm(request.POST or None, allow_negative=allow_negative)
        if request.method == "POST" and form.is_valid():
            entry = service(
                user_id=balance.user_id,
                amount_micro_usd=form.cleaned_data["amount"],
                reason=form.cleaned_data["reason"],
                created_by_id=request.user.id,
            )
            self.message_user(
                request,
                f"{entry.get_kind_display()} of {usd_signed(entry.amount_micro_usd)} to {balance.user}: "
                f"balance now {usd(entry.balance_after_micro_usd)}.",
                messages.SUCCESS,
            )
            return redirect("admin:billing_balance_change", balance.user_id)
        context = {
            **self.admin_site.each_context(request),
            "title": f"{title}: {balance.user}",
            "opts": self.opts,
            "original": balance,
            "balance": balance,
            "form": form,
            "action": action,
            "action_title": title,
        }
        return TemplateResponse(request, "admin/billing/balance/money_form.html", context)


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        "user",
        "kind",
        "amount",
        "hold",
        "balance_after",
        "reason",
        "created_by",
        "request_id",
    )
    list_filter = ("kind",)
    list_select_related = ("user", "created_by")
    search_fields = ("user__email", "request_id", "reason")
    date_hierarchy = "created_at"
    show_full_result_count = False

    @admin.display(description="amount", ordering="amount_micro_usd")
    def amount(self, obj: LedgerEntry) -> str:
        return usd_signed(obj.amount_micro_usd)

    @admin.display(description="held", ordering="hold_micro_usd")
    def hold(self, obj: LedgerEntry) -> str:
        return usd_signed(obj.hold_micro_usd) if obj.hold_micro_usd else ""

    @admin.display(description="balance after")
    def balance_after(self, obj: LedgerEntry) -> str:
        return usd(obj.balance_after_micro_usd)


@admin.register(Reservation)
class ReservationAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "user", "request_id", "amount", "charges_balance", "state", "expires_at", "closed_at")
    list_filter = ("state", "charges_balance")
    list_select_related = ("user",)
    search_fields = ("request_id", "user__email")
    date_hierarchy = "created_at"
    show_full_result_count = False

    @admin.display(description="amount", ordering="amount_micro_usd")
    def amount(self, obj: Reservation) -> str:
        return usd(obj.amount_micro_usd)


@admin.register(SpendAlert)
class SpendAlertAdmin(ReadOnlyAdmin):
    list_display = ("user", "threshold", "created_at")
    list_select_related = ("user",)
    search_fields = ("user__email",)

    @admin.display(description="threshold", ordering="threshold_micro_usd")
    def threshold(self, obj: SpendAlert) -> str:
        return usd(obj.threshold_micro_usd)


@admin.register(SpendAlertSent)
class SpendAlertSentAdmin(ReadOnlyAdmin):
    list_display = ("user", "month", "threshold", "spent", "sent_at")
    list_select_related = ("user",)
    search_fields = ("user__email",)
    date_hierarchy = "sent_at"

    @admin.display(description="threshold", ordering="threshold_micro_usd")
    def threshold(self, obj: SpendAlertSent) -> str:
        return usd(obj.threshold_micro_usd)

    @admin.display(description="spent that month")
    def spent(self, obj: SpendAlertSent) -> str:
        return usd(obj.spent_micro_usd)
