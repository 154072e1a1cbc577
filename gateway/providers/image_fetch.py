"""Images that customers give by URL, fetched for providers that need the bytes inline (Gemini).

A fetch is a request Beluga makes to an address a customer chose, so it is an SSRF defence first:

- http and https only, no credentials in the URL, at most 3 redirects, every hop checked anew;
- the host is resolved once and every address it resolves to must be public (unless
  IMAGE_FETCH_ALLOW_PRIVATE); the socket is opened to one of exactly those addresses, so a DNS
  answer that changes between the check and the connection (rebinding) changes nothing;
- IMAGE_FETCH_MAX_BYTES bounds the body as it streams in, IMAGE_FETCH_TIMEOUT_SECONDS the whole
  fetch, redirects, TLS handshake and slow-dripped bytes included;
- only PNG, JPEG, GIF, WebP, HEIC and HEIF bytes come back, whatever the headers claim.

Every refusal is an InvalidRequest whose message is safe to show the customer.
"""

from __future__ import annotations

import base64
import binascii
import functools
import http.client
import ipaddress
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urljoin

import certifi
from django.conf import settings
from urllib3.util import parse_url

from gateway.errors import InvalidRequest

logger = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

USER_AGENT = "Beluga image fetcher"
MAX_REDIRECTS = 3
SUPPORTED_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp", "image/heic", "image/heif")
_TYPE_ALIASES = {"image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg"}
# Types that say nothing about the bytes: the magic bytes decide.
_GENERIC_TYPES = {"", "application/octet-stream", "binary/octet-stream"}
_REDIRECT_STATUSES = {301, 302, 303, 307, 308}
_DEFAULT_PORTS = {"http": 80, "https": 443}
_CHUNK_BYTES = 64 * 1024
_MB = 1024 * 1024


@dataclass(frozen=True)
class FetchedImage:
    media_type: str
    data: str  # base64 text
    size: int  # bytes before encoding


# --- Which addresses a customer's URL may reach ---------------------------------------------

