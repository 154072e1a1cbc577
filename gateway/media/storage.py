"""Generated files in Django's default storage, handed out under Beluga's own signed, expiring URLs.

- A file is saved as `<prefix>/<YYYY>/<MM>/<uuid4 hex><ext>` (UTC), the extension taken from its content
  type (`.bin` when unknown); a file object is streamed into storage, never read whole into memory.
- A link is always Beluga's own: `/v1/media/<token>`, the token a TimestampSigner signature of
  the file's name (salt "beluga.media"), absolute from the request's host or
  BELUGA["PUBLIC_BASE_URL"], relative without. It never names the upstream that made the file,
  nor the bucket it is kept in.
- `media_file` serves such a link without an API key: the signature is the credential. From a
  bucket that signs its own URLs (S3 with `querystring_auth`) it redirects (302) to a presigned
  URL that lives a minute, so the bytes do not pass through Beluga. A link is valid
  for MEDIA_URL_TTL_SECONDS from signing; an expired link is a 404 `media_link_expired` (reading the
  task again gives a fresh one), a forged one or a deleted file a 404 `media_not_found`.
  GET and HEAD only; a single `Range: bytes=a-b` is answered with a 206 (video players seek).
"""

from __future__ import annotations

import datetime
import mimetypes
import re
import time
import uuid
from dataclasses import dataclass
from typing import IO

from django.conf import settings
from django.core import signing
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.http import FileResponse, HttpRequest, HttpResponse, HttpResponseBase, HttpResponseRedirect
from django.urls import reverse
from django.utils.http import content_disposition_header
from django.views.decorators.csrf import csrf_exempt

from gateway.errors import ApiError, MethodNotAllowed, NotFound

_SALT = "beluga.media"
PRESIGNED_SECONDS = 60  # the life of a bucket URL a Beluga link redirects to

# One table both ways: the extension a type is saved under, and the type a saved file is served as.
# mimetypes alone would do neither reliably: its table depends on the host's /etc/mime.types.
_EXTENSIONS = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/webp": ".webp",
    "image/gif": ".gif",
    "video/mp4": ".mp4",
    "video/webm": ".webm",
    "video/quicktime": ".mov",
    "audio/mpeg": ".mp3",
    "audio/opus": ".opus",
    "audio/ogg": ".ogg",
    "audio/aac": ".aac",
    "audio/flac": ".flac",
    "audio/wav": ".wav",
    "audio/pcm": ".pcm",
    "text/plain": ".txt",  # transcripts
}
_TYPES = {extension: content_type for content_type, extension in _EXTENSIONS.items()}
_ALIASES = {
    "image/jpg": "image/jpeg",
    "audio/mp3": "audio/mpeg",
    "audio/x-wav": "audio/wav",
    "audio/wave": "audio/wav",
    "audio/x-flac": "audio/flac",
    "audio/l16": "audio/pcm",
}
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


@dataclass(frozen=True)
class StoredFile:
    name: str  # the storage name: what media_url, media_open and media_delete take
    content_type: str
    size: int


def media_save(*, data: bytes | IO[bytes], content_type: str, prefix: str) -> StoredFile:
    """Store `data` (bytes, or a binary file object read from its start) under a new unique name."""
    content_type = _normalised_type(content_type)
    now = datetime.datetime.now(datetime.UTC)
    name = f"{prefix.strip('/')}/{now:%Y}/{now:%m}/{uuid.uuid4().hex}{_EXTENSIONS.get(content_type, '.bin')}"
    content = ContentFile(data) if isinstance(data, bytes | bytearray | memoryview) else File(data, name=name)
    size = content.size
    # S3Storage gives the object this Content-Type (the bucket serves it on presigned links); without it,
    # it guesses from the name with mimetypes (.wav: audio/x-wav, .opus: audio/ogg, .pcm: octet-stream).
    content.content_type = content_type
    # save() streams content.chunks() (64 KB each) to disk or, on S3, as a multipart upload.
    saved = default_storage.save(name, content)
    return StoredFile(name=saved, content_type=content_type, size=size)


def media_url(*, name: str, request: HttpRequest | None = None) -> str:
    """Beluga's link to a stored file, expiring after MEDIA_URL_TTL_SECONDS."""
    token = signing.TimestampSigner(salt=_SALT).sign_object({"n": name})
    path = reverse("v1:media-file", kwargs={"token": token})
    if request is not None:
        return request.build_absolute_uri(path)
    return settings.BELUGA.get("PUBLIC_BASE_URL", "").rstrip("/") + path


def media_open(name: str) -> File:
    """The stored file, opened for binary reading; FileNotFoundError (or the storage's own error) if gone."""
    return default_storage.open(name, "rb")


