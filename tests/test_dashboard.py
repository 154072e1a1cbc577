"""The customer dashboard: accounts, keys and usage, through Django's test client."""

import hashlib
import re
from datetime import UTC, datetime, timedelta
from io import StringIO
from types import SimpleNamespace

import django_ratelimit.core
import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import ApiKey, User
from billing.models import UsageRecord
from billing.templatetags.billing_tags import usd

PASSWORD = "correct-horse-battery-staple"
RAW_KEY = re.compile(r"bapi_[A-Za-z0-9_-]{43}")


@pytest.fixture
def usage_record_factory(db):
    counter = {"n": 0}

    def make(*, user, **fields):
        counter["n"] += 1
        values = {
            "request_id": f"req-{counter['n']}",
            "model": "demo-chat",
            "endpoint": "chat/completions",
            "status_code": 200,
            "prompt_tokens": 10,
            "completion_tokens": 5,
            "cost_micro_usd": 1234,
            "latency_ms": 120,
        }
        values.update(fields)
        return UsageRecord.objects.create(user=user, **values)

    return make


@pytest.fixture
def logged_in(client, user_factory):
    user = user_factory()
    client.force_login(user)
    return client, user


def _create_key(client, name="my key", **extra):
    response = client.post(reverse("key-create"), {"name": name, **extra})
    assert response.status_code == 200
    match = RAW_KEY.search(response.content.decode())
    assert match, "the new key should be in the response"
    return response, match.group(0)


# --- sign-up, log-in, log-out ----------------------------------------------


@pytest.mark.django_db
def test_signup_creates_user_on_default_plan_and_logs_in(client):
    response = client.post(
        reverse("signup"), {"email": "New@Example.com", "password1": PASSWORD, "password2": PASSWORD}
    )

    assert response.status_code == 302
    assert response["Location"] == reverse("dashboard")
    user = User.objects.get(email="new@example.com")
    assert user.plan.is_default and user.plan.slug == "free"
    assert user.check_password(PASSWORD)
    assert client.get(reverse("dashboard")).status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("password", ["password", "12345678901", "short1"])
def test_signup_rejects_weak_password(client, password):
    response = client.post(reverse("signup"), {"email": "a@example.com", "password1": password, "password2": password})

    assert response.status_code == 200
    assert response.context["form"].errors["password1"]
    assert not User.objects.filter(email="a@example.com").exists()


@pytest.mark.django_db
def test_signup_rejects_password_similar_to_email(client):
    password = "marguerite.dupont"
    response = client.post(
        reverse("signup"), {"email": "marguerite.dupont@example.com", "password1": password, "password2": password}
    )

    assert "password1" in response.context["form"].errors
    assert not User.objects.exists()


@pytest.mark.django_db
def test_signup_rejects_mismatched_confirmation(client):
    response = client.post(
        reverse("signup"), {"email": "a@example.com", "password1": PASSWORD, "password2": "x" + PASSWORD}
    )

    assert "password2" in response.context["form"].errors
    assert not User.objects.exists()


@pytest.mark.django_db
def test_signup_rejects_duplicate_email_in_any_case(client, user_factory):
    user_factory(email="taken@example.com")

    response = client.post(
        reverse("signup"), {"email": "TAKEN@example.com", "password1": PASSWORD, "password2": PASSWORD}
    )

    assert response.status_code == 200
    assert "already exists" in str(response.context["form"].errors["email"])
    assert User.objects.filter(email__iexact="taken@example.com").count() == 1


@pytest.mark.django_db
def test_login_with_email_and_logout_by_post(client, user_factory):
    user_factory(email="me@example.com")

    bad = client.post(reverse("login"), {"username": "me@example.com", "password": "wrong"})
    assert bad.status_code == 200
    assert "_auth_user_id" not in client.session

    response = client.post(reverse("login"), {"username": "Me@Example.com", "password": PASSWORD})
    assert response.status_code == 302
    assert response["Location"] == reverse("dashboard")
    assert client.get(reverse("dashboard")).status_code == 200

    assert client.get(reverse("logout")).status_code == 405  # a link or prefetch cannot log anyone out
    response = client.post(reverse("logout"))
    assert response.status_code == 302
    assert client.get(reverse("dashboard")).status_code == 302


