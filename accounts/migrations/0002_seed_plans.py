from django.db import migrations

PLANS = [
    # slug, name, chat rpm, image rpm, default, prepaid
    ("free", "Free", 10, 5, True, True),
    ("standard", "Standard", 60, 20, False, True),
    ("pro", "Pro", 300, 60, False, True),
    ("enterprise", "Enterprise", 3000, 600, False, False),
]


def seed_plans(apps, schema_editor):
    Plan = apps.get_model("accounts", "Plan")
    for order, (slug, name, chat_rpm, image_rpm, is_default, prepaid) in enumerate(PLANS):
        Plan.objects.update_or_create(
            slug=slug,
            defaults={
                "name": name,
                "chat_rpm": chat_rpm,
                "image_rpm": image_rpm,
                "is_default": is_default,
                "prepaid": prepaid,
                "sort_order": order,
            },
        )


def unseed_plans(apps, schema_editor):
    Plan = apps.get_model("accounts", "Plan")
    Plan.objects.filter(slug__in=[p[0] for p in PLANS], users__isnull=True).delete()


class Migration(migrations.Migration):
    dependencies = [("accounts", "0001_initial")]
    operations = [migrations.RunPython(seed_plans, unseed_plans)]
