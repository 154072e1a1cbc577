"""Outbound HTTP plumbing shared by every provider adapter.

One `requests.Session` per upstream per worker process, so keep-alive
connections are reused across requests and threads (urllib3's pool is
thread-safe). No automatic retries: a retry after the client has seen bytes
would bill or answer twice; failover is the pipeline's decision.
"""

from __future__ import annotations

import threading

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers, requote_uri
from urllib3 import HTTPConnectionPool
from urllib3 import Timeout as Urllib3Timeout
from urllib3.exceptions import (
    ClosedPoolError,
    ConnectTimeoutError,
    HTTPError,
    LocationValueError,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)
from urllib3.exceptions import SSLError as Urllib3SSLError
from urllib3.util import parse_url

_sessions: dict[tuple[int, str], requests.Session] = {}
_lock = threading.Lock()


def session_for(*, upstream_id: int, base_url: str) -> requests.Session:
    key = (upstream_id, base_url)
    session = _sessions.get(key)
    if session is None:
        with _lock:
            session = _sessions.get(key)
            if session is None:
                session = requests.Session()
                pool_size = settings.BELUGA["UPSTREAM_POOL_SIZE"]
                adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0, pool_block=False)
                session.mount("http://", adapter)
                session.mount("https://", adapter)
                # Proxies and netrc from the environment would surprise an operator; be explicit.
                session.trust_env = False
                _sessions[key] = session
    return session


USER_AGENT = "Beluga"


def upstream_timeout(route) -> tuple[float, float]:
    """(connect, read) for requests: the read timeout waits for the answer's headers (the first byte
    timeout), then each read of the body (a stream's chunks) is held to the idle timeout by
    `idle_timeout_set` once the headers are in."""
    first_byte = route.first_byte_timeout or route.read_timeout
    if route.total_timeout:
        first_byte = min(first_byte, route.total_timeout)
    return (route.connect_timeout, first_byte)


def idle_timeout_set(response: requests.Response, seconds: float) -> None:
    """Hold every later read of `response`'s body to `seconds` of silence (the idle timeout)."""
    sock = getattr(getattr(response.raw, "_connection", None), "sock", None)
    if sock is None:
        fp = getattr(getattr(response.raw, "_fp", None), "fp", None)
        sock = getattr(getattr(fp, "raw", None), "_sock", None)
    if sock is not None:
        sock.settimeout(seconds)


def post(
    *, session: requests.Session, url: str, data: bytes, headers: dict, stream: bool, timeout
) -> requests.Response:
    """POST a bytes body through the upstream session's connection pool.

    This is every model call's request, so it goes to the session's urllib3
    pool directly: requests' Session.send and HTTPAdapter.send (preparing and
    re-quoting the URL, proxy selection, cookie jars, hooks) were a third of
    the upstream call's CPU for nothing Beluga uses (docs/performance.md).
    What is kept: the session's pool (so its keep-alive connections), TLS
    checked as requests checks it, no retries, no redirects, and requests'
    exceptions and Response, so callers cannot tell the difference.
    """
    pool, target = _pool_and_target(session, url)
    connect, read = timeout if isinstance(timeout, tuple) else (timeout, timeout)
    all_headers = {"User-Agent": USER_AGENT, **headers, "Content-Length": str(len(data))}
    try:
        raw = pool.urlopen(
            "POST",
            target,
            body=data,
            headers=all_headers,
            redirect=False,
            assert_same_host=False,
            preload_content=False,
            decode_content=False,
            retries=False,
            timeout=Urllib3Timeout(connect=connect, read=read),
            chunked=False,
        )
    except Exception as exc:
        raise _as_requests_error(exc) from exc
    response = requests.Response()
    response.status_code = raw.status
    response.headers = CaseInsensitiveDict(raw.headers)
    response.encoding = get_encoding_from_headers(response.headers)
    response.raw = raw
    response.reason = raw.reason
    response.url = url
    if not stream:
        response.content  # noqa: B018 - read the whole body now, as requests does without stream=True
    return response


_targets: dict[tuple[requests.Session, str], tuple[HTTPConnectionPool, str]] = {}


class _Url:
    """What requests' adapter reads of a request to pick its connection pool."""

    __slots__ = ("url",)

    def __init__(self, url: str) -> None:
        self.url = url


