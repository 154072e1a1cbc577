"""The worker's side of a media task: submit the upstream job, poll it, end the task.

`task_run` is what the Celery task `gateway.tasks.media_task_run` does with one
message: claim the task's lease, take steps (a submit, or one poll), sleeping
between them itself while the next look is soon, and hand the task back to
the broker with a countdown when it is not. A step that fails to reach the
upstream (connection, 5xx, 429) is tried again later with the same backoff;
an upstream that refuses the job (4xx) or reports it failed ends it failed,
its hold given back; the task's deadline ends it failed too.

A worker killed mid-step loses nothing: its lease runs out and the message
comes back (acks_late, reject_on_worker_lost) or `media_tasks_resume` sends it
again. A job submitted just before the kill, whose id was not yet saved, is
submitted again: the upstream may bill Beluga twice, the customer is charged once.
"""

from __future__ import annotations

import logging
import time

import orjson
from django.utils import timezone

from catalog.selectors import model_get
from gateway.errors import ApiError, InvalidRequest, UpstreamError
from gateway.media import image_making, images, jobs
from gateway.media.results import fail_from_error, finish
from gateway.media.state import JobState, json_object
from gateway.models import MediaTask
from gateway.providers import predictions

logger = logging.getLogger("beluga.media")

INLINE_WAIT_MAX_SECONDS = 5.0  # a worker sleeps this long itself; longer waits go back to the broker
RUN_BUDGET_SECONDS = 60.0  # at most this long on one message, so one worker serves many tasks
MAX_SUBMIT_ATTEMPTS = 6


def task_run(task_id: int) -> float | None:
    """Move the task on; the seconds until its next look (None: it ended, or another worker has it)."""
    task = jobs.task_claim(task_id)
    if task is None:
        return None
    started = time.monotonic()
    while True:
        try:
            delay = _step(task)
        except Exception:
            logger.exception("media task %s: step failed; trying again later", task.public_id)
            delay = jobs.poll_delay(task.attempts)
            jobs.task_update(task, attempts=task.attempts + 1)
        if delay is None:
            return None
        if delay > INLINE_WAIT_MAX_SECONDS or time.monotonic() - started + delay > RUN_BUDGET_SECONDS:
            jobs.task_unclaim(task, next_poll_in=delay)
            return delay
        time.sleep(delay)
        if not jobs.task_lease_renew(task):
            return None


def _step(task: MediaTask) -> float | None:
    if task.deadline_at and timezone.now() >= task.deadline_at:
        _give_up(task)
        return None
    if task.params.get("run_in") == "request":
        # The web process that was making it died (or lost its database) before ending it.
        jobs.task_fail(task, code="interrupted", message="The request making this task ended before it finished.")
        return None
    route = jobs.route_of(task)
    model = model_get(slug=task.model)
    if route is None or model is None:
        jobs.task_fail(task, code="upstream_removed", message="The model's upstream is no longer configured.")
        return None
    try:
        if task.kind == MediaTask.Kind.IMAGE and route.kind in images.ANSWER_AT_ONCE:
            jobs.task_update(task, status=MediaTask.Status.IN_PROGRESS)
            # n calls at the route's read timeout at most: the lease must outlast them.
            jobs.task_lease_renew(task, seconds=route.read_timeout * int(task.params.get("n", 1)) + 60)
            image_making.run_now(task, route, model)
            return None
        if task.kind == MediaTask.Kind.VIDEO and route.kind == "openai":
            from gateway.media.videos import openai_video_step

            return openai_video_step(task, route, model)
        if route.kind == "predictions":
            return _prediction_step(task, route, model)
    except UpstreamError as error:
        if task.billed:
            return None
        if error.status in (502, 503, 429) and not _refused(error):
            task.attempts += 1
            if not task.upstream_job_id and task.attempts >= MAX_SUBMIT_ATTEMPTS:
                fail_from_error(task, error)
                return None
            jobs.task_update(task, attempts=task.attempts)
            return jobs.poll_delay(task.attempts)
        fail_from_error(task, error)
        return None
    except ApiError as error:
        if not task.billed:
            fail_from_error(task, error)
        return None
    jobs.task_fail(task, code="upstream_unsupported", message=f"'{task.model}' cannot make this kind of media.")
    return None


