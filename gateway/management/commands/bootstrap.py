"""`manage.py bootstrap`: the first-run setup `make run` does after migrating.

Idempotent. Imports BELUGA_CATALOG_FILE when set, makes sure the demo admin
exists, and gives the demo user (Pro plan, topped up to 10 USD of credit) a fresh key, revoking the one from
the previous run: keys are stored only as hashes, so a key can be printed only
when it is created.
"""

from __future__ import annotations

import json
import secrets
import shlex

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser
from django.urls import NoReverseMatch, reverse

from accounts.models import Plan
from accounts.services import api_key_create, api_key_revoke, user_create, user_set_plan
from billing.services import balance_available, balance_grant
from catalog.importer import catalog_import
from catalog.models import AIModel

ADMIN_EMAIL = "admin@beluga.local"
DEMO_EMAIL = "demo@beluga.local"
DEMO_PLAN = "pro"
DEMO_KEY_NAME = "demo (make run)"
DEMO_MODEL = "beluga-demo"
DEMO_CREDIT_MICRO_USD = 10_000_000  # topped up to 10 USD on every `make run`


class Command(BaseCommand):
    help = "First-run setup: import BELUGA_CATALOG_FILE, create the demo admin, print a fresh demo key."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--base-url", default="http://127.0.0.1:8000", help="where Beluga is served, for the printed links"
        )

    def handle(self, *args, base_url: str, **options) -> None:
        base_url = base_url.rstrip("/")
        # The seeded demo upstream follows BELUGA_SIMULATOR_URL, where bin/run starts the simulator.
        catalog_import(data={"upstreams": [{"name": "local-simulator", "base_url": settings.BELUGA["SIMULATOR_URL"]}]})
        catalog_file = settings.BELUGA.get("CATALOG_FILE")
        if catalog_file:
            self.stdout.write(f"Importing catalog file {catalog_file}")
            call_command("catalog_import", catalog_file, stdout=self.stdout, stderr=self.stderr)

        admin_password = _admin_ensure()
        demo_key = _demo_key_renew()

        self._print_summary(base_url=base_url, admin_password=admin_password, demo_key=demo_key)

    def _print_summary(self, *, base_url: str, admin_password: str | None, demo_key: str) -> None:
        out, bold = self.stdout.write, self.style.SUCCESS
        rule = "─" * 72
        if settings.BELUGA.get("ADMIN_PASSWORD"):
            shown = "the value of BELUGA_ADMIN_PASSWORD"
        elif admin_password:
            shown = f"{admin_password}   (generated now and shown once; set BELUGA_ADMIN_PASSWORD to choose)"
        else:
            shown = f"unchanged (set BELUGA_ADMIN_PASSWORD, or: python manage.py changepassword {ADMIN_EMAIL})"
        payload = json.dumps({"model": DEMO_MODEL, "messages": [{"role": "user", "content": "Hello, Beluga!"}]})
        out("")
        out(rule)
        out(bold("Beluga is ready."))
        out(f"  Dashboard   {base_url}{_path('dashboard', '/dashboard/')}")
        out(f"  Admin       {base_url}{_path('admin:index', '/admin/')}")
        out(f"  Admin login {ADMIN_EMAIL}")
        out(f"  Password    {shown}")
        out(f"  Demo key    {demo_key}   ({DEMO_EMAIL}, Pro plan; shown once, a new one each run)")
        out("")
        out("  Try it:")
        out(f"    curl {base_url}/v1/chat/completions \\")
        out(f'      -H "Authorization: Bearer {demo_key}" \\')
        out('      -H "Content-Type: application/json" \\')
        out(f"      -d {shlex.quote(payload)}")
        if not AIModel.objects.filter(slug=DEMO_MODEL, enabled=True).exists():
            out(self.style.WARNING(f"  (no enabled model {DEMO_MODEL!r} in the catalog: add or enable it in admin)"))
        out(rule)


def _path(name: str, fallback: str) -> str:
    try:
        return reverse(name)
    except NoReverseMatch:
        return fallback


def _admin_ensure() -> str | None:
    """Create the demo admin; returns the password when it was set now, else None."""
    User = get_user_model()
    wanted = settings.BELUGA.get("ADMIN_PASSWORD") or ""
    admin = User.objects.filter(email=ADMIN_EMAIL).first()
    if admin is None:
        password = wanted or secrets.token_urlsafe(12)
        # Django's own createsuperuser path (accounts.services.user_open: the default plan, a balance).
        User.objects.create_superuser(email=ADMIN_EMAIL, password=password)
        return password
    if wanted and not admin.check_password(wanted):
        admin.set_password(wanted)
        admin.save(update_fields=["password"])
        return wanted
    return None


def _demo_key_renew() -> str:
    """A new demo key on the Pro plan; the previous run's demo keys are revoked."""
    User = get_user_model()
    plan = Plan.objects.get(slug=DEMO_PLAN)
    user = User.objects.filter(email=DEMO_EMAIL).first()
    if user is None:
        user = user_create(email=DEMO_EMAIL, password=None, plan=plan)  # no password: it only owns the key
    elif user.plan_id != plan.id:
        user_set_plan(user=user, plan=plan)
    # The Pro plan is prepaid: keep the demo account able to call (a ledger grant, like any top-up).
    available = balance_available(user_id=user.id)
    if available < DEMO_CREDIT_MICRO_USD:
        balance_grant(
            user_id=user.id, amount_micro_usd=DEMO_CREDIT_MICRO_USD - available, reason="Demo credit (make run)"
        )
    for key_id in user.api_keys.filter(name=DEMO_KEY_NAME, revoked_at__isnull=True).values_list("id", flat=True):
        api_key_revoke(user=user, key_id=key_id)
    _, raw_key = api_key_create(user=user, name=DEMO_KEY_NAME)
    return raw_key
