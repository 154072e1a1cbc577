"""Result files of upstream jobs (generated images, videos, audio), downloaded for Beluga to keep.

An upstream answers a job with a URL to its result; that URL expires and names the upstream, so
Beluga downloads the file and stores it (storage.py). The URL is the upstream's choice, not the
operator's, so the download follows image_fetch.py's SSRF rules, with one exception for the
upstream's own host:

- http and https only, no credentials in the URL, at most 3 redirects, every hop checked anew;
- a hop on the upstream's own host:port (from its base URL, which the operator configured) may be
  on a private address; any other host must resolve only to public addresses (unless
  IMAGE_FETCH_ALLOW_PRIVATE), and the socket goes to exactly the addresses checked;
- `headers` (the upstream's Authorization) go only to the upstream's own origin (scheme, host and
  port), and never again once a redirect has left it;
- max_bytes (VIDEO_FETCH_MAX_BYTES for a video, MEDIA_FETCH_MAX_BYTES otherwise) bounds the body
  as it streams in, MEDIA_FETCH_TIMEOUT_SECONDS the whole download, slow drips included; the body
  goes to a temporary file (at most 8 MB of it in memory);
- the bytes decide the type, whatever the headers claim: PNG, JPEG, WebP or GIF for an image; MP4,
  QuickTime or WebM for a video; MP3, AAC (ADTS), WAV, FLAC or Ogg (Opus) for audio. Raw PCM has no
  signature to check: store it with storage.media_save directly.

Every refusal is a MediaFetchError whose message is safe to show the customer: it names neither the
upstream's host nor its credentials (the log has the host).
"""

from __future__ import annotations

import base64
import binascii
import http.client
import ipaddress
import logging
import socket
import tempfile
from dataclasses import dataclass
from typing import IO
from urllib.parse import urljoin

import certifi
from django.conf import settings
from urllib3.util import parse_url

# The pinned connection and the deadline watchdog are image_fetch's, imported rather than copied:
# one implementation of the subtle part (no second DNS lookup, TLS verified for the URL's name, a
# socket cut at the deadline even mid-header). Its docstring says why requests/urllib3 cannot do
# the last. Only the hop checks and the body handling differ here, so those are this module's own.
from gateway.providers.image_fetch import (
    _network_reason,
    _PinnedConnection,
    _size_text,
    _Target,
    _tls_context,
    _Watchdog,
    address_is_public,
)

logger = logging.getLogger(__name__)

KINDS = ("image", "video", "audio")
MAX_REDIRECTS = 3
USER_AGENT = "Beluga media fetcher"
_SPOOL_BYTES = 8 * 1024 * 1024
_CHUNK_BYTES = 64 * 1024
_SNIFF_BYTES = 64  # enough for every signature below; a wrong type is refused this early
_REDIRECT_STATUSES = {301, 302, 303, 307, 308}
_DEFAULT_PORTS = {"http": 80, "https": 443}
_OWN_HEADERS = {"host", "user-agent", "accept", "accept-encoding", "connection"}


@dataclass
class FetchedMedia:
    file: IO[bytes]  # a SpooledTemporaryFile at position 0; the caller closes it
    content_type: str
    size: int


class MediaFetchError(Exception):
    """A download that failed or was refused; its message is safe to show the customer."""


def media_fetch(
    url: str,
    *,
    kind: str,
    upstream_base_url: str,
    max_bytes: int | None = None,
    timeout: float | None = None,
    headers: dict | None = None,
) -> FetchedMedia:
    """GET an upstream job's result file under the rules in this module's docstring."""
    _check_kind(kind)
    beluga = settings.BELUGA
    if max_bytes is None:
        max_bytes = beluga["VIDEO_FETCH_MAX_BYTES" if kind == "video" else "MEDIA_FETCH_MAX_BYTES"]
    if timeout is None:
        timeout = beluga["MEDIA_FETCH_TIMEOUT_SECONDS"]
    upstream = _origin(upstream_base_url)
    watchdog = _Watchdog(timeout)
    on_upstream = upstream is not None  # the credentials ride along until a hop leaves the upstream
    try:
        for _hop in range(MAX_REDIRECTS + 1):
            target = _target(url, kind=kind, upstream=upstream, allow_private=beluga["IMAGE_FETCH_ALLOW_PRIVATE"])
            on_upstream = on_upstream and (target.scheme, target.host.lower(), target.port) == upstream
            result = _get(
                target, kind=kind, headers=headers if on_upstream else None, max_bytes=max_bytes, watchdog=watchdog
            )
            if isinstance(result, FetchedMedia):
                return result
            url = result
        raise MediaFetchError(f"could not download the provider's {kind}: more than {MAX_REDIRECTS} redirects")
    finally:
        watchdog.cancel()


