"""Videos as a task API, in OpenAI's shape and in spec 000's.

- `POST /v1/videos` (OpenAI: JSON or multipart with `input_reference`) and
  `POST /v1/videos/generations` (spec 000: `duration`, `aspect_ratio`, `image`)
  hold the cost (seconds × the model's price), write the task and answer the
  video object at once; a Celery worker submits and polls the upstream job
  (gateway/media/runner.py).
- `GET /v1/videos/{id}` and `GET /v1/videos/tasks/{id}` read it (with a signed
  `url` once completed), `GET /v1/videos/{id}/content` streams the file,
  `GET /v1/videos` lists the account's, `DELETE /v1/videos/{id}` cancels a
  running one (its hold given back) or deletes a finished one's file.

The cost is charged when the video completes, and only then.
"""

from __future__ import annotations

import base64

import orjson
from django.conf import settings
from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone

from accounts.limits import BUCKET_IMAGE
from billing.pricing import usd_text, video_charge
from catalog.models import Category
from gateway.errors import ApiError, InvalidRequest, NotFound, UpstreamError
from gateway.media import jobs
from gateway.media.fetch import MediaFetchError, media_from_base64
from gateway.media.options import choice_for, input_name, prompt_of, size_for, upload_size_check
from gateway.media.state import JobState, json_object
from gateway.media.storage import media_delete, media_open, media_save, media_url
from gateway.models import MediaTask
from gateway.pipeline import (
    CallContext,
    Inbound,
    authenticate,
    hold_money,
    limited_call,
    model_and_route,
    parse_json_body,
    release_db_connection,
)
from gateway.protocols import with_route_params
from gateway.providers import openai_media
from gateway.providers.image_fetch import fetch_image, parse_data_url

VIDEOS = Inbound(None, "openai.videos", "videos")
VIDEO_CATEGORIES = frozenset({Category.VIDEO})
MAX_VIDEO_PROMPT_CHARS = 10_000
KNOWN_PARAMS = frozenset(
    {"model", "prompt", "seconds", "duration", "size", "aspect_ratio", "resolution", "image", "image_url"}
)
LIST_LIMIT_MAX = 100


# --- submit -------------------------------------------------------------------------------------


def videos_create(request: HttpRequest) -> HttpResponse:
    """POST /v1/videos and /v1/videos/generations."""
    return limited_call(request, bucket=BUCKET_IMAGE, call=lambda key, started: _videos_create(request, key, started))


def _videos_create(request: HttpRequest, key, started: float) -> HttpResponse:
    if request.content_type.startswith("multipart/form-data"):
        upload_size_check(request)
        body = {name: request.POST.get(name) for name in request.POST}
        upload = request.FILES.get("input_reference")
    else:
        body = parse_json_body(request)
        upload = None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    slug = body.get("model")
    if not isinstance(slug, str) or not slug:
        raise InvalidRequest("Missing required parameter: 'model'.", param="model", code="missing_required_parameter")
    model, route = model_and_route(slug, categories=VIDEO_CATEGORIES, served="video", key=key)
    options = _read(body, model)
    image = _input_image(body, upload, model)
    return _submit(request, key, model, route, options, image, started)


def _read(body: dict, model) -> dict:
    prompt = prompt_of(body, limit=MAX_VIDEO_PROMPT_CHARS)
    durations = [int(d) for d in model.media_options.get("durations") or (4, 8, 12)]
    param = "seconds" if body.get("seconds") is not None else "duration"
    value = body.get(param)
    if value is None:
        seconds = durations[0]
    else:
        text = str(value).strip()
        if isinstance(value, bool) or not text.isdigit() or int(text) not in durations:
            raise InvalidRequest(
                f"Invalid '{param}': {value!r}. '{model.slug}' makes videos of "
                f"{', '.join(map(str, durations))} seconds.",
                param=param,
                code=f"invalid_{param}",
            )
        seconds = int(text)
    size_param = "size" if body.get("size") is not None else "aspect_ratio"
    accepted = model.media_options.get("sizes") or ["16:9"]
    size = size_for(model, body.get(size_param), param=size_param, default=str(accepted[0]))
    resolution = choice_for(model, body.get("resolution"), param="resolution", option="resolutions")
    extra = {k: v for k, v in body.items() if k not in KNOWN_PARAMS and k != "input_reference"}
    return {"prompt": prompt, "seconds": seconds, "size": size, "resolution": resolution, "extra": extra}


