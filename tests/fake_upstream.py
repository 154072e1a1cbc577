"""A fake OpenAI-compatible upstream: a real HTTP server on 127.0.0.1 for the gateway to call.

It speaks OpenAI's chat completions wire format (CreateChatCompletionResponse and
CreateChatCompletionStreamResponse of the OpenAPI description): JSON with usage, or
SSE chunks (role, content word by word, finish, usage when asked, `[DONE]`), and
tool calls when the request offers tools and the test scripts one. With
`reasoning_text` set it answers as DeepSeek does: `reasoning_content` on the
message, or `delta.reasoning_content` chunks word by word before the content. Under a path
ending /embeddings it answers OpenAI's CreateEmbeddingResponse; Anthropic's and
Gemini's paths are answered in their own formats (tests/fake_anthropic.py,
tests/fake_gemini.py). A test tells it how to fail and then reads what it received.

    fake.reply_text = "Paris is the capital."
    fake.fail_with(status=503)
    fake.requests[-1].json["model"]

Waits (timeouts, slow streams) end early on `reset()`/`stop()`, so a test never
leaves a handler thread sleeping behind it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DEFAULT_REPLY = "Hello from the fake upstream, nice to meet you."
DEFAULT_PROMPT_TOKENS = 17

ERROR_BODIES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    502: ("server_error", None),
    503: ("server_error", None),
}
DEFAULT_ERROR_MESSAGES = {
    400: "Invalid value for 'messages': the upstream refused this request.",
    401: "Incorrect API key provided.",
    429: "Rate limit reached for requests. Please try again in 1s.",
    500: "The server had an error while processing your request. Sorry about that!",
    502: "Bad gateway.",
    503: "The engine is currently overloaded, please try again later.",
}


@dataclass
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes
    json: dict | list | None
    # Streams only: how many SSE events were written before the stream ended or broke,
    # and whether the gateway read it to the end ([DONE] written without error).
    events_sent: int = 0
    completed: bool = False
    # The gateway's side of the TCP connection: equal on two requests when it reused the connection.
    client_port: int = 0

    def raw(self) -> str:
        """Everything received, as text, to assert that something never reached the upstream."""
        head = "\n".join(f"{k}: {v}" for k, v in self.headers.items())
        return f"{self.method} {self.path}\n{head}\n\n{self.body.decode('utf-8', 'replace')}"


@dataclass
class ToolCall:
    name: str
    arguments: str  # JSON text, as OpenAI sends it
    id: str = "call_fake_0001"


@dataclass
class Behaviour:
    """What the next requests get. Tests set attributes through FakeUpstream's helpers."""

    reply_text: str = DEFAULT_REPLY
    prompt_tokens: int = DEFAULT_PROMPT_TOKENS
    # None: one token per word of the reply (so a stream's usage equals its content chunks).
    completion_tokens: int | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)  # used when the request has tools
    cached_tokens: int = 0  # part of prompt_tokens read from the provider's prompt cache
    reasoning_text: str = ""  # thinking shown before the reply, where the wire format has it
    reasoning_tokens: int = 0  # part of the completion tokens spent reasoning
    # Failures
    status: int = 200
    error_message: str | None = None
    error_body: bytes | None = None  # raw body for error statuses, overrides the OpenAI shape
    delay_before_headers: float = 0.0  # read timeout before any byte
    invalid_json: bool = False  # 200 with a body that is not JSON
    answer_body: bytes | None = None  # a 200 answer's raw body instead of the completion
    error_event_after: int | None = None  # stream: send this many events, then an error event, and end
    reset_after_events: int | None = None  # stream: send this many SSE events, then cut the connection
    chunk_delay: float = 0.0  # stream: pause between SSE events
    hold_after_events: int | None = None  # stream: send this many events, then wait for release_stream()
    omit_done: bool = False  # stream: end the HTTP body cleanly but without `data: [DONE]`
    unchunked_stream: bool = False  # stream: no chunked encoding, the body ends when the connection closes
    omit_usage: bool = False  # no usage object in the JSON answer, no usage chunk in a stream even when asked
    fail_times: int | None = None  # fail only the first N requests, then answer normally
    retry_after: str | None = None  # the Retry-After header of a failure (429, 503)
    refused_keys: frozenset[str] = frozenset()  # credentials answered 401, as a revoked provider key is
    refused_status: int = 401  # or 403: a key without the permission


