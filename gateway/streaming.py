"""Relaying a provider's server-sent events to the client, and knowing how the stream ended.

The WSGI server iterates a RelayedStream and always calls its close(): after
the last chunk, when the client hangs up mid-stream (the next write fails),
and even when the client left before the first chunk was read. on_finish runs
exactly once in every one of those cases, so every stream is recorded once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import orjson

from gateway.protocols.conversation import ReplyBuilder, Usage
from gateway.providers.http import iter_sse_data

DONE = b"data: [DONE]\n\n"
logger = logging.getLogger("beluga.streaming")


@dataclass(slots=True)
class StreamOutcome:
    status: int = 200
    error_type: str = ""
    client_disconnected: bool = False
    usage: Usage | None = None  # as the upstream reported it
    delivered_chars: int = 0  # text, thinking and tool arguments sent: for the estimate without usage
    usage_so_far: Usage | None = None  # translated streams: what the upstream reported before it was cut
    finish_reason: str = ""


def stream_error_payload(message: str) -> bytes:
    """The `data:` payload that tells an OpenAI stream's client the upstream side failed."""
    error = {"message": message, "type": "service_unavailable_error", "code": "upstream_error", "param": None}
    return orjson.dumps({"error": error})


def stream_error_event(message: str) -> bytes:
    return b"data: " + stream_error_payload(message) + b"\n\n"


class TotalTimeout(Exception):
    """The upstream's total timeout (Upstream.total_timeout) ran out mid-stream."""


def _within(events: Iterator[bytes], deadline: float | None) -> Iterator[bytes]:
    if deadline is None:
        yield from events
        return
    for data in events:
        if time.perf_counter() > deadline:
            raise TotalTimeout
        yield data


def _broken(exc: Exception) -> tuple[str, str]:
    """The outcome's error type and the client's message for a stream the upstream side broke off."""
    if isinstance(exc, TotalTimeout):
        return "upstream_total_timeout", "The model provider took longer than this upstream's total timeout."
    return "upstream_stream_broken", "The connection to the model provider broke during the stream."


class _RecordedStream:
    """A response body the WSGI server iterates, then always closes: close() records it once."""

    deadline: float | None = None  # perf_counter time past which the stream is cut (the total timeout)
    upstream: object
    on_finish: Callable[[StreamOutcome], None]
    outcome: StreamOutcome
    completed: bool  # the client received the protocol's ending
    finished: bool
    _events: Iterator[bytes] | None

    def __iter__(self) -> Iterator[bytes]:
        self._events = self._events_out()
        return self._events

    def _upstream_events(self) -> Iterator[bytes]:
        """The upstream's SSE payloads; the first may already be read (pipeline._first_event)."""
        primed = getattr(self.upstream, "primed_events", None)
        return primed if primed is not None else iter_sse_data(self.upstream)

    def _events_out(self) -> Iterator[bytes]:
        raise NotImplementedError

    def _fill(self, outcome: StreamOutcome) -> None:
        """What the subclass knows of the stream: usage, what was delivered."""

    def close(self) -> None:
        """Called by the WSGI server in every case; records the stream once."""
        if self.finished:
            return
        self.finished = True
        try:
            if self._events is not None:
                self._events.close()
        finally:
            try:
                self.upstream.close()
            except Exception:  # noqa: BLE001 - a broken connection must not keep the stream from its record
                logger.warning("closing the upstream response failed", exc_info=True)
            outcome = self.outcome
            if not self.completed:
                outcome.client_disconnected = True
                outcome.error_type = outcome.error_type or "client_disconnected"
            try:
                self._fill(outcome)
            except Exception:  # noqa: BLE001 - record what is known rather than nothing
                logger.exception("reading a stream's outcome failed")
            self.on_finish(outcome)


