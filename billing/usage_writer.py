"""Usage records written in batches, off the request path.

A call whose record moves no money (postpaid, no hold, nothing charged) is one
INSERT. Closed on gateway.after_response's pool, that INSERT, its commit and
the pool connection taken and given back for it were a quarter of a proxied
call's CPU on a saturated process, and at one client they ran beside the
client's next call (docs/performance.md). Here such records are queued for
one thread per process, which waits a few milliseconds for others to join
and writes them all in one INSERT.

Only records closed on the after-response pool are queued (`batching()`);
the request's own thread, and every record that moves money (holds,
charges: a transaction with ledger entries), write at once as before.

Nothing is dropped on a graceful stop: `flush` (gateway.after_response's
wait, and the process's exit) returns once every queued record is written;
what could not be is logged with its values. An unavailable database keeps
the records queued and retries every second (a retry first skips what the
broken try committed, so nothing is written twice); a record the database
refuses on its own is logged with its values and left out, so that it
cannot hold the others back. The queue is bounded: past `QUEUE_ROWS`, each
record is written by its own thread again, as before. A process killed
outright loses what it had queued, at most `BATCH_DELAY_SECONDS` of
records, as it loses the answers it had not closed yet.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import InterfaceError, OperationalError, connection

logger = logging.getLogger("beluga.billing")

BATCH_DELAY_SECONDS = 0.02  # how long a record waits for others to share its INSERT
BATCH_ROWS = 500  # at most this many records per INSERT
RETRY_SECONDS = 1.0
QUEUE_ROWS = 100_000  # past this (a long database outage), each record is written by its own thread again
EXIT_FLUSH_SECONDS = 20  # within gunicorn's graceful_timeout (30 s), after the held streams ended

_batching = threading.local()


@contextmanager
def batching() -> Iterator[None]:
    """Inside this block, this thread's plain usage records are queued (billing.services.usage_record)."""
    _batching.on = True
    try:
        yield
    finally:
        _batching.on = False


def is_batching() -> bool:
    return getattr(_batching, "on", False)


class _UsageWriter:
    def __init__(self) -> None:
        self._rows: list[tuple] = []
        self._writing = 0  # rows taken by the thread and not written yet
        self._retried = False  # the rows at the head of the queue met an unavailable database
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def add(self, values: tuple) -> bool:
        """Queue one record; False when it was not queued (the queue is full, or no thread can
        start: the process is stopping), and the caller writes it itself."""
        with self._changed:
            if len(self._rows) >= QUEUE_ROWS:
                return False
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                # Started on first use, in the process that writes (a forked worker starts its own).
                thread = threading.Thread(target=self._run, name="beluga-usage-writer", daemon=True)
                try:
                    thread.start()
                except RuntimeError:  # interpreter shutting down
                    return False
                self._thread, self._pid = thread, os.getpid()
            self._rows.append(values)
            self._changed.notify_all()
        return True

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued record is written; False when `timeout` ran out first."""
        with self._changed:
            return self._changed.wait_for(lambda: not self._rows and not self._writing, timeout=timeout)

    def unwritten(self) -> list[tuple]:
        with self._changed:
            return list(self._rows)

    def _run(self) -> None:
        from billing.services import usage_rows_per_insert

        while True:
            with self._changed:
                self._changed.wait_for(lambda: bool(self._rows))
            time.sleep(BATCH_DELAY_SECONDS)
            rows_per_insert = min(BATCH_ROWS, usage_rows_per_insert())
            with self._changed:
                batch, self._rows = self._rows[:rows_per_insert], self._rows[rows_per_insert:]
                self._writing, retried = len(batch), self._retried
            try:
                unwritten = self._write(batch, retried=retried)
            except Exception:  # noqa: BLE001 - the thread must outlive any one failure; keep the records
                logger.exception("writing %d usage records failed", len(batch))
                unwritten = batch
            with self._changed:
                self._rows[:0] = unwritten  # first in line again
                self._retried = bool(unwritten)
                self._writing = 0
                idle = not self._rows
                self._changed.notify_all()
            if unwritten:
                time.sleep(RETRY_SECONDS)
            elif idle:
                _close_connection()  # back to the pool while nothing waits (one take per batch, not per record)

    def _write(self, batch: list[tuple], *, retried: bool) -> list[tuple]:
        """Write `batch`; returns the records to try again (the database is unavailable)."""
        from billing.services import usage_records_insert, usage_records_written

        try:
            if retried:
                # The last try may have committed before its connection broke: skip what is there.
                written = usage_records_written(batch)
                batch = [values for values in batch if (values[0], values[-1]) not in written]
                if not batch:
                    return []
            usage_records_insert(batch)
            return []
        except _UNAVAILABLE:
            return self._unavailable(batch)
        except Exception:  # noqa: BLE001 - a record the database refuses: find it, write the others
            return self._write_each(batch)

    def _write_each(self, batch: list[tuple]) -> list[tuple]:
        from billing.services import usage_records_insert

        for index, values in enumerate(batch):
            try:
                usage_records_insert([values])
            except _UNAVAILABLE:
                return self._unavailable(batch[index:])
            except Exception:  # noqa: BLE001 - this record can never be written; the others must be
                logger.exception("usage record refused by the database, left out: %r", values)
        return []

    def _unavailable(self, rows: list[tuple]) -> list[tuple]:
        logger.warning("%d usage records not written yet (database unavailable); retrying", len(rows), exc_info=True)
        _close_connection()
        return rows


def _close_connection() -> None:
    try:
        connection.close()
    except Exception:  # noqa: BLE001 - a broken connection is dropped; the next write takes another
        logger.warning("closing the usage writer's connection failed", exc_info=True)


# The database itself cannot answer (down, restarting, the connection broke); any other error is
# the record's own, and retrying it would hold every record behind it back.
_UNAVAILABLE = (OperationalError, InterfaceError)


usage_writer = _UsageWriter()


@atexit.register
def _flush_at_exit() -> None:
    # gunicorn's worker exits normally on a graceful stop, after the after-response pool's threads
    # were joined; its records are queued by then.
    if not usage_writer.flush(timeout=EXIT_FLUSH_SECONDS):
        rows = usage_writer.unwritten()
        logger.error("%d usage records could not be written before the process exited: %r", len(rows), rows)