def media_delete(name: str) -> None:
    default_storage.delete(name)


# The signature is the credential: no API key is asked for, so that a link works in an <img> tag,
# a browser or a video player, exactly like the presigned bucket URLs handed out on S3.
@csrf_exempt
def media_file(request: HttpRequest, token: str) -> HttpResponseBase:
    """GET/HEAD /v1/media/<token>: the file a signed link names, streamed."""
    if request.method not in ("GET", "HEAD"):
        raise MethodNotAllowed(
            f"Method {request.method} is not allowed on this endpoint; use GET.", headers={"Allow": "GET, HEAD"}
        )
    name, remaining = _verified(token)
    if getattr(default_storage, "querystring_auth", False):
        # The bucket serves the bytes (ranges included) on a presigned URL that expires in a minute.
        return HttpResponseRedirect(
            default_storage.url(name, expire=PRESIGNED_SECONDS), headers={"Cache-Control": "private, no-store"}
        )
    try:
        size = default_storage.size(name)
    except OSError:
        raise _not_found() from None
    headers = {
        "Accept-Ranges": "bytes",
        "Cache-Control": f"private, max-age={remaining}",
    }
    content_type = _TYPES.get(_extension(name)) or mimetypes.guess_type(name)[0] or "application/octet-stream"
    filename = name.rsplit("/", 1)[-1]
    span = _range(request.headers.get("Range", ""), size=size)

    if request.method == "HEAD":
        response = HttpResponse(content_type=content_type, headers=headers)
        response["Content-Disposition"] = content_disposition_header(False, filename)
        response["Content-Length"] = str(size)
        return response
    try:
        file = media_open(name)
    except OSError:
        raise _not_found() from None
    if span is None:
        return FileResponse(file, content_type=content_type, filename=filename, headers=headers)
    start, end = span
    file.seek(start)
    response = FileResponse(
        _Slice(file, end - start + 1), status=206, content_type=content_type, filename=filename, headers=headers
    )
    response["Content-Length"] = str(end - start + 1)
    response["Content-Range"] = f"bytes {start}-{end}/{size}"
    return response


def _verified(token: str) -> tuple[str, int]:
    """The file name a token signs and the seconds it stays valid; NotFound for anything else."""
    ttl = settings.BELUGA["MEDIA_URL_TTL_SECONDS"]
    try:
        payload = signing.TimestampSigner(salt=_SALT).unsign_object(token, max_age=ttl)
    except signing.SignatureExpired:
        raise NotFound(
            "This media link has expired. Fetch the task again for a fresh link.", code="media_link_expired"
        ) from None
    except (signing.BadSignature, ValueError):
        raise _not_found() from None
    name = payload.get("n") if isinstance(payload, dict) else None
    if not isinstance(name, str) or not name:
        raise _not_found()
    # The token is payload:timestamp:signature and its signature is good, so its timestamp is ours.
    signed_at = signing.b62_decode(token.rsplit(":", 2)[1])
    return name, max(0, int(signed_at + ttl - time.time()))


def _not_found() -> NotFound:
    return NotFound("No media file at this link.", code="media_not_found")


def _range(header: str, *, size: int) -> tuple[int, int] | None:
    """The inclusive byte span of a single `bytes=` range, or None to send the whole file.

    Several ranges (multipart answers) or a malformed header get the whole file, which RFC 9110
    allows; a range that starts past the end is a 416."""
    match = _RANGE.match(header.strip())
    if match is None or match.groups() == ("", ""):
        return None
    first, last = match.groups()
    if first == "":  # bytes=-N: the last N bytes
        length = int(last)
        if length == 0:
            raise _unsatisfiable(size)
        return max(0, size - length), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size:
        raise _unsatisfiable(size)
    if end < start:
        return None
    return start, end


def _unsatisfiable(size: int) -> ApiError:
    return ApiError(
        "The requested range is outside the file.",
        status=416,
        code="range_not_satisfiable",
        headers={"Content-Range": f"bytes */{size}"},
    )


class _Slice:
    """Reads at most `length` bytes of an open file from where it stands, and closes it."""

    def __init__(self, file: File, length: int) -> None:
        self._file = file
        self._left = length

    def read(self, size: int = -1) -> bytes:
        size = self._left if size < 0 else min(size, self._left)
        chunk = self._file.read(size) if size else b""
        self._left -= len(chunk)
        return chunk

    def close(self) -> None:
        self._file.close()


def _normalised_type(content_type: str) -> str:
    base = content_type.split(";", 1)[0].strip().lower()
    return _ALIASES.get(base, base)


def _extension(name: str) -> str:
    tail = name.rsplit("/", 1)[-1]
    return tail[tail.rfind(".") :].lower() if "." in tail else ""