def media_from_base64(text: str, *, kind: str, max_bytes: int | None = None) -> FetchedMedia:
    """Decode a file an upstream returned inline (`b64_json`, or a data: URL), typed by its bytes."""
    _check_kind(kind)
    if max_bytes is None:
        max_bytes = settings.BELUGA["VIDEO_FETCH_MAX_BYTES" if kind == "video" else "MEDIA_FETCH_MAX_BYTES"]
    if text[:5].lower() == "data:":
        text = text.partition(",")[2]
    text = "".join(text.split())  # some encoders wrap lines
    # Refuse before decoding: 4 base64 characters carry 3 bytes.
    if len(text) > (max_bytes // 3 + 1) * 4:
        raise MediaFetchError(f"the provider's {kind} is larger than {_size_text(max_bytes)}")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise MediaFetchError(f"the provider returned invalid base64 data for the {kind}") from None
    if len(raw) > max_bytes:
        raise MediaFetchError(f"the provider's {kind} is larger than {_size_text(max_bytes)}")
    content_type = sniffed_type(raw[:_SNIFF_BYTES], kind=kind)
    file = tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES)
    file.write(raw)
    file.seek(0)
    return FetchedMedia(file=file, content_type=content_type, size=len(raw))


# --- One hop -------------------------------------------------------------------------------


def _origin(url: str) -> tuple[str, str, int] | None:
    try:
        parsed = parse_url(url or "")
    except ValueError:
        return None
    scheme = (parsed.scheme or "").lower()
    if scheme not in _DEFAULT_PORTS or not parsed.host:
        return None
    return scheme, parsed.host.strip("[]").lower(), parsed.port or _DEFAULT_PORTS[scheme]


def _target(url: str, *, kind: str, upstream: tuple[str, str, int] | None, allow_private: bool) -> _Target:
    """Parse, resolve once and check one hop's URL."""
    invalid = MediaFetchError(f"the provider's {kind} URL is not a valid URL")
    try:
        parsed = parse_url(url)
    except ValueError:
        raise invalid from None
    scheme = (parsed.scheme or "").lower()
    if scheme not in _DEFAULT_PORTS:
        raise MediaFetchError(f"the provider's {kind} URL must use http or https")
    if parsed.auth is not None:
        raise MediaFetchError(f"the provider's {kind} URL must not contain a user name or password")
    if not parsed.host or parsed.port == 0:
        raise invalid
    port = parsed.port or _DEFAULT_PORTS[scheme]
    host = parsed.host.strip("[]")
    host_header = parsed.host if port == _DEFAULT_PORTS[scheme] else f"{parsed.host}:{port}"

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise MediaFetchError(f"could not download the provider's {kind}: could not resolve host") from None
    addresses: list[tuple[int, tuple]] = []
    for family, _type, _proto, _canonname, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6) and (family, sockaddr) not in addresses:
            addresses.append((family, sockaddr))
    if not addresses:
        raise MediaFetchError(f"could not download the provider's {kind}: could not resolve host")
    # The upstream's own host:port is where the operator already sends every call: it may be private.
    trusted = upstream is not None and (host.lower(), port) == upstream[1:]
    if not (trusted or allow_private):
        for _family, sockaddr in addresses:
            if not address_is_public(ipaddress.ip_address(sockaddr[0])):
                logger.info("media fetch refused: %s resolves to the private address %s", host, sockaddr[0])
                raise MediaFetchError(f"the provider's {kind} URL points to a private address")
    return _Target(url, scheme, host, port, host_header, parsed.request_uri or "/", addresses)


