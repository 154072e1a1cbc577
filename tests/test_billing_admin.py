"""Money in the admin (balances moved only by grants and adjustments, the ledger, open holds) and grant_credit."""

from io import StringIO

import pytest
from django.contrib.auth.models import Permission
from django.core.cache import cache
from django.core.management import CommandError, call_command
from django.urls import reverse

from accounts.models import ApiKey, Plan, User
from accounts.services import api_key_authenticate, hash_key
from billing.models import Balance, KeySpend, LedgerEntry, Reservation
from billing.services import reserve


@pytest.fixture
def admin_user(db):
    return User.objects.create_superuser(email="root@example.com", password="x-admin-password-x")


@pytest.fixture
def admin_client_(client, admin_user):
    client.force_login(admin_user)
    return client


def _balance(user) -> Balance:
    return Balance.objects.get(user=user)


@pytest.mark.django_db
def test_money_admin_pages_render(admin_client_, user_factory):
    user = user_factory()
    reserve(user_id=user.id, api_key_id=None, request_id="req-held", amount_micro_usd=10, charges_balance=True)
    entry = LedgerEntry.objects.filter(user=user).first()

    urls = [
        reverse("admin:billing_balance_changelist"),
        reverse("admin:billing_balance_changelist") + "?q=" + user.email,
        reverse("admin:billing_balance_change", args=[user.id]),
        reverse("admin:billing_balance_grant", args=[user.id]),
        reverse("admin:billing_balance_adjust", args=[user.id]),
        reverse("admin:billing_ledgerentry_changelist"),
        reverse("admin:billing_ledgerentry_changelist") + "?kind__exact=grant",
        reverse("admin:billing_ledgerentry_changelist") + f"?user__id__exact={user.id}",
        reverse("admin:billing_ledgerentry_change", args=[entry.id]),
        reverse("admin:billing_reservation_changelist") + "?state__exact=open",
        reverse("admin:billing_spendalert_changelist"),
        reverse("admin:billing_spendalertsent_changelist"),
    ]
    for url in urls:
        assert admin_client_.get(url).status_code == 200, url


@pytest.mark.django_db
def test_admin_grant_writes_a_ledger_entry_with_the_reason_and_moves_the_balance(
    admin_client_, admin_user, user_factory
):
    user = user_factory()
    before = _balance(user).balance_micro_usd

    response = admin_client_.post(
        reverse("admin:billing_balance_grant", args=[user.id]),
        {"amount": "12.345678", "reason": "Conference voucher"},
        follow=True,
    )

    assert response.redirect_chain[-1][0] == reverse("admin:billing_balance_change", args=[user.id])
    entry = LedgerEntry.objects.filter(user=user).order_by("-id").first()
    assert (entry.kind, entry.amount_micro_usd, entry.reason) == ("grant", 12_345_678, "Conference voucher")
    assert entry.created_by == admin_user
    assert _balance(user).balance_micro_usd == before + 12_345_678 == entry.balance_after_micro_usd
    assert "Grant of +$12.345678" in response.content.decode()


@pytest.mark.django_db
def test_admin_adjust_takes_either_sign_and_grant_only_positive(admin_client_, user_factory):
    user = user_factory()
    before = _balance(user).balance_micro_usd

    down = admin_client_.post(
        reverse("admin:billing_balance_adjust", args=[user.id]), {"amount": "-0.5", "reason": "Double top-up"}
    )
    negative_grant = admin_client_.post(
        reverse("admin:billing_balance_grant", args=[user.id]), {"amount": "-1", "reason": "nope"}
    )

    assert down.status_code == 302
    entry = LedgerEntry.objects.filter(user=user, kind="adjustment").get()
    assert (entry.amount_micro_usd, entry.reason) == (-500_000, "Double top-up")
    assert negative_grant.status_code == 200 and negative_grant.context["form"].errors["amount"]
    assert _balance(user).balance_micro_usd == before - 500_000


@pytest.mark.django_db
@pytest.mark.parametrize("data", [{"amount": "5", "reason": "   "}, {"amount": "5"}, {"amount": "", "reason": "x"}])
def test_admin_grant_needs_an_amount_and_a_reason(admin_client_, user_factory, data):
    user = user_factory()
    entries = LedgerEntry.objects.filter(user=user).count()

    response = admin_client_.post(reverse("admin:billing_balance_grant", args=[user.id]), data)

    assert response.status_code == 200
    assert response.context["form"].errors
    assert LedgerEntry.objects.filter(user=user).count() == entries


@pytest.mark.django_db
def test_the_balance_itself_is_not_editable_in_the_admin(admin_client_, user_factory):
    user = user_factory()
    before = _balance(user)
    url = reverse("admin:billing_balance_change", args=[user.id])

    page = admin_client_.get(url).content.decode()
    response = admin_client_.post(url, {"balance_micro_usd": 999_999_999_999, "reserved_micro_usd": 0})

    assert 'name="balance_micro_usd"' not in page
    assert "Grant credit" in page and "Adjust balance" in page
    assert response.status_code == 403
    after = _balance(user)
    assert (after.balance_micro_usd, after.reserved_micro_usd) == (before.balance_micro_usd, before.reserved_micro_usd)
    assert admin_client_.get(reverse("admin:billing_balance_add")).status_code == 403
    assert admin_client_.post(reverse("admin:billing_balance_delete", args=[user.id])).status_code == 403
    entry = LedgerEntry.objects.filter(user=user).first()
    assert admin_client_.post(reverse("admin:billing_ledgerentry_delete", args=[entry.id])).status_code == 403


