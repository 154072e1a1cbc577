"""Media tasks: created by the API, moved on by Celery workers, billed once.

A task (gateway.models.MediaTask) is what a client can look up later: an image
set, a video, a speech or a transcription. Calls answered at once (OpenAI
images, speech) are written finished. Upstream jobs (prediction APIs, OpenAI's
videos) are submitted and polled by `task_advance`, run by the Celery task
`gateway.tasks.media_task_run`:

- a worker first claims the task's lease (one UPDATE; a lease left by a dead
  worker runs out after MEDIA_TASK_LEASE_SECONDS), so that one worker at a time moves it;
- each step either submits the job, or polls it once and says when to look
  next (doubling from JOB_POLL_FIRST_SECONDS up to JOB_POLL_MAX_SECONDS);
- the task ends completed (results stored by Beluga, the cost settled),
  failed or cancelled (the hold given back), or failed at its deadline;
- ending is guarded by `billed`, flipped in the usage record's transaction:
  a task is never charged twice, whichever worker gets there.

`media_tasks_resume` (periodic) re-sends tasks whose next look is overdue, so a
lost Celery message (a killed worker) delays a task but never strands it.
"""

from __future__ import annotations

import logging
import secrets
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from billing.pricing import ChargedPrices, MediaCharge, media_charge
from billing.services import Hold, usage_record
from catalog.selectors import ModelInfo, RouteTarget, model_get
from gateway.errors import NotFound
from gateway.models import MediaTask

logger = logging.getLogger("beluga.media")

PUBLIC_ID_PREFIXES = {
    MediaTask.Kind.IMAGE: "imgtask_",
    MediaTask.Kind.VIDEO: "video_",
    MediaTask.Kind.SPEECH: "speech_",
    MediaTask.Kind.TRANSCRIPTION: "stt_",
}
OPEN_STATUSES = (MediaTask.Status.QUEUED, MediaTask.Status.IN_PROGRESS)


def public_id_new(kind: str) -> str:
    return PUBLIC_ID_PREFIXES[kind] + secrets.token_hex(12)


def charge_params(charge: MediaCharge) -> dict:
    return {"unit": charge.unit, "units": charge.units, "unit_price": charge.unit_price}


def charge_of(task: MediaTask, *, units: int | None = None, unit_price: int | None = None) -> MediaCharge:
    """The task's charge at the unit price it was held at; `units` delivered if fewer were made, and
    `unit_price` when the upstream's answer settled a lower one (the quality it picked)."""
    stored = task.params["charge"]
    asked = int(stored["units"])
    made = asked if units is None else max(0, min(units, asked))
    held = int(stored["unit_price"])
    return media_charge(stored["unit"], made, held if unit_price is None else min(unit_price, held))


def task_create(
    *,
    kind: str,
    user_id: int,
    api_key_id: int | None,
    request_id: str,
    model: ModelInfo,
    route: RouteTarget,
    params: dict,
    hold: Hold | None,
    charges_balance: bool,
    status: str = MediaTask.Status.QUEUED,
    deadline_seconds: float | None = None,
    run_in_request: bool = False,
) -> MediaTask:
    """A new task holding `hold`. `run_in_request`: the calling request makes it itself, so no
    worker may touch it before its deadline (a worker then ends it, had the request died)."""
    now = timezone.now()
    deadline = now + timedelta(seconds=deadline_seconds) if deadline_seconds else None
    if hold is not None and hold.budget_period_start is not None:
        params = {**params, "hold_period_start": hold.budget_period_start.isoformat()}
    return MediaTask.objects.create(
        public_id=public_id_new(kind),
        kind=kind,
        user_id=user_id,
        api_key_id=api_key_id,
        request_id=request_id,
        model=model.slug,
        upstream=route.upstream_name,
        upstream_kind=route.kind,
        upstream_model=route.upstream_model,
        params=params,
        status=status,
        reservation_id=hold.reservation_id if hold else None,
        hold_micro_usd=hold.amount_micro_usd if hold else 0,
        charges_balance=charges_balance,
        next_poll_at=deadline if run_in_request else now,
        lease_until=deadline if run_in_request else None,
        deadline_at=deadline,
        created_at=now,
        updated_at=now,
    )


def task_for_call(
    ctx,
    *,
    kind: str,
    params: dict,
    status: str = MediaTask.Status.QUEUED,
    deadline_seconds: float | None = None,
    run_in_request: bool = False,
) -> MediaTask:
    """The task of an API call (a pipeline.CallContext), taking over the call's hold; the hold is
    given back when the task cannot be written."""
    from gateway.pipeline import release_unrecorded

    try:
        return task_create(
            kind=kind,
            user_id=ctx.key.user_id,
            api_key_id=ctx.key.key_id,
            request_id=ctx.request_id,
            model=ctx.model,
            route=ctx.route,
            params=params,
            hold=ctx.hold,
            charges_balance=ctx.key.prepaid,
            status=status,
            deadline_seconds=deadline_seconds,
            run_in_request=run_in_request,
        )
    except BaseException:
        release_unrecorded(ctx)
        raise


