"""A fake media upstream: a real HTTP server on 127.0.0.1 speaking OpenAI's media endpoints and
Replicate's prediction jobs, for the gateway to call.

OpenAI (shapes from the OpenAPI description in /work/shared/reference/openai-openapi.yaml):

    POST /v1/images/generations, /v1/images/edits   ImagesResponse: b64_json for GPT image models, url for
                                                    DALL-E ones (or what `response_format` asks), usage for GPT image
    POST /v1/videos                                 VideoResource, `queued`
    GET /v1/videos/{id}                             each GET advances: in_progress ... completed
    GET /v1/videos/{id}/content, DELETE /v1/videos/{id}
    POST /v1/audio/speech                           audio as a chunked body (SSE events with stream_format=sse)
    POST /v1/audio/transcriptions, /translations    json, text, srt, vtt, verbose_json

Replicate (its HTTP API for predictions):

    POST /v1/predictions, /v1/models/{owner}/{name}/predictions    201, a prediction `starting`
    GET /v1/predictions/{id}                        each GET advances: processing ... succeeded
    POST /v1/predictions/{id}/cancel

`Prefer: wait` (Replicate's sync mode) answers the `starting` prediction at once, as a wait that ran
out does; with `fake.prefer_wait_completes = True` it answers the finished prediction instead.
Every /v1 call needs `Authorization: Bearer <key>` (Replicate also takes `Token <key>`), else 401.

Generated files (image URLs, prediction outputs) are served by GET /files/{name}: a real PNG
(`png_bytes()`) or MP4 (`mp4_bytes()`). The gateway is given `fake.api_url` (`<base_url>/v1`)
as the upstream base URL for both kinds. A test scripts the fake, lets the gateway call it,
then reads what it received:

    fake.script_video("fail")                               # later videos end `failed`, moderation_blocked
    fake.script_prediction("never", model="acme/slow-image")
    fake.fail_next("/v1/images", status=429, headers={"Retry-After": "1"})
    fake.speech_hold_last = threading.Event()               # send all chunks but the last, then wait
    fake.requests[-1].files[0].filename

Waits (delays, held streams, slow files) end early on `reset()`/`stop()`, so a test never
leaves a handler thread sleeping behind it.
"""

from __future__ import annotations

import base64
import io
import json
import math
import re
import secrets
import socket
import struct
import threading
import time
import wave
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import NamedTuple

IMAGE_COLOR = (32, 160, 96)
BAD_FILE = b"<!doctype html><html><body>Access denied</body></html>"
DEFAULT_TRANSCRIPT = "The quick brown fox jumps over the lazy dog. Then it runs into the quiet forest."
SPEECH_SIZE = 4800  # bytes of every speech body: 0.1 s of 24 kHz 16-bit mono, OpenAI's pcm format
SPEECH_CONTENT_TYPES = {
    "mp3": "audio/mpeg",
    "opus": "audio/opus",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}
# Enough of each format's header that a sniffer recognises it; wav and pcm are built whole below.
_SPEECH_HEADS = {
    "mp3": b"ID3\x04\x00\x00\x00\x00\x00\x00\xff\xfb\x90\x64",
    "opus": b"OggS\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00",
    "aac": b"\xff\xf1\x50\x80\x02\x1f\xfc",
    "flac": b"fLaC\x00\x00\x00\x22",
}
VIDEO_SECONDS = ("4", "8", "12")
VIDEO_SIZES = ("720x1280", "1280x720", "1024x1792", "1792x1024")
# Output tokens per GPT image by quality and size, as OpenAI's image generation guide lists them.
IMAGE_OUTPUT_TOKENS = {
    "low": {"1024x1024": 272, "1024x1536": 408, "1536x1024": 400},
    "medium": {"1024x1024": 1056, "1024x1536": 1584, "1536x1024": 1568},
    "high": {"1024x1024": 4160, "1024x1536": 6240, "1536x1024": 6208},
}
IMAGE_INPUT_TOKENS = 194  # per image uploaded to /images/edits
LANGUAGES = {"en": "english", "fr": "french", "de": "german", "es": "spanish", "it": "italian", "ja": "japanese"}

