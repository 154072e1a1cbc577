"""Fixtures for the chat API: a fake upstream, a catalog route to it, keys and clients.

Registered from tests/conftest.py (`pytest_plugins`); test modules may also import
the helpers below (`chat_body`, `post_chat`, `error_of`, ...).
"""

from __future__ import annotations

import json
import secrets
import socket
import struct
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest

from tests.fake_upstream import FakeUpstream

if TYPE_CHECKING:
    from catalog.models import AIModel, Route, Upstream

# Django models are imported inside the fixtures: this module may load as a pytest
# plugin before Django is set up.

MODEL_ID = "test-model"
UPSTREAM_MODEL = "upstream-test-model"
# Round prices so that expected costs are easy to compute by hand: 2 USD per 1M
# input tokens, 8 USD per 1M output tokens, in micro-USD.
INPUT_PER_1M = 2_000_000
OUTPUT_PER_1M = 8_000_000
CHAT_PATH = "/v1/chat/completions"


@dataclass
class ChatRoute:
    model: AIModel
    upstream: Upstream
    route: Route

    @property
    def credential(self) -> str:
        return self.upstream.api_key

    def update_upstream(self, **fields) -> None:
        """Change the upstream row (timeouts, URL) and make the gateway see it now."""
        from catalog.selectors import catalog_cache_clear

        for name, value in fields.items():
            setattr(self.upstream, name, value)
        self.upstream.save()
        catalog_cache_clear()


def expected_cost(prompt_tokens: int, completion_tokens: int) -> int:
    """Cost in micro-USD at the fixture's prices, rounded up once per call (billing/pricing.py)."""
    numerator = prompt_tokens * INPUT_PER_1M + completion_tokens * OUTPUT_PER_1M
    return -(-numerator // 1_000_000)


def route_target(*, kind: str, base_url: str, api_key: str, upstream_model: str, read_timeout: float = 5.0):
    """A catalog RouteTarget built by hand, for protocol modules tested without the database."""
    from catalog.selectors import RouteTarget

    return RouteTarget(
        upstream_id=1,
        upstream_name=kind,
        kind=kind,
        base_url=base_url,
        api_key=api_key,
        connect_timeout=2.0,
        read_timeout=read_timeout,
        upstream_model=upstream_model,
        priority=0,
        weight=1,
    )


def chat_body(**overrides) -> dict:
    body = {"model": MODEL_ID, "messages": [{"role": "user", "content": "Say hello."}]}
    body.update(overrides)
    return body


def post_chat(client, raw_key: str | None, body, *, path: str = CHAT_PATH, headers: dict | None = None):
    """POST a chat request through Django's test client (in-process)."""
    all_headers = dict(headers or {})
    if raw_key is not None:
        all_headers.setdefault("Authorization", f"Bearer {raw_key}")
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post(path, data=data, content_type="application/json", headers=all_headers)


def wait_for_record(timeout: float = 10.0):
    """The newest usage record, once written: the live server writes it in its own thread after it sent
    the answer (a stream's when it ended), so a test that got its answer may be a moment early."""
    from billing.models import UsageRecord

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = UsageRecord.objects.order_by("-id").first()
        if record is not None:
            return record
        time.sleep(0.02)
    raise AssertionError("no usage record was written")


def in_one_window(calls):
    """Run `calls()` (a list of responses) inside one rate-limit window.

    Windows are fixed minutes; if one ended in the middle of the burst (the reset
    time jumps by a minute), start over in the new window, which lasts long enough.
    """
    from django.core.cache import cache

    for _ in range(2):
        responses = calls()
        resets = [int(r["X-RateLimit-Reset-Requests"]) for r in responses]
        if max(resets) - min(resets) <= 1:  # the same window, give or take a clock tick
            return responses
        cache.clear()
    raise AssertionError("two rate-limit windows ended during one burst")


def error_of(response) -> dict:
    """The `error` object of an OpenAI-shaped error response, checking the shape on the way."""
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = json.loads(response.content)
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) >= {"message", "type", "code", "param"}, error
    assert isinstance(error["message"], str) and error["message"]
    return error


def sse_payloads(raw: bytes) -> list[bytes]:
    """The `data:` payloads of an SSE body, in order."""
    out = []
    for event in raw.replace(b"\r\n", b"\n").split(b"\n\n"):
        lines = [line[5:].lstrip() for line in event.split(b"\n") if line.startswith(b"data:")]
        if lines:
            out.append(b"\n".join(lines))
    return out


def sse_chunks(raw: bytes) -> list[dict]:
    """The JSON chunks of an SSE body ([DONE] excluded)."""
    return [json.loads(p) for p in sse_payloads(raw) if p != b"[DONE]"]


