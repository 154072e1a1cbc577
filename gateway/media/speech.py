"""POST /v1/audio/speech, in OpenAI's shape.

The steps of every model call (gateway/pipeline.py): key, rate limit (the chat bucket), the
request checked, route (an `openai` upstream), hold, the upstream call, the answer, one usage
record that settles the hold, priced per unit (billing.pricing).

Speech costs its input's characters, known before the call: exactly that is held, and the cost is
sent in X-Request-Cost-Micro-Usd although the audio is streamed. The audio is relayed as it arrives
(SpeechStream); the call is recorded when the WSGI server closes the body: charged when the
upstream finished, free when the upstream broke off. A finished call is also a completed MediaTask
(kind speech) holding the audio (gateway/media/audio_common.py).
"""

from __future__ import annotations

import logging
import math
import tempfile
from dataclasses import dataclass

from django.http import HttpRequest, HttpResponse, StreamingHttpResponse

from accounts.limits import BUCKET_CHAT
from billing.pricing import MediaCharge, speech_charge
from catalog.models import Category
from catalog.selectors import ModelInfo
from gateway.errors import InvalidRequest, UpstreamError
from gateway.media.audio_common import _keep, _model_slug, _openai_only
from gateway.media.options import choice_for, prompt_of
from gateway.models import MediaTask
from gateway.pipeline import (
    COST_HEADER,
    CallContext,
    Inbound,
    _ms,
    _record,
    _send,
    hold_money,
    limited_call,
    model_and_route,
    parse_json_body,
    run_held,
)
from gateway.providers import openai as openai_adapter
from gateway.providers import openai_audio

logger = logging.getLogger("beluga.media")

SPEECH = Inbound(None, "openai.audio", "audio/speech")

SPEECH_FORMATS = tuple(openai_audio.SPEECH_CONTENT_TYPES)
SPEECH_MAX_CHARS = 4096  # OpenAI's limit; a model's media_options["max_chars"] may set its own
SPEED_RANGE = (0.25, 4.0)
SPEECH_CHUNK_BYTES = 16 * 1024  # at most this much per read: whatever has arrived is relayed at once
SPEECH_COPY_MEMORY_BYTES = 1024 * 1024  # the kept copy of the audio spills to disk past this


@dataclass(slots=True)
class SpeechRequest:
    input: str
    voice: str
    format: str
    payload: dict  # what goes upstream (the model is set by the provider module)


def speech_call(request: HttpRequest) -> HttpResponse:
    """POST /v1/audio/speech: the audio streamed as the upstream makes it, the exact cost held and sent up front."""
    return limited_call(request, bucket=BUCKET_CHAT, call=lambda key, started: _speech_call(request, key, started))


def _speech_call(request: HttpRequest, key, started: float) -> HttpResponse:
    body = parse_json_body(request)
    model, route = model_and_route(
        _model_slug(body), categories=frozenset({Category.AUDIO_TTS}), served="text-to-speech", key=key
    )
    spec = speech_request(body, model)
    _openai_only(model, route)
    charge = speech_charge(model, characters=len(spec.input))
    ctx = CallContext(request.request_id, started, key, SPEECH, model, route, True, len(spec.input))
    hold_money(ctx, charge.cost, detail=f" ({len(spec.input)} characters). Add credit, or send shorter input.")
    return run_held(ctx, lambda: _speak(ctx, spec, charge))


def speech_request(body: dict, model: ModelInfo) -> SpeechRequest:
    """The speech body checked against OpenAI's rules and the model's media_options; others pass through."""
    options = model.media_options
    max_chars = options.get("max_chars")
    if not isinstance(max_chars, int) or isinstance(max_chars, bool) or max_chars < 1:
        max_chars = SPEECH_MAX_CHARS
    text = prompt_of(body, limit=max_chars, param="input")
    voice = body.get("voice")
    if voice is None or voice == "":
        raise InvalidRequest("Missing required parameter: 'voice'.", param="voice", code="missing_required_parameter")
    if not isinstance(voice, str):
        raise InvalidRequest("Invalid 'voice': expected the name of a voice.", param="voice")
    voices = [str(v) for v in options.get("voices") or ()]
    if voices and voice not in voices:
        raise InvalidRequest(
            f"Invalid 'voice': {voice!r}. '{model.slug}' has the voices: {', '.join(voices)}.",
            param="voice",
            code="invalid_voice",
        )
    accepted = [str(f) for f in options.get("formats") or SPEECH_FORMATS]
    chosen = choice_for(
        model, body.get("response_format"), param="response_format", option="formats", default_accepted=SPEECH_FORMATS
    )
    chosen = chosen or ("mp3" if "mp3" in accepted else accepted[0])
    speed = body.get("speed")
    if speed is not None and (
        not isinstance(speed, int | float)
        or isinstance(speed, bool)
        or not math.isfinite(speed)
        or not SPEED_RANGE[0] <= speed <= SPEED_RANGE[1]
    ):
        raise InvalidRequest(
            f"Invalid 'speed': expected a number from {SPEED_RANGE[0]} to {SPEED_RANGE[1]}.", param="speed"
        )
    instructions = body.get("instructions")
    if instructions is not None:
        if options.get("instructions") is not True:
            raise InvalidRequest(
                f"'{model.slug}' does not take 'instructions'; leave them out, or use a model that does.",
                param="instructions",
                code="unsupported_parameter",
            )
        if not isinstance(instructions, str):
            raise InvalidRequest("Invalid 'instructions': expected text.", param="instructions")
    if body.get("stream_format") not in (None, "audio"):
        # Server-sent events carry the audio in base64 JSON: Beluga relays (and keeps) the audio itself.
        raise InvalidRequest("Invalid 'stream_format': only 'audio' is supported.", param="stream_format")
    return SpeechRequest(input=text, voice=voice, format=chosen, payload={**body, "response_format": chosen})


