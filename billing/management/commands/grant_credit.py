"""Grant credit to an account from the shell, as the admin's grant form does:

    python manage.py grant_credit --email me@example.com --micro-usd 5000000 --reason "Pilot credit"

It writes one `grant` ledger entry (no author: it came from the shell) and
prints the new balance.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import User
from billing.services import balance_grant
from billing.templatetags.billing_tags import usd


class Command(BaseCommand):
    help = "Add credit to an account's balance, with a reason kept on its ledger entry (1 USD = 1,000,000 micro-USD)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--email", required=True, help="The account's email.")
        parser.add_argument("--micro-usd", required=True, type=int, help="The amount, in integer micro-USD (> 0).")
        parser.add_argument("--reason", required=True, help="Why; shown to the customer on their ledger.")

    def handle(self, *args, email: str, micro_usd: int, reason: str, **options) -> None:
        if micro_usd <= 0:
            raise CommandError(f"--micro-usd must be a positive whole number of micro-USD, not {micro_usd}")
        if not reason.strip():
            raise CommandError("--reason must not be empty: it is kept on the ledger entry")
        user = User.objects.filter(email__iexact=email.strip()).first()
        if user is None:
            raise CommandError(f"--email: no account with the email {email.strip()!r}")
        entry = balance_grant(user_id=user.id, amount_micro_usd=micro_usd, reason=reason)
        self.stdout.write(
            f"Granted {usd(micro_usd)} to {user.email} (ledger entry {entry.id}); "
            f"balance now {usd(entry.balance_after_micro_usd)}."
        )