_SHARED_ADDRESS_SPACE = ipaddress.IPv4Network("100.64.0.0/10")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def address_is_public(address: IPAddress) -> bool:
    """True for an address on the public internet, False for anything an operator's network may hide.

    `is_global` is the base; it misses multicast, IPv6 site-local (fec0::/10), and IPv6 forms
    that carry an IPv4 address (mapped ::ffff:a.b.c.d, NAT64 64:ff9b::a.b.c.d, 6to4, Teredo),
    which reach whatever IPv4 address they embed.
    """
    if address.version == 6:
        if address.ipv4_mapped is not None:
            return address_is_public(address.ipv4_mapped)
        if address in _NAT64:
            return address_is_public(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        if address.sixtofour is not None or address.teredo is not None or address.is_site_local:
            return False
    elif address in _SHARED_ADDRESS_SPACE:
        return False
    return address.is_global and not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


def _any_address(address: IPAddress) -> bool:
    return True


@dataclass(frozen=True)
class FetchPolicy:
    """The limits of one fetch; `from_settings()` in production, built by hand in tests."""

    address_allowed: Callable[[IPAddress], bool] = address_is_public
    max_bytes: int = 20 * _MB
    timeout_seconds: float = 10
    ca_certs: str | None = None  # None: certifi's bundle, as requests uses

    @classmethod
    def from_settings(cls) -> FetchPolicy:
        beluga = settings.BELUGA
        return cls(
            address_allowed=_any_address if beluga["IMAGE_FETCH_ALLOW_PRIVATE"] else address_is_public,
            max_bytes=beluga["IMAGE_FETCH_MAX_BYTES"],
            timeout_seconds=beluga["IMAGE_FETCH_TIMEOUT_SECONDS"],
        )


# --- data: URLs ----------------------------------------------------------------------------


def parse_data_url(url: str, *, param: str = "messages") -> FetchedImage | None:
    """Decode `data:<type>;base64,<data>`; None when `url` is not a data URL."""
    if url[:5].lower() != "data:":
        return None
    header, comma, payload = url[5:].partition(",")
    if not comma:
        raise InvalidRequest("image data URL is malformed: expected data:<type>;base64,<data>", param=param)
    media_type, *parameters = (part.strip().lower() for part in header.split(";"))
    if "base64" not in parameters:
        raise InvalidRequest("image data URL must be base64-encoded (data:<type>;base64,<data>)", param=param)
    if media_type not in _GENERIC_TYPES:
        _check_declared_type(media_type, param=param)
    max_bytes = settings.BELUGA["IMAGE_FETCH_MAX_BYTES"]
    # Refuse before decoding: 4 base64 characters carry 3 bytes.
    if len(payload) > (max_bytes // 3 + 1) * 4:
        raise InvalidRequest(f"image data URL is larger than {_size_text(max_bytes)}", param=param)
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest("image data URL has invalid base64 data", param=param) from None
    if len(raw) > max_bytes:
        raise InvalidRequest(f"image data URL is larger than {_size_text(max_bytes)}", param=param)
    return FetchedImage(media_type=_sniffed_type(raw, param=param), data=payload, size=len(raw))


# --- http(s) URLs --------------------------------------------------------------------------


def fetch_image(url: str, *, param: str = "messages", policy: FetchPolicy | None = None) -> FetchedImage:
    """GET an image from a customer's http(s) URL under the rules in this module's docstring."""
    policy = policy or FetchPolicy.from_settings()
    watchdog = _Watchdog(policy.timeout_seconds)
    try:
        for _hop in range(MAX_REDIRECTS + 1):
            target = _target(url, policy=policy, param=param)
            result = _get(target, policy=policy, watchdog=watchdog, param=param)
            if isinstance(result, FetchedImage):
                return result
            url = result
        raise InvalidRequest(f"could not fetch image: more than {MAX_REDIRECTS} redirects", param=param)
    finally:
        watchdog.cancel()


@dataclass(frozen=True)
class _Target:
    url: str
    scheme: str
    host: str  # without IPv6 brackets
    port: int
    host_header: str
    path: str
    addresses: list[tuple[int, tuple]]  # (family, sockaddr), every one checked


def _target(url: str, *, policy: FetchPolicy, param: str) -> _Target:
    """Parse, resolve once and check one hop's URL."""
    try:
        parsed = parse_url(url)
    except ValueError:
        raise InvalidRequest("image URL is not a valid URL", param=param) from None
    scheme = (parsed.scheme or "").lower()
    if scheme not in _DEFAULT_PORTS:
        raise InvalidRequest("image URL must use http or https", param=param)
    if parsed.auth is not None:
        raise InvalidRequest("image URL must not contain a user name or password", param=param)
    if not parsed.host or parsed.port == 0:
        raise InvalidRequest("image URL is not a valid URL", param=param)
    port = parsed.port or _DEFAULT_PORTS[scheme]
    host = parsed.host.strip("[]")
    host_header = parsed.host if port == _DEFAULT_PORTS[scheme] else f"{parsed.host}:{port}"

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise InvalidRequest("could not fetch image: could not resolve host", param=param) from None
    addresses: list[tuple[int, tuple]] = []
    for family, _type, _proto, _canonname, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6) and (family, sockaddr) not in addresses:
            addresses.append((family, sockaddr))
    if not addresses:
        raise InvalidRequest("could not fetch image: could not resolve host", param=param)
    # Every address, not just the one we would use: a name that also resolves inside the
    # network is refused rather than gambled on.
    for _family, sockaddr in addresses:
        if not policy.address_allowed(ipaddress.ip_address(sockaddr[0])):
            raise InvalidRequest("image URL must point to a public address", param=param)
    return _Target(url, scheme, host, port, host_header, parsed.request_uri or "/", addresses)


def _get(target: _Target, *, policy: FetchPolicy, watchdog: _Watchdog, param: str) -> FetchedImage | str:
    """One request: the image, or the next URL when redirected."""
    remaining = watchdog.remaining()
    if remaining <= 0:
        raise InvalidRequest("could not fetch image: timed out", param=param)
    tls = _tls_context(policy.ca_certs or certifi.where()) if target.scheme == "https" else None
    connection = _PinnedConnection(target, tls=tls, watchdog=watchdog, timeout=remaining)
    try:
        connection.request(
            "GET",
            target.path,
            headers={
                "Host": target.host_header,
                "User-Agent": USER_AGENT,
                "Accept": "image/*",
                "Accept-Encoding": "identity",
                "Connection": "close",
            },
        )
        response = connection.getresponse()
        return _read(response, target=target, policy=policy, watchdog=watchdog, param=param)
    except (OSError, http.client.HTTPException) as error:
        reason = _network_reason(error, watchdog)
        logger.info("image fetch from %s failed: %s (%r)", target.host, reason, error)
        raise InvalidRequest(f"could not fetch image: {reason}", param=param) from None
    finally:
        connection.close()


def _read(
    response: http.client.HTTPResponse, *, target: _Target, policy: FetchPolicy, watchdog: _Watchdog, param: str
) -> FetchedImage | str:
    if response.status in _REDIRECT_STATUSES and response.getheader("Location"):
        return urljoin(target.url, response.getheader("Location"))
    if response.status != 200:
        raise InvalidRequest(f"could not fetch image: HTTP {response.status}", param=param)
    # We asked for identity: decompressing what we did not ask for would invite zip bombs.
    if (response.getheader("Content-Encoding") or "identity").strip().lower() != "identity":
        raise InvalidRequest("could not fetch image: unsupported content encoding", param=param)
    declared = (response.getheader("Content-Type") or "").split(";", 1)[0].strip().lower()
    if declared not in _GENERIC_TYPES:
        _check_declared_type(declared, param=param)

    too_large = InvalidRequest(f"image at URL is larger than {_size_text(policy.max_bytes)}", param=param)
    length = (response.getheader("Content-Length") or "").strip()
    if length.isdigit() and int(length) > policy.max_bytes:
        raise too_large
    body = bytearray()
    while chunk := response.read1(min(_CHUNK_BYTES, policy.max_bytes + 1 - len(body))):
        body += chunk
        if len(body) > policy.max_bytes:
            raise too_large
    if watchdog.expired:  # the watchdog's shutdown reads as a clean end of a close-delimited body
        raise TimeoutError
    return FetchedImage(
        media_type=_sniffed_type(bytes(body), param=param),
        data=base64.b64encode(body).decode("ascii"),
        size=len(body),
    )


class _PinnedConnection(http.client.HTTPConnection):
    """HTTP/1.1 to `target.host`, over a socket opened to the addresses checked for it.

    http.client opens its socket in `connect()`, the method its own HTTPSConnection overrides to
    add TLS; overriding it is the stdlib's way to decide where the socket goes. This one connects
    to the checked sockaddrs (no second DNS lookup anywhere) and, for https, wraps the socket with
    a verifying SSLContext given `server_hostname=target.host`: SNI and the certificate check are
    for the name in the URL, never for the IP. The request line, the Host header (the URL's) and
    response parsing stay http.client's.

    Why not requests/urllib3: pinning there means a pool keyed on the IP with `server_hostname`
    and an explicit Host header (what requests-hardened does), which works, but the socket is
    out of our reach until the response headers are in, so a server dripping its headers a byte
    at a time would hold a worker thread far past the deadline (see _Watchdog).
    """

    def __init__(self, target: _Target, *, tls: ssl.SSLContext | None, watchdog: _Watchdog, timeout: float):
        super().__init__(target.host, target.port, timeout=timeout)
        self._target = target
        self._tls = tls
        self._watchdog = watchdog

    def connect(self) -> None:
        error: OSError = ConnectionError("no address")
        for family, sockaddr in self._target.addresses:
            timeout = min(self.timeout, self._watchdog.remaining())
            if timeout <= 0:
                raise TimeoutError
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.settimeout(timeout)
                sock.connect(sockaddr)
                break
            except OSError as exc:
                sock.close()
                error = exc
        else:
            raise error
        self.sock = sock
        self._watchdog.watch(sock)
        if self._tls is not None:
            # Wrapping detaches `sock`: watch the TLS socket before the handshake starts.
            self.sock = self._tls.wrap_socket(sock, server_hostname=self.host, do_handshake_on_connect=False)
            self._watchdog.watch(self.sock)
            self.sock.do_handshake()


class _Watchdog:
    """Shuts the fetch's socket down when the deadline passes, whatever it is blocked on.

    A socket timeout bounds each recv, not their sum: a server sending a byte every few seconds
    (headers or body) would hold a worker thread for hours. One timer per fetch. (CPython's TLS
    handshake already counts its timeout for the whole handshake.)
    """

    def __init__(self, seconds: float):
        self._deadline = time.monotonic() + seconds
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self.expired = False
        self._timer = threading.Timer(seconds, self._cut)
        self._timer.daemon = True
        self._timer.start()

    def remaining(self) -> float:
        return self._deadline - time.monotonic()

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sock = sock
            if self.expired:
                _shutdown(sock)

    def cancel(self) -> None:
        self._timer.cancel()

    def _cut(self) -> None:
        with self._lock:
            self.expired = True
            if self._sock is not None:
                _shutdown(self._sock)


def _shutdown(sock: socket.socket) -> None:
    # The plain socket's shutdown, also for an SSLSocket: its own override would drop the TLS
    # state under the thread reading it. The reader then sees end-of-stream.
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass  # already closed or never connected


@functools.lru_cache(maxsize=4)
def _tls_context(cafile: str) -> ssl.SSLContext:
    # Loading the CA bundle costs milliseconds; a context is safe to share between threads.
    return ssl.create_default_context(cafile=cafile)


def _network_reason(error: BaseException, watchdog: _Watchdog) -> str:
    if watchdog.expired or isinstance(error, TimeoutError):
        return "timed out"
    if isinstance(error, ssl.SSLCertVerificationError):
        return "TLS certificate verification failed"
    if isinstance(error, ssl.SSLError):
        return "TLS error"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, http.client.HTTPException):
        return "invalid HTTP response"
    return "connection failed"