def _get(
    target: _Target, *, kind: str, headers: dict | None, max_bytes: int, watchdog: _Watchdog
) -> FetchedMedia | str:
    """One request: the file, or the next URL when redirected."""
    remaining = watchdog.remaining()
    if remaining <= 0:
        raise MediaFetchError(f"could not download the provider's {kind}: timed out")
    tls = _tls_context(certifi.where()) if target.scheme == "https" else None
    connection = _PinnedConnection(target, tls=tls, watchdog=watchdog, timeout=remaining)
    sent = {name: value for name, value in (headers or {}).items() if name.lower() not in _OWN_HEADERS}
    sent |= {
        "Host": target.host_header,
        "User-Agent": USER_AGENT,
        "Accept": "*/*",
        "Accept-Encoding": "identity",
        "Connection": "close",
    }
    response = None
    try:
        connection.request("GET", target.path, headers=sent)
        response = connection.getresponse()
        return _read(response, target=target, kind=kind, max_bytes=max_bytes, watchdog=watchdog)
    except (OSError, http.client.HTTPException) as error:
        reason = _network_reason(error, watchdog)
        logger.info("media fetch from %s failed: %s (%r)", target.host, reason, error)
        raise MediaFetchError(f"could not download the provider's {kind}: {reason}") from None
    finally:
        # With `Connection: close` the response owns the socket: closing the connection alone leaks it.
        if response is not None:
            response.close()
        connection.close()


def _read(
    response: http.client.HTTPResponse, *, target: _Target, kind: str, max_bytes: int, watchdog: _Watchdog
) -> FetchedMedia | str:
    if response.status in _REDIRECT_STATUSES and response.getheader("Location"):
        return urljoin(target.url, response.getheader("Location"))
    if response.status != 200:
        raise MediaFetchError(f"could not download the provider's {kind}: HTTP {response.status}")
    # We asked for identity: decompressing what we did not ask for would invite zip bombs.
    if (response.getheader("Content-Encoding") or "identity").strip().lower() != "identity":
        raise MediaFetchError(f"could not download the provider's {kind}: unsupported content encoding")
    too_large = MediaFetchError(f"the provider's {kind} is larger than {_size_text(max_bytes)}")
    length = (response.getheader("Content-Length") or "").strip()
    if length.isdigit() and int(length) > max_bytes:
        raise too_large

    file = tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES)
    try:
        size = 0
        head = b""
        content_type = None
        while chunk := response.read1(min(_CHUNK_BYTES, max_bytes + 1 - size)):
            size += len(chunk)
            if size > max_bytes:
                raise too_large
            file.write(chunk)
            if content_type is None and len(head) < _SNIFF_BYTES:
                head += chunk[: _SNIFF_BYTES - len(head)]
                if len(head) == _SNIFF_BYTES:
                    content_type = sniffed_type(head, kind=kind)
        if watchdog.expired:  # the watchdog's shutdown reads as a clean end of a close-delimited body
            raise TimeoutError
        if response.length:  # the connection closed before Content-Length bytes came
            raise MediaFetchError(f"could not download the provider's {kind}: the connection closed early")
        file.seek(0)
        return FetchedMedia(file=file, content_type=content_type or sniffed_type(head, kind=kind), size=size)
    except BaseException:
        file.close()
        raise


# --- Content types -------------------------------------------------------------------------

# ISO BMFF brands that are stills or sound, not video: HEIF/AVIF images, M4A/M4B audio.
_NOT_VIDEO_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis", b"M4A ", b"M4B "}
_NAMES = {"image": "an image", "video": "a video", "audio": "audio"}


def sniffed_type(head: bytes, *, kind: str) -> str:
    """The content type the first bytes of a file show, if it is of `kind`; MediaFetchError if not."""
    if kind == "image":
        content_type = _image_type(head)
    elif kind == "video":
        content_type = _video_type(head)
    else:
        content_type = _audio_type(head)
    if content_type is None:
        raise MediaFetchError(f"the provider returned a file that is not {_NAMES[kind]}")
    return content_type


def _image_type(head: bytes) -> str | None:
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    return None


def _video_type(head: bytes) -> str | None:
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand == b"qt  ":
            return "video/quicktime"
        return None if brand in _NOT_VIDEO_BRANDS else "video/mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):  # EBML: WebM (or Matroska, which players take alike)
        return "video/webm"
    return None


def _audio_type(head: bytes) -> str | None:
    if head.startswith(b"ID3"):
        return "audio/mpeg"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "audio/wav"
    if head.startswith(b"fLaC"):
        return "audio/flac"
    if head.startswith(b"OggS"):
        return "audio/opus" if b"OpusHead" in head else "audio/ogg"
    if len(head) >= 2 and head[0] == 0xFF:
        # 0xFFF plus layer 00 is an AAC ADTS header (FF F1, FF F9); 11 sync bits plus a layer is MPEG audio.
        if head[1] & 0xF6 == 0xF0:
            return "audio/aac"
        if head[1] & 0xE0 == 0xE0 and head[1] & 0x06:
            return "audio/mpeg"
    return None


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
