"""The retry budget: retries are at most a fraction of recent calls, so an outage does not multiply the load.

Per process, over the last minute in six buckets (Finagle's RetryBudget):
a retry is allowed while retries < RETRY_BUDGET_RATIO x calls + RETRY_BUDGET_MIN.
Every process keeps its own share, so the whole deployment keeps the same ratio.
"""

from __future__ import annotations

import threading
import time

from django.conf import settings

WINDOW_SECONDS = 60
BUCKETS = 6


class RetryBudget:
    def __init__(self) -> None:
        self._calls = [0] * BUCKETS
        self._retries = [0] * BUCKETS
        self._bucket = [0] * BUCKETS  # which time bucket each slot holds
        self._lock = threading.Lock()

    def _slot(self) -> int:
        bucket = int(time.time() // (WINDOW_SECONDS / BUCKETS))
        slot = bucket % BUCKETS
        if self._bucket[slot] != bucket:
            self._bucket[slot], self._calls[slot], self._retries[slot] = bucket, 0, 0
        return slot

    def call_started(self) -> None:
        with self._lock:
            self._calls[self._slot()] += 1

    def retry_allowed(self) -> bool:
        """Take one retry from the budget if there is one left."""
        with self._lock:
            slot = self._slot()
            oldest = self._bucket[slot] - BUCKETS + 1
            calls = sum(c for c, b in zip(self._calls, self._bucket, strict=True) if b >= oldest)
            retries = sum(r for r, b in zip(self._retries, self._bucket, strict=True) if b >= oldest)
            if retries >= settings.BELUGA["RETRY_BUDGET_RATIO"] * calls + settings.BELUGA["RETRY_BUDGET_MIN"]:
                return False
            self._retries[slot] += 1
            return True

    def reset(self) -> None:
        with self._lock:
            self._calls = [0] * BUCKETS
            self._retries = [0] * BUCKETS
            self._bucket = [0] * BUCKETS


retry_budget = RetryBudget()
