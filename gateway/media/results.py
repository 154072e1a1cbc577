"""A finished upstream job's outputs stored by Beluga, and the task ended with its charge (images and videos)."""

from __future__ import annotations

from django.conf import settings

from gateway.errors import ApiError, UpstreamError
from gateway.media import jobs
from gateway.media.fetch import MediaFetchError, media_fetch, media_from_base64
from gateway.media.state import JobState
from gateway.media.storage import media_delete, media_save
from gateway.models import MediaTask


def finish(task: MediaTask, route, model, state: JobState, *, kind: str = "image", headers: dict | None = None) -> None:
    """Store a finished job's outputs and end the task, charged for what came back."""
    stored = []
    fetch_timeout = settings.BELUGA["VIDEO_FETCH_TIMEOUT_SECONDS" if kind == "video" else "MEDIA_FETCH_TIMEOUT_SECONDS"]
    asked = int(task.params.get("n", 1)) if kind == "image" else 1
    try:
        for output in state.outputs[:asked]:
            if task.lease_token:  # a worker's step: keep its lease through the download
                jobs.task_lease_renew(task, seconds=fetch_timeout + 60)
            item = output if isinstance(output, dict) else {"url": output}
            if "b64" in item:
                fetched = media_from_base64(item["b64"], kind=kind)
            else:
                fetched = media_fetch(
                    item["url"],
                    kind=kind,
                    upstream_base_url=route.base_url,
                    headers=headers,
                    timeout=fetch_timeout,
                )
            with fetched.file:
                saved = media_save(data=fetched.file, content_type=fetched.content_type, prefix=f"{kind}s")
            result = {"name": saved.name, "content_type": saved.content_type, "size": saved.size}
            if item.get("revised_prompt"):
                result["revised_prompt"] = item["revised_prompt"]
            stored.append(result)
    except MediaFetchError as error:
        jobs.task_fail(task, code="upstream_result_unusable", message=str(error))
        raise UpstreamError(str(error), status=502, code="upstream_result_unusable") from None
    if not stored:
        jobs.task_fail(task, code="upstream_no_output", message="The model provider returned no image.")
        raise UpstreamError("The model provider returned no image.", status=502, code="upstream_no_output")
    charge = jobs.charge_of(task, units=len(stored) if kind == "image" else None, unit_price=state.unit_price)
    if not jobs.task_complete(task, results=stored, charge=charge):
        for result in stored:  # a cancel or another worker ended it first: these files are nobody's
            media_delete(result["name"])


def fail_from_error(task: MediaTask, error: ApiError) -> None:
    jobs.task_update(task, params={**task.params, "error_status": error.status})
    jobs.task_fail(task, code=error.code or error.type, message=error.message, status_code=error.status)