class FakeUpstream:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._gate = threading.Event()
        self.requests: list[ReceivedRequest] = []
        self.behaviour = Behaviour()
        self._failures_served = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._server.fake = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-upstream", daemon=True)

    # --- lifecycle -----------------------------------------------------------

    def start(self) -> FakeUpstream:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        self._gate.set()
        self._server.shutdown()
        self._server.server_close()

    def reset(self) -> None:
        """Forget requests and scripted behaviour; wake any handler still waiting."""
        self._release.set()
        self._gate.set()
        with self._lock:
            self.requests = []
            self.behaviour = Behaviour()
            self._failures_served = 0
        self._release = threading.Event()
        self._gate = threading.Event()

    def release_stream(self) -> None:
        """Let streams held by `hold_after_events` go on."""
        self._gate.set()

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # --- scripting -----------------------------------------------------------

    def reply(self, text: str, *, prompt_tokens: int | None = None, completion_tokens: int | None = None) -> None:
        self.behaviour.reply_text = text
        if prompt_tokens is not None:
            self.behaviour.prompt_tokens = prompt_tokens
        self.behaviour.completion_tokens = completion_tokens

    def call_tool(self, name: str, arguments: dict, *, call_id: str = "call_fake_0001") -> None:
        self.behaviour.tool_calls = [ToolCall(name=name, arguments=json.dumps(arguments), id=call_id)]

    def fail_with(self, status: int, message: str | None = None, *, times: int | None = None) -> None:
        self.behaviour.status = status
        self.behaviour.error_message = message
        self.behaviour.fail_times = times

    def set(self, **changes) -> None:
        for name, value in changes.items():
            if not hasattr(self.behaviour, name):
                raise AttributeError(f"Behaviour has no {name!r}")
            setattr(self.behaviour, name, value)

    # --- reading back ----------------------------------------------------------

    @property
    def chat_requests(self) -> list[ReceivedRequest]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    # --- used by the handler ---------------------------------------------------

    def _record(self, req: ReceivedRequest) -> None:
        with self._lock:
            self.requests.append(req)

    def _should_fail(self) -> bool:
        b = self.behaviour
        with self._lock:
            if b.fail_times is None:
                return True
            if self._failures_served < b.fail_times:
                self._failures_served += 1
                return True
            return False

    def _wait(self, seconds: float) -> bool:
        """Sleep, unless the test is over. True when the test ended the wait early."""
        return self._release.wait(seconds) if seconds > 0 else False


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive and chunked streams, like the real API
    server_version = "fake-openai/1.0"

    def log_message(self, format, *args):  # noqa: A002 - stdlib signature
        pass

    @property
    def fake(self) -> FakeUpstream:
        return self.server.fake  # type: ignore[attr-defined]

    # --- plumbing ----------------------------------------------------------

    def _receive(self) -> ReceivedRequest:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        req = ReceivedRequest(
            method=self.command,
            path=self.path,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            json=parsed,
            client_port=self.client_address[1],
        )
        self.fake._record(req)
        return req

    def _send_json(self, status: int, payload, *, raw: bytes | None = None, headers: dict | None = None) -> None:
        # OpenAI pretty-prints its JSON answers.
        body = raw if raw is not None else json.dumps(payload, indent=2).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-request-id", f"req_upstream_{time.monotonic_ns()}")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _abort(self) -> None:
        """Drop the connection at once, as a crashing upstream does: no more bytes, no clean HTTP end."""
        try:
            self.wfile.flush()
        except OSError:
            pass
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()

    def _cut(self) -> None:
        """Cut a stream mid-body, then reset the connection.

        A reset alone can make the peer's kernel discard bytes it has not handed to the
        gateway yet, so what the gateway sees would vary from run to run. Half-close
        first (everything sent so far arrives, then the body ends mid-chunk), wait for
        the gateway to hang up, then reset.
        """
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(5)
            while self.connection.recv(65536):
                pass
        except OSError:
            pass
        self._abort()

    # --- routes --------------------------------------------------------------

    def do_GET(self):
        req = self._receive()
        if req.path.rstrip("/") == "/v1/models":
            created = 1_700_000_000
            data = [
                {"id": "upstream-test-model", "object": "model", "created": created, "owned_by": "fake"},
                {"id": "upstream-other-model", "object": "model", "created": created, "owned_by": "fake"},
            ]
            self._send_json(200, {"object": "list", "data": data})
            return
        self._send_json(404, {"error": {"message": "Not found", "type": "invalid_request_error"}})

    def do_POST(self):
        req = self._receive()
        wire = _wire_for(req.path)
        if wire is None:
            self._send_json(404, {"error": {"message": f"Unknown path {req.path}", "type": "invalid_request_error"}})
            return
        b = self.fake.behaviour
        if b.delay_before_headers and self.fake._wait(b.delay_before_headers):
            self._abort()
            return
        credential = req.headers.get("authorization", "").removeprefix("Bearer ")
        if credential and credential in b.refused_keys:
            self._send_json(b.refused_status, wire.error_json(b.refused_status, b))
            return
        failing = (b.status != 200 or b.invalid_json) and self.fake._should_fail()
        if failing and b.status != 200:
            headers = {"Retry-After": b.retry_after} if b.retry_after is not None else {}
            if b.error_body is not None:
                self._send_json(b.status, None, raw=b.error_body, headers=headers)
            else:
                self._send_json(b.status, wire.error_json(b.status, b), headers=headers)
            return
        if failing and b.invalid_json:
            self._send_json(200, None, raw=b"<html>502 Bad Gateway</html> {not json")
            return
        body = req.json if isinstance(req.json, dict) else {}
        if b.answer_body is not None and not wire.is_stream(req.path, body):
            self._send_json(200, None, raw=b.answer_body)
            return
        if wire.is_stream(req.path, body):
            self._stream(req, wire.stream_frames(req.path, body, b))
        else:
            self._send_json(200, wire.reply_json(req.path, body, b))

    def _stream(self, req: ReceivedRequest, frames: list[bytes]) -> None:
        """Write SSE frames (each a whole event, blank line included) as a chunked body,
        or as a body that the closing connection ends (`unchunked_stream`)."""
        b = self.fake.behaviour
        chunked = not b.unchunked_stream
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        try:
            for i, frame in enumerate(frames):
                if b.reset_after_events is not None and i >= b.reset_after_events:
                    self._cut()
                    return
                erring = b.error_event_after is not None and i == b.error_event_after
                if erring:
                    error = {"message": b.error_message or "The server had an error", "type": "server_error"}
                    frame = b"data: " + json.dumps({"error": error}).encode() + b"\n\n"
                if b.hold_after_events is not None and i == b.hold_after_events:
                    # Bounded, so that a test that forgets to release cannot hang the server.
                    self.fake._gate.wait(10)
                if i and b.chunk_delay and self.fake._wait(b.chunk_delay):
                    self._abort()
                    return
                self.wfile.write(b"%x\r\n%s\r\n" % (len(frame), frame) if chunked else frame)
                self.wfile.flush()
                req.events_sent += 1
                if erring:
                    break
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
            req.completed = True
        except OSError:
            # The gateway hung up (its client went away): stop, as the real API does.
            self.close_connection = True


