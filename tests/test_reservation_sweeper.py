"""Holds left open by a crashed worker are released by the sweeper (billing.tasks.reservations_sweep_task).

The crash test is real: Beluga runs as a gunicorn subprocess on the test
database, its worker is SIGKILLed in the middle of a streamed call, and the
sweep runs in a real Celery worker subprocess fed through Redis. It needs
PostgreSQL and Redis, which those processes share with the test; the other
tests here run anywhere.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from types import ModuleType

import pytest
import requests
from django.conf import settings
from django.db.models import Sum
from django.utils import timezone

from billing.checks import ledger_discrepancies
from billing.models import Balance, LedgerEntry, Reservation, UsageRecord
from billing.services import reserve
from billing.tasks import reservations_sweep_task, spend_alerts_task
from tests.fixtures_gateway import chat_body
from tests.fixtures_servers import ON_POSTGRES_AND_REDIS, ROOT, children_of, server_env, stop_process, wait_for

pytestmark = pytest.mark.usefixtures("ledger_invariants")

CREDIT = 100_000_000  # what user_factory grants: 100 USD


# --- the task, in process (any database) -------------------------------------------------


def _held(user_id: int, api_key_id: int, request_id: str, amount: int) -> Reservation:
    hold = reserve(
        user_id=user_id, api_key_id=api_key_id, request_id=request_id, amount_micro_usd=amount, charges_balance=True
    )
    return Reservation.objects.get(id=hold.reservation_id)


def test_sweep_task_releases_expired_holds_and_leaves_live_ones(api_key):
    key_row, _ = api_key
    stale = _held(key_row.user_id, key_row.id, "req_dead_worker", 700_000)
    live = _held(key_row.user_id, key_row.id, "req_in_flight", 300_000)
    # The worker holding `stale` died long ago.
    Reservation.objects.filter(id=stale.id).update(expires_at=timezone.now() - timedelta(seconds=1))

    assert reservations_sweep_task.apply().get() == 1
    assert reservations_sweep_task.apply().get() == 0  # idempotent: a hold closes once

    stale.refresh_from_db()
    live.refresh_from_db()
    assert stale.state == Reservation.State.RELEASED
    assert live.state == Reservation.State.OPEN
    balance = Balance.objects.get(user_id=key_row.user_id)
    assert (balance.balance_micro_usd, balance.reserved_micro_usd) == (CREDIT, 300_000)
    [release] = LedgerEntry.objects.filter(kind=LedgerEntry.Kind.RELEASE)
    assert (release.reservation_id, release.hold_micro_usd, release.amount_micro_usd) == (stale.id, -700_000, 0)
    assert release.request_id == "req_dead_worker"


def test_spend_alerts_task_runs_billing_alerts(monkeypatch):
    calls = []
    alerts = ModuleType("billing.alerts")
    alerts.spend_alerts_send = lambda: calls.append("sent")
    monkeypatch.setitem(sys.modules, "billing.alerts", alerts)

    spend_alerts_task.apply()

    assert calls == ["sent"]


def test_beat_schedules_the_periodic_tasks():
    from gateway.celery import app

    app.loader.import_default_modules()  # autodiscovery, as a worker does at start
    schedule = {entry["task"]: entry for entry in settings.CELERY_BEAT_SCHEDULE.values()}

    assert set(schedule) == {
        "billing.tasks.reservations_sweep_task",
        "billing.tasks.spend_alerts_task",
        "gateway.tasks.idempotency_keys_purge_task",
        "gateway.tasks.media_tasks_resume_task",
        "gateway.tasks.media_files_purge_task",
        "gateway.tasks.upstream_probes_task",
    }
    assert set(schedule) <= set(app.tasks)
    assert schedule["billing.tasks.reservations_sweep_task"]["schedule"] == 60
    assert schedule["billing.tasks.spend_alerts_task"]["schedule"] == 300
    for entry in schedule.values():
        # A run no worker picked up before the next one is dropped, not piled up.
        assert entry["options"]["expires"] < entry["schedule"]


# --- the crash, for real (PostgreSQL + Redis) ---------------------------------------------


@pytest.fixture
def celery_worker(transactional_db, tmp_path):
    """A real Celery worker on the test database, consuming a queue of its own on the test's Redis."""
    queue = f"sweeper-test-{secrets.token_hex(4)}"
    log = tmp_path / "celery.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "gateway",
                "worker",
                "-Q",
                queue,
                "-n",
                f"{queue}@%h",
                "--concurrency",
                "1",
                "--without-mingle",
                "--without-gossip",
                "--without-heartbeat",
                "-l",
                "INFO",
            ],
            cwd=ROOT,
            env=server_env(tmp_path),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield queue, proc, log
    finally:
        stop_process(proc, grace=20)