def _input_image(body: dict, upload, model) -> dict | None:
    """The image a video starts from, stored: an upload, a data URL, or an http(s) URL fetched safely.

    OpenAI's `input_reference` is a file upload or an object `{"image_url": ...}`; spec 000's is `image`."""
    url = body.get("image") or body.get("image_url")
    reference = body.get("input_reference")
    if isinstance(reference, str) and reference.startswith("{"):  # the object, as a multipart text field
        try:
            reference = orjson.loads(reference)
        except orjson.JSONDecodeError:
            reference = None
    if isinstance(reference, dict):
        if reference.get("file_id"):
            raise InvalidRequest(
                'Beluga has no Files API: send input_reference as an upload or as {"image_url": ...}.',
                param="input_reference",
            )
        url = reference.get("image_url")
        if not isinstance(url, str) or not url:
            raise InvalidRequest(
                'Invalid \'input_reference\': expected {"image_url": "https://..."}.', param="input_reference"
            )
    elif reference is not None and upload is None:
        raise InvalidRequest(
            "Invalid 'input_reference': expected an image upload or an object.", param="input_reference"
        )
    if upload is None and not url:
        return None
    if upload is not None or isinstance(reference, dict):
        param = "input_reference"
    else:
        param = "image" if body.get("image") else "image_url"
    if not model.media_options.get("image_input"):
        raise InvalidRequest(f"The model '{model.slug}' does not start videos from an image.", param=param)
    try:
        if upload is not None:
            fetched = media_from_base64(base64.b64encode(upload.read()).decode(), kind="image")
            filename = upload.name or "image.png"
        else:
            if not isinstance(url, str):
                raise InvalidRequest(f"Invalid '{param}': expected a URL or a data URL.", param=param)
            image = parse_data_url(url, param=param) or fetch_image(url, param=param)
            fetched = media_from_base64(image.data, kind="image")
            filename = "image." + fetched.content_type.split("/")[-1]
    except MediaFetchError:
        raise InvalidRequest(f"Invalid '{param}': expected a PNG, JPEG, WebP or GIF image.", param=param) from None
    with fetched.file:
        saved = media_save(data=fetched.file, content_type=fetched.content_type, prefix="inputs")
    return {"name": saved.name, "content_type": saved.content_type, "filename": filename}


def _submit(request, key, model, route, options: dict, image: dict | None, started: float) -> HttpResponse:
    if route.kind not in ("openai", "predictions"):
        raise UpstreamError(f"'{model.slug}' is routed to an upstream that does not make videos.", status=503)
    charge = video_charge(model, seconds=options["seconds"])
    ctx = CallContext(request.request_id, started, key, VIDEOS, model, route, False, len(options["prompt"]))
    deadline = settings.BELUGA["VIDEO_JOB_DEADLINE_SECONDS"]
    hold_money(
        ctx,
        charge.cost,
        detail=f" ({charge.units} s of video at ${usd_text(charge.unit_price)} a second).",
        expires_in_seconds=deadline + 600,
    )
    params = {
        **options,
        "charge": jobs.charge_params(charge),
        "endpoint": "videos",
        "protocol": "openai.videos",
        "run_in": "worker",
    }
    if image:
        params["inputs"] = {"image": [image]}
    task = jobs.task_for_call(ctx, kind=MediaTask.Kind.VIDEO, params=params, deadline_seconds=deadline)
    jobs.task_enqueue(task)
    return JsonResponse(video_body(task, request))


