"""Gemini image models (gemini-*-image): generateContent with image output, one call per image.

`POST {base}/v1beta/models/{model}:generateContent` with
`generationConfig.responseModalities: ["IMAGE"]` and `imageConfig.aspectRatio`;
the answer's parts carry the image as `inlineData` (base64), often after a text
part. Input images (edits) go in as inlineData parts before the prompt. Image
models take one candidate, so `n` images are `n` calls.
"""

from __future__ import annotations

import base64

import orjson

from gateway.errors import UpstreamError
from gateway.media.state import json_object
from gateway.media.storage import media_open
from gateway.models import MediaTask
from gateway.protocols import gemini, with_route_params
from gateway.providers.http import post, session_for
from gateway.providers.openai import guarded


def _request_body(task: MediaTask) -> dict:
    params = task.params
    parts = []
    for image in (params.get("inputs") or {}).get("image") or ():
        with media_open(image["name"]) as handle:
            data = base64.b64encode(handle.read()).decode()
        parts.append({"inlineData": {"mimeType": image["content_type"], "data": data}})
    parts.append({"text": params["prompt"]})
    config: dict = {"responseModalities": ["IMAGE"]}
    if params.get("size") and ":" in params["size"]:
        config["imageConfig"] = {"aspectRatio": params["size"]}
    return {"contents": [{"role": "user", "parts": parts}], "generationConfig": config}


def gemini_images(task: MediaTask, route, model) -> list[dict]:
    """The images, as [{"b64": ...}], one call per image asked; an ApiError for a refused call."""
    body = orjson.dumps(with_route_params(route.params, _request_body(task)))
    name = route.upstream_model.removeprefix("models/")
    url = f"{route.base_url}/v1beta/models/{name}:generateContent"
    headers = {"Content-Type": "application/json", "X-Request-Id": task.request_id}
    if route.api_key:
        headers["x-goog-api-key"] = route.api_key
    outputs = []
    for _ in range(int(task.params.get("n", 1))):
        response = guarded(
            lambda: post(
                session=session_for(upstream_id=route.upstream_id, base_url=route.base_url),
                url=url,
                data=body,
                headers=headers,
                stream=False,
                timeout=(route.connect_timeout, route.read_timeout),
            )
        )
        if response.status_code != 200:
            raise gemini.read_error(
                route=route, status=response.status_code, content=response.content, headers=response.headers
            )
        outputs.extend(_images_in(json_object(response.content)))
    if not outputs:
        raise UpstreamError("The model provider returned no image.", status=502, code="upstream_no_output")
    return outputs


def _images_in(answer: dict) -> list[dict]:
    found = []
    for candidate in answer.get("candidates") or ():
        for part in ((candidate or {}).get("content") or {}).get("parts") or ():
            inline = part.get("inlineData") or part.get("inline_data") if isinstance(part, dict) else None
            if isinstance(inline, dict) and isinstance(inline.get("data"), str):
                found.append({"b64": inline["data"]})
    return found