def _refused(error: UpstreamError) -> bool:
    return error.code in ("upstream_result_unusable", "upstream_no_output")


def _give_up(task: MediaTask) -> None:
    route = jobs.route_of(task)
    if route is not None and task.upstream_job_id:
        try:
            cancel_upstream(task, route)
        except Exception:  # noqa: BLE001 - best effort: the task ends failed either way
            logger.warning("media task %s: could not cancel the upstream job", task.public_id)
    jobs.task_fail(
        task, code="deadline_exceeded", message="The model provider did not finish in time.", status_code=504
    )


def cancel_upstream(task: MediaTask, route) -> None:
    if not task.upstream_job_id:
        return
    if route.kind == "predictions":
        predictions.cancel(route, task.upstream_job_id)
    elif route.kind == "openai" and task.kind == MediaTask.Kind.VIDEO:
        from gateway.providers import openai_media

        openai_media.video_delete(route, task.upstream_job_id)


# --- prediction jobs (images and videos) -----------------------------------------------------


def _prediction_step(task: MediaTask, route, model) -> float | None:
    if not task.upstream_job_id:
        if task.kind == MediaTask.Kind.VIDEO:
            from gateway.media.videos import prediction_inputs
        else:
            prediction_inputs = image_making.prediction_inputs
        response = predictions.submit(route, prediction_inputs(task, route, model), request_id=task.request_id)
    else:
        response = predictions.get(route, task.upstream_poll_url)
    if response.status_code not in (200, 201, 202):
        raise _prediction_error(route, response)
    prediction = json_object(response.content)
    state = predictions.read_state(prediction)
    if not task.upstream_job_id:
        if not state.job_id:
            raise UpstreamError("The model provider sent an unreadable answer.", status=502)
        saved = jobs.task_update(
            task,
            upstream_job_id=state.job_id,
            upstream_poll_url=predictions.poll_url(route, state.job_id, state.poll_url),
            attempts=0,
        )
        if not saved:  # cancelled (or past its deadline) while the job was being submitted
            cancel_upstream(task, route)
            return None
    return _after_poll(task, route, model, state)


def _after_poll(task: MediaTask, route, model, state: JobState, *, headers: dict | None = None) -> float | None:
    kind = "video" if task.kind == MediaTask.Kind.VIDEO else "image"
    if state.status == MediaTask.Status.COMPLETED:
        finish(task, route, model, state, kind=kind, headers=headers)
        return None
    if state.status in (MediaTask.Status.FAILED, MediaTask.Status.CANCELLED):
        message = state.error_message or "The model provider could not make it."
        if route.api_key and route.api_key in message:
            message = message.replace(route.api_key, "***")
        jobs.task_fail(task, code=state.error_code or "upstream_job_failed", message=message)
        return None
    attempts = task.attempts + 1
    progress = max(task.progress, state.progress)
    jobs.task_update(task, status=MediaTask.Status.IN_PROGRESS, progress=progress, attempts=attempts)
    return jobs.poll_delay(attempts - 1)


def _prediction_error(route, response) -> ApiError:
    status = response.status_code
    try:
        body = orjson.loads(response.content)
        message = str(body.get("detail") or body.get("title") or "") if isinstance(body, dict) else ""
    except orjson.JSONDecodeError:
        message = ""
    if route.api_key and route.api_key in message:
        message = message.replace(route.api_key, "***")
    if status == 429:
        return UpstreamError("The model provider is rate limiting requests.", status=429, code="upstream_rate_limited")
    if status in (401, 403):
        return UpstreamError("The model provider refused Beluga's credentials.", status=502)
    if 400 <= status < 500:
        return InvalidRequest(message or f"The model provider rejected the request (HTTP {status}).")
    return UpstreamError(f"The model provider failed (HTTP {status}); retry shortly.", status=502)
