"""The admin for users, plans, keys and usage: pages render, secrets stay hidden, caches follow edits."""

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.cache import cache
from django.urls import reverse

from accounts.models import ApiKey, Plan, User
from accounts.services import api_key_authenticate, hash_key
from billing.models import UsageRecord


@pytest.fixture
def admin_client_(client, db):
    superuser = User.objects.create_superuser(email="root@example.com", password="x-admin-password-x")
    client.force_login(superuser)
    return client


def _cache_entry(raw_key: str):
    """The cached lookup of a key, or None when absent or marked for a fresh database read."""
    entry = cache.get(f"apikey:v3:{hash_key(raw_key)}")
    return None if isinstance(entry, str) and entry.startswith("recheck:") else entry


def _user_change_data(user: User, **changes) -> dict:
    data = {
        "email": user.email,
        "plan": user.plan_id,
        "chat_rpm_override": user.chat_rpm_override or "",
        "image_rpm_override": user.image_rpm_override or "",
        "is_active": "on" if user.is_active else "",
        "last_login_0": "",
        "last_login_1": "",
        "date_joined_0": user.date_joined.strftime("%Y-%m-%d"),
        "date_joined_1": user.date_joined.strftime("%H:%M:%S"),
    }
    data.update(changes)
    return {key: value for key, value in data.items() if value is not None}


@pytest.mark.django_db
def test_admin_pages_render_for_superuser(admin_client_, user_factory, api_key_factory):
    user = user_factory()
    key, _ = api_key_factory(user=user)
    record = UsageRecord.objects.create(
        request_id="req-1", user=user, api_key=key, model="demo", endpoint="chat/completions", status_code=200
    )
    plan = Plan.objects.get(slug="free")

    urls = [
        reverse("admin:index"),
        reverse("admin:accounts_user_changelist"),
        reverse("admin:accounts_user_change", args=[user.id]),
        reverse("admin:accounts_user_add"),
        reverse("admin:accounts_user_changelist") + "?plan__id__exact=1&q=example",
        reverse("admin:accounts_plan_changelist"),
        reverse("admin:accounts_plan_change", args=[plan.id]),
        reverse("admin:accounts_apikey_changelist"),
        reverse("admin:accounts_apikey_changelist") + "?status=active",
        reverse("admin:accounts_apikey_change", args=[key.id]),
        reverse("admin:billing_usagerecord_changelist"),
        reverse("admin:billing_usagerecord_changelist") + "?q=req-1&stream__exact=0",
        reverse("admin:billing_usagerecord_change", args=[record.id]),
    ]
    for url in urls:
        assert admin_client_.get(url).status_code == 200, url


@pytest.mark.django_db
def test_admin_never_shows_the_key_hash(admin_client_, api_key_factory):
    key, raw_key = api_key_factory(name="visible-name")

    for url in (
        reverse("admin:accounts_apikey_change", args=[key.id]),
        reverse("admin:accounts_apikey_changelist"),
    ):
        content = admin_client_.get(url).content.decode()
        assert key.hashed_key not in content
        assert raw_key not in content
        assert "visible-name" in content


@pytest.mark.django_db
def test_admin_cannot_add_delete_or_edit_usage_records(admin_client_, user_factory):
    record = UsageRecord.objects.create(
        request_id="req-1", user=user_factory(), model="demo", endpoint="chat/completions", status_code=200
    )

    assert admin_client_.get(reverse("admin:billing_usagerecord_add")).status_code == 403
    assert admin_client_.get(reverse("admin:accounts_apikey_add")).status_code == 403
    response = admin_client_.post(reverse("admin:billing_usagerecord_change", args=[record.id]), {"model": "changed"})
    assert response.status_code == 403
    record.refresh_from_db()
    assert record.model == "demo"


@pytest.mark.django_db
def test_admin_revoke_action_revokes_and_uncaches_keys(admin_client_, api_key_factory):
    first, first_raw = api_key_factory()
    second, _ = api_key_factory()
    untouched, _ = api_key_factory()
    api_key_authenticate(raw_key=first_raw)
    assert _cache_entry(first_raw)

    response = admin_client_.post(
        reverse("admin:accounts_apikey_changelist"),
        {"action": "revoke_selected", ACTION_CHECKBOX_NAME: [first.id, second.id]},
        follow=True,
    )

    assert response.status_code == 200
    assert "Revoked 2 key(s)." in response.content.decode()
    for key in (first, second, untouched):
        key.refresh_from_db()
    assert first.status == second.status == "revoked"
    assert untouched.status == "active"
    assert _cache_entry(first_raw) is None