def task_enqueue(task: MediaTask, *, countdown: float | None = None) -> None:
    """Send the task to a worker once the transaction that wrote it commits."""
    from gateway.tasks import media_task_run  # the Celery task module imports this one

    task_id = task.pk

    def send() -> None:
        try:
            media_task_send(media_task_run, task_id, countdown=countdown)
        except Exception:
            # The broker is down: the task is written and holds its money, so the client gets its
            # answer as usual; media_tasks_resume sends the task once the broker is back.
            logger.exception("could not send media task %s to the broker; the periodic resume will", task_id)

    transaction.on_commit(send)


def media_task_send(celery_task, task_id: int, *, countdown: float | None = None) -> None:
    """Send a media task's message to the media queue (MEDIA_TASK_QUEUE; empty: Celery's default)."""
    queue = settings.BELUGA["MEDIA_TASK_QUEUE"] or None
    celery_task.apply_async((task_id,), countdown=countdown, queue=queue)


def task_get(*, user_id: int, public_id: str, kinds: tuple[str, ...] | None = None) -> MediaTask:
    """The account's task, or a 404 (another account's task is not found either)."""
    query = MediaTask.objects.filter(user_id=user_id, public_id=public_id)
    if kinds:
        query = query.filter(kind__in=kinds)
    task = query.first()
    if task is None:
        raise NotFound(f"No task with id '{public_id}' was found.", param="id", code="task_not_found")
    return task


def tasks_for_user(*, user_id: int, kinds: tuple[str, ...] | None = None):
    """The account's tasks, newest first; deleted ones (a video the client deleted) are gone."""
    query = MediaTask.objects.filter(user_id=user_id, deleted_at__isnull=True)
    if kinds:
        query = query.filter(kind__in=kinds)
    return query.order_by("-created_at", "-id")


def route_of(task: MediaTask) -> RouteTarget | None:
    """The route the task was submitted through, from the current catalog (credentials may have rotated)."""
    model = model_get(slug=task.model)
    if model is None:
        return None
    for route in model.routes:
        if route.upstream_name == task.upstream:
            return route
    return None


def hold_of(task: MediaTask) -> Hold | None:
    if task.reservation_id is None:
        return None
    period_start = task.params.get("hold_period_start")
    return Hold(
        reservation_id=task.reservation_id,
        user_id=task.user_id,
        api_key_id=task.api_key_id,
        amount_micro_usd=task.hold_micro_usd,
        charges_balance=task.charges_balance,
        budget_period_start=datetime.fromisoformat(period_start).date() if period_start else None,
    )


# --- ending a task: once, with its usage record -----------------------------------------


def _end(
    task: MediaTask,
    *,
    status: str,
    charge: MediaCharge | None,
    status_code: int,
    error_code: str = "",
    error_message: str = "",
    results: list | None = None,
) -> bool:
    """End the task and write its usage record (settling or releasing its hold) in one transaction.

    False when another worker (or a cancel) ended it first: nothing is written twice.
    """
    now = timezone.now()
    cost = charge.cost if charge is not None else 0
    with transaction.atomic():
        ended = MediaTask.objects.filter(pk=task.pk, billed=False).update(
            billed=True,
            status=status,
            progress=100 if status == MediaTask.Status.COMPLETED else task.progress,
            results=results if results is not None else task.results,
            cost_micro_usd=cost,
            error_code=error_code[:64],
            error_message=error_message,
            completed_at=now,
            updated_at=now,
            lease_until=None,
            next_poll_at=None,
        )
        if not ended:
            return False
        usage_record(
            request_id=task.request_id,
            user_id=task.user_id,
            api_key_id=task.api_key_id,
            model=task.model,
            upstream=task.upstream,
            upstream_model=task.upstream_model,
            endpoint=task.params.get("endpoint", task.kind),
            protocol=task.params.get("protocol", "openai.media"),
            upstream_kind=task.upstream_kind,
            stream=False,
            status_code=status_code,
            finish_reason=status,
            error_type=error_code[:64],
            cost_micro_usd=cost,
            prices=ChargedPrices(),
            media=charge,
            latency_ms=int((now - task.created_at).total_seconds() * 1000),
            hold=hold_of(task),
            charge_balance=task.charges_balance,
        )
    task.refresh_from_db()
    return True


def task_complete(task: MediaTask, *, results: list, charge: MediaCharge) -> bool:
    return _end(task, status=MediaTask.Status.COMPLETED, charge=charge, status_code=200, results=results)