@pytest.mark.django_db
def test_repeated_failed_logins_for_one_email_are_throttled(client, user_factory, monkeypatch):
    # Hold django-ratelimit's clock still so the minute window cannot roll over mid-test.
    monkeypatch.setattr(django_ratelimit.core, "time", SimpleNamespace(time=lambda: 1_700_000_000.0))
    user_factory(email="target@example.com")
    for _ in range(10):
        assert client.post(reverse("login"), {"username": "target@example.com", "password": "guess"}).status_code == 200

    response = client.post(reverse("login"), {"username": "target@example.com", "password": PASSWORD})

    assert response.status_code == 403
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_login_page_labels_the_field_email(client):
    content = client.get(reverse("login")).content.decode()

    assert 'type="email"' in content
    assert ">Email</label>" in content


@pytest.mark.django_db
def test_landing_redirects_by_login_state(client, user_factory):
    assert client.get("/")["Location"] == reverse("login")
    client.force_login(user_factory())
    assert client.get("/")["Location"] == reverse("dashboard")


@pytest.mark.django_db
@pytest.mark.parametrize(("name", "args"), [("dashboard", []), ("usage", []), ("key-controls", [1])])
def test_pages_require_login(client, name, args):
    response = client.get(reverse(name, args=args))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


# --- keys --------------------------------------------------------------------


@pytest.mark.django_db
def test_dashboard_shows_plan_and_limits(logged_in):
    client, user = logged_in

    content = client.get(reverse("dashboard")).content.decode()

    assert "Free plan" in content
    assert f"<strong>{user.plan.chat_rpm}</strong> chat req/min" in content
    assert f"<strong>{user.plan.image_rpm}</strong> image req/min" in content


@pytest.mark.django_db
def test_dashboard_queries_do_not_grow_with_keys(
    logged_in, api_key_factory, usage_record_factory, django_assert_max_num_queries
):
    client, user = logged_in
    for i in range(8):
        key, _ = api_key_factory(user=user, name=f"key {i}")
        usage_record_factory(user=user, api_key=key, cost_micro_usd=i + 1)

    # session, user, plan, balance, month's spend, alerts, key sums, keys; and the catalog snapshot
    # (routes, credential pools, models) if not loaded
    with django_assert_max_num_queries(11):
        response = client.get(reverse("dashboard"))

    assert len(response.context["keys"]) == 8
    assert sum(row.spent_total_micro_usd for row in response.context["keys"]) == sum(range(1, 9))


@pytest.mark.django_db
def test_created_key_is_shown_once(logged_in):
    client, user = logged_in

    response, raw_key = _create_key(client, name="prod")

    content = response.content.decode()
    assert "data-copy-target" in content
    assert "only time the full key is shown" in content
    assert 'base_url="http://testserver/v1"' in content
    assert "Cache-Control" in response and "no-store" in response["Cache-Control"]
    assert raw_key not in response.get("Location", "")

    again = client.get(reverse("dashboard")).content.decode()
    assert raw_key not in again
    assert raw_key[:12] + "…" in again  # the display prefix stays
    assert "prod" in again


@pytest.mark.django_db
def test_created_key_is_stored_only_as_its_hash(logged_in):
    client, user = logged_in

    _, raw_key = _create_key(client)

    key = ApiKey.objects.get(user=user)
    assert key.hashed_key == hashlib.sha256(raw_key.encode()).hexdigest()
    assert key.prefix == raw_key[:12]
    with connection.cursor() as cursor:
        tables = connection.introspection.table_names(cursor)
        for table in tables:
            cursor.execute(f'SELECT * FROM "{table}"')  # noqa: S608 - table names come from introspection
            for row in cursor.fetchall():
                assert not any(isinstance(value, str) and raw_key in value for value in row), table


