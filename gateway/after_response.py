"""Closing an answer off its connection: the usage record is written on a small thread pool.

A WSGI server calls an answer's close() after its last byte, on the thread
that served the request, and gunicorn's gthread worker reads the connection's
next request only once close() has returned. Closing a model call's answer
writes its usage record and settles its hold: an INSERT and a commit, about a
millisecond of waiting on PostgreSQL. A keep-alive client's next call waited
for the previous call's record (bench/results/2026-12-03-after-response.md).
Here the close is handed to a pool thread and the connection goes back to the
server at once.

Only to a free thread: when every pool thread is busy (the server is saturated,
or the database is slow), close() runs in the request's own thread as before,
so a slow database slows clients down instead of filling a queue, and a busy
process does not pay for the hand-over. Nothing is dropped on a graceful
stop: the pool's threads finish every queued close before the process exits
(concurrent.futures joins them at interpreter exit, after gunicorn's worker has
finished its requests). A process killed outright loses the records of the
answers it had not closed yet, as it did before, when they were written in the
request's thread; their holds go back to their accounts through the sweeper.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from django.db import close_old_connections

from billing.usage_writer import batching, usage_writer

logger = logging.getLogger("beluga.after_response")


class AfterResponse:
    """The pool that closes answers marked `records_on_close` (their close() writes the call's record)."""

    def __init__(self, *, threads: int) -> None:
        self.threads = threads
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="beluga-record") if threads else None
        self._free = threading.BoundedSemaphore(max(1, threads))
        self._pending = 0
        self._idle = threading.Condition()

    def wrap(self, response):
        """What the WSGI server gets: the answer itself, or the answer with its close() deferred."""
        if self._pool is None or not getattr(response, "records_on_close", False):
            return response
        return _ClosedLater(response, self)

    def close_later(self, response) -> None:
        # The request's thread is done with the database; its connection goes back to the pool now.
        close_old_connections()
        if not self._free.acquire(blocking=False):
            response.close()  # every pool thread is busy: this request's thread writes its own record
            return
        with self._idle:
            self._pending += 1
        try:
            self._pool.submit(self._close, response)
        except RuntimeError:  # the pool is shut down: the process is stopping
            self._done()
            response.close()

    def _close(self, response) -> None:
        try:
            with batching():  # a record that moves no money joins others in one INSERT
                response.close()  # also sends request_finished, which gives this thread's connection back
        except Exception:
            logger.exception("closing an answer (its usage record) failed")
        finally:
            self._done()

    def _done(self) -> None:
        self._free.release()
        with self._idle:
            self._pending -= 1
            self._idle.notify_all()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until every handed-over answer is closed and its record written (tests; a stop);
        False on timeout."""
        started = time.monotonic()
        with self._idle:
            if not self._idle.wait_for(lambda: self._pending <= 0, timeout=timeout):
                return False
        left = None if timeout is None else max(0.0, timeout - (time.monotonic() - started))
        return usage_writer.flush(timeout=left)


class _ClosedLater:
    """The answer as the WSGI server iterates it; its close() is queued on the pool."""

    __slots__ = ("_response", "_after", "_closed")

    def __init__(self, response, after: AfterResponse) -> None:
        self._response = response
        self._after = after
        self._closed = False

    def __iter__(self):
        return iter(self._response)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._after.close_later(self._response)
