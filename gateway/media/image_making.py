"""Making images: OpenAI's and Gemini's answered at once (in the request or a worker), and the
input of a prediction job for an image task."""

from __future__ import annotations

import base64

import orjson

from billing.pricing import image_unit_price
from gateway.errors import ApiError, UpstreamError
from gateway.media.options import input_name, size_inputs
from gateway.media.results import fail_from_error, finish
from gateway.media.state import JobState, json_object
from gateway.media.storage import media_open
from gateway.models import MediaTask
from gateway.protocols import with_route_params
from gateway.providers import openai_media


def run_now(task: MediaTask, route, model) -> None:
    """Make the images of an at-once upstream (OpenAI, Gemini) and end the task."""
    unit_price = None
    try:
        if route.kind == "openai":
            fetched, unit_price = _openai_images(task, route, model)
        else:
            from gateway.media.gemini_images import gemini_images

            fetched = gemini_images(task, route, model)
    except ApiError as error:
        fail_from_error(task, error)
        raise
    finish(task, route, model, JobState(status=MediaTask.Status.COMPLETED, outputs=fetched, unit_price=unit_price))


def _openai_images(task: MediaTask, route, model) -> tuple[list, int | None]:
    """The images OpenAI made, and their unit price when the quality was left to it (`auto`):
    gpt-image answers name the quality and size they were made at."""
    params = task.params
    files = params.get("inputs")
    body = {"model": route.upstream_model, "prompt": params["prompt"], "n": params["n"], **params.get("extra", {})}
    for name in ("size", "quality", "style", "user"):
        if params.get(name):
            body[name] = params[name]
    body = with_route_params(route.params, body)
    if files:
        # Form fields are text: numbers and nested values as JSON, as OpenAI's SDKs send them.
        fields = {k: v if isinstance(v, str) else orjson.dumps(v).decode() for k, v in body.items() if v is not None}
        field = "image[]" if len(files["image"]) > 1 else "image"
        upload = [(field, (f["filename"], media_open(f["name"]), f["content_type"])) for f in files["image"]]
        if files.get("mask"):
            mask = files["mask"]
            upload.append(("mask", (mask["filename"], media_open(mask["name"]), mask["content_type"])))
        try:
            response = openai_media.images_edit(route, fields, upload, request_id=task.request_id)
        finally:
            for _, (_, handle, _) in upload:
                handle.close()
    else:
        response = openai_media.images_generate(route, body, request_id=task.request_id)
    if response.status_code != 200:
        raise openai_media.read_error(route, response)
    answer = json_object(response.content)
    items = answer.get("data")
    if not isinstance(items, list):
        raise UpstreamError("The model provider sent an unreadable answer.", status=502)
    unit_price = None
    reported = answer.get("quality")
    if params.get("open_quality") and isinstance(reported, str) and reported != "auto":
        size = answer.get("size") if isinstance(answer.get("size"), str) else params.get("size", "")
        unit_price = image_unit_price(model, size=size, quality=reported)
    outputs = []
    for item in items:
        if not isinstance(item, dict):
            continue
        if isinstance(item.get("b64_json"), str):
            outputs.append({"b64": item["b64_json"], "revised_prompt": item.get("revised_prompt")})
        elif isinstance(item.get("url"), str):
            outputs.append({"url": item["url"], "revised_prompt": item.get("revised_prompt")})
    return outputs, unit_price


def prediction_inputs(task: MediaTask, route, model) -> dict:
    """A prediction's `input` for an image task: prompt, size (size_inputs), count, and what the client added."""
    params = task.params
    inputs = {"prompt": params["prompt"], **params.get("extra", {}), **size_inputs(model, params.get("size") or "")}
    if params.get("n", 1) > 1:
        inputs[input_name(model, "num_outputs")] = params["n"]
        if input_name(model, "n") != "n":
            inputs[input_name(model, "n")] = params["n"]
            inputs.pop("num_outputs", None)
    if params.get("quality"):
        inputs[input_name(model, "quality")] = params["quality"]
    files = params.get("inputs")
    if files and files.get("image"):
        first = files["image"][0]
        with media_open(first["name"]) as handle:
            encoded = base64.b64encode(handle.read()).decode()
        inputs[input_name(model, "image")] = f"data:{first['content_type']};base64,{encoded}"
    return with_route_params(route.params, inputs)