@pytest.mark.django_db
def test_admin_api_key_edit_changes_only_name_and_expiry(admin_client_, api_key_factory):
    key, raw_key = api_key_factory(name="before")
    api_key_authenticate(raw_key=raw_key)

    response = admin_client_.post(
        reverse("admin:accounts_apikey_change", args=[key.id]),
        {
            "name": "after",
            "expires_at_0": "2099-01-01",
            "expires_at_1": "00:00:00",
            "hashed_key": "0" * 64,
            "prefix": "bapi_hacked",
        },
    )

    assert response.status_code == 302
    stored = ApiKey.objects.get(id=key.id)
    assert stored.name == "after"
    assert stored.expires_at.year == 2099
    assert (stored.hashed_key, stored.prefix) == (key.hashed_key, key.prefix)
    assert _cache_entry(raw_key) is None  # the cached expiry is gone with it


@pytest.mark.django_db
def test_changing_a_users_plan_in_admin_clears_their_cached_keys(admin_client_, user_factory, api_key_factory):
    user = user_factory(plan="free")
    _, raw_key = api_key_factory(user=user)
    assert api_key_authenticate(raw_key=raw_key).chat_rpm == Plan.objects.get(slug="free").chat_rpm
    assert _cache_entry(raw_key)
    pro = Plan.objects.get(slug="pro")

    response = admin_client_.post(
        reverse("admin:accounts_user_change", args=[user.id]), _user_change_data(user, plan=pro.id)
    )

    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    user.refresh_from_db()
    assert user.plan == pro
    assert _cache_entry(raw_key) is None
    assert api_key_authenticate(raw_key=raw_key).chat_rpm == pro.chat_rpm


@pytest.mark.django_db
def test_deactivating_a_user_in_admin_rejects_their_keys_at_once(admin_client_, user_factory, api_key_factory):
    from accounts.services import KeyRejected

    user = user_factory()
    _, raw_key = api_key_factory(user=user)
    api_key_authenticate(raw_key=raw_key)

    response = admin_client_.post(
        reverse("admin:accounts_user_change", args=[user.id]), _user_change_data(user, is_active=None)
    )

    assert response.status_code == 302
    assert _cache_entry(raw_key) is None
    with pytest.raises(KeyRejected):
        api_key_authenticate(raw_key=raw_key)


@pytest.mark.django_db
def test_rpm_override_in_admin_reaches_cached_keys(admin_client_, user_factory, api_key_factory):
    user = user_factory()
    _, raw_key = api_key_factory(user=user)
    api_key_authenticate(raw_key=raw_key)

    admin_client_.post(
        reverse("admin:accounts_user_change", args=[user.id]), _user_change_data(user, chat_rpm_override=7)
    )

    assert api_key_authenticate(raw_key=raw_key).chat_rpm == 7


@pytest.mark.django_db
def test_editing_a_plan_in_admin_clears_its_users_cached_keys(admin_client_, user_factory, api_key_factory):
    user = user_factory(plan="standard")
    _, raw_key = api_key_factory(user=user)
    api_key_authenticate(raw_key=raw_key)
    plan = Plan.objects.get(slug="standard")

    response = admin_client_.post(
        reverse("admin:accounts_plan_change", args=[plan.id]),
        {
            "name": plan.name,
            "slug": plan.slug,
            "chat_rpm": 123,
            "image_rpm": plan.image_rpm,
            "prepaid": "on",
            "signup_grant_micro_usd": "0",
            "sort_order": plan.sort_order,
        },
    )

    assert response.status_code == 302
    assert _cache_entry(raw_key) is None
    assert api_key_authenticate(raw_key=raw_key).chat_rpm == 123


@pytest.mark.django_db
def test_admin_adds_a_user_with_username_mirroring_email(admin_client_):
    plan = Plan.objects.get(slug="pro")

    response = admin_client_.post(
        reverse("admin:accounts_user_add"),
        {
            "email": "Added@Example.com",
            "plan": plan.id,
            "usable_password": "true",
            "password1": "another-long-passphrase",
            "password2": "another-long-passphrase",
        },
    )

    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    user = User.objects.get(email="added@example.com")
    assert user.username == user.email
    assert user.plan == plan
    assert user.check_password("another-long-passphrase")


def _user_add_data(email: str, **changes) -> dict:
    data = {
        "email": email,
        "usable_password": "true",
        "password1": "another-long-passphrase",
        "password2": "another-long-passphrase",
    }
    data.update(changes)
    return data


