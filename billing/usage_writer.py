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
wait, and the process's exit) returns once every queued record is written.
A database error keeps the records queued and retries every second; a
record the database refuses on its own (a constraint) is logged and left
out, so that it cannot hold the others back. A process killed outright loses
what it had queued, at most `BATCH_DELAY_SECONDS` of records, as it loses
the answers it had not closed yet.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import DatabaseError, DataError, IntegrityError, connection

logger = logging.getLogger("beluga.billing")

BATCH_DELAY_SECONDS = 0.02  # how long a record waits for others to share its INSERT
BATCH_ROWS = 500  # at most this many records per INSERT
RETRY_SECONDS = 1.0

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
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def add(self, values: tuple) -> None:
        with self._changed:
            self._rows.append(values)
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                # Started on first use, in the process that writes (a forked worker starts its own).
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, name="beluga-usage-writer", daemon=True)
                self._thread.start()
            self._changed.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued record is written; False when `timeout` ran out first."""
        with self._changed:
            return self._changed.wait_for(lambda: not self._rows and not self._writing, timeout=timeout)

    def _run(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: bool(self._rows))
            time.sleep(BATCH_DELAY_SECONDS)
            with self._changed:
                batch, self._rows = self._rows[:BATCH_ROWS], self._rows[BATCH_ROWS:]
                self._writing = len(batch)
            try:
                unwritten = self._write(batch)
            except Exception:  # noqa: BLE001 - the thread must outlive any one failure
                logger.exception("writing %d usage records failed", len(batch))
                unwritten = batch
            with self._changed:
                self._rows[:0] = unwritten  # first in line again
                self._writing = 0
                idle = not self._rows
                self._changed.notify_all()
            if unwritten:
                time.sleep(RETRY_SECONDS)
            elif idle:
                connection.close()  # back to the pool while nothing waits (one take per batch, not per record)

    def _write(self, batch: list[tuple]) -> list[tuple]:
        """Write `batch`; returns the records to try again (the database is unavailable)."""
        from billing.services import usage_records_insert

        try:
            usage_records_insert(batch)
            return []
        except _REFUSED:
            # One record is refused: write them one by one, leaving that one out.
            for index, values in enumerate(batch):
                try:
                    usage_records_insert([values])
                except _REFUSED:
                    logger.error("usage record %s refused by the database; left out", values[0], exc_info=True)
                except DatabaseError:
                    return self._unavailable(batch[index:])
            return []
        except DatabaseError:
            return self._unavailable(batch)

    def _unavailable(self, rows: list[tuple]) -> list[tuple]:
        logger.warning("%d usage records not written yet (database unavailable); retrying", len(rows), exc_info=True)
        connection.close()
        return rows


_REFUSED = (IntegrityError, DataError)  # the record itself, not the database's state


usage_writer = _UsageWriter()


@atexit.register
def _flush_at_exit() -> None:
    # gunicorn's worker exits normally on a graceful stop, after the after-response pool's threads
    # were joined; its records are queued by then.
    usage_writer.flush(timeout=25)