def _speak(ctx: CallContext, spec: SpeechRequest, charge: MediaCharge) -> HttpResponse:
    upstream, upstream_started = _send(
        ctx,
        call=lambda: openai_audio.speech_send(route=ctx.route, body=spec.payload, request_id=ctx.request_id),
        read_error=openai_adapter.error_from_response,
    )
    content_type = (
        openai_audio.SPEECH_CONTENT_TYPES.get(spec.format)
        or upstream.headers.get("Content-Type")
        or "application/octet-stream"
    )
    audio = SpeechStream(
        upstream=upstream,
        content_type=content_type,
        on_close=lambda stream: _speech_ended(ctx, spec, charge, stream, upstream_started),
    )
    # No Content-Length: the WSGI server sends the body chunked, each block as it comes.
    response = StreamingHttpResponse(audio, content_type=content_type)
    # The charge is exact before the call (characters × price), so it can go in a header of a streamed answer.
    response[COST_HEADER] = str(charge.cost)
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx in front must not buffer the audio
    response.records_on_close = True  # closed off the connection (gateway/after_response.py)
    return response


class SpeechStreamBroken(UpstreamError):
    """Raised into the WSGI server when the upstream broke off: the client's connection is cut, so that
    it sees an incomplete body rather than a short file that looks whole."""


class SpeechStream:
    """The upstream's audio relayed as it arrives, with a copy kept; the WSGI server always calls close(),
    whether the audio ended, the client hung up, or the upstream broke off, and on_close runs once."""

    def __init__(self, *, upstream, content_type: str, on_close) -> None:
        self.upstream = upstream
        self.content_type = content_type
        self.on_close = on_close
        self.copy = tempfile.SpooledTemporaryFile(max_size=SPEECH_COPY_MEMORY_BYTES)  # closed in close()
        self.ended = False  # the upstream's body was read to its end, and every block went out
        self.broken = False  # the upstream broke off midway
        self._closed = False
        self._blocks = None

    def __iter__(self):
        self._blocks = self._relay()
        return self._blocks

    def _relay(self):
        raw = self.upstream.raw
        while True:
            try:
                # read1: what has arrived, up to the size, without waiting to fill it.
                block = raw.read1(SPEECH_CHUNK_BYTES, decode_content=True)
            except Exception as exc:  # a reset, a read timeout, a body shorter than its length
                self.broken = True
                raise SpeechStreamBroken("The connection to the model provider broke during the audio.") from exc
            if not block:
                break
            self.copy.write(block)
            yield block
        self.ended = True

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self._blocks is not None:
                self._blocks.close()
        finally:
            try:
                self.upstream.close()
            except Exception:  # noqa: BLE001 - a broken connection must not keep the call from its record
                logger.warning("closing the upstream speech response failed", exc_info=True)
            try:
                self.on_close(self)
            finally:
                self.copy.close()


def _speech_ended(ctx: CallContext, spec: SpeechRequest, charge: MediaCharge, stream: SpeechStream, started: float):
    upstream_ms = _ms(started)
    if stream.broken:
        _record(ctx, status_code=502, error_type="upstream_stream_broken", upstream_latency_ms=upstream_ms)
        return
    # A client that hung up midway is still charged: the upstream made (and bills) the whole audio.
    gone = not stream.ended
    _record(
        ctx,
        media=charge,
        status_code=200,
        client_disconnected=gone,
        error_type="client_disconnected" if gone else "",
        upstream_latency_ms=upstream_ms,
    )
    if stream.ended:
        params = {"prompt": spec.input[:200], "voice": spec.voice, "format": spec.format}
        _keep(ctx, charge, stream.copy, stream.content_type, prefix="speech", kind=MediaTask.Kind.SPEECH, params=params)