OPENAI_ERRORS = {  # status: (type, code, message)
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    404: ("invalid_request_error", None, "Not found."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests. Please try again in 1s."),
    500: ("server_error", None, "The server had an error while processing your request. Sorry about that!"),
    502: ("server_error", None, "Bad gateway."),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}
REPLICATE_TITLES = {
    400: "Bad request",
    401: "Unauthenticated",
    404: "Not found",
    422: "Input validation failed",
    429: "Request was throttled",
    500: "Internal server error",
    502: "Bad gateway",
    503: "Service unavailable",
}


# --- media bytes -------------------------------------------------------------------


def png_bytes(color: tuple[int, int, int] = IMAGE_COLOR, size: int = 4) -> bytes:
    """A valid `size`x`size` RGB PNG of one colour."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + bytes(color) * size for _ in range(size))  # filter byte 0, then the pixels
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def mp4_bytes() -> bytes:
    """A small MP4-looking file: a valid `ftyp` box, then an `mdat` box of filler."""
    ftyp = struct.pack(">I", 24) + b"ftypmp42" + struct.pack(">I", 0) + b"mp42isom"
    filler = _filler(2048)
    return ftyp + struct.pack(">I", 8 + len(filler)) + b"mdat" + filler


def wav_bytes(seconds: float, rate: int = 16000) -> bytes:
    """A WAV file of silence, written with the stdlib `wave` module (16-bit mono)."""
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\x00\x00" * int(seconds * rate))
    return out.getvalue()


def _filler(n: int) -> bytes:
    return bytes((i * 7 + 3) % 251 for i in range(n))


def _speech_body(fmt: str) -> bytes:
    if fmt == "pcm":
        return _filler(SPEECH_SIZE)
    if fmt == "wav":
        # 24 kHz 16-bit mono, as OpenAI's speech; a real RIFF header the `wave` module can read.
        out = io.BytesIO()
        with wave.open(out, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(24000)
            w.writeframes(_filler(SPEECH_SIZE - 44))
        return out.getvalue()
    head = _SPEECH_HEADS[fmt]
    return head + _filler(SPEECH_SIZE - len(head))


def _split(data: bytes, parts: int) -> list[bytes]:
    parts = max(1, min(parts, len(data)))
    step = math.ceil(len(data) / parts)
    return [data[i : i + step] for i in range(0, len(data), step)]


# --- what was received ---------------------------------------------------------------


class UploadedFile(NamedTuple):
    field: str
    filename: str
    content_type: str
    size: int
    data: bytes


@dataclass
class ReceivedRequest:
    method: str
    path: str  # with the query string
    headers: dict[str, str]  # names lower-cased
    body: bytes
    json: dict | list | None
    form: dict[str, str] = field(default_factory=dict)  # multipart text fields; a repeated name keeps its last value
    files: list[UploadedFile] = field(default_factory=list)
    form_lists: dict[str, list[str]] = field(default_factory=dict)  # every value of each text field
    # Streamed answers (speech, files): chunks written, and whether the body was written to its end.
    chunks_sent: int = 0
    completed: bool = False

    @property
    def route(self) -> str:
        return self.path.split("?", 1)[0].rstrip("/") or "/"

    @property
    def params(self) -> dict:
        """The request's fields, whichever way they came (JSON body or multipart form)."""
        return self.json if isinstance(self.json, dict) else dict(self.form)


def parse_multipart(content_type: str, body: bytes) -> tuple[dict[str, list[str]], list[UploadedFile]]:
    """Text fields and files of a multipart/form-data body (the email parser reads MIME, headers prepended)."""
    message = BytesParser(policy=policy.HTTP).parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
    fields: dict[str, list[str]] = {}
    files: list[UploadedFile] = []
    if not message.is_multipart():
        return fields, files
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition") or ""
        data = part.get_payload(decode=True) or b""
        filename = part.get_filename()
        if filename is None:
            fields.setdefault(name, []).append(data.decode("utf-8", "replace"))
        else:
            files.append(UploadedFile(name, filename, part.get("content-type", ""), len(data), data))
    return fields, files


# --- jobs ----------------------------------------------------------------------------


@dataclass
class VideoJob:
    id: str
    model: str
    prompt: str
    seconds: str
    size: str
    created_at: int
    outcome: str = "complete"  # complete | fail | never
    error_code: str = "moderation_blocked"
    error_message: str = "Your request was blocked by our moderation system."
    status: str = "queued"
    progress: int = 0
    completed_at: int | None = None
    expires_at: int | None = None
    error: dict | None = None
    polls: int = 0
    deleted: bool = False

    def resource(self) -> dict:
        return {
            "id": self.id,
            "object": "video",
            "model": self.model,
            "status": self.status,
            "progress": self.progress,
            "created_at": self.created_at,
            "completed_at": self.completed_at,
            "expires_at": self.expires_at,
            "prompt": self.prompt,
            "seconds": self.seconds,
            "size": self.size,
            "remixed_from_video_id": None,
            "error": self.error,
        }

    def advance(self, polls_to_complete: int) -> None:
        """One poll's worth of work: rising progress, then the scripted end."""
        if self.status in ("completed", "failed"):
            return
        self.polls += 1
        if self.outcome == "never" or self.polls < polls_to_complete:
            self.status = "in_progress"
            self.progress = min(99, max(self.progress + 1, 100 * self.polls // max(polls_to_complete, 1)))
            return
        self.finish()

    def finish(self) -> None:
        if self.outcome == "fail":
            self.status = "failed"
            self.error = {"code": self.error_code, "message": self.error_message}
            return
        self.status, self.progress = "completed", 100
        self.completed_at = int(time.time())
        self.expires_at = self.completed_at + 3600  # downloads expire; the real window is not documented


@dataclass
class PredictionJob:
    id: str
    model: str
    version: str
    input: dict
    created_at: str
    outcome: str = "succeed"  # succeed | fail | never | bad_output
    error_text: str = "CUDA out of memory. Tried to allocate 2.00 GiB."
    status: str = "starting"
    output: list | str | None = None
    error: str | None = None
    logs: str = ""
    started_at: str | None = None
    completed_at: str | None = None
    metrics: dict | None = None
    polls: int = 0

    @property
    def is_video(self) -> bool:
        # The model's name, not its owner's: wan-video/wan-2.7-image makes images.
        return "video" in self.model.lower().rpartition("/")[2]

    def resource(self, base_url: str) -> dict:
        url = f"{base_url}/v1/predictions/{self.id}"
        body = {
            "id": self.id,
            "model": self.model,
            "version": self.version,
            "input": self.input,
            "logs": self.logs,
            "output": self.output,
            "data_removed": False,
            "error": self.error,
            "status": self.status,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "completed_at": self.completed_at,
            "urls": {"get": url, "cancel": f"{url}/cancel"},
        }
        if self.metrics is not None:
            body["metrics"] = self.metrics
        return body


def _iso_now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass
class Fault:
    prefix: str
    kind: str  # status | timeout | reset
    times: int
    status: int = 500
    headers: dict[str, str] | None = None
    body: bytes | str | dict | None = None
    seconds: float = 0.0


@dataclass
class FileOverride:
    """How files whose name contains `match` are served instead ("" matches every file)."""

    match: str = ""
    content_type: str | None = None
    body: bytes | None = None
    size: int | None = None  # stream this many bytes (the file's start, then zeros)
    drip_delay: float = 0.0  # pause between chunks
    chunk_size: int = 65536
    declare_length: bool = True  # False: chunked, so the size is known only at the end


# --- the server ----------------------------------------------------------------------


class FakeMedia:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._server.fake = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-media", daemon=True)
        self._defaults()

    def _defaults(self) -> None:
        self.requests: list[ReceivedRequest] = []
        self.videos: dict[str, VideoJob] = {}
        self.predictions: dict[str, PredictionJob] = {}
        self.files: dict[str, tuple[str, bytes]] = {}  # name under /files/ -> (content type, bytes)
        self._faults: list[Fault] = []
        self._file_overrides: list[FileOverride] = []
        self._video_script: dict = {"outcome": "complete"}
        self._prediction_scripts: dict[str | None, dict] = {}  # model ("owner/name") or None for all
        self.required_token: str | None = None  # when set, /v1 calls must carry exactly this bearer token
        self.image_delay = 0.0
        self.image_color = IMAGE_COLOR
        self.video_polls_to_complete = 3
        self.speech_chunks = 5
        self.speech_chunk_delay = 0.0
        self.speech_hold_last: threading.Event | None = None
        self.transcript_text = DEFAULT_TRANSCRIPT
        self.audio_duration = 3.0  # seconds, for uploads that are not WAV
        self.omit_duration = False  # no `duration` (and no usage) in transcription answers
        self.transcription_usage = "auto"  # auto: tokens for gpt-4o*-transcribe, duration otherwise
        self.prediction_polls_to_complete = 2
        self.prefer_wait_completes = False  # `Prefer: wait` answers the finished prediction
        self.version_models: dict[str, str] = {}  # bare version id -> "owner/name", for POST /v1/predictions

    # --- lifecycle -------------------------------------------------------------------

    def start(self) -> FakeMedia:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()

    def reset(self) -> None:
        """Forget requests, jobs, faults and scripts; wake every handler still waiting."""
        self._release.set()
        with self._lock:
            self._defaults()
        self._release = threading.Event()

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        """The upstream base URL to give the gateway, for OpenAI and Replicate alike."""
        return self.base_url + "/v1"

    # --- scripting -------------------------------------------------------------------

    def fail_next(
        self,
        path_prefix: str,
        status: int = 500,
        times: int = 1,
        headers: dict[str, str] | None = None,
        body: bytes | str | dict | None = None,
    ) -> None:
        """The next `times` requests under `path_prefix` get `status` (body in the provider's error shape)."""
        self._faults.append(Fault(path_prefix, "status", times, status=status, headers=headers, body=body))

    def timeout_next(self, path_prefix: str, seconds: float, times: int = 1) -> None:
        """Hold the next requests `seconds` before answering them normally (reset() drops them instead)."""
        self._faults.append(Fault(path_prefix, "timeout", times, seconds=seconds))

    def reset_next(self, path_prefix: str, times: int = 1) -> None:
        """Close the next connections under `path_prefix` with a TCP reset, before any answer."""
        self._faults.append(Fault(path_prefix, "reset", times))

    def script_video(
        self,
        outcome: str,
        *,
        video_id: str | None = None,
        code: str = "moderation_blocked",
        message: str = "Your request was blocked by our moderation system.",
    ) -> None:
        """complete | fail | never, for one video or (no id) every video created after this."""
        script = {"outcome": outcome, "error_code": code, "error_message": message}
        if video_id is None:
            self._video_script = script
            return
        job = self.videos[video_id]
        for name, value in script.items():
            setattr(job, name, value)

    def script_prediction(
        self, outcome: str, *, model: str | None = None, prediction_id: str | None = None, error: str | None = None
    ) -> None:
        """succeed | fail | never | bad_output, for one prediction, one model's, or (neither) every one."""
        script = {"outcome": outcome} | ({"error_text": error} if error else {})
        if prediction_id is None:
            self._prediction_scripts[model] = script
            return
        job = self.predictions[prediction_id]
        for name, value in script.items():
            setattr(job, name, value)

    def override_files(self, match: str = "", **changes) -> None:
        """Serve files whose name contains `match` differently: see FileOverride for what can change."""
        self._file_overrides.insert(0, FileOverride(match=match, **changes))

    # --- reading back ----------------------------------------------------------------

    def get_count(self, path_prefix: str, method: str | None = None) -> int:
        return len(self.requests_to(path_prefix, method))

    def requests_to(self, path_prefix: str, method: str | None = None) -> list[ReceivedRequest]:
        return [r for r in self.requests if r.route.startswith(path_prefix) and (method is None or r.method == method)]

    def speech_bytes(self, fmt: str = "mp3") -> bytes:
        """The whole body /v1/audio/speech sends for `fmt` (without SSE)."""
        return _speech_body(fmt)

    # --- used by the handler ---------------------------------------------------------

    def _record(self, req: ReceivedRequest) -> None:
        with self._lock:
            self.requests.append(req)

    def _take_fault(self, route: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.times > 0 and route.startswith(fault.prefix):
                    fault.times -= 1
                    return fault
        return None

    def _file_override(self, name: str) -> FileOverride | None:
        return next((o for o in self._file_overrides if o.match in name), None)

    def _add_file(self, name: str, content_type: str, data: bytes) -> str:
        self.files[name] = (content_type, data)
        return f"{self.base_url}/files/{name}"

    def _new_video(self, params: dict) -> VideoJob:
        job = VideoJob(
            id="video_" + secrets.token_hex(16),
            model=params.get("model") or "sora-2",
            prompt=params["prompt"],
            seconds=params.get("seconds") or "4",
            size=params.get("size") or "720x1280",
            created_at=int(time.time()),
            **self._video_script,
        )
        if self.video_polls_to_complete <= 0:
            job.finish()
        with self._lock:
            self.videos[job.id] = job
        return job

    def _new_prediction(self, model: str, version: str, job_input: dict, prefer_wait: bool) -> PredictionJob:
        script = self._prediction_scripts.get(model) or self._prediction_scripts.get(None) or {}
        job = PredictionJob(
            # Replicate's ids are 26 lower-case base32 characters.
            id=base64.b32encode(secrets.token_bytes(20)).decode().lower()[:26],
            model=model,
            version=version,
            input=job_input,
            created_at=_iso_now(),
            **script,
        )
        with self._lock:
            self.predictions[job.id] = job
        if self.prediction_polls_to_complete <= 0 or (prefer_wait and self.prefer_wait_completes):
            self._finish_prediction(job)
        return job

    def _advance_prediction(self, job: PredictionJob) -> None:
        if job.status in ("succeeded", "failed", "canceled"):
            return
        job.polls += 1
        if job.outcome == "never" or job.polls < self.prediction_polls_to_complete:
            job.status = "processing"
            job.started_at = job.started_at or _iso_now()
            job.logs = "Using seed: 42\n"
            return
        self._finish_prediction(job)

    def _finish_prediction(self, job: PredictionJob) -> None:
        if job.outcome == "never":
            return
        job.started_at = job.started_at or _iso_now()
        job.completed_at = _iso_now()
        job.metrics = {"predict_time": 1.234567, "total_time": 1.5}
        if job.outcome == "fail":
            job.status, job.error = "failed", job.error_text
            job.logs = f"Using seed: 42\nTraceback (most recent call last):\nRuntimeError: {job.error_text}\n"
            return
        job.status, job.logs = "succeeded", "Using seed: 42\n100%|##########| 4/4\n"
        bad = job.outcome == "bad_output"
        if job.is_video:
            content = ("text/html; charset=utf-8", BAD_FILE) if bad else ("video/mp4", mp4_bytes())
            job.output = self._add_file(f"{job.id}.mp4", *content)
            return
        count = int(job.input.get("num_outputs") or 1)
        content = ("text/html; charset=utf-8", BAD_FILE) if bad else ("image/png", png_bytes(self.image_color))
        job.output = [self._add_file(f"{job.id}-{i}.png", *content) for i in range(count)]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive and chunked bodies, like the real APIs
    server_version = "fake-media/1.0"

    ROUTES = [
        ("POST", r"/v1/images/(generations|edits)", "_images"),
        ("GET", r"/files/([^/]+)", "_file"),
        ("POST", r"/v1/videos", "_video_create"),
        ("GET", r"/v1/videos/([^/]+)", "_video_get"),
        ("DELETE", r"/v1/videos/([^/]+)", "_video_delete"),
        ("GET", r"/v1/videos/([^/]+)/content", "_video_content"),
        ("POST", r"/v1/audio/speech", "_speech"),
        ("POST", r"/v1/audio/(transcriptions|translations)", "_transcribe"),
        ("POST", r"/v1/predictions", "_prediction_create"),
        ("POST", r"/v1/models/([^/]+)/([^/]+)/predictions", "_prediction_create"),
        ("GET", r"/v1/predictions/([^/]+)", "_prediction_get"),
        ("POST", r"/v1/predictions/([^/]+)/cancel", "_prediction_cancel"),
        ("POST", r"/v1beta/models/([^/:]+):generateContent", "_gemini_image"),
    ]

    def log_message(self, format, *args):  # noqa: A002 - stdlib signature
        pass

    @property
    def fake(self) -> FakeMedia:
        return self.server.fake  # type: ignore[attr-defined]

    def do_GET(self):
        self._handle()

    def do_POST(self):
        self._handle()

    def do_DELETE(self):
        self._handle()

    def _handle(self) -> None:
        # Taken now: a reset() during this request ends its waits even though the fake has a new event by then.
        self.release = self.fake._release
        self.req = self._receive()
        self.fake._record(self.req)
        try:
            self._answer()
        except OSError:
            self.close_connection = True  # the gateway hung up mid-answer

    def _answer(self) -> None:
        fault = self.fake._take_fault(self.req.route)
        if fault is not None and fault.kind == "reset":
            self._abort()
            return
        if fault is not None and fault.kind == "timeout" and self.release.wait(fault.seconds):
            self._abort()
            return
        if fault is not None and fault.kind == "status":
            self._send_fault(fault)
            return
        if self.req.route.startswith("/v1/") and not self._authorised():
            return
        for method, pattern, name in self.ROUTES:
            match = re.fullmatch(pattern, self.req.route)
            if match and method == self.command:
                getattr(self, name)(*match.groups())
                return
        self._error(404, f"Unknown path {self.command} {self.req.route}")

    # --- plumbing --------------------------------------------------------------------

    def _receive(self) -> ReceivedRequest:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            body = self._read_chunked()
        else:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
        content_type = self.headers.get("Content-Type", "")
        parsed, fields, files = None, {}, []
        if content_type.startswith("multipart/form-data"):
            fields, files = parse_multipart(content_type, body)
        elif body:
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = None
        return ReceivedRequest(
            method=self.command,
            path=self.path,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            json=parsed,
            form={name: values[-1] for name, values in fields.items()},
            files=files,
            form_lists=fields,
        )

    def _read_chunked(self) -> bytes:
        body = b""
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return body
            body += self.rfile.read(size)
            self.rfile.readline()

    def _is_replicate(self) -> bool:
        return self.req.route.startswith(("/v1/predictions", "/v1/models/"))

    def _authorised(self) -> bool:
        scheme, _, token = self.req.headers.get("authorization", "").partition(" ")
        # Replicate still accepts its older `Token <key>` scheme.
        schemes = ("bearer", "token") if self._is_replicate() else ("bearer",)
        if scheme.lower() not in schemes or not token:
            missing = "You did not pass a valid authentication token" if self._is_replicate() else None
            self._error(401, missing or "You didn't provide an API key.")
            return False
        if self.fake.required_token is not None and token != self.fake.required_token:
            self._error(401, "Incorrect API key provided.")
            return False
        return True

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-request-id", f"req_media_{time.monotonic_ns()}")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _gemini_image(self, model: str) -> None:
        """Gemini image models: generateContent with responseModalities IMAGE answers the image inline
        (a text part first, as the models often add one), with usageMetadata."""
        if self.headers.get("x-goog-api-key") is None:
            self._json(401, {"error": {"code": 401, "message": "API key not valid.", "status": "UNAUTHENTICATED"}})
            return
        config = (self.req.json or {}).get("generationConfig") or {}
        parts = [{"text": "Here is your image."}]
        if "IMAGE" in (config.get("responseModalities") or []):
            data = base64.b64encode(png_bytes(self.fake.image_color)).decode()
            parts.append({"inlineData": {"mimeType": "image/png", "data": data}})
        self._json(
            200,
            {
                "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}],
                "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 1290, "totalTokenCount": 1299},
                "modelVersion": model,
            },
        )

    def _json(self, status: int, payload, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload, indent=2).encode(), "application/json", headers)

    def _error(
        self,
        status: int,
        message: str | None = None,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """An error in the shape of the API the path belongs to: OpenAI's, or Replicate's problem details."""
        if self._is_replicate():
            title = REPLICATE_TITLES.get(status, "Error")
            body = {"title": title, "detail": message or title, "status": status}
            self._send(status, json.dumps(body).encode(), "application/problem+json", headers)
            return
        kind, default_code, default_message = OPENAI_ERRORS.get(status, ("server_error", None, "Error."))
        error = {"message": message or default_message, "type": kind, "param": param, "code": code or default_code}
        self._json(status, {"error": error}, headers)

    def _send_fault(self, fault: Fault) -> None:
        if fault.body is None:
            self._error(fault.status, headers=fault.headers)
            return
        if isinstance(fault.body, dict):
            raw, content_type = json.dumps(fault.body).encode(), "application/json"
        else:
            raw = fault.body.encode() if isinstance(fault.body, str) else fault.body
            content_type = "text/plain; charset=utf-8"
        headers = dict(fault.headers or {})
        content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), content_type)
        headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
        self._send(fault.status, raw, content_type, headers)

    def _missing(self, params: dict, *names: str) -> bool:
        """Answer 400 naming the first required parameter that is absent, as OpenAI does."""
        for name in names:
            if params.get(name) in (None, ""):
                self._error(
                    400, f"Missing required parameter: '{name}'.", param=name, code="missing_required_parameter"
                )
                return True
        return False

    def _stream(self, frames: Iterator[bytes], content_type: str, *, delay: float = 0.0, hold=None, total=None):
        """Write `frames` as the body (chunked unless `total` is given), one write per frame.

        `hold` (an Event) is awaited before the last frame. Every wait ends early on reset(),
        and then the connection is dropped, as an upstream that died mid-body.
        """
        frames = list(frames) if hold is not None else frames
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        if total is None:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(total))
        self.end_headers()
        count = len(frames) if isinstance(frames, list) else None
        for i, frame in enumerate(frames):
            if i and delay and self.release.wait(delay):
                self._abort()
                return
            if hold is not None and i == count - 1 and not self._await(hold):
                self._abort()
                return
            self.wfile.write(frame if total is not None else b"%x\r\n%s\r\n" % (len(frame), frame))
            self.wfile.flush()
            self.req.chunks_sent += 1
        if total is None:
            self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()
        self.req.completed = True

    def _await(self, event: threading.Event, limit: float = 10.0) -> bool:
        """Wait for the test's event; False when reset() came first. Bounded, so a forgotten event cannot hang."""
        deadline = time.monotonic() + limit
        while not event.wait(0.01):
            if self.release.is_set() or time.monotonic() > deadline:
                return False
        return True

    def _abort(self) -> None:
        """Drop the connection at once (TCP reset): no more bytes, no clean HTTP end."""
        try:
            self.wfile.flush()
        except OSError:
            pass
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()

    # --- images ----------------------------------------------------------------------

    def _images(self, kind: str) -> None:
        params = self.req.params
        if self._missing(params, "prompt"):
            return
        uploads = [f for f in self.req.files if f.field in ("image", "image[]")]
        if kind == "edits" and not uploads and not params.get("images"):
            self._error(400, "Missing required parameter: 'image'.", param="image", code="missing_required_parameter")
            return
        if self.fake.image_delay and self.release.wait(self.fake.image_delay):
            self._abort()
            return
        model = params.get("model") or ("dall-e-2" if kind == "generations" else "gpt-image-1.5")
        gpt_image = model.startswith("gpt-image")
        fmt = params.get("response_format") or ("b64_json" if gpt_image else "url")
        png = png_bytes(self.fake.image_color)
        data = []
        for _ in range(int(params.get("n") or 1)):
            if fmt == "url":
                item = {"url": self.fake._add_file(f"img_{secrets.token_hex(8)}.png", "image/png", png)}
            else:
                item = {"b64_json": base64.b64encode(png).decode()}
            if model.startswith("dall-e-3"):
                item["revised_prompt"] = f"A detailed rendering of: {params['prompt']}"
            data.append(item)
        answer = {"created": int(time.time()), "data": data}
        if gpt_image:
            answer |= self._gpt_image_fields(
                params, len(data), images_in=len(uploads) or len(params.get("images") or [])
            )
        self._json(200, answer)

    def _gpt_image_fields(self, params: dict, count: int, images_in: int) -> dict:
        """What GPT image answers add: the settings used (auto resolved) and token usage."""
        quality = params.get("quality") if params.get("quality") in IMAGE_OUTPUT_TOKENS else "medium"
        size = params.get("size") if params.get("size") in IMAGE_OUTPUT_TOKENS["low"] else "1024x1024"
        background = "transparent" if params.get("background") == "transparent" else "opaque"
        text_tokens = len(str(params.get("prompt", "")).split())
        image_tokens = images_in * IMAGE_INPUT_TOKENS
        output_tokens = count * IMAGE_OUTPUT_TOKENS[quality][size]
        usage = {
            "input_tokens": text_tokens + image_tokens,
            "output_tokens": output_tokens,
            "total_tokens": text_tokens + image_tokens + output_tokens,
            "input_tokens_details": {"text_tokens": text_tokens, "image_tokens": image_tokens},
        }
        return {
            "background": background,
            "output_format": params.get("output_format") or "png",
            "size": size,
            "quality": quality,
            "usage": usage,
        }

    # --- files -----------------------------------------------------------------------

    def _file(self, name: str) -> None:
        if name not in self.fake.files:
            self._error(404, f"No file named {name}")
            return
        self._serve(name, *self.fake.files[name])

    def _serve(self, name: str, content_type: str, data: bytes) -> None:
        override = self.fake._file_override(name) or FileOverride(chunk_size=max(len(data), 1))
        content_type = override.content_type or content_type
        data = override.body if override.body is not None else data
        total = override.size if override.size is not None else len(data)

        def pieces() -> Iterator[bytes]:
            sent = 0
            while sent < total:
                n = min(override.chunk_size, total - sent)
                piece = data[sent : sent + n]
                yield piece + b"\x00" * (n - len(piece))
                sent += n

        self._stream(
            pieces(), content_type, delay=override.drip_delay, total=total if override.declare_length else None
        )

    # --- videos ----------------------------------------------------------------------

    def _video_create(self) -> None:
        params = self.req.params
        if self._missing(params, "prompt"):
            return
        for name, allowed in (("seconds", VIDEO_SECONDS), ("size", VIDEO_SIZES)):
            # Strings only, as the API's enums: `"seconds": 4` is refused upstream too.
            if name in params and params[name] not in allowed:
                options = ", ".join(f"'{v}'" for v in allowed)
                self._error(400, f"Invalid value for '{name}': expected one of {options}.", param=name)
                return
        self._json(200, self.fake._new_video(params).resource())

    def _video(self, video_id: str) -> VideoJob | None:
        job = self.fake.videos.get(video_id)
        if job is None or job.deleted:
            self._error(404, f"Video with id '{video_id}' not found.", param="video_id", code="not_found")
            return None
        return job

    def _video_get(self, video_id: str) -> None:
        job = self._video(video_id)
        if job is not None:
            with self.fake._lock:
                job.advance(self.fake.video_polls_to_complete)
            self._json(200, job.resource())

    def _video_delete(self, video_id: str) -> None:
        job = self._video(video_id)
        if job is not None:
            job.deleted = True
            self._json(200, {"id": job.id, "object": "video.deleted", "deleted": True})

    def _video_content(self, video_id: str) -> None:
        job = self._video(video_id)
        if job is None:
            return
        if job.status != "completed":
            self._error(404, f"Video '{video_id}' is not ready: its status is {job.status}.", code="not_found")
            return
        self._serve(f"{job.id}.mp4", "video/mp4", mp4_bytes())

    # --- audio -----------------------------------------------------------------------

    def _speech(self) -> None:
        params = self.req.params
        if self._missing(params, "model", "input", "voice"):
            return
        fmt = params.get("response_format") or "mp3"
        if fmt not in SPEECH_CONTENT_TYPES:
            self._error(400, f"Invalid value for 'response_format': '{fmt}'.", param="response_format")
            return
        chunks = _split(_speech_body(fmt), self.fake.speech_chunks)
        content_type = SPEECH_CONTENT_TYPES[fmt]
        if params.get("stream_format") == "sse":
            words = len(str(params["input"]).split())
            usage = {"input_tokens": words, "output_tokens": 10 * len(chunks), "total_tokens": words + 10 * len(chunks)}
            events = [{"type": "speech.audio.delta", "audio": base64.b64encode(c).decode()} for c in chunks]
            events.append({"type": "speech.audio.done", "usage": usage})
            chunks = [b"data: " + json.dumps(e).encode() + b"\n\n" for e in events]
            content_type = "text/event-stream; charset=utf-8"
        self._stream(chunks, content_type, delay=self.fake.speech_chunk_delay, hold=self.fake.speech_hold_last)

    def _transcribe(self, task: str) -> None:
        form = self.req.form
        upload = next((f for f in self.req.files if f.field == "file"), None)
        if upload is None:
            self._error(400, "Missing required parameter: 'file'.", param="file", code="missing_required_parameter")
            return
        if self._missing(form, "model"):
            return
        duration = _wav_duration(upload.data) or self.fake.audio_duration
        text = self.fake.transcript_text
        fmt = form.get("response_format") or "json"
        if fmt in ("text", "srt", "vtt"):
            # OpenAI answers these as text/plain, not application/x-subrip or text/vtt.
            rendered = {"text": text + "\n", "srt": _srt(text, duration), "vtt": _vtt(text, duration)}[fmt]
            self._send(200, rendered.encode(), "text/plain; charset=utf-8")
            return
        if fmt not in ("json", "verbose_json"):
            self._error(400, f"Invalid value for 'response_format': '{fmt}'.", param="response_format")
            return
        usage = self._transcription_usage(form, duration, text)
        if fmt == "json":
            answer = {"text": text} | ({"usage": usage} if usage and task == "transcriptions" else {})
            self._json(200, answer)
            return
        translate = task == "translations"
        answer = {
            "task": "translate" if translate else "transcribe",
            "language": "english" if translate else LANGUAGES.get(form.get("language", "en"), "english"),
            "duration": duration,
            "text": text,
        }
        granularities = self.req.form_lists.get("timestamp_granularities[]") or ["segment"]
        if "segment" in granularities or translate:
            answer["segments"] = _segments(text, duration, float(form.get("temperature") or 0.0))
        if "word" in granularities and not translate:
            answer["words"] = _words(text, duration)
        if usage and not translate:
            answer["usage"] = usage
        if self.fake.omit_duration:
            answer.pop("duration")
        self._json(200, answer)

    def _transcription_usage(self, form: dict, duration: float, text: str) -> dict | None:
        if self.fake.omit_duration:
            return None
        mode = self.fake.transcription_usage
        if mode == "auto":
            mode = "tokens" if form.get("model", "").startswith("gpt-4o") else "duration"
        if mode == "duration":
            return {"type": "duration", "seconds": math.ceil(duration)}
        audio_tokens = math.ceil(duration * 10)  # a made-up rate: the fake only needs a stable count
        text_tokens = len(form.get("prompt", "").split())
        output_tokens = len(text.split())
        return {
            "type": "tokens",
            "input_tokens": audio_tokens + text_tokens,
            "input_token_details": {"text_tokens": text_tokens, "audio_tokens": audio_tokens},
            "output_tokens": output_tokens,
            "total_tokens": audio_tokens + text_tokens + output_tokens,
        }

    # --- Replicate predictions -------------------------------------------------------

    def _prediction_create(self, owner: str | None = None, name: str | None = None) -> None:
        body = self.req.json if isinstance(self.req.json, dict) else {}
        if not isinstance(body.get("input"), dict):
            self._error(422, "- input: Invalid type. Expected: object, given: null")
            return
        if owner is not None:
            model = f"{owner}/{name}"
            version = "dp-" + secrets.token_hex(16)  # official models answer a deployment-style version
        elif body.get("version"):
            # `owner/name:version` names the model; a bare version id needs fake.version_models.
            model, _, version = body["version"].rpartition(":")
            model = model or self.fake.version_models.get(version, "fake-owner/fake-image-model")
        else:
            self._error(422, "- version: Invalid type. Expected: string, given: null")
            return
        prefer_wait = self.req.headers.get("prefer", "").startswith("wait")
        job = self.fake._new_prediction(model, version, body["input"], prefer_wait)
        resource = job.resource(self.fake.base_url)
        self._json(201, resource, headers={"Location": resource["urls"]["get"]})

    def _prediction(self, prediction_id: str) -> PredictionJob | None:
        job = self.fake.predictions.get(prediction_id)
        if job is None:
            self._error(404, "The requested resource could not be found.")
        return job

    def _prediction_get(self, prediction_id: str) -> None:
        job = self._prediction(prediction_id)
        if job is not None:
            with self.fake._lock:
                self.fake._advance_prediction(job)
            self._json(200, job.resource(self.fake.base_url))

    def _prediction_cancel(self, prediction_id: str) -> None:
        job = self._prediction(prediction_id)
        if job is None:
            return
        with self.fake._lock:
            if job.status in ("starting", "processing"):
                job.status, job.completed_at = "canceled", _iso_now()
                job.metrics = {"total_time": 0.5}
        self._json(200, job.resource(self.fake.base_url))


# --- transcript renderings -----------------------------------------------------------


def _wav_duration(data: bytes) -> float | None:
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    try:
        with wave.open(io.BytesIO(data)) as w:
            return w.getnframes() / w.getframerate()
    except (wave.Error, EOFError):
        return None


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s]


