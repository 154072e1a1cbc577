"""Celery tasks of the gateway app."""

from celery import shared_task

from gateway.idempotency import idempotency_keys_purge


@shared_task(ignore_result=True, time_limit=600, soft_time_limit=540)
def idempotency_keys_purge_task() -> int:
    """Delete Idempotency-Key rows past their use (safe to run at any time, any number of times)."""
    return idempotency_keys_purge()


# A media task's message is acknowledged only after the step ran (acks_late) and comes back
# when the worker process dies (reject_on_worker_lost); the task's lease keeps two workers
# from moving it at once, so a message delivered twice does no harm.
@shared_task(
    bind=True, ignore_result=True, acks_late=True, reject_on_worker_lost=True, time_limit=1500, soft_time_limit=1400
)
def media_task_run(self, task_id: int) -> None:
    """Move one media task on (submit or poll its upstream job); sent again later while it runs."""
    from gateway.media.jobs import media_task_send
    from gateway.media.runner import task_run

    delay = task_run(task_id)
    if delay is not None:
        media_task_send(self, task_id, countdown=delay)


@shared_task(ignore_result=True, time_limit=120, soft_time_limit=100)
def media_tasks_resume_task() -> int:
    """Send again the media tasks whose next look is overdue (their message was lost with a worker)."""
    from gateway.media.jobs import media_tasks_resume

    return media_tasks_resume()


@shared_task(ignore_result=True, time_limit=600, soft_time_limit=540)
def media_files_purge_task() -> int:
    """Delete generated files past BELUGA_MEDIA_RETENTION_DAYS (the tasks and their records stay)."""
    from gateway.media.jobs import media_files_purge

    return media_files_purge()


@shared_task(ignore_result=True, time_limit=300, soft_time_limit=270)
def upstream_probes_task() -> int:
    """Probe idle or open upstreams that ask for it (Upstream.health_probe), for their breakers."""
    from gateway.routing.probes import upstreams_probe

    return upstreams_probe()