def _pool_and_target(session: requests.Session, url: str) -> tuple[HTTPConnectionPool, str]:
    """The session's pool for `url` (TLS set up by requests' own adapter) and the path to ask for."""
    key = (session, url)
    found = _targets.get(key)
    if found is not None and found[0].pool is not None:  # a pool the manager closed has pool None
        return found
    quoted = requote_uri(url)
    adapter = session.get_adapter(quoted)
    try:
        pool = adapter.get_connection_with_tls_context(_Url(quoted), True)
    except LocationValueError as exc:
        raise requests.exceptions.InvalidURL(exc) from exc
    adapter.cert_verify(pool, quoted, True, None)  # certifi's CA bundle, as HTTPAdapter.send sets it
    found = (pool, parse_url(quoted).request_uri)
    if len(_targets) > 4096:  # URLs name models (Gemini): bounded, but never let it grow without end
        _targets.clear()
    _targets[key] = found
    return found


def _as_requests_error(exc: Exception) -> Exception:
    """urllib3's failure as the requests exception HTTPAdapter.send raises for it."""
    if isinstance(exc, MaxRetryError):
        reason = exc.reason
        if isinstance(reason, ConnectTimeoutError) and not isinstance(reason, NewConnectionError):
            return requests.exceptions.ConnectTimeout(exc)
        if isinstance(reason, Urllib3SSLError):
            return requests.exceptions.SSLError(exc)
        return requests.exceptions.ConnectionError(exc)
    if isinstance(exc, ConnectTimeoutError) and not isinstance(exc, NewConnectionError):
        return requests.exceptions.ConnectTimeout(exc)
    if isinstance(exc, ReadTimeoutError):
        return requests.exceptions.ReadTimeout(exc)
    if isinstance(exc, Urllib3SSLError):
        return requests.exceptions.SSLError(exc)
    if isinstance(exc, (ProtocolError, OSError, ClosedPoolError, NewConnectionError)):
        return requests.exceptions.ConnectionError(exc)
    if isinstance(exc, HTTPError):
        return requests.exceptions.ConnectionError(exc)
    return exc


def send(
    *,
    session: requests.Session,
    method: str,
    url: str,
    headers: dict,
    timeout,
    data: bytes | dict | None = None,
    files: list | None = None,
    stream: bool = False,
) -> requests.Response:
    """Any method, with a multipart body when `files` is given (media uploads); same rules as `post`."""
    request = requests.PreparedRequest()
    request.prepare(method=method, url=url, headers={"User-Agent": USER_AGENT, **headers}, data=data, files=files)
    return session.send(request, stream=stream, timeout=timeout, allow_redirects=False)


def iter_sse_data(response: requests.Response):
    """Yield the `data:` payload (bytes) of each server-sent event as it arrives.

    Reads whatever the socket has instead of line by line, so a chunk is
    relayed as soon as its blank line arrives, never buffered.
    """
    buffer = b""
    for block in _arriving_blocks(response):
        buffer += block
        if b"\r" in block:
            buffer = buffer.replace(b"\r\n", b"\n")
        while True:
            end = buffer.find(b"\n\n")
            if end < 0:
                break
            event, buffer = buffer[:end], buffer[end + 2 :]
            data = _event_data(event)
            if data is not None:
                yield data
    if buffer.strip():
        data = _event_data(buffer)
        if data is not None:
            yield data


STREAM_READ_BYTES = 65536


def _arriving_blocks(response: requests.Response):
    """The body in the pieces it arrives in.

    A chunked body yields chunk by chunk (iter_content with chunk_size=None).
    A body without chunking (an HTTP/1.0 server, or `Connection: close` and no
    length) would be read by iter_content to its end before the first piece:
    read1 returns what has arrived instead.
    """
    raw = response.raw
    if getattr(raw, "chunked", True) or not hasattr(raw, "read1"):
        yield from response.iter_content(chunk_size=None)
        return
    while True:
        block = raw.read1(STREAM_READ_BYTES, decode_content=True)
        if not block:
            return
        yield block


def _event_data(event: bytes) -> bytes | None:
    lines = []
    for line in event.split(b"\n"):
        if line.startswith(b"data:"):
            lines.append(line[5:].lstrip(b" "))
    if not lines:
        # Google writes an error that cuts a stream short as bare JSON, outside
        # SSE framing: hand it on so that the protocol's reader sees the error.
        stripped = event.strip()
        return stripped if stripped.startswith(b"{") else None
    return b"\n".join(lines)
