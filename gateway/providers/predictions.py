"""Replicate-style prediction jobs as an upstream (`predictions` kind).

Submit: `POST {base}/models/{owner}/{name}/predictions` with `{"input": {...}}`
when the route's upstream model is `owner/name`, or `POST {base}/predictions`
with `{"version": ..., "input": {...}}` when it is `owner/name:version` (or a
bare version id). The answer is the prediction: `id`, `status` (starting |
processing | succeeded | failed | canceled), `output` (a URL, a list of URLs,
or null), `error`, `urls.get` (poll) and `urls.cancel`.

Poll and cancel URLs come from the upstream's answer; Beluga only follows
ones on the upstream's own origin, so an upstream cannot point Beluga's
credential at another host.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import orjson

from catalog.selectors import RouteTarget
from gateway.media.state import JobState
from gateway.models import MediaTask
from gateway.providers.http import send, session_for
from gateway.providers.openai import guarded

STATUSES = {
    "starting": MediaTask.Status.QUEUED,
    "processing": MediaTask.Status.IN_PROGRESS,
    "succeeded": MediaTask.Status.COMPLETED,
    "failed": MediaTask.Status.FAILED,
    "canceled": MediaTask.Status.CANCELLED,
    "cancelled": MediaTask.Status.CANCELLED,
    "aborted": MediaTask.Status.FAILED,
}
POLL_TIMEOUT_SECONDS = 60


def _headers(route: RouteTarget, request_id: str = "") -> dict:
    headers = {"Content-Type": "application/json"}
    if request_id:
        headers["X-Request-Id"] = request_id
    if route.api_key:
        headers["Authorization"] = f"Bearer {route.api_key}"
    return headers


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def same_origin(route: RouteTarget, url: str) -> bool:
    return bool(url) and _origin(url) == _origin(route.base_url)


def submit(route: RouteTarget, inputs: dict, *, request_id: str):
    name = route.upstream_model
    if ":" in name or "/" not in name:
        url = f"{route.base_url}/predictions"
        body = {"version": name.split(":", 1)[-1], "input": inputs}
    else:
        url = f"{route.base_url}/models/{name}/predictions"
        body = {"input": inputs}
    return guarded(
        lambda: send(
            session=session_for(upstream_id=route.upstream_id, base_url=route.base_url),
            method="POST",
            url=url,
            headers=_headers(route, request_id),
            data=orjson.dumps(body),
            timeout=(route.connect_timeout, min(route.read_timeout, POLL_TIMEOUT_SECONDS)),
        )
    )


def poll_url(route: RouteTarget, job_id: str, answered: str = "") -> str:
    """Where to poll: the answer's `urls.get` when it is on the upstream's origin, else {base}/predictions/{id}."""
    return answered if same_origin(route, answered) else f"{route.base_url}/predictions/{job_id}"


def get(route: RouteTarget, url: str):
    return guarded(
        lambda: send(
            session=session_for(upstream_id=route.upstream_id, base_url=route.base_url),
            method="GET",
            url=url,
            headers=_headers(route),
            timeout=(route.connect_timeout, POLL_TIMEOUT_SECONDS),
        )
    )


def cancel(route: RouteTarget, job_id: str):
    return guarded(
        lambda: send(
            session=session_for(upstream_id=route.upstream_id, base_url=route.base_url),
            method="POST",
            url=f"{route.base_url}/predictions/{job_id}/cancel",
            headers=_headers(route),
            timeout=(route.connect_timeout, POLL_TIMEOUT_SECONDS),
        )
    )


def read_state(prediction: dict) -> JobState:
    """A prediction object in Beluga's terms (outputs: the URLs, in order)."""
    status = STATUSES.get(str(prediction.get("status")), MediaTask.Status.IN_PROGRESS)
    output = prediction.get("output")
    if isinstance(output, str):
        outputs = [output]
    elif isinstance(output, list):
        outputs = [item for item in output if isinstance(item, str)]
    else:
        outputs = []
    error = prediction.get("error")
    return JobState(
        status=status,
        progress=100 if status == MediaTask.Status.COMPLETED else (50 if status == MediaTask.Status.IN_PROGRESS else 0),
        job_id=str(prediction.get("id") or ""),
        poll_url=str((prediction.get("urls") or {}).get("get") or ""),
        outputs=outputs,
        error_code="upstream_job_failed" if error or status == MediaTask.Status.FAILED else "",
        error_message=str(error)[:2000] if error else "",
    )
