"""POST /v1/audio/transcriptions and /v1/audio/translations, in OpenAI's shapes.

The steps of every model call (gateway/pipeline.py): key, rate limit (the chat bucket), the
request checked, route (an `openai` upstream), hold, the upstream call, the answer, one usage
record that settles the hold, priced per unit (billing.pricing).

Transcriptions and translations cost their audio's seconds. The upload's length is measured
(mutagen) before the call, and held; the charge is the upstream's own duration when it gives one,
else the measured length, else an estimate (recorded as one). Uploads over TRANSCRIPTION_MAX_BYTES
are refused from their Content-Length, before the body is read. A finished call is also a completed
MediaTask (kind transcription) holding the transcript (gateway/media/audio_common.py).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import mutagen
import orjson
from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler, StopUpload
from django.http import HttpRequest, HttpResponse
from django.http.multipartparser import MultiPartParserError

from accounts.limits import BUCKET_CHAT
from billing.pricing import cost_fields, transcription_charge
from catalog.models import Category
from catalog.selectors import ModelInfo
from gateway.errors import ApiError, InvalidRequest, PayloadTooLarge
from gateway.media.audio_common import _keep, _model_slug, _openai_only
from gateway.media.options import choice_for
from gateway.models import MediaTask
from gateway.pipeline import (
    COST_HEADER,
    CallContext,
    Inbound,
    RecordedResponse,
    _ms,
    _record,
    _send,
    _upstream_json,
    hold_money,
    limited_call,
    model_and_route,
    run_held,
    unreadable,
)
from gateway.providers import openai as openai_adapter
from gateway.providers import openai_audio

TRANSCRIPTIONS = Inbound(None, "openai.audio", "audio/transcriptions")
TRANSLATIONS = Inbound(None, "openai.audio", "audio/translations")

TRANSCRIPT_FORMATS = ("json", "text", "srt", "verbose_json", "vtt")
GRANULARITIES = ("word", "segment")
GRANULARITY_FIELDS = ("timestamp_granularities[]", "timestamp_granularities")
UPLOAD_TYPES = ("flac", "mp3", "mp4", "mpeg", "mpga", "m4a", "ogg", "wav", "webm")
# Room for the form's text fields and part headers around the file, in the request's length.
FORM_OVERHEAD_BYTES = 64 * 1024
# A length mutagen could not tell (WebM, which browsers record) is held at 6 kbit/s, Opus's lowest
# bitrate: no supported codec fits a second of audio in fewer bytes, so the hold is an upper bound.
UNKNOWN_AUDIO_BYTES_PER_SECOND = 750
# Measured lengths are held with a margin: mutagen estimates some (an MP3 without a VBR header).
HOLD_MARGIN = 0.05
# Without any length (no upstream duration, nothing measured): estimated at 32 kbit/s, a usual
# speech bitrate, at most the hold. The record says it was estimated.
ESTIMATE_BYTES_PER_SECOND = 4000
_LANGUAGE = re.compile(r"^[A-Za-z]{2}$")
_CUE_END = re.compile(r"-->\s*(?:(\d+):)?(\d{1,2}):(\d{2})[.,](\d{1,3})")


@dataclass(slots=True)
class TranscriptionRequest:
    upload: UploadedFile
    filename: str  # as it goes upstream: its extension names the container found in the bytes
    content_type: str
    format: str
    prompt: str
    language: str
    fields: list[tuple[str, str]] = field(default_factory=list)  # the form as it goes upstream (no model)


def transcription_call(request: HttpRequest, *, translate: bool = False) -> HttpResponse:
    """POST /v1/audio/transcriptions (or /translations): the upload's audio as text, priced per second."""
    return limited_call(
        request,
        bucket=BUCKET_CHAT,
        call=lambda key, started: _transcription_call(request, key, started, translate=translate),
    )