@pytest.mark.django_db
def test_created_key_can_have_an_expiry_date(logged_in):
    client, user = logged_in
    tomorrow = (timezone.now() + timedelta(days=1)).date()

    _create_key(client, expires_on=tomorrow.isoformat())

    key = ApiKey.objects.get(user=user)
    assert key.expires_at == datetime.combine(tomorrow + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    assert key.status == "active"


@pytest.mark.django_db
def test_key_create_rejects_past_expiry_and_blank_name(logged_in):
    client, user = logged_in

    past = client.post(reverse("key-create"), {"name": "x", "expires_on": "2000-01-01"})
    blank = client.post(reverse("key-create"), {"name": "   "})

    assert past.status_code == blank.status_code == 400
    assert "past" in past.content.decode()
    assert not ApiKey.objects.exists()


@pytest.mark.django_db
def test_key_create_requires_post(logged_in):
    client, _ = logged_in

    assert client.get(reverse("key-create")).status_code == 405


@pytest.mark.django_db
def test_revoke_own_key(logged_in, api_key_factory):
    client, user = logged_in
    key, _ = api_key_factory(user=user, name="old")

    response = client.post(reverse("key-revoke", args=[key.id]), follow=True)

    key.refresh_from_db()
    assert key.revoked_at is not None
    assert response.redirect_chain[-1][0] == reverse("dashboard")
    content = response.content.decode()
    assert "revoked" in content
    assert reverse("key-revoke", args=[key.id]) not in content  # no revoke button on a revoked key


@pytest.mark.django_db
def test_revoke_requires_post(logged_in, api_key_factory):
    client, user = logged_in
    key, _ = api_key_factory(user=user)

    assert client.get(reverse("key-revoke", args=[key.id])).status_code == 405
    key.refresh_from_db()
    assert key.revoked_at is None


@pytest.mark.django_db
def test_user_cannot_see_or_revoke_another_users_key(client, user_factory, api_key_factory):
    alice, bob = user_factory(), user_factory()
    bobs_key, _ = api_key_factory(user=bob, name="bob-secret-name")
    client.force_login(alice)

    page = client.get(reverse("dashboard")).content.decode()
    assert "bob-secret-name" not in page
    assert bobs_key.prefix not in page

    response = client.post(reverse("key-revoke", args=[bobs_key.id]))
    assert response.status_code == 404
    bobs_key.refresh_from_db()
    assert bobs_key.revoked_at is None and bobs_key.is_active


@pytest.mark.django_db
def test_key_create_enforces_csrf(user_factory):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user_factory())

    response = client.post(reverse("key-create"), {"name": "no token"})

    assert response.status_code == 403
    assert not ApiKey.objects.exists()


@pytest.mark.django_db
def test_revoke_enforces_csrf(user_factory, api_key_factory):
    user = user_factory()
    key, _ = api_key_factory(user=user)
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)

    assert client.post(reverse("key-revoke", args=[key.id])).status_code == 403
    key.refresh_from_db()
    assert key.revoked_at is None


# --- usage -------------------------------------------------------------------


@pytest.mark.django_db  # only because conftest clears the (database) cache around every test
@pytest.mark.parametrize(
    ("micro", "text"),
    [
        (0, "$0.000000"),
        (1234, "$0.001234"),
        (1_000_000, "$1.000000"),
        (1_234_567_890, "$1,234.567890"),
        (-5, "-$0.000005"),
    ],
)
def test_usd_formats_integer_micro_usd(micro, text):
    assert usd(micro) == text