# --- read, list, download, delete --------------------------------------------------------------


def video_body(task: MediaTask, request: HttpRequest) -> dict:
    params = task.params
    body = {
        "id": task.public_id,
        "task_id": task.public_id,
        "object": "video",
        "model": task.model,
        "prompt": params.get("prompt", ""),
        "status": task.status,
        "progress": task.progress,
        "created_at": int(task.created_at.timestamp()),
        "completed_at": int(task.completed_at.timestamp()) if task.completed_at else None,
        "expires_at": None,
        "seconds": str(params.get("seconds", "")),
        "size": params.get("size", ""),
        "remixed_from_video_id": None,
        "error": {"code": task.error_code, "message": task.error_message} if task.error_code else None,
    }
    if params.get("resolution"):
        body["resolution"] = params["resolution"]
    if params.get("files_expired"):
        body["expired"] = True  # its file was deleted after the retention period
    if task.status == MediaTask.Status.COMPLETED and task.results:
        body["url"] = media_url(name=task.results[0]["name"], request=request)
        body["cost"] = usd_text(task.cost_micro_usd)
        body["cost_micro_usd"] = task.cost_micro_usd
    return body


def _video(request: HttpRequest, video_id: str) -> MediaTask:
    key = authenticate(request, bucket=BUCKET_IMAGE)
    release_db_connection()
    task = jobs.task_get(user_id=key.user_id, public_id=video_id, kinds=(MediaTask.Kind.VIDEO,))
    if task.deleted_at is not None:
        raise NotFound(f"No task with id '{video_id}' was found.", param="id", code="task_not_found")
    return task


def video_get(request: HttpRequest, video_id: str) -> HttpResponse:
    return JsonResponse(video_body(_video(request, video_id), request))


def video_content(request: HttpRequest, video_id: str) -> HttpResponse:
    variant = request.GET.get("variant", "video")
    if variant != "video":
        raise InvalidRequest(f"Invalid 'variant': {variant!r}. Beluga keeps the video only.", param="variant")
    task = _video(request, video_id)
    if task.params.get("files_expired"):
        raise NotFound(f"The video '{video_id}' was deleted after the retention period.", code="media_expired")
    if task.status != MediaTask.Status.COMPLETED or not task.results:
        raise NotFound(
            f"The video '{video_id}' is {task.status.replace('_', ' ')}; its content is there once completed.",
            code="video_not_ready",
        )
    result = task.results[0]
    response = FileResponse(media_open(result["name"]), content_type=result.get("content_type", "video/mp4"))
    response["Content-Disposition"] = f'inline; filename="{task.public_id}.mp4"'
    return response


def videos_list(request: HttpRequest) -> HttpResponse:
    key = authenticate(request, bucket=BUCKET_IMAGE)
    release_db_connection()
    try:
        limit = max(1, min(LIST_LIMIT_MAX, int(request.GET.get("limit", 20))))
    except ValueError:
        raise InvalidRequest("Invalid 'limit': expected an integer from 1 to 100.", param="limit") from None
    query = jobs.tasks_for_user(user_id=key.user_id, kinds=(MediaTask.Kind.VIDEO,))
    if request.GET.get("order") == "asc":
        query = query.order_by("created_at", "id")
    after = request.GET.get("after")
    if after:
        anchor = jobs.task_get(user_id=key.user_id, public_id=after, kinds=(MediaTask.Kind.VIDEO,))
        if request.GET.get("order") == "asc":
            query = query.filter(id__gt=anchor.id)
        else:
            query = query.filter(id__lt=anchor.id)
    rows = list(query[: limit + 1])
    page = rows[:limit]
    data = [video_body(task, request) for task in page]
    return JsonResponse(
        {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": len(rows) > limit,
        }
    )