def _transcription_call(request: HttpRequest, key, started: float, *, translate: bool) -> HttpResponse:
    form, files = _form_of(request)
    model, route = model_and_route(
        _model_slug(form), categories=frozenset({Category.AUDIO_STT}), served="speech-to-text", key=key
    )
    spec = transcription_request(form, files, model, translate=translate)
    _openai_only(model, route)
    measured = audio_seconds(spec.upload)
    hold_seconds = held_seconds(measured, spec.upload.size)
    inbound = TRANSLATIONS if translate else TRANSCRIPTIONS
    ctx = CallContext(request.request_id, started, key, inbound, model, route, False, 0)
    hold_money(
        ctx,
        transcription_charge(model, seconds=hold_seconds).cost,
        detail=f" ({math.ceil(hold_seconds)} seconds of audio"
        + (" at most" if measured is None else "")
        + "). Add credit, or send shorter audio.",
    )
    return run_held(ctx, lambda: _transcribe(ctx, spec, measured=measured, hold_seconds=hold_seconds))


class UploadLimit(FileUploadHandler):
    """Stops reading the upload once its files pass the limit (the request's length was checked
    first; this bounds the files themselves), without reading the rest of the body."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.received = 0
        self.exceeded = False

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        self.received += len(raw_data)
        if self.received > self.limit:
            self.exceeded = True
            raise StopUpload(connection_reset=True)
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None  # the next handler (memory or temporary file) keeps the file


def _too_large(limit: int, size: int | None = None) -> PayloadTooLarge:
    told = f" The upload is {size} bytes." if size is not None else ""
    return PayloadTooLarge(
        f"Audio files may be at most {limit} bytes ({limit / 1024 / 1024:g} MB).{told}",
        param="file",
        code="request_too_large",
    )


def _form_of(request: HttpRequest):
    """The multipart form's fields and files; an upload over the limit is refused before it is read."""
    limit = settings.BELUGA["TRANSCRIPTION_MAX_BYTES"]
    try:
        length = int(request.META.get("CONTENT_LENGTH") or "")
    except ValueError:
        length = None
    if length is None and "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower():
        # Django reads no request body without a Content-Length: say so rather than "no file".
        raise ApiError(
            "Send the upload with a Content-Length header; chunked request bodies are not read.",
            status=411,
            code="length_required",
        )
    if length is not None and length > limit + FORM_OVERHEAD_BYTES:
        raise _too_large(limit, length)
    if request.content_type != "multipart/form-data":
        raise InvalidRequest(
            "Send the audio as multipart/form-data, the file in the 'file' field.",
            param="file",
            code="invalid_content_type",
        )
    guard = UploadLimit(limit)
    request.upload_handlers.insert(0, guard)
    try:
        # Files are not counted against DATA_UPLOAD_MAX_MEMORY_SIZE, only the text fields are.
        form, files = request.POST, request.FILES
    except RequestDataTooBig:
        raise _too_large(limit) from None
    except (MultiPartParserError, TooManyFieldsSent, TooManyFilesSent):
        raise InvalidRequest("The multipart/form-data body could not be read.", code="invalid_multipart") from None
    if guard.exceeded:
        raise _too_large(limit)
    return form, files


def transcription_request(form, files, model: ModelInfo, *, translate: bool) -> TranscriptionRequest:
    """The form checked against OpenAI's rules and the model's media_options; other fields pass through."""
    options = model.media_options
    if translate and options.get("translations") is not True:
        raise InvalidRequest(
            f"'{model.slug}' does not translate audio; use /v1/audio/transcriptions, or a model with translations.",
            param="model",
            code="model_not_supported",
        )
    uploads = files.getlist("file")
    if not uploads:
        raise InvalidRequest("Missing required parameter: 'file'.", param="file", code="missing_required_parameter")
    if len(uploads) > 1:
        raise InvalidRequest("Invalid 'file': send one audio file per request.", param="file")
    upload = uploads[0]
    filename, content_type = _checked_file(upload)
    fmt = choice_for(
        model,
        form.get("response_format"),
        param="response_format",
        option="formats",
        default_accepted=TRANSCRIPT_FORMATS,
    )
    fmt = fmt or "json"
    fields = [("response_format", fmt)]
    language = form.get("language", "")
    if language:
        if translate:
            raise InvalidRequest("Translations are always into English; leave out 'language'.", param="language")
        if not _LANGUAGE.match(language):
            raise InvalidRequest(
                f"Invalid 'language': {language!r}. Use an ISO-639-1 code such as 'en' or 'fr'.", param="language"
            )
        language = language.lower()
        fields.append(("language", language))
    prompt = form.get("prompt", "")
    if prompt:
        fields.append(("prompt", prompt))
    temperature = form.get("temperature", "")
    if temperature:
        try:
            value = float(temperature)
        except ValueError:
            value = math.nan
        if not 0 <= value <= 1:
            raise InvalidRequest("Invalid 'temperature': expected a number from 0 to 1.", param="temperature")
        fields.append(("temperature", temperature))
    fields += _granularities(form, model, fmt, translate=translate)
    if form.get("stream", "").lower() in ("true", "1"):
        raise InvalidRequest("Streamed transcriptions are not supported; leave out 'stream'.", param="stream")
    known = {"file", "model", "response_format", "language", "prompt", "temperature", "stream", *GRANULARITY_FIELDS}
    fields += [(name, value) for name in form if name not in known for value in form.getlist(name)]
    return TranscriptionRequest(upload, filename, content_type, fmt, prompt, language, fields)