@pytest.mark.django_db
def test_usage_page_shows_only_own_records_and_totals(logged_in, user_factory, usage_record_factory):
    client, user = logged_in
    other = user_factory()
    now = timezone.now()
    usage_record_factory(user=user, model="model-a", cost_micro_usd=1000, prompt_tokens=10, completion_tokens=20)
    usage_record_factory(user=user, model="model-a", cost_micro_usd=234, prompt_tokens=1, completion_tokens=2)
    usage_record_factory(
        user=user, model="model-b", cost_micro_usd=500_000, created_at=now - timedelta(days=2), status_code=502
    )
    usage_record_factory(user=user, model="model-old", cost_micro_usd=7, created_at=now - timedelta(days=45))
    usage_record_factory(user=other, model="someone-elses-model", request_id="other-req", cost_micro_usd=999_999)

    response = client.get(reverse("usage"))

    content = response.content.decode()
    assert response.status_code == 200
    assert "someone-elses-model" not in content and "other-req" not in content
    assert "$0.999999" not in content
    total = response.context["total"]
    assert (total.requests, total.cost_micro_usd) == (4, 501_241)
    assert (total.prompt_tokens, total.completion_tokens) == (10 + 1 + 10 + 10, 20 + 2 + 5 + 5)
    assert "$0.501241" in content

    by_model = {row.model: row for row in response.context["by_model"]}
    assert set(by_model) == {"model-a", "model-b", "model-old"}
    assert (by_model["model-a"].requests, by_model["model-a"].total_tokens) == (2, 33)
    assert by_model["model-a"].cost_micro_usd == 1234

    by_day = response.context["by_day"]
    assert [row.day for row in by_day] == [now.date(), (now - timedelta(days=2)).date()]  # 45 days ago is out
    assert (by_day[0].requests, by_day[0].cost_micro_usd) == (2, 1234)
    assert "$0.001234" in content

    records = list(response.context["page"].object_list)
    assert [r.model for r in records] == ["model-a", "model-a", "model-b", "model-old"]  # newest first


@pytest.mark.django_db
def test_usage_page_is_paginated_by_50(logged_in, usage_record_factory, django_assert_max_num_queries):
    client, user = logged_in
    start = timezone.now() - timedelta(hours=1)
    for i in range(51):
        usage_record_factory(user=user, request_id=f"r{i:02d}", created_at=start + timedelta(seconds=i))

    with django_assert_max_num_queries(10):
        first = client.get(reverse("usage"))
    second = client.get(reverse("usage"), {"page": 2})

    assert len(first.context["page"].object_list) == 50
    assert first.context["page"].object_list[0].request_id == "r50"
    assert 'href="?page=2"' in first.content.decode()
    assert [r.request_id for r in second.context["page"].object_list] == ["r00"]
    assert client.get(reverse("usage"), {"page": "junk"}).status_code == 200
    assert first.context["total"].requests == 51


@pytest.mark.django_db
def test_usage_page_when_empty(logged_in):
    client, _ = logged_in

    response = client.get(reverse("usage"))

    assert response.status_code == 200
    assert response.context["total"].requests == 0
    assert response.context["total"].cost_micro_usd == 0
    assert "No requests yet" in response.content.decode()


# --- manage.py create_api_key ---------------------------------------------


@pytest.mark.django_db
def test_create_api_key_command_prints_only_the_key(plan_factory):
    out, err = StringIO(), StringIO()

    call_command("create_api_key", "--email", "ci@example.com", "--plan", "pro", "--name", "ci", stdout=out, stderr=err)

    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    raw_key = lines[0]
    assert raw_key.startswith("bapi_") and RAW_KEY.fullmatch(raw_key)
    user = User.objects.get(email="ci@example.com")
    assert user.plan.slug == "pro"
    assert not user.has_usable_password()
    key = ApiKey.objects.get(user=user)
    assert key.name == "ci"
    assert key.hashed_key == hashlib.sha256(raw_key.encode()).hexdigest()


@pytest.mark.django_db
def test_create_api_key_command_reuses_user_and_changes_plan(user_factory):
    user = user_factory(email="existing@example.com", plan="free")
    out = StringIO()

    call_command(
        "create_api_key", "--email", "existing@example.com", "--plan", "standard", stdout=out, stderr=StringIO()
    )

    user.refresh_from_db()
    assert user.plan.slug == "standard"
    assert user.check_password(PASSWORD)  # an existing password is kept
    assert User.objects.count() == 1
    assert out.getvalue().strip().startswith("bapi_")


@pytest.mark.django_db
def test_create_api_key_command_rejects_unknown_plan():
    with pytest.raises(CommandError) as excinfo:
        call_command("create_api_key", "--email", "x@example.com", "--plan", "platinum", stdout=StringIO())

    message = str(excinfo.value)
    assert "platinum" in message
    for slug in ("free", "standard", "pro", "enterprise"):
        assert slug in message
    assert not User.objects.exists()
