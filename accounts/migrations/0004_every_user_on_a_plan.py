"""Before 0005 makes `User.plan` required and allows one default plan: put the data in that shape.

Kept apart from 0005 so that PostgreSQL does not refuse 0005's ALTER TABLE
over the foreign-key checks this migration's UPDATEs leave pending.
"""

from django.db import migrations

# The Free plan as 0002 and 0003 seed it, should every plan have been deleted.
FREE_PLAN = {
    "slug": "free",
    "name": "Free",
    "chat_rpm": 10,
    "image_rpm": 5,
    "is_default": True,
    "prepaid": True,
    "signup_grant_micro_usd": 1_000_000,
    "sort_order": 0,
}


def one_default_and_every_user_on_a_plan(apps, schema_editor):
    Plan = apps.get_model("accounts", "Plan")
    User = apps.get_model("accounts", "User")
    # The plan new accounts got until now (plan_default): the first marked default, in order.
    defaults = list(Plan.objects.filter(is_default=True).order_by("sort_order", "id").values_list("id", flat=True))
    if len(defaults) > 1:
        Plan.objects.filter(id__in=defaults[1:]).update(is_default=False)
    planless = User.objects.filter(plan__isnull=True)
    if not planless.exists():
        return
    default = (
        Plan.objects.filter(is_default=True).first()
        or Plan.objects.filter(slug="free").first()
        or Plan.objects.order_by("sort_order", "id").first()
        or Plan.objects.create(**FREE_PLAN)
    )
    planless.update(plan=default)


class Migration(migrations.Migration):
    dependencies = [("accounts", "0003_key_controls_signup_grant")]

    # Backwards: the users keep their plan and the plans their flags; 0005's reverse allows NULL again.
    operations = [migrations.RunPython(one_default_and_every_user_on_a_plan, migrations.RunPython.noop)]
