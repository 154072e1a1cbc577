"""HTTP entry points of the API. Thin: parse, call the pipeline or a selector, serialise."""

import logging

from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework.decorators import api_view
from rest_framework.response import Response

from catalog.selectors import (
    model_public_get,
    models_enabled_count,
    models_public,
    models_unpriced,
    models_unrouted,
    upstreams_configured,
)
from catalog.serializers import PublicModelSerializer
from gateway import pipeline
from gateway.embeddings import embeddings_call
from gateway.errors import ApiError, MethodNotAllowed, NotFound
from gateway.gemini_models import gemini_model_get, gemini_models_page
from gateway.idempotency import idempotent
from gateway.media import images, speech, transcriptions
from gateway.media import videos as videos_api
from gateway.routing.health import upstream_states

logger = logging.getLogger("beluga.views")


def _post_only(request: HttpRequest) -> None:
    if request.method != "POST":
        raise MethodNotAllowed(
            f"Method {request.method} is not allowed on this endpoint; use POST.", headers={"Allow": "POST"}
        )


def _get_only(request: HttpRequest) -> None:
    if request.method not in ("GET", "HEAD"):
        raise MethodNotAllowed(
            f"Method {request.method} is not allowed on this endpoint; use GET.", headers={"Allow": "GET, HEAD"}
        )


@csrf_exempt
@idempotent
def chat_completions(request: HttpRequest) -> HttpResponse:
    _post_only(request)
    return pipeline.chat_completions(request)


@csrf_exempt
@idempotent
def messages(request: HttpRequest) -> HttpResponse:
    """Anthropic Messages (Claude Code, the Anthropic SDK)."""
    _post_only(request)
    return pipeline.model_call(request, inbound=pipeline.ANTHROPIC_MESSAGES)


@csrf_exempt
def messages_count_tokens(request: HttpRequest) -> HttpResponse:
    _post_only(request)
    return pipeline.count_tokens(request)


@csrf_exempt
@idempotent
def responses(request: HttpRequest) -> HttpResponse:
    """OpenAI Responses (Codex CLI)."""
    _post_only(request)
    return pipeline.model_call(request, inbound=pipeline.OPENAI_RESPONSES)


@csrf_exempt
@idempotent
def embeddings(request: HttpRequest) -> HttpResponse:
    _post_only(request)
    return embeddings_call(request)


@csrf_exempt
@idempotent
def images_generations(request: HttpRequest) -> HttpResponse:
    _post_only(request)
    return images.images_generate(request)


@csrf_exempt
def images_edits(request: HttpRequest) -> HttpResponse:
    _post_only(request)
    return images.images_edit(request)


def image_task(request: HttpRequest, task_id: str) -> HttpResponse:
    _get_only(request)
    return images.image_task(request, task_id)


@csrf_exempt
def videos(request: HttpRequest) -> HttpResponse:
    """POST creates a video (OpenAI's shape); GET lists the account's."""
    if request.method == "GET":
        return videos_api.videos_list(request)
    _post_only(request)
    return _videos_create(request)


@csrf_exempt
def videos_generations(request: HttpRequest) -> HttpResponse:
    _post_only(request)
    return _videos_create(request)


@idempotent
def _videos_create(request: HttpRequest) -> HttpResponse:
    return videos_api.videos_create(request)


@csrf_exempt
def video_detail(request: HttpRequest, video_id: str) -> HttpResponse:
    if request.method == "DELETE":
        return videos_api.video_delete(request, video_id)
    _get_only(request)
    return videos_api.video_get(request, video_id)


def video_content(request: HttpRequest, video_id: str) -> HttpResponse:
    _get_only(request)
    return videos_api.video_content(request, video_id)


@csrf_exempt
@idempotent
def audio_speech(request: HttpRequest) -> HttpResponse:
    _post_only(request)
    return speech.speech_call(request)


@csrf_exempt
def audio_transcriptions(request: HttpRequest) -> HttpResponse:
    # Not @idempotent: its request fingerprint reads the whole body, and an upload over the limit
    # must be refused from its Content-Length before anything reads it.
    _post_only(request)
    return transcriptions.transcription_call(request)


@csrf_exempt
def audio_translations(request: HttpRequest) -> HttpResponse:
    _post_only(request)
    return transcriptions.transcription_call(request, translate=True)


GEMINI_ACTIONS = {"generateContent": False, "streamGenerateContent": True}


