"""Circuit breakers per upstream and per upstream + model, shared by every process through the cache.

Each breaker is closed (calls go through), open (calls skip it until a
cool-down ends) or half-open (the cool-down ended: exactly one call, across
all instances, goes through as a probe; success closes the breaker, failure
opens it again). A breaker opens when, over the last BREAKER_WINDOW_SECONDS,
at least BREAKER_MIN_CALLS calls were made and BREAKER_FAILURE_RATIO of them
failed. Counts and states live in the shared cache (Redis, or the embedded
database cache), so a breaker opened by failures one worker saw is open for
all of them.

Cheap on the hot path: a process keeps its copy of the open states and
re-reads them at most every BREAKER_REFRESH_SECONDS (one MGET); successes are
counted locally and written once a second; failures are written at once and
decide the breaker in the same step. Half-open probes use an atomic `add`.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.core.cache.backends.redis import RedisCache

logger = logging.getLogger("beluga.breakers")

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"
BUCKETS = 6  # the window is counted in this many buckets
FLUSH_SECONDS = 1.0


def _conf(name: str):
    return settings.BELUGA[name]


def upstream_scope(upstream_id: int) -> str:
    return f"u{upstream_id}"


def model_scope(upstream_id: int, model: str) -> str:
    return f"m{upstream_id}:{model}"


def _open_key(scope: str) -> str:
    return f"brk:{scope}:open"


def _probe_key(scope: str) -> str:
    return f"brk:{scope}:probe"


def _closed_key(scope: str) -> str:
    return f"brk:{scope}:closed"


def _count_key(scope: str, kind: str, bucket: int) -> str:
    return f"brk:{scope}:{kind}:{bucket}"


def _bucket_seconds() -> float:
    return max(1.0, _conf("BREAKER_WINDOW_SECONDS") / BUCKETS)


@dataclass(frozen=True, slots=True)
class Admission:
    """A call let through: `probes` are the half-open breakers this call is the probe of."""

    scopes: tuple[str, ...]
    probes: tuple[str, ...] = ()


class _View:
    """This process's copy of the shared open states: scope -> time its cool-down ends."""

    def __init__(self) -> None:
        self.open_until: dict[str, float] = {}
        self.known: set[str] = set()
        self.refreshed_at = 0.0
        self.lock = threading.Lock()


_view = _View()
_pending: dict[tuple[str, str, int], int] = {}  # successes and failures not yet written
_pending_lock = threading.Lock()
_flushed_at = [0.0]


def _refresh(scopes: tuple[str, ...]) -> None:
    new = [s for s in scopes if s not in _view.known]
    stale = time.monotonic() - _view.refreshed_at > _conf("BREAKER_REFRESH_SECONDS")
    if not new and not stale:
        return
    if not new and not _view.lock.acquire(blocking=False):
        return  # another thread refreshes; this call uses the copy it has
    if new:
        _view.lock.acquire()
    try:
        _view.known.update(scopes)
        known = sorted(_view.known)
        try:
            values = cache.get_many([_open_key(s) for s in known])
        except Exception:  # noqa: BLE001 - a cache outage must not stop traffic: breakers read closed
            logger.warning("breaker states unavailable; treating them as closed", exc_info=True)
            values = {}
        _view.open_until = {s: float(values[_open_key(s)]) for s in known if _open_key(s) in values}
        _view.refreshed_at = time.monotonic()
    finally:
        _view.lock.release()


def admit(*, upstream_id: int, model: str) -> Admission | None:
    """Whether a call may go to this upstream for this model now; None while a breaker is open."""
    scopes = (upstream_scope(upstream_id), model_scope(upstream_id, model))
    _refresh(scopes)
    probes: list[str] = []
    now = time.time()
    for scope in scopes:
        until = _view.open_until.get(scope)
        if until is None:
            continue
        if until > now:
            probes_release(Admission(scopes=scopes, probes=tuple(probes)))
            return None
        # Cool-down over: half-open. One call across every instance is the probe; the others skip.
        probe_ttl = max(5.0, _conf("BREAKER_COOLDOWN_SECONDS"))
        try:
            won = cache.add(_probe_key(scope), 1, probe_ttl)
        except Exception:  # noqa: BLE001
            won = False
        if not won:
            probes_release(Admission(scopes=scopes, probes=tuple(probes)))
            return None
        probes.append(scope)
    return Admission(scopes=scopes, probes=tuple(probes))


def probes_release(admission: Admission) -> None:
    """Give back the half-open probes of a call that ended without a verdict on the upstream."""
    if admission.probes:
        try:
            cache.delete_many([_probe_key(scope) for scope in admission.probes])
        except Exception:  # noqa: BLE001 - the probe key expires on its own
            logger.warning("could not release breaker probes %s", admission.probes, exc_info=True)


def succeeded(admission: Admission) -> None:
    for scope in admission.probes:
        _close(scope)
    _count(admission.scopes, failed=False)
    _flusher_start()


def failed(admission: Admission, *, upstream_wide: bool = True) -> None:
    """Count a failure; open a breaker whose window now crosses the threshold (or whose probe failed).

    `upstream_wide`: the failure says something of the whole upstream (it could not be reached, timed
    out, broke a stream off). An error status of one model (a 5xx, a 429) counts against that model's
    breaker only, so one broken model does not take its upstream's other models down."""
    scopes = admission.scopes if upstream_wide else admission.scopes[1:]
    upstream_only = admission.scopes[:1] if not upstream_wide else ()
    try:
        for scope in admission.probes:
            if scope in scopes:
                _open(scope, reason="its half-open probe failed")
            else:
                cache.delete(_probe_key(scope))  # no verdict on this one: another call may probe it
        _count(scopes, failed=True)
        _count(upstream_only, failed=False)  # the upstream answered: it is reachable
        _flush()
        for scope in scopes:
            if scope in admission.probes:
                continue
            calls, failures = window_counts(scope)
            if calls >= _conf("BREAKER_MIN_CALLS") and failures >= calls * _conf("BREAKER_FAILURE_RATIO"):
                _open(scope, reason=f"{failures} of its last {calls} calls failed")
    except Exception:  # noqa: BLE001 - the shared cache is down: the call goes on, breakers stay as they are
        logger.warning("breaker counts unavailable; failure not counted", exc_info=True)


