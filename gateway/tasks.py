"""Celery tasks of the gateway app."""

from celery import shared_task

from gateway.idempotency import idempotency_keys_purge


@shared_task(ignore_result=True, time_limit=600, soft_time_limit=540)
def idempotency_keys_purge_task() -> int:
    """Delete Idempotency-Key rows past their use (safe to run at any time, any number of times)."""
    return idempotency_keys_purge()
