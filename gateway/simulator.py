"""Beluga local simulator: a stand-alone upstream that speaks the OpenAI chat protocol.

It is not a model. It answers every chat completion with a friendly note that
repeats what was asked, so that `make run` works end to end (key, rate limit,
routing, usage, price) before any provider credential is set: the seeded demo
model `beluga-demo` routes to it. With real credentials, real models go to
their providers and this process only serves the demo model.

    python -m gateway.simulator --host 127.0.0.1 --port 8001

Endpoints: POST /v1/chat/completions (stream and not), POST /v1/images/generations
(a small generated PNG per image, as OpenAI's b64_json: the demo image model
`beluga-demo-image`), GET /v1/models.
Usage is counted as about one token per four characters. Standard library only
(no Django), so it starts in a blink and can run anywhere.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import struct
import sys
import time
import uuid
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NAME = "Beluga local simulator"
MODEL_ID = "beluga-simulator"
_STARTED = int(time.time())
_MAX_BODY = 20 * 1024 * 1024
_QUESTION_CHARS = 200


def demo_png(seed: str, size: int = 64) -> bytes:
    """A size × size PNG: a diagonal gradient in colours taken from `seed` (so each prompt looks its own)."""
    digest = hashlib.sha256(seed.encode()).digest()
    start, end = digest[:3], digest[3:6]
    rows = []
    for y in range(size):
        row = bytearray(b"\x00")  # filter: none
        for x in range(size):
            t = (x + y) / (2 * size - 2)
            row += bytes(int(a + (b - a) * t) for a, b in zip(start, end, strict=True))
        rows.append(bytes(row))

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"".join(rows))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def count_tokens(text: str) -> int:
    """About one token per four characters, never zero."""
    return max(1, (len(text) + 3) // 4)


def _text_of(content) -> str:
    """The text of a message's content: a string, or an array of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, dict) and part.get("type") == "text":
                texts.append(str(part.get("text", "")))
            elif isinstance(part, dict) and part.get("type") == "image_url":
                texts.append("[an image]")
        return " ".join(texts)
    return ""


def compose_answer(messages: list[dict]) -> str:
    """The simulator's reply: says what it is, and repeats the last user message."""
    question = ""
    for message in reversed(messages):
        if message.get("role") == "user":
            question = " ".join(_text_of(message.get("content")).split())
            break
    if len(question) > _QUESTION_CHARS:
        question = question[: _QUESTION_CHARS - 1] + "…"
    asked = f'You asked: "{question}".' if question else "You did not ask anything yet."
    return (
        f"Hello from the {NAME}! {asked} "
        "I am not a real model, only a stand-in so your first call through Beluga works. "
        "Set a provider key (for example OPENAI_API_KEY) and pick a real model for real answers."
    )


def _limit_words(words: list[str], max_tokens: int | None) -> tuple[list[str], str]:
    """Cut the reply at max_tokens (as the real API does), with finish_reason to match."""
    if not max_tokens or max_tokens <= 0:
        return words, "stop"
    kept, used = [], 0
    for word in words:
        used += count_tokens(word)
        if used > max_tokens:
            return kept or words[:1], "length"
        kept.append(word)
    return kept, "stop"