def _open(scope: str, *, reason: str) -> None:
    cooldown = _conf("BREAKER_COOLDOWN_SECONDS")
    until = time.time() + cooldown
    try:
        cache.set(_open_key(scope), until, cooldown + _conf("BREAKER_WINDOW_SECONDS"))
        cache.delete(_probe_key(scope))
    except Exception:  # noqa: BLE001
        logger.warning("could not open breaker %s", scope, exc_info=True)
    _view.open_until[scope] = until
    logger.warning("breaker %s opened for %.0f s: %s", scope, cooldown, reason)


def _close(scope: str) -> None:
    try:
        cache.delete_many([_open_key(scope), _probe_key(scope)])
        # Counts from before the close no longer decide (the outage they saw is over).
        cache.set(_closed_key(scope), time.time(), _conf("BREAKER_WINDOW_SECONDS") * 2)
    except Exception:  # noqa: BLE001
        logger.warning("could not close breaker %s", scope, exc_info=True)
    _view.open_until.pop(scope, None)
    logger.info("breaker %s closed: its probe succeeded", scope)


def cooldown_end(scope: str) -> None:
    """End an open breaker's cool-down now: the next call is its half-open probe (an active probe
    found its upstream answering again, so its models get a chance before their cool-down ends)."""
    try:
        if cache.get(_open_key(scope)) is None:
            return
        cache.set(_open_key(scope), time.time(), _conf("BREAKER_WINDOW_SECONDS"))
    except Exception:  # noqa: BLE001
        logger.warning("could not end the cool-down of %s", scope, exc_info=True)
        return
    _view.open_until[scope] = time.time()


_flusher = {"thread": None}


def _flusher_start() -> None:
    """Successes are written once a second even when the process gets no more calls (a quiet
    process must not leave the shared window short of its successes)."""
    if _flusher["thread"] is not None:
        return
    with _pending_lock:
        if _flusher["thread"] is not None:
            return

        def loop() -> None:
            while True:
                time.sleep(FLUSH_SECONDS)
                if _pending:
                    _flush()

        _flusher["thread"] = threading.Thread(target=loop, name="beluga-breaker-counts", daemon=True)
        _flusher["thread"].start()


def _count(scopes: tuple[str, ...], *, failed: bool) -> None:
    bucket = int(time.time() // _bucket_seconds())
    with _pending_lock:
        for scope in scopes:
            _pending[(scope, "n", bucket)] = _pending.get((scope, "n", bucket), 0) + 1
            if failed:
                _pending[(scope, "f", bucket)] = _pending.get((scope, "f", bucket), 0) + 1
    if time.monotonic() - _flushed_at[0] > FLUSH_SECONDS:
        _flush()


def _flush() -> None:
    with _pending_lock:
        if not _pending:
            return
        batch = dict(_pending)
        _pending.clear()
        _flushed_at[0] = time.monotonic()
    ttl = int(_conf("BREAKER_WINDOW_SECONDS") + 2 * _bucket_seconds())
    try:
        _incr_many({_count_key(scope, kind, bucket): n for (scope, kind, bucket), n in batch.items()}, ttl)
    except Exception:  # noqa: BLE001
        logger.warning("breaker counts could not be written", exc_info=True)


def _incr_many(counts: dict[str, int], ttl: int) -> None:
    if isinstance(cache, RedisCache):
        client = cache._cache.get_client(write=True)
        pipe = client.pipeline(transaction=False)
        for key, n in counts.items():
            full = cache.make_key(key)
            pipe.incrby(full, n)
            pipe.expire(full, ttl)
        pipe.execute()
        return
    for key, n in counts.items():
        cache.add(key, 0, ttl)
        try:
            cache.incr(key, n)
        except ValueError:  # expired in between
            cache.set(key, n, ttl)


def window_counts(scope: str) -> tuple[int, int]:
    """(calls, failures) of one breaker over its window, since it last closed."""
    size = _bucket_seconds()
    now_bucket = int(time.time() // size)
    buckets = range(now_bucket - BUCKETS + 1, now_bucket + 1)
    keys = [_count_key(scope, kind, b) for b in buckets for kind in ("n", "f")]
    values = cache.get_many([*keys, _closed_key(scope)])
    closed_at = values.get(_closed_key(scope))
    calls = failures = 0
    for b in buckets:
        if closed_at is not None and b * size < float(closed_at):
            continue
        calls += int(values.get(_count_key(scope, "n", b), 0))
        failures += int(values.get(_count_key(scope, "f", b), 0))
    return calls, failures


def shared_state(scope: str) -> str:
    """A breaker's state as the shared cache has it now (health pages; not the hot path)."""
    until = cache.get(_open_key(scope))
    if until is None:
        return CLOSED
    return OPEN if float(until) > time.time() else HALF_OPEN


def reset_for_tests() -> None:
    """Forget this process's copy and pending counts (tests clear the shared cache themselves)."""
    with _pending_lock:
        _pending.clear()
    _view.open_until.clear()
    _view.known.clear()
    _view.refreshed_at = 0.0
