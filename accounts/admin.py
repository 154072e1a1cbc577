"""Admin for users, plans and keys.

Key checks are served from the shared cache, so every edit that changes what a
key may do (plan, limits, active flag, expiry) clears the affected entries.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone

from accounts.forms import (
    ApiKeyAdminForm,
    PlanAdminForm,
    PlanChangelistFormSet,
    PlanDefaultMovesForm,
    UserAdminChangeForm,
    UserAdminCreationForm,
)
from accounts.models import ApiKey, Plan, User
from accounts.services import (
    api_key_revoke,
    api_key_set_controls,
    plan_cache_clear,
    plan_save,
    user_keys_cache_clear,
    user_open,
)
from billing.templatetags.billing_tags import usd, usd_short

# Fields whose change alters what the user's cached keys allow.
_USER_KEY_FIELDS = frozenset({"plan", "chat_rpm_override", "image_rpm_override", "is_active"})


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    form = UserAdminChangeForm
    add_form = UserAdminCreationForm
    list_display = ("email", "plan", "chat_rpm_override", "image_rpm_override", "is_staff", "is_active", "date_joined")
    list_filter = ("plan", "is_staff", "is_superuser", "is_active")
    list_select_related = ("plan",)
    search_fields = ("email",)
    ordering = ("-date_joined",)
    readonly_fields = ("last_login", "date_joined")
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Plan and limits", {"fields": ("plan", "chat_rpm_override", "image_rpm_override")}),
        ("Permissions", {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        ("Dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = (
        (None, {"classes": ("wide",), "fields": ("email", "plan", "usable_password", "password1", "password2")}),
    )

    def save_model(self, request: HttpRequest, obj: User, form, change: bool) -> None:
        if not change:
            user_open(user=obj)  # like a sign-up: its balance and the plan's sign-up credit
            return
        super().save_model(request, obj, form, change)
        if _USER_KEY_FIELDS.intersection(form.changed_data):
            user_keys_cache_clear(user=obj)

    def delete_model(self, request: HttpRequest, obj: User) -> None:
        user_keys_cache_clear(user=obj)
        super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        for user in queryset:
            user_keys_cache_clear(user=user)
        super().delete_queryset(request, queryset)


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    form = PlanAdminForm
    list_display = ("name", "slug", "chat_rpm", "image_rpm", "is_default", "prepaid", "signup_grant", "sort_order")
    list_editable = ("chat_rpm", "image_rpm", "is_default", "prepaid", "sort_order")
    prepopulated_fields = {"slug": ("name",)}

    @admin.display(description="sign-up grant", ordering="signup_grant_micro_usd")
    def signup_grant(self, obj: Plan) -> str:
        return usd(obj.signup_grant_micro_usd)

    def get_changelist_form(self, request: HttpRequest, **kwargs):
        return super().get_changelist_form(request, form=PlanDefaultMovesForm, **kwargs)

    def get_changelist_formset(self, request: HttpRequest, **kwargs):
        return super().get_changelist_formset(request, formset=PlanChangelistFormSet, **kwargs)

    def save_model(self, request: HttpRequest, obj: Plan, form, change: bool) -> None:
        plan_save(plan=obj)  # a plan made the default takes it over from the previous one
        if change:
            plan_cache_clear(plan=obj)


class ApiKeyStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin) -> list[tuple[str, str]]:
        return [("active", "Active"), ("revoked", "Revoked"), ("expired", "Expired")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> QuerySet[ApiKey]:
        now = timezone.now()
        if self.value() == "active":
            return queryset.filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now), revoked_at__isnull=True)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        if self.value() == "expired":
            return queryset.filter(revoked_at__isnull=True, expires_at__lte=now)
        return queryset


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    # hashed_key is deliberately absent from every list below: it is the lookup secret.
    # The owner's controls (spend limit, models, rate) are form fields saved through
    # api_key_set_controls, which resets the key's budget count and its cached entry.
    form = ApiKeyAdminForm
    list_display = (
        "name",
        "user",
        "display_prefix",
        "created_at",
        "last_used_at",
        "expires_at",
        "spend_limit",
        "models",
        "chat_rpm_override",
        "status",
    )
    list_filter = (ApiKeyStatusFilter, "spend_limit_period")
    list_select_related = ("user",)
    search_fields = ("name", "prefix", "user__email")
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "name",
                    "user",
                    "display_prefix",
                    "created_at",
                    "last_used_at",
                    "expires_at",
                    "revoked_at",
                    "status",
                )
            },
        ),
        ("Controls", {"fields": ("spend_limit_usd", "spend_period", "allowed_model_ids", "chat_rpm")}),
    )
    readonly_fields = ("user", "display_prefix", "created_at", "last_used_at", "revoked_at", "status")
    date_hierarchy = "created_at"
    actions = ("revoke_selected",)

    @admin.display(description="key", ordering="prefix")
    def display_prefix(self, obj: ApiKey) -> str:
        return f"{obj.prefix}…"

    @admin.display(description="status")
    def status(self, obj: ApiKey) -> str:
        return obj.status

    @admin.display(description="spend limit", ordering="spend_limit_micro_usd")
    def spend_limit(self, obj: ApiKey) -> str:
        if obj.spend_limit_micro_usd is None:
            return "–"
        return f"{usd_short(obj.spend_limit_micro_usd)} / {obj.get_spend_limit_period_display().lower()}"

    @admin.display(description="models")
    def models(self, obj: ApiKey) -> str:
        return ", ".join(obj.allowed_models) if obj.allowed_models else "all"

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Keys are made by their owners (dashboard) or `manage.py create_api_key`, which show the key once.
        return False

    def has_delete_permission(self, request: HttpRequest, obj: ApiKey | None = None) -> bool:
        # Revoke instead: it keeps the usage history linked and clears the cached key.
        return False

    def save_model(self, request: HttpRequest, obj: ApiKey, form: ApiKeyAdminForm, change: bool) -> None:
        # Only the form's own columns: a full save would write back controls its owner changed meanwhile.
        obj.save(update_fields=["name", "expires_at"])
        if "expires_at" in form.changed_data:
            user_keys_cache_clear(user=obj.user)
        if form.controls_changed:
            api_key_set_controls(user=obj.user, key_id=obj.id, **form.controls)

    @admin.action(description="Revoke selected keys")
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        revoked = 0
        for key in queryset.filter(revoked_at__isnull=True).select_related("user"):
            api_key_revoke(user=key.user, key_id=key.id)
            revoked += 1
        self.message_user(request, f"Revoked {revoked} key(s).", messages.SUCCESS)
