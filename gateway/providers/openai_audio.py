"""OpenAI's audio endpoints, spoken to OpenAI and every OpenAI-compatible server.

A translator, like providers/openai.py: Beluga's checked request in, the upstream HTTP call out,
and what Beluga needs to read of the answer. Headers are built from scratch with the upstream's
credential (the customer's key never leaves); failures to reach the upstream are UpstreamErrors.

- `speech_send`: POST {base}/audio/speech as JSON, streamed, so the audio can be relayed as it arrives.
- `transcription_send`: POST {base}/audio/transcriptions (or /translations) as multipart/form-data.
  The upload is streamed from where Django left it (a temporary file past 2.5 MB), never copied
  into memory: `requests` would read the whole file to build a `files=` body.
- `reported_seconds`: the audio's length as the upstream reports it.
"""

from __future__ import annotations

import math
import secrets
from typing import IO

import orjson
import requests

from catalog.selectors import RouteTarget
from gateway.protocols import with_route_params
from gateway.providers.http import post, session_for
from gateway.providers.openai import guarded, json_post

# What OpenAI answers for each speech `response_format` (its Content-Type header).
SPEECH_CONTENT_TYPES = {
    "mp3": "audio/mpeg",
    "opus": "audio/opus",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}


def speech_send(*, route: RouteTarget, body: dict, request_id: str) -> requests.Response:
    """POST the speech request upstream (the upstream's model name, the route's params), streamed."""
    payload = with_route_params(route.params, body) if route.params else dict(body)
    payload["model"] = route.upstream_model
    return json_post(route, "/audio/speech", payload, request_id=request_id, stream=True, accept="*/*")


def transcription_send(
    *,
    route: RouteTarget,
    task: str,
    fields: list[tuple[str, str]],
    file: IO[bytes],
    filename: str,
    content_type: str,
    size: int,
    request_id: str,
) -> requests.Response:
    """POST the upload to {base}/audio/`task` ("transcriptions" or "translations") with `fields`.

    `fields` are the form's text fields as they go upstream (the model's name is set here, the
    route's params win over the client's); `file` is read from its start, `size` bytes.
    """
    fields = [(name, value) for name, value in fields if name != "model" and name not in route.params]
    fields = [("model", route.upstream_model), *fields, *_form_fields(route.params)]
    file.seek(0)
    body = MultipartBody(fields=fields, file=file, filename=filename, content_type=content_type, size=size)
    headers = {
        "Content-Type": f"multipart/form-data; boundary={body.boundary}",
        "Accept": "application/json, text/plain, */*",
        "X-Request-Id": request_id,
    }
    if route.api_key:
        headers["Authorization"] = f"Bearer {route.api_key}"
    return guarded(
        lambda: post(
            session=session_for(upstream_id=route.upstream_id, base_url=route.base_url),
            url=f"{route.base_url}/audio/{task}",
            data=body,  # a stream with a length: sent with Content-Length, read block by block
            headers=headers,
            stream=False,
            timeout=(route.connect_timeout, route.read_timeout),
        )
    )


def _form_fields(params: dict) -> list[tuple[str, str]]:
    """A route's params as form fields (lists repeat their name; true/false as JSON writes them)."""
    out = []
    for name, value in params.items():
        for item in value if isinstance(value, list) else [value]:
            out.append((name, item if isinstance(item, str) else orjson.dumps(item).decode()))
    return out


def reported_seconds(data: dict) -> float | None:
    """The audio's length in an upstream's JSON answer: verbose_json's `duration`, else a
    `usage` of type "duration" (whisper-1's json answers); None when it says neither."""
    duration = data.get("duration")
    if _seconds_value(duration):
        return float(duration)
    usage = data.get("usage")
    if isinstance(usage, dict) and usage.get("type") == "duration" and _seconds_value(usage.get("seconds")):
        return float(usage["seconds"])
    return None


def _seconds_value(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


class MultipartBody:
    """A multipart/form-data body read part after part: the text fields, then the file from where it lies.

    `requests` sends an object with `__iter__` and a length as a stream with that Content-Length;
    urllib3 then reads it block by block through `read`.
    """

    def __init__(self, *, fields: list[tuple[str, str]], file: IO[bytes], filename: str, content_type: str, size: int):
        self.boundary = "beluga-" + secrets.token_hex(16)
        dash = f"--{self.boundary}\r\n".encode()
        head = b"".join(
            dash + f'Content-Disposition: form-data; name="{_quoted(name)}"\r\n\r\n'.encode() + value.encode() + b"\r\n"
            for name, value in fields
        )
        head += (
            dash
            + (
                f'Content-Disposition: form-data; name="file"; filename="{_quoted(filename)}"\r\n'
                f"Content-Type: {content_type}\r\n\r\n"
            ).encode()
        )
        tail = f"\r\n--{self.boundary}--\r\n".encode()
        self._parts: list = [_Bytes(head), _Limited(file, size), _Bytes(tail)]
        self._length = len(head) + size + len(tail)

    def __len__(self) -> int:
        return self._length

    def __iter__(self):
        while block := self.read(64 * 1024):
            yield block

    def read(self, size: int = -1) -> bytes:
        out = b""
        while self._parts and (size < 0 or len(out) < size):
            block = self._parts[0].read(-1 if size < 0 else size - len(out))
            if block:
                out += block
            else:
                self._parts.pop(0)
        return out


def _quoted(name: str) -> str:
    """A field or file name inside a quoted header parameter (the WHATWG HTML form encoding)."""
    return name.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


class _Bytes:
    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)

    def read(self, size: int) -> bytes:
        size = len(self._data) if size < 0 else size
        block, self._data = bytes(self._data[:size]), self._data[size:]
        return block


class _Limited:
    """Exactly `size` bytes of a file: the Content-Length promised them, so a short file is an error."""

    def __init__(self, file: IO[bytes], size: int) -> None:
        self._file = file
        self._left = size

    def read(self, size: int) -> bytes:
        if self._left <= 0:
            return b""
        block = self._file.read(self._left if size < 0 else min(size, self._left))
        if not block:
            raise OSError("the upload is shorter than its size")
        self._left -= len(block)
        return block