class RelayedStream(_RecordedStream):
    """An iterable response body: the upstream's events, rewritten by `relay`, then [DONE]."""

    def __init__(self, *, upstream, relay, on_finish: Callable[[StreamOutcome], None]) -> None:
        self.upstream = upstream
        self.relay = relay  # a provider StreamRelay: .relay(data) -> bytes | None, .usage, .error
        self.on_finish = on_finish
        self.outcome = StreamOutcome()
        self.completed = False  # the client received [DONE]
        self.finished = False
        self._events: Iterator[bytes] | None = None

    def _events_out(self) -> Iterator[bytes]:
        outcome = self.outcome
        try:
            ended = False
            events = self._upstream_events()
            for data in _within(events, self.deadline):
                if data == b"[DONE]":
                    ended = True
                    break
                out = self.relay.relay(data)
                if out is None:
                    continue
                yield b"data: " + out + b"\n\n"
                if self.relay.error:
                    outcome.status, outcome.error_type = 502, "upstream_stream_error"
                    break
            if not ended and outcome.status == 200:
                # The upstream closed without [DONE]: tell the client rather than end silently.
                outcome.status, outcome.error_type = 502, "upstream_stream_incomplete"
                yield stream_error_event("The model provider ended the stream early.")
            yield DONE
            self.completed = True
            if ended:
                _drain(events)
        except Exception as exc:  # noqa: BLE001 - the upstream broke off mid-stream (reset, read timeout); a client hang-up is GeneratorExit, not caught
            outcome.status = 502
            outcome.error_type, message = _broken(exc)
            yield stream_error_event(message)
            yield DONE
            self.completed = True

    def _fill(self, outcome: StreamOutcome) -> None:
        outcome.usage = self.relay.usage
        outcome.delivered_chars = self.relay.delivered_chars
        outcome.finish_reason = self.relay.finish_reason


class TranslatedStream(_RecordedStream):
    """An iterable response body: the upstream's events read into the Conversation's
    stream events by the upstream protocol's `reader`, written out in the client's
    protocol by `writer`. Same guarantees as RelayedStream: on_finish runs once,
    in close(), whatever ended the stream."""

    def __init__(
        self, *, upstream, reader, writer, on_finish: Callable[[StreamOutcome], None], forward: bool = False
    ) -> None:
        self.upstream = upstream
        self.reader = reader
        # forward: the writer is a protocol's PassthroughFramer, which re-frames
        # each upstream event as it is (same protocol both sides); the reader
        # still reads it, for usage and what was delivered.
        self.writer = writer
        self.forward = forward
        self.on_finish = on_finish
        self.builder = ReplyBuilder()
        self.outcome = StreamOutcome()
        self.completed = False  # the client received the protocol's ending
        self.finished = False
        self._events: Iterator[bytes] | None = None

    def _events_out(self) -> Iterator[bytes]:
        outcome, reader, writer, builder = self.outcome, self.reader, self.writer, self.builder
        error = None
        try:
            for data in _within(self._upstream_events(), self.deadline):
                out = b""
                for event in reader.feed(data):
                    builder.add(event)
                    if not self.forward:
                        out += writer.write(event)
                if self.forward and not reader.error:
                    out = writer.frame(data, usage=builder.reply.usage)
                if out:
                    yield out
                if reader.error:
                    outcome.status, outcome.error_type = 502, "upstream_stream_error"
                    error = f"The model provider reported an error: {reader.error}"
                    break
                # Past the end marker, read on to the body's end: a late usage chunk
                # still counts, and urllib3 reuses only a connection read to its end.
            if error is None and not reader.ended:
                outcome.status, outcome.error_type = 502, "upstream_stream_incomplete"
                error = "The model provider ended the stream early."
        except Exception as exc:  # noqa: BLE001 - the upstream broke off mid-stream; a client hang-up is GeneratorExit
            outcome.status = 502
            outcome.error_type, error = _broken(exc)
        yield writer.close(error=error)
        self.completed = True

    def _fill(self, outcome: StreamOutcome) -> None:
        reply = self.builder.result()
        outcome.usage = reply.usage
        outcome.delivered_chars = reply.output_chars
        outcome.usage_so_far = getattr(self.reader, "usage_so_far", None)
        outcome.finish_reason = reply.stop_reason or ""


def _drain(events: Iterator[bytes]) -> None:
    """Read the upstream body's end (the chunked terminator right behind [DONE]).

    urllib3 returns a connection to its pool only when the body was read to
    the end; closing it earlier drops the connection, and every stream then
    paid for a new TCP connection (a third of a stream's CPU in the profile).
    The client already has [DONE], so a failure here changes nothing for it.
    """
    try:
        for _ in events:
            pass
    except Exception:  # noqa: BLE001, S110 - the connection is simply not reused
        pass