# --- Content types -------------------------------------------------------------------------

_HEIC_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx"}
_HEIF_BRANDS = {b"mif1", b"msf1", b"heif"}


def _sniffed_type(data: bytes, *, param: str) -> str:
    """The type the bytes themselves show; providers check it against the media type we send."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[4:8] == b"ftyp":
        # ISO BMFF: a major brand, then compatible brands up to the end of the ftyp box.
        box_end = min(int.from_bytes(data[:4], "big"), len(data))
        brands = {data[i : i + 4] for i in range(16, box_end - 3, 4)} | {data[8:12]}
        if b"avif" not in brands:
            if brands & _HEIC_BRANDS:
                return "image/heic"
            if brands & _HEIF_BRANDS:
                return "image/heif"
    raise InvalidRequest("image is not a PNG, JPEG, GIF, WebP, HEIC or HEIF image", param=param)


def _check_declared_type(media_type: str, *, param: str) -> None:
    if _TYPE_ALIASES.get(media_type, media_type) not in SUPPORTED_TYPES:
        shown = media_type if len(media_type) <= 100 and media_type.isprintable() else "an unsupported type"
        raise InvalidRequest(
            f"image type {shown} is not supported: use PNG, JPEG, GIF, WebP, HEIC or HEIF", param=param
        )


def _size_text(size: int) -> str:
    return f"{size / _MB:g} MB" if size >= _MB else f"{size} bytes"