def _wire_for(path: str):
    """The module that speaks the wire format of `path` (see OpenAIWire for what it offers)."""
    path = path.split("?", 1)[0].rstrip("/")
    if path.endswith("/chat/completions"):
        return OpenAIWire
    if path.endswith("/embeddings"):
        return OpenAIEmbeddingsWire
    if path.endswith("/responses"):
        from tests import fake_responses

        return fake_responses
    if path.endswith("/messages") or path.endswith("/messages/count_tokens"):
        from tests import fake_anthropic

        return fake_anthropic
    if "/v1beta/models/" in path:
        from tests import fake_gemini

        return fake_gemini
    return None


# --- OpenAI wire format ------------------------------------------------------


def words(text: str) -> list[str]:
    """The reply cut the way the stream sends it: each word with its leading space."""
    parts = text.split(" ")
    return [parts[0]] + [" " + p for p in parts[1:]]


def _usage(b: Behaviour) -> dict:
    completion_tokens = b.completion_tokens if b.completion_tokens is not None else len(words(b.reply_text))
    return {
        "prompt_tokens": b.prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": b.prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": b.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": b.reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _wants_tools(body: dict, b: Behaviour) -> bool:
    return bool(body.get("tools")) and bool(b.tool_calls) and body.get("tool_choice") != "none"


def completion(body: dict, b: Behaviour) -> dict:
    if _wants_tools(body, b):
        message = {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": t.id, "type": "function", "function": {"name": t.name, "arguments": t.arguments}}
                for t in b.tool_calls
            ],
            "refusal": None,
            "annotations": [],
        }
        finish = "tool_calls"
    else:
        message = {"role": "assistant", "content": b.reply_text, "refusal": None, "annotations": []}
        finish = "stop"
    if b.reasoning_text:
        message["reasoning_content"] = b.reasoning_text  # DeepSeek's field
    return {
        "id": "chatcmpl-fake0001",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", ""),
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": None if b.omit_usage else _usage(b),
        "service_tier": "default",
        "system_fingerprint": "fp_fake",
    }


