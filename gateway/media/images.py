"""POST /v1/images/generations and /v1/images/edits; GET /v1/images/tasks/{id}.

Every call is a MediaTask that holds its money and ends once (gateway/media/jobs.py):

- OpenAI and Gemini upstreams answer at once: the request runs the call itself.
- Prediction upstreams are jobs: a Celery worker submits and polls them
  (gateway/media/runner.py) while the request waits up to IMAGE_WAIT_SECONDS
  ("transparent async"); past that it answers 504 with the task's id, and the
  job goes on (GET /v1/images/tasks/{id}). `"async": true` or
  `Prefer: respond-async` answers 202 with the task at once, whatever the upstream.

Results are stored by Beluga and handed out as its own signed, expiring URLs
(or as b64_json): an upstream's URLs expire and name the upstream.
"""

from __future__ import annotations

import base64
import time

import orjson
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from accounts.limits import BUCKET_IMAGE
from billing.pricing import image_charge, image_unit_price_max, media_charge, usd_text
from catalog.models import Category
from gateway.errors import ApiError, InvalidRequest, UpstreamError
from gateway.media import jobs
from gateway.media.fetch import MediaFetchError, media_from_base64
from gateway.media.image_making import run_now
from gateway.media.options import (
    choice_for,
    images_max,
    integer_in,
    prompt_of,
    size_for,
    upload_size_check,
)
from gateway.media.storage import media_open, media_save, media_url
from gateway.models import MediaTask
from gateway.pipeline import (
    COST_HEADER,
    CallContext,
    Inbound,
    authenticate,
    hold_money,
    limited_call,
    model_and_route,
    parse_json_body,
    release_db_connection,
)

IMAGES = Inbound(None, "openai.images", "images/generations")
IMAGE_EDITS = Inbound(None, "openai.images", "images/edits")
IMAGE_CATEGORIES = frozenset({Category.IMAGE})
# Upstream kinds that answer an image request at once (the others are jobs).
ANSWER_AT_ONCE = frozenset({"openai", "gemini"})
MEDIA_KINDS = frozenset({"openai", "gemini", "predictions"})
RESPONSE_FORMATS = ("url", "b64_json")
# Parameters Beluga reads; any other is passed to the upstream as it is.
KNOWN_PARAMS = frozenset({"model", "prompt", "n", "size", "quality", "style", "response_format", "user", "async"})
DEFAULT_QUALITIES = ("standard", "auto")
TASK_HEADER = "X-Beluga-Task-Id"


class GenerationPending(ApiError):
    """The job outlived the wait: 504 with the task's id, to fetch it later."""

    status = 504
    type = "timeout_error"
    code = "generation_pending"

    def __init__(self, message: str, *, task_id: str) -> None:
        # OpenAI's SDKs retry a 5xx unless told not to: each retry would start (and bill) a new job.
        super().__init__(message, headers={TASK_HEADER: task_id, "x-should-retry": "false"})
        self.task_id = task_id

    def body(self) -> dict:
        body = super().body()
        body["error"]["task_id"] = self.task_id
        return body


# --- reading the request --------------------------------------------------------------------


def _read(body, model, *, edits: bool = False) -> dict:
    """The request's options, checked against the model: a 400 naming the first bad one."""
    prompt = prompt_of(body)
    n = integer_in(body.get("n"), param="n", low=1, high=images_max(model), default=1)
    size = size_for(model, body.get("size"))
    quality = choice_for(
        model, body.get("quality"), param="quality", option="qualities", default_accepted=DEFAULT_QUALITIES
    )
    style = choice_for(model, body.get("style"), param="style", option="styles")
    response_format = body.get("response_format") or "url"
    if response_format not in RESPONSE_FORMATS:
        raise InvalidRequest(
            f"Invalid 'response_format': {response_format!r}. Use url or b64_json.", param="response_format"
        )
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise InvalidRequest("Invalid 'user': expected a string.", param="user")
    if edits and not model.media_options.get("edits"):
        raise InvalidRequest(
            f"The model '{model.slug}' does not edit images.", param="model", code="model_not_supported"
        )
    extra = {k: v for k, v in body.items() if k not in KNOWN_PARAMS}
    return {
        "prompt": prompt,
        "n": n,
        "size": size,
        "quality": quality,
        "style": style,
        "response_format": response_format,
        "user": user or "",
        "extra": extra,
    }


def _wants_async(request: HttpRequest, body: dict) -> bool:
    prefer = request.headers.get("Prefer", "").lower()
    return body.get("async") is True or "respond-async" in prefer


