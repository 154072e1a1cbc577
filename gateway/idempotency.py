"""Idempotent requests: the `Idempotency-Key` header on the POST model endpoints, as Stripe has it.

A client that sends `Idempotency-Key: <key>` and retries with the same key (a
timeout, a dropped connection) gets the first call's answer again instead of a
second, billed, model call:

- **Scope.** One key per account (the user behind the API key, so all of an
  account's keys share them), for `IDEMPOTENCY_TTL_SECONDS` (24 hours) from the
  first call. After that the key is free again: the old row is replaced.
- **Claim.** The first call INSERTs a `running` row; the unique constraint on
  (user, key) lets exactly one call win, on however many instances. Every other
  call with the key reads the row instead:
  a different request (SHA-256 of method, path and body bytes) is a 422
  `idempotency_key_reused`; a call still running is a 409
  `idempotency_in_progress`; a finished one is replayed: the stored status,
  content type, body and the headers worth replaying (`REPLAYED_HEADERS`, not the
  rate-limit ones), with `Idempotent-Replayed: true` and the first call's id in
  `X-Beluga-Original-Request-Id` (the replay has its own `X-Request-Id`).
  A replay calls no upstream, writes no usage record and takes no rate-limit slot.
- **What is stored.** The final answer, whatever it is (a 200, a validation
  400, a 404 model), as Stripe does; EXCEPT answers a retry should re-run
  because nothing billable happened or the failure was transient: 5xx (the
  provider failed, timed out, or Beluga had a bug), 429 (a rate limit) and 402
  (no balance: the account may top up and retry), but for a 504 naming a media
  task that is still running (its retry gets the same task). Those release the key (the row
  is deleted), so the client retries with the same key. A failed upstream call is
  recorded at no cost, so a released retry still bills once. An exception the
  view does not turn into an ApiError (a bug, or an answer orjson cannot write;
  the middleware renders those) releases the key too, although it may follow a
  billed upstream answer: a 500 replayed for a day would be worse.
- **Streams** cannot be stored: the body is produced while the client reads it.
  The first call streams as usual and its row is marked done (`streamed`) when
  the response starts; a later call with the key gets a 409
  `idempotency_stream_replay` naming the first call's request id.
- **Crashed workers.** A row still `running` after `ABANDONED_AFTER_SECONDS`
  lost its worker (non-streamed calls end well before: streams are marked done
  when they start); the next call with the key takes it over.

Rows past the TTL are deleted when their key comes again, and by
`idempotency_keys_purge` (the Celery task `gateway.tasks.idempotency_keys_purge_task`).
Without the header, a request costs one dict lookup here.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from accounts.limits import BUCKET_CHAT, BUCKET_IMAGE
from gateway import pipeline
from gateway.errors import ApiError, InvalidRequest
from gateway.middleware import api_error_response
from gateway.models import IdempotencyKey

logger = logging.getLogger("beluga.gateway")

META_KEY = "HTTP_IDEMPOTENCY_KEY"  # the `Idempotency-Key` header as WSGI names it
REPLAYED = "Idempotent-Replayed"
ORIGINAL_REQUEST_ID = "X-Beluga-Original-Request-Id"
REPLAYED_HEADERS = (
    "X-Request-Cost-Micro-Usd",
    "X-Beluga-Dropped-Params",
    "X-Beluga-Token-Count",
    "X-Beluga-Task-Id",
    "x-should-retry",
)
MAX_KEY_LENGTH = 255
DEFAULT_TTL_SECONDS = 24 * 60 * 60
# Longer than a non-streamed call runs: it waits on its upstream for the read timeout (600 s by default).
ABANDONED_AFTER_SECONDS = 15 * 60
CLAIM_ATTEMPTS = 3
PURGE_BATCH = 5000


class IdempotencyInProgress(ApiError):
    status = 409
    type = "invalid_request_error"
    code = "idempotency_in_progress"


class IdempotencyStreamReplay(ApiError):
    status = 409
    type = "invalid_request_error"
    code = "idempotency_stream_replay"


class IdempotencyKeyReused(ApiError):
    status = 422
    type = "invalid_request_error"
    code = "idempotency_key_reused"


def idempotent(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Make a POST model endpoint honour `Idempotency-Key` (see the module docstring)."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        key = request.META.get(META_KEY)
        if key is None or request.method != "POST":
            return view(request, *args, **kwargs)
        return idempotent_call(request, key=key, call=lambda: view(request, *args, **kwargs))

    return wrapper


def _bucket_of(request: HttpRequest) -> str:
    """The rate-limit bucket the wrapped call counts in (images and videos: image), for a replay's headers."""
    path = request.path
    return BUCKET_IMAGE if "/images/" in path or "/videos" in path else BUCKET_CHAT


def idempotent_call(request: HttpRequest, *, key: str, call: Callable[[], HttpResponse]) -> HttpResponse:
    """`call()` once per (account, key): the first time for real, later the stored answer or a 409/422."""
    user_id = pipeline.authenticate(request, bucket=_bucket_of(request)).user_id
    if not key_is_valid(key):
        raise InvalidRequest(
            f"The Idempotency-Key header must be 1 to {MAX_KEY_LENGTH} printable ASCII characters.",
            code="invalid_idempotency_key",
        )
    fingerprint = request_fingerprint(request)
    row, claimed = idempotency_claim(user_id=user_id, key=key, fingerprint=fingerprint, request_id=request.request_id)
    if not claimed:
        return replay(row, fingerprint=fingerprint)
    try:
        response = call()
    except ApiError as error:
        response = api_error_response(request, error)
    except BaseException:
        # A bug (the middleware answers 500) or the worker stopping: a retry should run again.
        _quietly(idempotency_release, row=row)
        raise
    # A 504 naming a media task still running is an answer: a retry with the key gets the same task.
    if releases_key(response.status_code) and not response.has_header("X-Beluga-Task-Id"):
        _quietly(idempotency_release, row=row)
    else:
        _quietly(idempotency_finish, row=row, response=response)
    # A stream is still to be sent: it must not hold a pooled connection meanwhile (see the pipeline).
    pipeline.release_db_connection()
    return response