def _stream_in_thread(url: str, raw_key: str) -> dict:
    """Start a streamed call in a thread that reads it until the connection ends; returns what happened."""
    outcome: dict = {"first_event": threading.Event(), "events": []}

    def run() -> None:
        try:
            with requests.post(
                f"{url}/v1/chat/completions",
                json=chat_body(stream=True),
                headers={"Authorization": f"Bearer {raw_key}"},
                stream=True,
                timeout=(5, 30),
            ) as response:
                outcome["status"] = response.status_code
                outcome["request_id"] = response.headers.get("X-Request-Id")
                for line in response.iter_lines():
                    if line.startswith(b"data:"):
                        outcome["events"].append(line)
                        outcome["first_event"].set()
        except requests.RequestException as error:  # the worker died with the stream open
            outcome["error"] = error

    outcome["thread"] = threading.Thread(target=run, name="streamed-call", daemon=True)
    outcome["thread"].start()
    return outcome


@pytest.mark.slow
@pytest.mark.skipif(
    not ON_POSTGRES_AND_REDIS,
    reason="needs PostgreSQL and Redis (DATABASE_URL=postgres://… REDIS_URL=redis://…): the gunicorn and Celery "
    "subprocesses it starts share them (the CI runs it there)",
)
def test_hold_of_a_worker_killed_mid_call_is_released_by_the_sweeper(
    beluga_server, celery_worker, chat_route, api_key, fake_upstream
):
    key_row, raw_key = api_key
    queue, celery_proc, celery_log = celery_worker
    fake_upstream.set(hold_after_events=1)  # the upstream sends its first chunk, then waits

    call = _stream_in_thread(beluga_server.url, raw_key)
    wait_for(call["first_event"].is_set, timeout=20, what="the stream's first event", log=beluga_server.log)
    reservation = wait_for(
        lambda: Reservation.objects.filter(user_id=key_row.user_id).first(),
        timeout=20,
        what="the call's reservation",
        log=beluga_server.log,
    )
    wait_for(lambda: fake_upstream.chat_requests, timeout=10, what="the upstream call", log=beluga_server.log)

    worker = beluga_server.worker_pid()
    os.kill(worker, signal.SIGKILL)
    wait_for(lambda: worker not in children_of(beluga_server.proc.pid), timeout=10, what="the worker to die")
    call["thread"].join(timeout=10)
    fake_upstream.release_stream()

    # The client saw the stream start, then break; the crash left the money held, and nothing
    # recorded or settled it.
    assert not call["thread"].is_alive()
    assert call["status"] == 200
    assert call["request_id"] == reservation.request_id
    assert len(call["events"]) == 1
    assert "error" in call
    reservation.refresh_from_db()
    assert reservation.state == Reservation.State.OPEN
    assert reservation.amount_micro_usd > 0
    assert UsageRecord.objects.count() == 0
    held = Balance.objects.get(user_id=key_row.user_id)
    assert (held.balance_micro_usd, held.reserved_micro_usd) == (CREDIT, reservation.amount_micro_usd)
    assert reservation.expires_at - reservation.created_at == timedelta(seconds=1)

    time.sleep(max(0.0, (reservation.expires_at - timezone.now()).total_seconds()) + 0.2)
    result = reservations_sweep_task.apply_async(queue=queue)
    released = wait_for(
        lambda: _result_or_none(result, celery_proc, celery_log),
        timeout=60,
        what="the Celery worker to run the sweep",
        log=celery_log,
    )

    assert released == (1,)
    reservation.refresh_from_db()
    assert reservation.state == Reservation.State.RELEASED
    assert reservation.closed_at is not None
    balance = Balance.objects.get(user_id=key_row.user_id)
    assert balance.reserved_micro_usd == 0
    assert balance.balance_micro_usd == CREDIT  # the dead call is charged nothing
    [release] = LedgerEntry.objects.filter(user_id=key_row.user_id, kind=LedgerEntry.Kind.RELEASE)
    assert release.reservation_id == reservation.id
    assert release.hold_micro_usd == -reservation.amount_micro_usd
    assert release.amount_micro_usd == 0
    assert release.request_id == reservation.request_id
    entries = LedgerEntry.objects.filter(user_id=key_row.user_id).aggregate(
        amount=Sum("amount_micro_usd"), hold=Sum("hold_micro_usd")
    )
    assert balance.balance_micro_usd == entries["amount"]
    assert balance.reserved_micro_usd == entries["hold"] == 0
    assert ledger_discrepancies() == []


def _result_or_none(result, proc: subprocess.Popen, log: Path) -> tuple | None:
    """The task's return value (in a tuple, so that 0 counts), or None while the worker has not run it."""
    if proc.poll() is not None:
        pytest.fail(f"the Celery worker exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
    if not result.ready():
        return None
    return (result.get(timeout=5),)