class SimulatorHandler(BaseHTTPRequestHandler):
    # HTTP/1.1 keeps connections alive, as a real upstream does for a pooled client.
    protocol_version = "HTTP/1.1"
    server_version = "BelugaSimulator/1.0"
    word_delay = 0.02  # seconds between streamed words, set from --word-delay-ms

    # --- routing ---------------------------------------------------------

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        if path == "/v1/models":
            self._send_json(200, {"object": "list", "data": [self._model_object()]})
        elif path == f"/v1/models/{MODEL_ID}":
            self._send_json(200, self._model_object())
        elif path in ("", "/health", "/v1/health"):
            self._send_json(200, {"status": "ok", "name": NAME})
        else:
            self._send_error(404, f"Unknown path {path or '/'} on the {NAME}.", "invalid_request_error", "not_found")

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        body = self._read_json()
        if body is None:
            return
        if path == "/v1/images/generations":
            self._images(body)
            return
        if path != "/v1/chat/completions":
            self._send_error(404, f"Unknown path {path} on the {NAME}.", "invalid_request_error", "not_found")
            return
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
            self._send_error(400, "'messages' must be a non-empty array of messages.", param="messages")
            return
        self._chat(body, messages)

    # --- images -----------------------------------------------------------

    def _images(self, body: dict) -> None:
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            self._send_error(400, "'prompt' is required.", param="prompt")
            return
        n = body.get("n") if isinstance(body.get("n"), int) else 1
        data = [{"b64_json": base64.b64encode(demo_png(f"{prompt}:{i}")).decode()} for i in range(max(1, min(n, 4)))]
        self._send_json(200, {"created": int(time.time()), "data": data})

    # --- chat ------------------------------------------------------------

    def _chat(self, body: dict, messages: list[dict]) -> None:
        model = str(body.get("model") or MODEL_ID)
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
        words, finish_reason = _limit_words(compose_answer(messages).split(" "), max_tokens)
        answer = " ".join(words)
        prompt_tokens = count_tokens(" ".join(_text_of(m.get("content")) for m in messages))
        completion_tokens = count_tokens(answer)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        head = {"id": f"chatcmpl-sim-{uuid.uuid4().hex[:24]}", "created": int(time.time()), "model": model}
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            self._stream(head, words, finish_reason, usage if include_usage else None)
            return
        self._send_json(
            200,
            {
                **head,
                "object": "chat.completion",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": answer, "refusal": None, "annotations": []},
                        "logprobs": None,
                        "finish_reason": finish_reason,
                    }
                ],
                "usage": usage,
                "system_fingerprint": "fp_beluga_simulator",
            },
        )

    def _stream(self, head: dict, words: list[str], finish_reason: str, usage: dict | None) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def chunk(delta: dict, finish: str | None = None) -> dict:
            event = {
                **head,
                "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            }
            if usage is not None:
                event["usage"] = None  # as OpenAI does: null on every chunk but the last
            return event

        try:
            self._write_event(chunk({"role": "assistant", "content": ""}))
            for i, word in enumerate(words):
                if self.word_delay:
                    time.sleep(self.word_delay)
                self._write_event(chunk({"content": word if i == len(words) - 1 else word + " "}))
            self._write_event(chunk({}, finish_reason))
            if usage is not None:
                self._write_event({**head, "object": "chat.completion.chunk", "choices": [], "usage": usage})
            self._write_chunk(b"data: [DONE]\n\n")
            self._write_chunk(b"")  # end of the chunked body
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client went away mid-stream; nothing to clean up

    # --- plumbing --------------------------------------------------------

    def _model_object(self) -> dict:
        return {"id": MODEL_ID, "object": "model", "created": _STARTED, "owned_by": "beluga"}

    def _read_json(self) -> dict | None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > _MAX_BODY:
            self._send_error(400, "Invalid Content-Length.")
            return None
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            self._send_error(400, "The request body is not valid JSON.")
            return None
        if not isinstance(body, dict):
            self._send_error(400, "The request body must be a JSON object.")
            return None
        return body

    def _write_event(self, event: dict) -> None:
        self._write_chunk(b"data: " + json.dumps(event, separators=(",", ":")).encode() + b"\n\n")

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _send_json(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_error(
        self, status: int, message: str, type_: str = "invalid_request_error", code: str | None = None, param=None
    ) -> None:
        self._send_json(status, {"error": {"message": message, "type": type_, "code": code, "param": param}})

    def log_message(self, format: str, *args) -> None:
        sys.stderr.write(f"simulator: {self.address_string()} {format % args}\n")


def make_server(host: str = "127.0.0.1", port: int = 8001, *, word_delay_ms: int = 20, quiet: bool = False):
    """A ready ThreadingHTTPServer (port 0 picks a free one); call serve_forever() on it."""
    handler = type(
        "ConfiguredSimulatorHandler",
        (SimulatorHandler,),
        {"word_delay": word_delay_ms / 1000, **({"log_message": lambda *a, **k: None} if quiet else {})},
    )
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m gateway.simulator", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--word-delay-ms", type=int, default=20, help="pause between streamed words (default 20)")
    parser.add_argument("--quiet", action="store_true", help="no access log")
    args = parser.parse_args(argv)
    server = make_server(args.host, args.port, word_delay_ms=args.word_delay_ms, quiet=args.quiet)
    host, port = server.server_address[:2]
    print(f"{NAME} on http://{host}:{port}/v1 (model {MODEL_ID}; any model name is answered)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