def _granularities(form, model: ModelInfo, fmt: str, *, translate: bool) -> list[tuple[str, str]]:
    asked = [value for name in GRANULARITY_FIELDS for value in form.getlist(name)]
    if not asked:
        return []
    param = "timestamp_granularities[]"
    if translate or model.media_options.get("timestamps") is False:
        raise InvalidRequest(f"'{model.slug}' gives no timestamps here; leave out '{param}'.", param=param)
    if fmt != "verbose_json":
        raise InvalidRequest(f"'{param}' needs response_format 'verbose_json'.", param=param)
    for value in asked:
        if value not in GRANULARITIES:
            raise InvalidRequest(f"Invalid '{param}': {value!r}. Use word, segment or both.", param=param)
    return [(param, value) for value in dict.fromkeys(asked)]


# The container an upload's first bytes show, and the extensions that name it.
CONTAINER_EXTENSIONS = {
    "flac": ("flac",),
    "mp3": ("mp3", "mpga", "mpeg"),
    "mpeg": ("mpeg", "mpga"),
    "mp4": ("mp4", "m4a"),
    "ogg": ("ogg",),
    "wav": ("wav",),
    "webm": ("webm",),
}
CONTAINER_TYPES = {
    "flac": "audio/flac",
    "mp3": "audio/mpeg",
    "mpeg": "video/mpeg",
    "mp4": "audio/mp4",
    "ogg": "audio/ogg",
    "wav": "audio/wav",
    "webm": "audio/webm",
}


