"""The ledger's invariants, checked after every test that uses the database (tests/conftest.py)."""

from __future__ import annotations

from django.db import connection, transaction
from django.db.models import Sum

from billing.models import Balance, LedgerEntry, Reservation


def ledger_discrepancies() -> list[str]:
    """Every way the cached balances disagree with the ledger; empty when the books are right.

    For each account: the balance equals the sum of its entries' amounts, the
    reserved amount equals the sum of their holds and the open holds charged to
    the balance, and neither is negative. Read in one snapshot (calls may be
    settling meanwhile).
    """
    with transaction.atomic():
        if connection.vendor == "postgresql" and len(connection.atomic_blocks) == 1:
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        return _discrepancies()


def _discrepancies() -> list[str]:
    problems = []
    sums = list(
        LedgerEntry.objects.values("user_id").annotate(amount=Sum("amount_micro_usd"), hold=Sum("hold_micro_usd"))
    )
    amounts = {row["user_id"]: row["amount"] for row in sums}
    holds = {row["user_id"]: row["hold"] for row in sums}
    open_holds = dict(
        Reservation.objects.filter(state=Reservation.State.OPEN, charges_balance=True)
        .values("user_id")
        .annotate(total=Sum("amount_micro_usd"))
        .values_list("user_id", "total")
    )
    for user_id, balance, reserved in Balance.objects.values_list("user_id", "balance_micro_usd", "reserved_micro_usd"):
        if balance != amounts.get(user_id, 0):
            problems.append(f"user {user_id}: balance {balance} != sum of entries {amounts.get(user_id, 0)}")
        if reserved != holds.get(user_id, 0):
            problems.append(f"user {user_id}: reserved {reserved} != sum of holds {holds.get(user_id, 0)}")
        if reserved != open_holds.get(user_id, 0):
            problems.append(f"user {user_id}: reserved {reserved} != open reservations {open_holds.get(user_id, 0)}")
        if reserved < 0:
            problems.append(f"user {user_id}: reserved {reserved} is negative")
    orphans = set(amounts) - set(Balance.objects.values_list("user_id", flat=True))
    problems.extend(f"user {user_id}: ledger entries without a balance row" for user_id in sorted(orphans))
    return problems
