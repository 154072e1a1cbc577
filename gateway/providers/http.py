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
    """POST through the upstream's session, skipping Session.request's per-call merging.

    Beluga sets no session cookies, auth, proxies or default headers, so
    merging them (and reading the environment) on every call was pure cost:
    a tenth of a proxied call's CPU in the profile (docs/performance.md).
    Redirects are not followed: an upstream that redirects is misconfigured.
    """
    request = requests.PreparedRequest()
    request.prepare(method="POST", url=url, headers={"User-Agent": USER_AGENT, **headers}, data=data)
    return session.send(request, stream=stream, timeout=timeout, allow_redirects=False)


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

    Reads whatever the socket has (chunk_size=None) instead of line by line, so
    a chunk is relayed as soon as its blank line arrives, never buffered.
    """
    buffer = b""
    for block in response.iter_content(chunk_size=None):
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
