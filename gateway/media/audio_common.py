"""What the audio endpoints share (gateway/media/speech.py, gateway/media/transcriptions.py): the
model named in the body, the check that its route speaks OpenAI's audio API, and keeping a finished
call as a completed MediaTask (kind speech or transcription) holding the audio or the transcript,
stored by Beluga, so the dashboard lists it with the other media.
"""

from __future__ import annotations

import logging

from django.utils import timezone

from billing.pricing import MediaCharge
from catalog.selectors import ModelInfo, RouteTarget
from gateway.errors import InvalidRequest, UpstreamError
from gateway.media import jobs
from gateway.media.storage import media_save
from gateway.models import MediaTask
from gateway.pipeline import CallContext

logger = logging.getLogger("beluga.media")


def _model_slug(body) -> str:
    if not isinstance(body, dict):  # a JSON object, or a form (QueryDict is a dict)
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    slug = body.get("model")
    if not isinstance(slug, str) or not slug:
        raise InvalidRequest("Missing required parameter: 'model'.", param="model", code="missing_required_parameter")
    return slug


def _openai_only(model: ModelInfo, route: RouteTarget) -> None:
    if route.kind != "openai":
        raise UpstreamError(f"'{model.slug}' is routed to an upstream that has no OpenAI audio API.", status=503)


def _keep(ctx: CallContext, charge: MediaCharge, data, content_type: str, *, prefix: str, kind: str, params: dict):
    """Store what the call made and write it as a completed, billed MediaTask (the usage record has
    settled the money already). The client has its answer: a failure here is logged, not raised."""
    try:
        if hasattr(data, "seek"):
            data.seek(0)
        saved = media_save(data=data, content_type=content_type, prefix=prefix)
        task = jobs.task_create(
            kind=kind,
            user_id=ctx.key.user_id,
            api_key_id=ctx.key.key_id,
            request_id=ctx.request_id,
            model=ctx.model,
            route=ctx.route,
            params={
                **params,
                "charge": jobs.charge_params(charge),
                "endpoint": ctx.inbound.endpoint,
                "protocol": ctx.inbound.protocol,
            },
            hold=None,
            charges_balance=False,
            status=MediaTask.Status.COMPLETED,
        )
        now = timezone.now()
        MediaTask.objects.filter(pk=task.pk).update(
            results=[{"name": saved.name, "content_type": saved.content_type, "size": saved.size}],
            billed=True,
            cost_micro_usd=charge.cost,
            progress=100,
            completed_at=now,
            updated_at=now,
            next_poll_at=None,
        )
    except Exception:
        logger.exception("could not keep the %s of %s", kind, ctx.request_id)