@pytest.mark.django_db
def test_staff_without_the_change_permission_cannot_move_money(client, user_factory):
    user = user_factory()
    viewer = User.objects.create_user(email="viewer@example.com", password="x-viewer-password-x", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_balance"))
    client.force_login(viewer)

    page = client.get(reverse("admin:billing_balance_change", args=[user.id]))
    response = client.post(reverse("admin:billing_balance_grant", args=[user.id]), {"amount": "1", "reason": "x"})

    assert page.status_code == 200
    assert "Grant credit" not in page.content.decode()
    assert response.status_code == 403
    assert not LedgerEntry.objects.filter(user=user, reason="x").exists()


@pytest.mark.django_db
def test_open_reservations_are_listed_in_the_admin(admin_client_, user_factory):
    user = user_factory()
    reserve(user_id=user.id, api_key_id=None, request_id="req-in-flight", amount_micro_usd=4_321, charges_balance=True)
    Reservation.objects.create(
        user=user, request_id="req-done", amount_micro_usd=1, state="settled", expires_at="2030-01-01T00:00:00Z"
    )

    content = admin_client_.get(reverse("admin:billing_reservation_changelist") + "?state__exact=open").content.decode()

    assert "req-in-flight" in content and "$0.004321" in content
    assert "req-done" not in content


@pytest.mark.django_db
def test_admin_edits_key_controls_through_the_service(admin_client_, api_key_factory):
    key, raw_key = api_key_factory(name="ctl")
    KeySpend.objects.create(api_key=key, period_start="2026-01-01", spent_micro_usd=99)
    api_key_authenticate(raw_key=raw_key)  # cached without a limit

    response = admin_client_.post(
        reverse("admin:accounts_apikey_change", args=[key.id]),
        {
            "name": "ctl",
            "spend_limit_usd": "2.5",
            "spend_period": "day",
            "allowed_model_ids": ["beluga-demo"],
            "chat_rpm": "4",
        },
    )

    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    stored = ApiKey.objects.get(id=key.id)
    assert (stored.spend_limit_micro_usd, stored.spend_limit_period) == (2_500_000, "day")
    assert (stored.allowed_models, stored.chat_rpm_override) == (["beluga-demo"], 4)
    assert cache.get(f"apikey:v3:{hash_key(raw_key)}").startswith("recheck:")  # every instance reads it again
    assert cache.get(f"apikey:v2:{hash_key(raw_key)}") == "recheck"  # the previous release's instances too
    assert api_key_authenticate(raw_key=raw_key).spend_limit_micro_usd == 2_500_000
    assert not KeySpend.objects.filter(api_key=key).exists()  # a new budget counts afresh
    listing = admin_client_.get(reverse("admin:accounts_apikey_changelist")).content.decode()
    assert "$2.50 / daily" in listing


@pytest.mark.django_db
def test_plan_admin_shows_and_saves_the_signup_grant(admin_client_):
    plan = Plan.objects.get(slug="standard")

    response = admin_client_.post(
        reverse("admin:accounts_plan_change", args=[plan.id]),
        {
            "name": plan.name,
            "slug": plan.slug,
            "chat_rpm": plan.chat_rpm,
            "image_rpm": plan.image_rpm,
            "prepaid": "on",
            "signup_grant_micro_usd": "2500000",
            "sort_order": plan.sort_order,
        },
    )

    assert response.status_code == 302
    plan.refresh_from_db()
    assert plan.signup_grant_micro_usd == 2_500_000
    assert "$2.500000" in admin_client_.get(reverse("admin:accounts_plan_changelist")).content.decode()


# --- manage.py grant_credit ----------------------------------------------------------------


@pytest.mark.django_db
def test_grant_credit_command_writes_a_grant_with_the_reason(user_factory):
    user = user_factory(email="Pilot@Example.com")
    before = _balance(user).balance_micro_usd
    out = StringIO()

    call_command(
        "grant_credit", "--email", "pilot@example.com", "--micro-usd", "5000000", "--reason", "Pilot", stdout=out
    )

    entry = LedgerEntry.objects.filter(user=user).order_by("-id").first()
    assert (entry.kind, entry.amount_micro_usd, entry.reason, entry.created_by) == ("grant", 5_000_000, "Pilot", None)
    assert _balance(user).balance_micro_usd == before + 5_000_000
    assert "Granted $5.000000" in out.getvalue()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--email", "nobody@example.com", "--micro-usd", "1", "--reason", "r"], "no account"),
        (["--email", "known@example.com", "--micro-usd", "0", "--reason", "r"], "positive"),
        (["--email", "known@example.com", "--micro-usd", "-5", "--reason", "r"], "positive"),
        (["--email", "known@example.com", "--micro-usd", "1", "--reason", "  "], "reason"),
    ],
)
def test_grant_credit_command_refuses_clearly(user_factory, args, message):
    user = user_factory(email="known@example.com")
    entries = LedgerEntry.objects.count()

    with pytest.raises(CommandError) as excinfo:
        call_command("grant_credit", *args, stdout=StringIO())

    assert message in str(excinfo.value)
    assert LedgerEntry.objects.count() == entries
    assert _balance(user).balance_micro_usd > 0