def _compact(obj) -> bytes:
    # OpenAI's stream chunks are compact JSON; gateways may rely on the exact bytes.
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def stream_events(body: dict, b: Behaviour) -> list[bytes]:
    """Every SSE data payload of one streamed reply, `[DONE]` last."""
    include_usage = bool((body.get("stream_options") or {}).get("include_usage")) and not b.omit_usage
    base = {
        "id": "chatcmpl-fake0001",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": body.get("model", ""),
        "service_tier": "default",
        "system_fingerprint": "fp_fake",
    }

    def chunk(delta: dict, finish: str | None = None) -> bytes:
        obj = dict(base, choices=[{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}])
        if include_usage:
            obj["usage"] = None
        return _compact(obj)

    events = [chunk({"role": "assistant", "content": "", "refusal": None})]
    # DeepSeek streams its reasoning first, content null.
    events.extend(chunk({"content": None, "reasoning_content": w}) for w in words(b.reasoning_text) if b.reasoning_text)
    if _wants_tools(body, b):
        for index, t in enumerate(b.tool_calls):
            first = {"index": index, "id": t.id, "type": "function", "function": {"name": t.name, "arguments": ""}}
            events.append(chunk({"tool_calls": [first]}))
            half = len(t.arguments) // 2
            for piece in (t.arguments[:half], t.arguments[half:]):
                events.append(chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}))
        events.append(chunk({}, "tool_calls"))
    else:
        events.extend(chunk({"content": w}) for w in words(b.reply_text))
        events.append(chunk({}, "stop"))
    if include_usage:
        events.append(_compact(dict(base, choices=[], usage=_usage(b))))
    events.append(b"[DONE]")
    return events


def error_json(status: int, b: Behaviour) -> dict:
    err_type, code = ERROR_BODIES.get(status, ("server_error", None))
    message = b.error_message or DEFAULT_ERROR_MESSAGES.get(status, "Upstream error.")
    param = "messages" if status == 400 else None
    return {"error": {"message": message, "type": err_type, "param": param, "code": code}}


class OpenAIWire:
    """OpenAI chat completions. Every wire module offers these four functions."""

    @staticmethod
    def is_stream(path: str, body: dict) -> bool:
        return bool(body.get("stream"))

    @staticmethod
    def reply_json(path: str, body: dict, b: Behaviour) -> dict:
        return completion(body, b)

    @staticmethod
    def stream_frames(path: str, body: dict, b: Behaviour) -> list[bytes]:
        return [
            b"data: " + event + b"\n\n" for event in stream_events(body, b) if not (b.omit_done and event == b"[DONE]")
        ]

    error_json = staticmethod(error_json)


# --- OpenAI embeddings --------------------------------------------------------------

EMBEDDING_DIMENSIONS = 8


def embedding_vector(text: str, dimensions: int = EMBEDDING_DIMENSIONS) -> list[float]:
    """A small vector derived from the text's hash: equal texts, equal vectors, on every run."""
    digest = hashlib.sha256(text.encode()).digest()
    return [round((digest[i % len(digest)] - 128) / 128, 6) for i in range(dimensions)]


def _embedding_inputs(body: dict) -> list[str]:
    value = body.get("input")
    items = [value] if isinstance(value, str) else list(value or ())
    if items and all(isinstance(item, int) for item in items):
        items = [items]  # one input given as token ids
    return [item if isinstance(item, str) else json.dumps(item) for item in items]


class OpenAIEmbeddingsWire:
    """OpenAI's POST /embeddings: CreateEmbeddingResponse, floats or base64 (little-endian float32) as asked.

    `usage.prompt_tokens` is Behaviour.prompt_tokens (left out with omit_usage).
    """

    @staticmethod
    def is_stream(path: str, body: dict) -> bool:
        return False

    @staticmethod
    def reply_json(path: str, body: dict, b: Behaviour) -> dict:
        dimensions = body.get("dimensions") or EMBEDDING_DIMENSIONS
        data = []
        for index, text in enumerate(_embedding_inputs(body)):
            vector = embedding_vector(text, dimensions)
            if body.get("encoding_format") == "base64":
                vector = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": vector})
        reply = {"object": "list", "data": data, "model": body.get("model", "")}
        if not b.omit_usage:
            reply["usage"] = {"prompt_tokens": b.prompt_tokens, "total_tokens": b.prompt_tokens}
        return reply

    @staticmethod
    def stream_frames(path: str, body: dict, b: Behaviour) -> list[bytes]:
        raise AssertionError("embeddings do not stream")

    error_json = staticmethod(error_json)


def main() -> None:  # pragma: no cover - handy by hand: python -m tests.fake_upstream
    fake = FakeUpstream().start()
    print(fake.base_url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        fake.stop()


if __name__ == "__main__":  # pragma: no cover
    main()
