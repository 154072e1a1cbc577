"""Create (or reuse) a user on a plan and print a new API key for them.

Only the key goes to stdout, one line, so scripts can capture it:
    BELUGA_API_KEY=$(python manage.py create_api_key --email me@example.com --plan free)
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.validators import validate_email

from accounts.models import Plan, User
from accounts.services import api_key_create, user_create, user_set_limits, user_set_plan


class Command(BaseCommand):
    help = "Create a user if needed, put them on a plan, and print a new API key (stdout: the key only)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--email", required=True, help="The account's email; created without a password if new.")
        parser.add_argument(
            "--plan", required=True, help="Plan slug or name, any case, e.g. free, standard, pro, enterprise."
        )
        parser.add_argument("--name", default="CLI key", help="A name for the key (default: %(default)s).")
        parser.add_argument("--chat-rpm", type=int, help="Per-account chat requests/minute, overriding the plan's.")
        parser.add_argument("--image-rpm", type=int, help="Per-account image requests/minute, overriding the plan's.")

    def handle(
        self, *args, email: str, plan: str, name: str, chat_rpm: int | None, image_rpm: int | None, **options
    ) -> None:
        email = email.strip()
        try:
            validate_email(email)
        except ValidationError:
            raise CommandError(f"--email: {email!r} is not a valid email address") from None
        plan_row = _plan_find(plan)

        user = User.objects.filter(email__iexact=email).first()
        if user is None:
            user = user_create(email=email.lower(), password=None, plan=plan_row)
            self.stderr.write(f"Created user {user.email} (no password; set one with `manage.py changepassword`).")
        user_set_plan(user=user, plan=plan_row)
        if chat_rpm is not None or image_rpm is not None:
            if min(v for v in (chat_rpm, image_rpm) if v is not None) < 0:
                raise CommandError("--chat-rpm / --image-rpm must not be negative")
            user_set_limits(user=user, chat_rpm=chat_rpm, image_rpm=image_rpm)
        _, raw_key = api_key_create(user=user, name=name)
        self.stdout.write(raw_key)


def _plan_find(text: str) -> Plan:
    """The plan whose slug or name is `text`, in any case; a CommandError naming every plan otherwise."""
    wanted = text.strip()
    plan = Plan.objects.filter(slug__iexact=wanted).first() or Plan.objects.filter(name__iexact=wanted).first()
    if plan is None:
        valid = ", ".join(f"{slug} ({name})" for slug, name in Plan.objects.values_list("slug", "name"))
        raise CommandError(f"--plan: unknown plan {text!r}; valid plans (slug or name, any case): {valid}")
    return plan