def video_delete(request: HttpRequest, video_id: str) -> HttpResponse:
    """Cancel a running video (nothing is charged) or delete a finished one's file."""
    task = _video(request, video_id)
    if not task.finished:
        from gateway.media.runner import cancel_upstream

        # Ended here first (the hold given back), so that a worker seeing the upstream job
        # vanish cannot end it as failed; then the upstream job is stopped, as far as it can be.
        # A worker that completed it a moment before wins: the video exists and is charged.
        jobs.task_cancel(task)
        route = jobs.route_of(task)
        if route is not None:
            try:
                cancel_upstream(task, route)
            except ApiError:
                pass  # the upstream may have finished or forgotten it
        task.refresh_from_db()
    inputs = (task.params.get("inputs") or {}).get("image") or []
    for stored in [*task.results, *inputs]:
        media_delete(stored["name"])
    jobs.task_update_finished(task, deleted_at=timezone.now(), results=[])
    return JsonResponse({"id": task.public_id, "object": "video.deleted", "deleted": True})


# --- the worker's steps -------------------------------------------------------------------------


def _upload_of(stored: dict) -> tuple:
    return (stored["filename"], media_open(stored["name"]), stored["content_type"])


def openai_video_step(task: MediaTask, route, model) -> float | None:
    """One step of an OpenAI video job: create it, or look at it once."""
    from gateway.media.runner import _after_poll

    params = task.params
    if not task.upstream_job_id:
        fields = {
            "model": route.upstream_model,
            "prompt": params["prompt"],
            "seconds": str(params["seconds"]),
            "size": params["size"],
            **params.get("extra", {}),
        }
        fields = with_route_params(route.params, fields)
        image = (params.get("inputs") or {}).get("image")
        files = [("input_reference", _upload_of(image[0]))] if image else None
        try:
            response = openai_media.video_create(route, fields, files, request_id=task.request_id)
        finally:
            for _, (_, handle, _) in files or ():
                handle.close()
    else:
        response = openai_media.video_get(route, task.upstream_job_id)
    if response.status_code != 200:
        raise openai_media.read_error(route, response)
    video = json_object(response.content)
    if not isinstance(video.get("id"), str):
        raise UpstreamError("The model provider sent an unreadable answer.", status=502)
    if not task.upstream_job_id and not jobs.task_update(task, upstream_job_id=video["id"], attempts=0):
        # Cancelled while the job was being created: stop it upstream too.
        from gateway.media.runner import cancel_upstream

        cancel_upstream(task, route)
        return None
    error = video.get("error") if isinstance(video.get("error"), dict) else {}
    status = openai_media.VIDEO_STATUSES.get(str(video.get("status")), MediaTask.Status.IN_PROGRESS)
    progress = video.get("progress") if isinstance(video.get("progress"), int) else 0
    state = JobState(
        status=status,
        progress=max(0, min(100, progress)),
        outputs=[openai_media.video_content_url(route, video["id"])] if status == MediaTask.Status.COMPLETED else [],
        error_code=str(error.get("code") or "") if status == MediaTask.Status.FAILED else "",
        error_message=str(error.get("message") or ""),
    )
    return _after_poll(task, route, model, state, headers=openai_media.auth_headers(route))


def prediction_inputs(task: MediaTask, route, model) -> dict:
    params = task.params
    inputs = {"prompt": params["prompt"], **params.get("extra", {})}
    inputs[input_name(model, "seconds")] = params["seconds"]
    if params.get("size"):
        inputs[input_name(model, "size" if "x" in params["size"] else "aspect_ratio")] = params["size"]
    if params.get("resolution"):
        inputs[input_name(model, "resolution")] = params["resolution"]
    image = (params.get("inputs") or {}).get("image")
    if image:
        with media_open(image[0]["name"]) as handle:
            encoded = base64.b64encode(handle.read()).decode()
        inputs[input_name(model, "image")] = f"data:{image[0]['content_type']};base64,{encoded}"
    return with_route_params(route.params, inputs)