def audio_container(head: bytes) -> str | None:
    """The container of a file from its first bytes (its magic numbers); None when it is none of ours."""
    if head.startswith(b"fLaC"):
        return "flac"
    if head.startswith(b"OggS"):
        return "ogg"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if head.startswith(b"\x1aE\xdf\xa3"):
        return "webm"  # EBML: WebM (and Matroska)
    if head[4:8] == b"ftyp":
        return "mp4"
    if head.startswith(b"ID3"):
        return "mp3"
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0 and head[1] & 0x06:
        return "mp3"  # an MPEG audio frame (layer bits set: an AAC ADTS header has them clear)
    if head[:4] in (b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3"):
        return "mpeg"  # an MPEG program or video stream
    return None


def _checked_file(upload: UploadedFile) -> tuple[str, str]:
    """(the file name to send upstream, its content type); a 400 for a type the endpoint does not take."""
    name = upload.name or ""
    extension = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    upload.seek(0)
    head = upload.read(64)
    upload.seek(0)
    container = audio_container(head) if extension in UPLOAD_TYPES else None
    if container is None:
        raise InvalidRequest(
            f"Invalid file format. Supported formats: {', '.join(UPLOAD_TYPES)} (checked by the file's "
            "extension and by its content).",
            param="file",
            code="invalid_file_format",
        )
    if extension not in CONTAINER_EXTENSIONS[container]:
        extension = CONTAINER_EXTENSIONS[container][0]  # named for what it holds, so the provider decodes it
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", name.rsplit(".", 1)[0])[:64].strip("._") or "audio"
    return f"{stem}.{extension}", CONTAINER_TYPES[container]


def audio_seconds(upload: UploadedFile) -> float | None:
    """The upload's length as mutagen reads it from the file's headers; None when it cannot tell."""
    upload.seek(0)
    try:
        found = mutagen.File(upload.file)
        length = getattr(getattr(found, "info", None), "length", None)
    except Exception:  # noqa: BLE001 - mutagen raises many kinds on files it cannot read
        length = None
    finally:
        upload.seek(0)
    if not isinstance(length, int | float) or not math.isfinite(length) or length <= 0:
        return None
    return float(length)


def held_seconds(measured: float | None, size: int) -> float:
    """The seconds held for an upload: its measured length with a margin, else the upper bound from its size."""
    if measured is not None:
        return math.ceil(measured + max(1.0, measured * HOLD_MARGIN))
    return math.ceil(size / UNKNOWN_AUDIO_BYTES_PER_SECOND)


def _transcribe(ctx: CallContext, spec: TranscriptionRequest, *, measured: float | None, hold_seconds: float):
    upstream_format = spec.format
    if measured is None and spec.format in ("json", "text") and _accepts(ctx.model, "verbose_json"):
        upstream_format = "verbose_json"  # its duration prices the call exactly; the answer is made back
    fields = [(n, upstream_format if n == "response_format" else v) for n, v in spec.fields]
    task = "translations" if ctx.inbound is TRANSLATIONS else "transcriptions"
    upstream, upstream_started = _send(
        ctx,
        call=lambda: openai_audio.transcription_send(
            route=ctx.route,
            task=task,
            fields=fields,
            file=spec.upload,
            filename=spec.filename,
            content_type=spec.content_type,
            size=spec.upload.size,
            request_id=ctx.request_id,
        ),
        read_error=openai_adapter.error_from_response,
    )
    upstream_ms = _ms(upstream_started)
    reported = None
    if upstream_format in ("json", "verbose_json"):
        data = _upstream_json(ctx, upstream, upstream_ms)
        if not isinstance(data, dict) or not isinstance(data.get("text"), str):
            raise unreadable(ctx, upstream_ms)
        reported = openai_audio.reported_seconds(data)
        text = data["text"]
    else:
        text = upstream.content.decode("utf-8", "replace")
    seconds, estimated = reported, False
    if seconds is None:
        seconds = measured
    if seconds is None:
        seconds = _cues_end(text) if spec.format in ("srt", "vtt") else None
        seconds = min(seconds or spec.upload.size / ESTIMATE_BYTES_PER_SECOND, hold_seconds)
        estimated = True
    charge = transcription_charge(ctx.model, seconds=seconds)
    if spec.format in ("json", "verbose_json"):
        if upstream_format != spec.format:
            data = {"text": text, **({"usage": data["usage"]} if isinstance(data.get("usage"), dict) else {})}
        if isinstance(data.get("usage"), dict):
            data["usage"].update(cost_fields(charge.cost))
        content, content_type = orjson.dumps(data), "application/json"
    elif upstream_format != spec.format:
        content, content_type = (text + "\n").encode(), "text/plain; charset=utf-8"
    else:
        content = upstream.content
        content_type = upstream.headers.get("Content-Type") or "text/plain; charset=utf-8"
    response = RecordedResponse(
        content,
        content_type=content_type,
        record=lambda: _transcription_ended(ctx, spec, charge, text, estimated=estimated, upstream_ms=upstream_ms),
    )
    response[COST_HEADER] = str(charge.cost)
    return response


def _transcription_ended(ctx, spec: TranscriptionRequest, charge, text: str, *, estimated: bool, upstream_ms: int):
    _record(ctx, media=charge, estimated=estimated, status_code=200, upstream_latency_ms=upstream_ms)
    params = {"prompt": spec.prompt[:200], "language": spec.language, "format": spec.format, "file": spec.filename}
    _keep(
        ctx, charge, text.encode(), "text/plain", prefix="transcripts", kind=MediaTask.Kind.TRANSCRIPTION, params=params
    )


def _cues_end(subtitles: str) -> float | None:
    """Where the last cue of an SRT or WebVTT transcript ends, in seconds: about the audio's length."""
    ends = [
        int(h or 0) * 3600 + int(m) * 60 + int(s) + int(ms.ljust(3, "0")) / 1000
        for h, m, s, ms in _CUE_END.findall(subtitles)
    ]
    return max(ends) if ends else None


def _accepts(model: ModelInfo, fmt: str) -> bool:
    listed = model.media_options.get("formats")
    return not listed or fmt in listed
