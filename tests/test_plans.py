"""Plans: the seeded tiers, one default plan, and a plan (with an open balance) for every account
however it was made: sign-up, `createsuperuser`, the manager, the CLI."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor

from accounts.models import Plan, User
from accounts.services import api_key_authenticate, api_key_create, plan_default, plan_save, user_create
from billing.models import Balance
from billing.services import balance_available

pytestmark = pytest.mark.usefixtures("ledger_invariants")

PASSWORD = "x-long-enough-password-x"


# --- the seeded plans ------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("slug", "name", "chat_rpm", "image_rpm"),
    [
        ("free", "Free", 10, 5),
        ("standard", "Standard", 60, 20),
        ("pro", "Pro", 300, 60),
        ("enterprise", "Enterprise", 3000, 600),
    ],
)
def test_migrations_seed_each_plans_chat_and_image_rpm(slug, name, chat_rpm, image_rpm):
    plan = Plan.objects.get(slug=slug)

    assert (plan.name, plan.chat_rpm, plan.image_rpm) == (name, chat_rpm, image_rpm)


@pytest.mark.django_db
def test_free_is_the_one_seeded_default():
    assert list(Plan.objects.filter(is_default=True).values_list("slug", flat=True)) == ["free"]
    assert plan_default().slug == "free"


# --- one default plan ---------------------------------------------------------------


@pytest.mark.django_db
def test_the_database_refuses_a_second_default_plan():
    with pytest.raises(IntegrityError), transaction.atomic():
        Plan.objects.filter(slug="pro").update(is_default=True)


@pytest.mark.django_db
def test_saving_a_plan_as_default_moves_the_default_to_it():
    pro = Plan.objects.get(slug="pro")
    pro.is_default = True

    plan_save(plan=pro)

    assert list(Plan.objects.filter(is_default=True)) == [pro]
    assert plan_default() == pro
    assert user_create(email="new@example.com", password=None).plan == pro


@pytest.mark.django_db
def test_without_a_default_plan_new_accounts_get_the_first_in_order():
    Plan.objects.update(is_default=False)
    Plan.objects.filter(slug="standard").update(sort_order=0)
    Plan.objects.filter(slug="free").update(sort_order=5)

    assert plan_default().slug == "standard"


# --- every account has a plan and a balance ---------------------------------------


def _assert_opened_on_free(user: User) -> None:
    free = Plan.objects.get(slug="free")
    user.refresh_from_db()
    assert user.plan == free
    assert Balance.objects.filter(user=user).exists()
    assert balance_available(user_id=user.id) == free.signup_grant_micro_usd
    # A plan-less account had 0 requests a minute: every call was a 429.
    _, raw_key = api_key_create(user=user, name="k")
    key = api_key_authenticate(raw_key=raw_key)
    assert (key.chat_rpm, key.image_rpm) == (free.chat_rpm, free.image_rpm) == (user.chat_rpm, user.image_rpm)


@pytest.mark.django_db
def test_a_user_made_by_the_manager_is_on_the_default_plan_with_its_balance_open():
    _assert_opened_on_free(User.objects.create_user(email="made@example.com", password=PASSWORD))


@pytest.mark.django_db
def test_a_superuser_is_on_the_default_plan_with_its_balance_open():
    _assert_opened_on_free(User.objects.create_superuser(email="root@example.com", password=PASSWORD))


@pytest.mark.django_db
def test_createsuperuser_command_puts_the_admin_on_the_default_plan(monkeypatch):
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", PASSWORD)

    call_command("createsuperuser", "--noinput", "--email", "boss@example.com", stdout=StringIO())

    user = User.objects.get(email="boss@example.com")
    assert user.is_superuser
    _assert_opened_on_free(user)


@pytest.mark.django_db(transaction=True)
def test_a_user_made_by_the_async_manager_is_on_the_default_plan(transactional_db):
    import asyncio

    user = asyncio.run(User.objects.acreate_user("Async@Example.com", password=PASSWORD))

    assert user.username == user.email == "Async@example.com"
    _assert_opened_on_free(user)


@pytest.mark.django_db
def test_user_create_keeps_the_plan_it_is_given_and_grants_that_plans_credit():
    pro = Plan.objects.get(slug="pro")
    pro.signup_grant_micro_usd = 2_500_000
    pro.save()

    user = user_create(email="pro@example.com", password=None, plan=pro)

    assert user.plan == pro
    assert balance_available(user_id=user.id) == 2_500_000


@pytest.mark.django_db
def test_a_user_cannot_be_stored_without_a_plan():
    user = User.objects.create_user(email="someone@example.com", password=PASSWORD)

    with pytest.raises(IntegrityError), transaction.atomic():
        User.objects.filter(id=user.id).update(plan=None)


# --- manage.py create_api_key --plan -----------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("given", ["PRO", "Pro", " pro ", "pRo"])
def test_create_api_key_takes_the_plan_slug_or_name_in_any_case(given):
    out = StringIO()

    call_command("create_api_key", "--email", "ci@example.com", "--plan", given, stdout=out, stderr=StringIO())

    assert out.getvalue().strip().startswith("bapi_")
    assert User.objects.get(email="ci@example.com").plan.slug == "pro"


@pytest.mark.django_db
def test_create_api_key_finds_a_plan_by_a_name_unlike_its_slug():
    Plan.objects.create(slug="team-2026", name="Team Plus", chat_rpm=100, image_rpm=10, sort_order=9)

    call_command(
        "create_api_key", "--email", "t@example.com", "--plan", "team plus", stdout=StringIO(), stderr=StringIO()
    )

    assert User.objects.get(email="t@example.com").plan.slug == "team-2026"


@pytest.mark.django_db
def test_create_api_key_names_every_plan_when_the_plan_is_unknown():
    with pytest.raises(CommandError) as excinfo:
        call_command("create_api_key", "--email", "x@example.com", "--plan", "Platinum", stdout=StringIO())

    message = str(excinfo.value)
    assert "'Platinum'" in message
    for plan in Plan.objects.all():
        assert f"{plan.slug} ({plan.name})" in message
    assert not User.objects.exists()


# --- migrations 0004 and 0005 ---------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_migration_puts_planless_users_on_the_default_plan_and_keeps_one_default():
    before = [("accounts", "0003_key_controls_signup_grant")]
    after = [("accounts", "0005_user_plan_required_one_default_plan")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    old = executor.loader.project_state(before).apps
    OldPlan, OldUser = old.get_model("accounts", "Plan"), old.get_model("accounts", "User")
    OldPlan.objects.filter(slug="enterprise").update(is_default=True)  # a second default, later in order
    planless = OldUser.objects.create(email="old@example.com", username="old@example.com", plan=None)

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(after)

    assert list(Plan.objects.filter(is_default=True).values_list("slug", flat=True)) == ["free"]
    assert User.objects.get(id=planless.id).plan.slug == "free"