def task_fail(task: MediaTask, *, code: str, message: str, status_code: int = 502) -> bool:
    charge = charge_of(task, units=0) if task.params.get("charge") else None
    return _end(
        task,
        status=MediaTask.Status.FAILED,
        charge=charge,
        status_code=status_code,
        error_code=code,
        error_message=message,
    )


def task_cancel(task: MediaTask) -> bool:
    charge = charge_of(task, units=0) if task.params.get("charge") else None
    return _end(
        task,
        status=MediaTask.Status.CANCELLED,
        charge=charge,
        status_code=499,
        error_code="cancelled",
        error_message="Cancelled by the client.",
    )


# --- the worker's side --------------------------------------------------------------------


def _lease() -> timedelta:
    return timedelta(seconds=settings.BELUGA["MEDIA_TASK_LEASE_SECONDS"])


def task_claim(task_id: int, *, now: datetime | None = None) -> MediaTask | None:
    """Take the task's lease (None: it is finished, or another worker holds it).

    The lease carries a token of this claim: renewing and handing it back only work with it,
    so a worker whose lease ran out cannot disturb the one that took the task over."""
    now = now or timezone.now()
    token = secrets.token_hex(8)
    claimed = (
        MediaTask.objects.filter(pk=task_id, status__in=OPEN_STATUSES)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .update(lease_until=now + _lease(), lease_token=token, updated_at=now)
    )
    return MediaTask.objects.get(pk=task_id, lease_token=token) if claimed else None


def task_lease_renew(task: MediaTask, *, seconds: float | None = None) -> bool:
    """Extend this claim's lease (for `seconds` when a long step is next: a download, a slow call);
    False when the task ended meanwhile (a cancel) or another claim took it over."""
    now = timezone.now()
    until = now + (timedelta(seconds=seconds) if seconds else _lease())
    return bool(
        MediaTask.objects.filter(pk=task.pk, billed=False, lease_token=task.lease_token).update(
            lease_until=until, updated_at=now
        )
    )


def task_unclaim(task: MediaTask, *, next_poll_in: float) -> None:
    now = timezone.now()
    MediaTask.objects.filter(pk=task.pk, billed=False, lease_token=task.lease_token).update(
        lease_until=None, lease_token="", next_poll_at=now + timedelta(seconds=next_poll_in), updated_at=now
    )


def task_update(task: MediaTask, **fields) -> bool:
    """Change an open task (False, and nothing changed, when it has ended)."""
    fields["updated_at"] = timezone.now()
    changed = MediaTask.objects.filter(pk=task.pk, billed=False).update(**fields)
    for name, value in fields.items():
        setattr(task, name, value)
    return bool(changed)


def task_update_finished(task: MediaTask, **fields) -> None:
    """Change a task whatever its state (a deleted video's files): never its money fields."""
    fields["updated_at"] = timezone.now()
    MediaTask.objects.filter(pk=task.pk).update(**fields)
    for name, value in fields.items():
        setattr(task, name, value)


def poll_delay(attempts: int) -> float:
    """Seconds before the next look at an upstream job: doubling from the first wait up to the longest."""
    limits = settings.BELUGA
    return min(limits["JOB_POLL_MAX_SECONDS"], limits["JOB_POLL_FIRST_SECONDS"] * (2 ** min(attempts, 16)))


def media_files_purge(*, now: datetime | None = None, limit: int = 500) -> int:
    """Delete the files of tasks that ended more than MEDIA_RETENTION_DAYS ago (0: never); the tasks stay,
    marked `files_expired`. Returns how many tasks lost their files; safe to run at any time."""
    days = settings.BELUGA["MEDIA_RETENTION_DAYS"]
    if days <= 0:
        return 0
    from gateway.media.storage import media_delete

    cutoff = (now or timezone.now()) - timedelta(days=days)
    expired = 0
    for task in MediaTask.objects.filter(completed_at__lt=cutoff).exclude(results=[]).order_by("completed_at")[:limit]:
        inputs = (task.params.get("inputs") or {}).get("image") or []
        for stored in [*task.results, *inputs]:
            media_delete(stored["name"])
        task_update_finished(task, results=[], params={**task.params, "files_expired": True})
        expired += 1
    return expired


def media_tasks_resume(*, now: datetime | None = None, grace_seconds: float = 60, limit: int = 500) -> int:
    """Send again the open tasks whose next look is overdue and that no worker holds; returns how many."""
    now = now or timezone.now()
    overdue = (
        MediaTask.objects.filter(status__in=OPEN_STATUSES, next_poll_at__lt=now - timedelta(seconds=grace_seconds))
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .order_by("next_poll_at")
        .values_list("pk", flat=True)[:limit]
    )
    sent = 0
    from gateway.tasks import media_task_run

    for task_id in overdue:
        media_task_send(media_task_run, task_id)
        sent += 1
    return sent
