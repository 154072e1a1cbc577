"""A small HTTP server on 127.0.0.1 answering every request with one canned reply, for pointing SDK clients at:

with CannedServer() as server:
    client = SomeSDK(base_url=server.base_url)
    server.answer = (200, "text/event-stream", b"data: ...\\n\\n")
    ...
    method, path, body = server.requests[-1]
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import NamedTuple


class Received(NamedTuple):
    method: str
    path: str
    body: bytes


class _Handler(BaseHTTPRequestHandler):
    """Keeps what it received and answers with the server's `answer` = (status, content type, bytes)."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):
        pass

    def _answer(self):
        canned: CannedServer = self.server.canned  # type: ignore[attr-defined]
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        canned.requests.append(Received(self.command, self.path, body))
        status, content_type, payload = canned.answer
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _answer


class CannedServer:
    """Answers every GET and POST with `answer`; `requests` lists what came in, oldest first."""

    def __init__(self, answer: tuple[int, str, bytes] = (200, "application/json", b"{}")):
        self.answer = answer
        self.requests: list[Received] = []
        self._server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None, "start the server first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> CannedServer:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.canned = self  # type: ignore[attr-defined]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> CannedServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