class RawStream:
    """A streamed POST over a plain socket, to read SSE events as they arrive and to hang up mid-stream.

    HTTP clients read a response without Content-Length or chunking (what Django's
    live server sends) to its end before giving any of it back, so they cannot show
    when each event arrived; a socket can.
    """

    def __init__(self, base_url: str, path: str, body: dict, headers: dict[str, str]) -> None:
        url = urlsplit(base_url)
        self.sock = socket.create_connection((url.hostname, url.port), timeout=15)
        payload = json.dumps(body).encode()
        head = [f"POST {path} HTTP/1.1", f"Host: {url.netloc}", "Content-Type: application/json"]
        head += [f"Content-Length: {len(payload)}", "Connection: close"]
        head += [f"{name}: {value}" for name, value in headers.items()]
        self.sock.sendall("\r\n".join(head).encode() + b"\r\n\r\n" + payload)
        self._buffer = b""
        while b"\r\n\r\n" not in self._buffer:
            self._recv()
        raw_head, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
        status_line, *header_lines = raw_head.decode("latin-1").split("\r\n")
        self.status = int(status_line.split()[1])
        self.headers = {k.strip().lower(): v.strip() for k, v in (h.split(":", 1) for h in header_lines)}
        assert "chunked" not in self.headers.get("transfer-encoding", ""), "RawStream reads plain bodies only"

    def _recv(self) -> bool:
        data = self.sock.recv(65536)
        self._buffer += data
        return bool(data)

    def read_events(self, count: int) -> list[bytes]:
        """Block until `count` whole SSE events have arrived; return their data payloads."""
        while self._buffer.count(b"\n\n") < count:
            if not self._recv():
                break
        return sse_payloads(self._buffer)[:count]

    def read_all(self) -> bytes:
        while self._recv():
            pass
        self.sock.close()
        return self._buffer

    def hang_up(self) -> None:
        """Close abruptly (TCP reset), as a client that crashed or was killed."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


# --- fixtures ------------------------------------------------------------------


@pytest.fixture(scope="session")
def _fake_upstream_server():
    fake = FakeUpstream().start()
    yield fake
    fake.stop()


@pytest.fixture
def fake_upstream(_fake_upstream_server) -> FakeUpstream:
    """The fake OpenAI upstream, with no recorded requests and default behaviour."""
    _fake_upstream_server.reset()
    yield _fake_upstream_server
    _fake_upstream_server.reset()


def _upstream_base_url(fake: FakeUpstream, kind: str) -> str:
    # OpenAI-compatible base URLs carry the version (…/v1); Anthropic's and Google's do not.
    return fake.base_url if kind in ("openai", "openai-responses") else fake.base_url.removesuffix("/v1")


@pytest.fixture
def route_to(db, fake_upstream):
    """`route_to(kind)`: `test-model` routed to the fake upstream speaking `kind` (openai, anthropic, gemini)."""
    from catalog.models import AIModel, Route, Upstream
    from catalog.selectors import catalog_cache_clear

    def make(kind: str = "openai") -> ChatRoute:
        upstream = Upstream.objects.create(
            name=f"fake-{kind}",
            kind=kind,
            base_url=_upstream_base_url(fake_upstream, kind),
            api_key="upstream-secret-" + secrets.token_hex(8),
            connect_timeout=2.0,
            # Small, so that timeout tests are quick; the fake answers at once otherwise.
            read_timeout=2.0,
        )
        model = AIModel.objects.create(
            slug=MODEL_ID,
            name="Test Model",
            vendor="OpenAI",
            category="chat",
            description="A model served by the fake upstream.",
            supports_stream=True,
            supports_vision=True,
            supports_tools=True,
            supports_json=True,
            context_window=128_000,
            max_output_tokens=4096,
            input_per_1m=INPUT_PER_1M,
            output_per_1m=OUTPUT_PER_1M,
            input_per_1m_list=2 * INPUT_PER_1M,
            output_per_1m_list=2 * OUTPUT_PER_1M,
        )
        route = Route.objects.create(model=model, upstream=upstream, upstream_model=UPSTREAM_MODEL)
        catalog_cache_clear()
        return ChatRoute(model=model, upstream=upstream, route=route)

    return make


@pytest.fixture
def chat_route(route_to) -> ChatRoute:
    """`test-model` routed to the fake OpenAI-compatible upstream as `upstream-test-model`, with known prices."""
    return route_to("openai")


@pytest.fixture
def api_key(api_key_factory, user_factory):
    """(ApiKey row, raw key) on the Pro plan, so that ordinary tests never meet the rate limit."""
    # No password: hashing one costs more than the rest of a test.
    return api_key_factory(user=user_factory(plan="pro", password=None))


@pytest.fixture
def raw_key(api_key) -> str:
    return api_key[1]


@pytest.fixture
def live_api(transactional_db, live_server):
    """The live server's base URL.

    Asking for transactional_db by name (live_server only asks for it at run time)
    lets pytest-django order these tests after the rolled-back ones, whose seeded
    plans a transactional test's closing flush would otherwise remove.
    """
    return live_server.url


@pytest.fixture
def openai_client(live_api, chat_route, raw_key):
    """The real OpenAI Python SDK pointed at Beluga's live server."""
    import openai

    # Closed at teardown: a keep-alive connection left open would hold a live-server
    # thread, which then closes its database connection after the server has stopped.
    with openai.OpenAI(base_url=live_api + "/v1", api_key=raw_key, max_retries=0, timeout=20) as client:
        yield client