def _model_slug(body) -> str:
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    slug = body.get("model")
    if not isinstance(slug, str) or not slug:
        raise InvalidRequest("Missing required parameter: 'model'.", param="model", code="missing_required_parameter")
    return slug


# --- the endpoints -------------------------------------------------------------------------


def images_generate(request: HttpRequest) -> HttpResponse:
    return limited_call(request, bucket=BUCKET_IMAGE, call=lambda key, started: _images_generate(request, key, started))


def _images_generate(request: HttpRequest, key, started: float) -> HttpResponse:
    body = parse_json_body(request)
    model, route = model_and_route(_model_slug(body), categories=IMAGE_CATEGORIES, served="image", key=key)
    options = _read(body, model)
    return _generate(request, key, model, route, options, started, wants_async=_wants_async(request, body))


def _generate(request, key, model, route, options: dict, started: float, *, wants_async: bool, inbound=IMAGES):
    if route.kind not in MEDIA_KINDS:
        raise UpstreamError(f"'{model.slug}' is routed to an upstream that does not make images.", status=503)
    # A model that picks the quality itself (`auto`, gpt-image's default) is held at its dearest
    # price for the size and charged at the quality its answer reports (finish()).
    quality = options["quality"]
    open_quality = quality == "auto" or (not quality and "auto" in (model.media_options.get("qualities") or ()))
    if open_quality:
        unit_price = image_unit_price_max(model, size=options["size"])
        charge = media_charge("image", options["n"], unit_price)
    else:
        charge = image_charge(model, images=options["n"], size=options["size"], quality=quality)
    ctx = CallContext(request.request_id, started, key, inbound, model, route, False, len(options["prompt"]))
    limits = settings.BELUGA
    hold_money(
        ctx,
        charge.cost,
        detail=f" ({charge.units} image{'s' if charge.units != 1 else ''} at ${usd_text(charge.unit_price)}).",
        expires_in_seconds=limits["IMAGE_JOB_DEADLINE_SECONDS"] + 600,
    )
    run_in_request = route.kind in ANSWER_AT_ONCE and not wants_async
    params = {
        **{k: v for k, v in options.items() if k != "files"},
        "charge": jobs.charge_params(charge),
        "endpoint": inbound.endpoint,
        "protocol": inbound.protocol,
        "run_in": "request" if run_in_request else "worker",
        "open_quality": open_quality,
    }
    task = jobs.task_for_call(
        ctx,
        kind=MediaTask.Kind.IMAGE,
        params=params,
        status=MediaTask.Status.IN_PROGRESS if run_in_request else MediaTask.Status.QUEUED,
        # A request making the images itself may take n calls at the route's read timeout.
        deadline_seconds=max(limits["IMAGE_JOB_DEADLINE_SECONDS"], route.read_timeout * options["n"] + 120)
        if run_in_request
        else limits["IMAGE_JOB_DEADLINE_SECONDS"],
        run_in_request=run_in_request,
    )
    # From here the task owns the hold: it is settled or given back when the task ends.
    if options.get("files"):
        jobs.task_update(task, params={**task.params, "inputs": options["files"]})
    if run_in_request:
        release_db_connection()
        try:
            run_now(task, route, model)
        except BaseException:
            if not task.billed:  # a bug or a lost database, not an upstream answer: still end the task
                jobs.task_fail(task, code="internal_error", message="Beluga failed while making the image.")
            raise
        return images_response(task, request)
    jobs.task_enqueue(task)
    if wants_async:
        return JsonResponse(task_body(task, request), status=202)
    finished = wait_for(task, settings.BELUGA["IMAGE_WAIT_SECONDS"])
    if finished is None:
        raise GenerationPending(
            f"The image is still being generated. Fetch it with GET /v1/images/tasks/{task.public_id} "
            "(it stays available; you are charged only when it completes).",
            task_id=task.public_id,
        )
    return images_response(finished, request)


def images_edit(request: HttpRequest) -> HttpResponse:
    """Multipart: image (or image[]), optional mask, prompt, and the generation options."""
    return limited_call(request, bucket=BUCKET_IMAGE, call=lambda key, started: _images_edit(request, key, started))