@csrf_exempt
def gemini_model_action(request: HttpRequest, model: str, action: str) -> HttpResponse:
    """POST /v1beta/models/{model}:{action} (google-genai and other Gemini clients)."""
    if action == "countTokens":
        _post_only(request)
        return pipeline.gemini_count_tokens(request, model=model)
    if action not in GEMINI_ACTIONS:
        raise NotFound(f"Unknown method '{action}' for models/{model}.", code="unknown_path")
    _post_only(request)
    return _gemini_generate(request, model=model, stream=GEMINI_ACTIONS[action])


@idempotent
def _gemini_generate(request: HttpRequest, *, model: str, stream: bool) -> HttpResponse:
    return pipeline.model_call(
        request,
        inbound=pipeline.GEMINI,
        model=model,
        stream=stream,
        writer_options={"sse": request.GET.get("alt") == "sse"} if stream else None,
    )


@csrf_exempt
def gemini_models_list(request: HttpRequest) -> HttpResponse:
    _get_only(request)
    _optional_auth(request)
    return JsonResponse(
        gemini_models_page(page_size=request.GET.get("pageSize"), page_token=request.GET.get("pageToken"))
    )


@csrf_exempt
def gemini_model_detail(request: HttpRequest, model: str) -> HttpResponse:
    _get_only(request)
    _optional_auth(request)
    found = gemini_model_get(slug=model)
    if found is None:
        raise NotFound(f"models/{model} is not found.", param="model", code="model_not_found")
    return JsonResponse(found)


def _optional_auth(request) -> None:
    """/v1/models needs no key, but a key that is sent must be valid."""
    if pipeline.raw_key_from(request):
        pipeline.authenticate(request)


@api_view(["GET"])
def models_list(request) -> Response:
    _optional_auth(request)
    params = request.query_params
    rows = models_public(
        category=params.get("category", "").strip(),
        provider=params.get("provider", "").strip(),
        search=params.get("search", "").strip(),
    )
    return Response({"object": "list", "data": PublicModelSerializer(rows, many=True).data})


@api_view(["GET"])
def model_detail(request, model_id: str) -> Response:
    _optional_auth(request)
    row = model_public_get(slug=model_id)
    if row is None:
        raise NotFound(f"The model '{model_id}' does not exist.", param="model", code="model_not_found")
    return Response(PublicModelSerializer(row).data)


def health(request: HttpRequest) -> JsonResponse:
    """Liveness and readiness: 503 when the database cannot be reached.

    "degraded" (still 200: the service is up) when the cache fails, an
    enabled model lacks a price (its calls fail with 503), or an upstream is
    not healthy. Each upstream's state comes from the shared breakers
    (gateway/routing/health.py); no credential, not even its label, is shown.
    """
    _get_only(request)
    body = {"status": "ok", "database": "ok", "cache": "ok"}
    status = 200
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        unpriced = models_unpriced()
        body["catalog"] = {
            "models_enabled": models_enabled_count(),
            "models_listed": models_public().count(),
            "upstreams_configured": upstreams_configured(),
            "unpriced_models": unpriced,
            "unrouted_models": models_unrouted(),
        }
        if unpriced:
            body["status"] = "degraded"
    except Exception:  # noqa: BLE001 - any database failure means not ready
        body.update(status="unavailable", database="error")
        # The status fields for probes, and the API's error object for clients that read errors.
        unready = ApiError(
            "The database cannot be reached; the service is not ready.",
            status=503,
            type="service_unavailable_error",
            code="database_unavailable",
        )
        body.update(unready.body())
        status = unready.status
    if status == 200:
        try:
            body["upstreams"] = [_upstream_health(state) for state in upstream_states()]
            if any(u["state"] != "healthy" for u in body["upstreams"]):
                body["status"] = "degraded"
        except Exception:  # noqa: BLE001 - the shared cache is down: still serving, health unknown
            logger.warning("upstream states unavailable", exc_info=True)
            body["status"] = "degraded"
    try:
        cache.get("health-probe")
    except Exception:  # noqa: BLE001
        body["cache"] = "error"
        body["status"] = "degraded" if status == 200 else body["status"]
    return JsonResponse(body, status=status)


def _upstream_health(state) -> dict:
    return {
        "name": state.name,
        "kind": state.kind,
        "state": state.state,
        "breaker": state.breaker,
        "models_open": list(state.models_open),
        "window": {"calls": state.requests, "failures": state.failures},
        "credentials_in_rotation": state.credentials,
        "credentials_refused": len(state.credentials_refused),
    }


@csrf_exempt
def api_not_found(request: HttpRequest, *args, **kwargs) -> HttpResponse:
    raise NotFound(f"Unknown API path: {request.method} {request.path}.", code="unknown_path")