def _timed(text: str, duration: float) -> list[tuple[float, float, str]]:
    """The transcript's sentences, sharing the audio's duration in proportion to their length."""
    sentences = _sentences(text)
    total = sum(len(s) for s in sentences) or 1
    out, start = [], 0.0
    for sentence in sentences:
        end = start + duration * len(sentence) / total
        out.append((round(start, 2), round(end, 2), sentence))
        start = end
    return out


def _segments(text: str, duration: float, temperature: float) -> list[dict]:
    return [
        {
            "id": i,
            "seek": int(start // 30) * 3000,  # Whisper reads 30 s windows; seek counts 10 ms frames
            "start": start,
            "end": end,
            "text": " " + sentence,
            "tokens": [50364] + [1000 + len(w) * 37 % 5000 for w in sentence.split()] + [50364 + int(end / 0.02)],
            "temperature": temperature,
            "avg_logprob": -0.25,
            "compression_ratio": 1.2,
            "no_speech_prob": 0.01,
        }
        for i, (start, end, sentence) in enumerate(_timed(text, duration))
    ]


def _words(text: str, duration: float) -> list[dict]:
    words = [w.strip(".,!?") for w in text.split()]
    step = duration / max(len(words), 1)
    return [{"word": w, "start": round(i * step, 2), "end": round((i + 1) * step, 2)} for i, w in enumerate(words)]


def _clock(seconds: float, separator: str) -> str:
    ms = round(seconds * 1000)
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}{separator}{ms % 1000:03d}"


def _srt(text: str, duration: float) -> str:
    cues = [
        f"{i}\n{_clock(start, ',')} --> {_clock(end, ',')}\n{sentence}\n"
        for i, (start, end, sentence) in enumerate(_timed(text, duration), 1)
    ]
    return "\n".join(cues) + "\n"


def _vtt(text: str, duration: float) -> str:
    cues = [
        f"{_clock(start, '.')} --> {_clock(end, '.')}\n{sentence}\n" for start, end, sentence in _timed(text, duration)
    ]
    return "WEBVTT\n\n" + "\n".join(cues) + "\n"