def _images_edit(request: HttpRequest, key, started: float) -> HttpResponse:
    if not request.content_type.startswith("multipart/form-data"):
        raise InvalidRequest("Send images/edits as multipart/form-data (image, prompt, model).")
    upload_size_check(request)
    fields = {name: request.POST.get(name) for name in request.POST}
    if "n" in fields and fields["n"] is not None:
        fields["n"] = integer_in(fields["n"], param="n", low=1, high=10, default=1)
    model, route = model_and_route(_model_slug(fields), categories=IMAGE_CATEGORIES, served="image", key=key)
    options = _read(fields, model, edits=True)
    uploads = request.FILES.getlist("image") or request.FILES.getlist("image[]")
    if not uploads:
        raise InvalidRequest("Missing required parameter: 'image'.", param="image")
    stored = []
    for i, upload in enumerate(uploads):
        stored.append(_stored_upload(upload, param=f"image[{i}]" if len(uploads) > 1 else "image"))
    mask = request.FILES.get("mask")
    options["files"] = {"image": stored, "mask": _stored_upload(mask, param="mask") if mask else None}
    return _generate(request, key, model, route, options, started, wants_async=False, inbound=IMAGE_EDITS)


def _stored_upload(upload, *, param: str) -> dict:
    try:
        fetched = media_from_base64(base64.b64encode(upload.read()).decode(), kind="image")
    except MediaFetchError:
        raise InvalidRequest(f"Invalid '{param}': expected a PNG, JPEG, WebP or GIF image.", param=param) from None
    with fetched.file:
        saved = media_save(data=fetched.file, content_type=fetched.content_type, prefix="inputs")
    return {"name": saved.name, "content_type": saved.content_type, "filename": upload.name or "image.png"}


def image_task(request: HttpRequest, task_id: str) -> HttpResponse:
    """GET /v1/images/tasks/{id}: the task, with its images once completed."""
    key = authenticate(request, bucket=BUCKET_IMAGE)
    release_db_connection()
    task = jobs.task_get(user_id=key.user_id, public_id=task_id, kinds=(MediaTask.Kind.IMAGE,))
    return JsonResponse(task_body(task, request))


# --- waiting for a worker -------------------------------------------------------------------


def wait_for(task: MediaTask, seconds: float) -> MediaTask | None:
    """Wait for a worker to end the task; None when `seconds` pass first. Holds no database connection."""
    deadline = time.monotonic() + seconds
    pause = 0.05
    while True:
        current = MediaTask.objects.get(pk=task.pk)
        release_db_connection()
        if current.finished:
            return current
        if time.monotonic() >= deadline:
            return None
        time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
        pause = min(pause * 1.5, 0.5)


# --- answers -----------------------------------------------------------------------------------


def task_body(task: MediaTask, request: HttpRequest) -> dict:
    body = {
        "id": task.public_id,
        "object": "image.task",
        "model": task.model,
        "status": task.status,
        "progress": task.progress,
        "created_at": int(task.created_at.timestamp()),
        "completed_at": int(task.completed_at.timestamp()) if task.completed_at else None,
        "error": {"code": task.error_code, "message": task.error_message} if task.error_code else None,
    }
    if task.params.get("files_expired"):
        body["expired"] = True  # its files were deleted after the retention period
    if task.status == MediaTask.Status.COMPLETED:
        body["data"] = _images_data(task, request)
        body["cost"] = usd_text(task.cost_micro_usd)
        body["cost_micro_usd"] = task.cost_micro_usd
    return body


def _images_data(task: MediaTask, request: HttpRequest) -> list[dict]:
    b64 = task.params.get("response_format") == "b64_json"
    data = []
    for result in task.results:
        if b64:
            with media_open(result["name"]) as handle:
                item = {"b64_json": base64.b64encode(handle.read()).decode()}
        else:
            item = {"url": media_url(name=result["name"], request=request)}
        if result.get("revised_prompt"):
            item["revised_prompt"] = result["revised_prompt"]
        data.append(item)
    return data


def images_response(task: MediaTask, request: HttpRequest) -> HttpResponse:
    """OpenAI's ImagesResponse for a task that ended; a failed one raises its error."""
    if task.status != MediaTask.Status.COMPLETED:
        raise task_error(task)
    body = {"created": int(task.created_at.timestamp()), "data": _images_data(task, request), "task_id": task.public_id}
    for name in ("size", "quality"):
        if task.params.get(name):
            body[name] = task.params[name]
    response = HttpResponse(orjson.dumps(body), content_type="application/json")
    response[COST_HEADER] = str(task.cost_micro_usd)
    return response


def task_error(task: MediaTask) -> ApiError:
    """The client's error for a task that failed (its status kept from the upstream's answer)."""
    status = int(task.params.get("error_status", 502))
    if status == 400:
        return InvalidRequest(task.error_message or "The model provider refused the request.", code=task.error_code)
    if status == 429:
        return ApiError(task.error_message, status=429, type="rate_limit_error", code=task.error_code)
    return UpstreamError(task.error_message or "The image could not be generated.", status=502, code=task.error_code)
