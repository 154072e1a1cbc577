"""OpenAI's media endpoints as an upstream: images (sync) and videos (jobs).

- `POST {base}/images/generations` (JSON) and `/images/edits` (multipart) answer
  at once with `data[]` items holding `b64_json` or a `url` (DALL-E's default;
  gpt-image models always give b64_json and refuse `response_format`, so Beluga
  never sends it and reads whichever comes back).
- `POST {base}/videos` creates a job (the video object: id, status queued |
  in_progress | completed | failed, progress); `GET {base}/videos/{id}` polls it;
  `GET {base}/videos/{id}/content` is the MP4 (with the credential);
  `DELETE {base}/videos/{id}` removes it.

Errors map like chat's (gateway.providers.openai.error_from_response).
"""

from __future__ import annotations

from catalog.selectors import RouteTarget
from gateway.models import MediaTask
from gateway.providers.http import send, session_for
from gateway.providers.openai import error_from_response, guarded, json_post

VIDEO_STATUSES = {
    "queued": MediaTask.Status.QUEUED,
    "in_progress": MediaTask.Status.IN_PROGRESS,
    "completed": MediaTask.Status.COMPLETED,
    "failed": MediaTask.Status.FAILED,
    "cancelled": MediaTask.Status.CANCELLED,
}


def auth_headers(route: RouteTarget, request_id: str = "") -> dict:
    headers = {"X-Request-Id": request_id} if request_id else {}
    if route.api_key:
        headers["Authorization"] = f"Bearer {route.api_key}"
    return headers


def _send(route: RouteTarget, method: str, path: str, *, request_id: str, timeout=None, stream=False, **body):
    return guarded(
        lambda: send(
            session=session_for(upstream_id=route.upstream_id, base_url=route.base_url),
            method=method,
            url=f"{route.base_url}{path}",
            headers={**auth_headers(route, request_id), **body.pop("headers", {})},
            timeout=timeout or (route.connect_timeout, route.read_timeout),
            stream=stream,
            **body,
        )
    )


def images_generate(route: RouteTarget, body: dict, *, request_id: str):
    return json_post(route, "/images/generations", body, request_id=request_id)


def images_edit(route: RouteTarget, fields: dict, files: list, *, request_id: str):
    """`files`: [(field name, (filename, bytes or file, content type))], as requests takes them."""
    return _send(route, "POST", "/images/edits", request_id=request_id, data=fields, files=files)


def video_create(route: RouteTarget, fields: dict, files: list | None, *, request_id: str):
    if files:
        return _send(route, "POST", "/videos", request_id=request_id, data=fields, files=files)
    return json_post(route, "/videos", fields, request_id=request_id)


def video_get(route: RouteTarget, video_id: str, *, request_id: str = ""):
    return _send(route, "GET", f"/videos/{video_id}", request_id=request_id, timeout=(route.connect_timeout, 60))


def video_delete(route: RouteTarget, video_id: str, *, request_id: str = ""):
    return _send(route, "DELETE", f"/videos/{video_id}", request_id=request_id, timeout=(route.connect_timeout, 60))


def video_content_url(route: RouteTarget, video_id: str) -> str:
    return f"{route.base_url}/videos/{video_id}/content"


def read_error(route: RouteTarget, response):
    try:
        content = response.content
    except Exception:  # noqa: BLE001 - a broken error body is still an error
        content = b""
    return error_from_response(route=route, status=response.status_code, content=content, headers=response.headers)
