"""Celery tasks of the billing app, run on the schedule in settings.CELERY_BEAT_SCHEDULE.

The sweep is idempotent: running it twice, or on two workers at once, releases
each hold once. The alerts keep their own record of what was sent (billing/alerts.py).
"""

from __future__ import annotations

from celery import shared_task

from billing.services import reservations_sweep

SWEEP_BATCH = 500


@shared_task(time_limit=120, soft_time_limit=100)
def reservations_sweep_task(limit: int = SWEEP_BATCH) -> int:
    """Release the holds of calls whose worker died (open past their expiry); returns how many.

    One batch per run: the schedule runs it every minute, so a larger backlog
    drains over the next runs.
    """
    return reservations_sweep(limit=limit)


@shared_task(ignore_result=True, time_limit=300, soft_time_limit=270)
def spend_alerts_task() -> object:
    """Tell the owners of accounts and keys that crossed a spend alert threshold (billing/alerts.py)."""
    # Imported when the task runs: loading the tasks module (every worker and beat does) need not load the alerts'.
    from billing.alerts import spend_alerts_send

    return spend_alerts_send()