@pytest.mark.django_db
def test_admin_added_user_without_a_plan_gets_the_default_plan_and_an_open_balance(admin_client_):
    from billing.services import balance_available

    free = Plan.objects.get(slug="free")
    form = admin_client_.get(reverse("admin:accounts_user_add")).context["adminform"].form
    assert form["plan"].value() == free.id  # preselected

    response = admin_client_.post(reverse("admin:accounts_user_add"), _user_add_data("noplan@example.com", plan=""))

    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    user = User.objects.get(email="noplan@example.com")
    assert user.plan == free
    # As a sign-up: the balance is open, with the plan's sign-up credit.
    assert balance_available(user_id=user.id) == free.signup_grant_micro_usd > 0
    assert user.chat_rpm == free.chat_rpm


@pytest.mark.django_db
def test_admin_added_user_on_a_chosen_plan_gets_that_plans_sign_up_credit(admin_client_):
    from billing.models import Balance

    pro = Plan.objects.get(slug="pro")
    pro.signup_grant_micro_usd = 3_000_000
    pro.save()

    response = admin_client_.post(reverse("admin:accounts_user_add"), _user_add_data("pro@example.com", plan=pro.id))

    assert response.status_code == 302
    user = User.objects.get(email="pro@example.com")
    assert user.plan == pro
    assert Balance.objects.get(user=user).balance_micro_usd == 3_000_000


def _plan_change_data(plan: Plan, **changes) -> dict:
    data = {
        "name": plan.name,
        "slug": plan.slug,
        "chat_rpm": plan.chat_rpm,
        "image_rpm": plan.image_rpm,
        "is_default": "on" if plan.is_default else "",
        "prepaid": "on" if plan.prepaid else "",
        "signup_grant_micro_usd": plan.signup_grant_micro_usd,
        "sort_order": plan.sort_order,
    }
    data.update(changes)
    return {key: value for key, value in data.items() if value != ""}


@pytest.mark.django_db
def test_making_a_plan_the_default_in_admin_moves_the_default_to_it(admin_client_):
    standard = Plan.objects.get(slug="standard")

    response = admin_client_.post(
        reverse("admin:accounts_plan_change", args=[standard.id]), _plan_change_data(standard, is_default="on")
    )

    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    assert list(Plan.objects.filter(is_default=True)) == [standard]


@pytest.mark.django_db
def test_adding_a_default_plan_in_admin_moves_the_default_to_it(admin_client_):
    response = admin_client_.post(
        reverse("admin:accounts_plan_add"),
        {"name": "Team", "slug": "team", "chat_rpm": 100, "image_rpm": 10, "is_default": "on", "sort_order": 9},
    )

    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    assert list(Plan.objects.filter(is_default=True).values_list("slug", flat=True)) == ["team"]


def _plan_changelist_data(plans: list[Plan], *, default: set[str]) -> dict:
    data = {"form-TOTAL_FORMS": len(plans), "form-INITIAL_FORMS": len(plans), "_save": "Save"}
    for n, plan in enumerate(plans):
        data |= {
            f"form-{n}-id": plan.id,
            f"form-{n}-chat_rpm": plan.chat_rpm,
            f"form-{n}-image_rpm": plan.image_rpm,
            f"form-{n}-sort_order": plan.sort_order,
        }
        if plan.prepaid:
            data[f"form-{n}-prepaid"] = "on"
        if plan.slug in default:
            data[f"form-{n}-is_default"] = "on"
    return data


@pytest.mark.django_db
def test_plan_list_moves_the_default_in_one_save(admin_client_):
    plans = list(Plan.objects.all())

    response = admin_client_.post(
        reverse("admin:accounts_plan_changelist"), _plan_changelist_data(plans, default={"pro"})
    )

    assert response.status_code == 302
    assert list(Plan.objects.filter(is_default=True).values_list("slug", flat=True)) == ["pro"]


@pytest.mark.django_db
def test_plan_list_refuses_two_defaults_with_a_message(admin_client_):
    plans = list(Plan.objects.all())

    response = admin_client_.post(
        reverse("admin:accounts_plan_changelist"), _plan_changelist_data(plans, default={"free", "pro"})
    )

    assert response.status_code == 200
    assert "Only one plan can be the default" in response.content.decode()
    assert list(Plan.objects.filter(is_default=True).values_list("slug", flat=True)) == ["free"]