def key_is_valid(key: str) -> bool:
    return 0 < len(key) <= MAX_KEY_LENGTH and key.isascii() and key.isprintable()


def releases_key(status: int) -> bool:
    """Answers a retry with the same key should re-run rather than replay (see the module docstring)."""
    return status >= 500 or status in (402, 429)


def request_fingerprint(request: HttpRequest) -> str:
    """SHA-256 of method, path and body: a key sent again with another request is a client's mistake."""
    digest = hashlib.sha256(f"{request.method} {request.path}\n".encode())
    digest.update(request.body)
    return digest.hexdigest()


def ttl_seconds() -> int:
    return settings.BELUGA.get("IDEMPOTENCY_TTL_SECONDS", DEFAULT_TTL_SECONDS)


def is_stale(row: IdempotencyKey, *, now: datetime) -> bool:
    """A row no call may use any more: done and past the TTL, or running and abandoned."""
    limit = ABANDONED_AFTER_SECONDS if row.state == IdempotencyKey.State.RUNNING else ttl_seconds()
    return row.created_at < now - timedelta(seconds=limit)


def idempotency_claim(*, user_id: int, key: str, fingerprint: str, request_id: str) -> tuple[IdempotencyKey, bool]:
    """(row, True) when this call claimed the key; (the live row of an earlier call, False) otherwise."""
    for _ in range(CLAIM_ATTEMPTS):
        try:
            with transaction.atomic():
                row = IdempotencyKey.objects.create(
                    user_id=user_id, key=key, fingerprint=fingerprint, request_id=request_id
                )
            return row, True
        except IntegrityError:
            pass
        row = IdempotencyKey.objects.filter(user_id=user_id, key=key).first()
        if row is None:
            continue  # released meanwhile
        if not is_stale(row, now=timezone.now()):
            return row, False
        # Delete that row only (by id: a claim that replaced it meanwhile stays), then claim again;
        # callers racing here all meet the unique constraint again, and one wins.
        IdempotencyKey.objects.filter(pk=row.pk).delete()
    raise IdempotencyInProgress("Another request with this Idempotency-Key is in progress; retry later.")


def replay(row: IdempotencyKey, *, fingerprint: str) -> HttpResponse:
    """The stored answer of the call that claimed the key, or why there is none to give."""
    if not hmac.compare_digest(row.fingerprint, fingerprint):
        raise IdempotencyKeyReused(
            "This Idempotency-Key was already used with a different request (method, path or body). "
            "Use a new key for a new request."
        )
    original = {ORIGINAL_REQUEST_ID: row.request_id}
    if row.state == IdempotencyKey.State.RUNNING:
        raise IdempotencyInProgress(
            f"The request with this Idempotency-Key ({row.request_id}) is still in progress; retry later.",
            headers=original,
        )
    if row.streamed:
        raise IdempotencyStreamReplay(
            f"The request with this Idempotency-Key ({row.request_id}) was streamed, and a stream cannot be "
            "replayed. Use a new key to call again.",
            headers=original,
        )
    response = HttpResponse(bytes(row.body), status=row.status_code, content_type=row.content_type)
    for name, value in row.headers.items():
        response[name] = value
    response[REPLAYED] = "true"
    response[ORIGINAL_REQUEST_ID] = row.request_id
    return response


def idempotency_finish(*, row: IdempotencyKey, response: HttpResponse) -> None:
    """Store the claimed call's answer (a stream: only that it streamed) for replays."""
    streamed = response.streaming
    IdempotencyKey.objects.filter(pk=row.pk, state=IdempotencyKey.State.RUNNING).update(
        state=IdempotencyKey.State.DONE,
        streamed=streamed,
        status_code=response.status_code,
        content_type=response.get("Content-Type", ""),
        body=b"" if streamed else response.content,
        headers={name: response[name] for name in REPLAYED_HEADERS if response.has_header(name)},
    )


def idempotency_release(*, row: IdempotencyKey) -> None:
    """Free the key for a retry (the claimed row only: by id)."""
    IdempotencyKey.objects.filter(pk=row.pk).delete()


def _quietly(write, **kwargs) -> None:
    # The client's answer is ready (and maybe billed): a database hiccup must not turn it into a 500.
    # The row then stays running until it counts as abandoned.
    try:
        write(**kwargs)
    except DatabaseError:
        logger.exception("could not update idempotency key %s", kwargs["row"].pk)


def idempotency_keys_purge(*, now: datetime | None = None) -> int:
    """Delete the rows no call can use any more, in batches; the number deleted."""
    now = now or timezone.now()
    stale = Q(state=IdempotencyKey.State.DONE, created_at__lt=now - timedelta(seconds=ttl_seconds())) | Q(
        state=IdempotencyKey.State.RUNNING, created_at__lt=now - timedelta(seconds=ABANDONED_AFTER_SECONDS)
    )
    deleted = 0
    while True:
        batch = list(IdempotencyKey.objects.filter(stale).values_list("pk", flat=True)[:PURGE_BATCH])
        if not batch:
            return deleted
        deleted += IdempotencyKey.objects.filter(pk__in=batch).delete()[0]
