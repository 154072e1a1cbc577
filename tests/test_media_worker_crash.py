"""A Celery worker killed (SIGKILL) while it polls a video job loses nothing: another worker picks the
task up once its lease runs out, finishes it, and the account is charged once.

Real processes: the worker is `celery -A gateway worker` on the test database and the test's broker
(Redis when REDIS_URL is set, the embedded filesystem transport otherwise), on a queue of its own.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connection

from billing.models import Balance, LedgerEntry, UsageRecord
from gateway.media.jobs import media_tasks_resume
from gateway.models import MediaTask
from tests.fake_media import mp4_bytes
from tests.fixtures_media_tasks import VIDEO_SECOND_PRICE
from tests.fixtures_servers import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ledger_invariants")]

ROOT = Path(__file__).resolve().parent.parent
_EXTERNAL = ("DEBUG", "DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "PORT", "BIND")


def _database_url() -> str:
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return "sqlite:///" + str(Path(db["NAME"]).resolve())
    auth = quote(db["USER"] or "", safe="")
    if db["PASSWORD"]:
        auth += ":" + quote(db["PASSWORD"], safe="")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{quote(db['NAME'], safe='')}"


def _worker(queue: str, log: Path) -> subprocess.Popen:
    env = {key: value for key, value in os.environ.items() if key not in _EXTERNAL}
    env |= {
        "DJANGO_SETTINGS_MODULE": "gateway.settings",
        "SECRET_KEY": "media-crash-test-not-secret",
        "BELUGA_DATA_DIR": str(settings.DATA_DIR),  # the filesystem broker's folders, when there is no Redis
        "DATABASE_URL": _database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "CACHE_KEY_PREFIX": settings.CACHES["default"].get("KEY_PREFIX", "beluga"),
        "BELUGA_MEDIA_TASK_QUEUE": queue,
        "BELUGA_MEDIA_TASK_LEASE_SECONDS": "2",
        "BELUGA_JOB_POLL_FIRST_SECONDS": "0.1",
        "BELUGA_JOB_POLL_MAX_SECONDS": "0.3",
        "LOG_LEVEL": "WARNING",
    }
    with log.open("a") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "gateway", "worker", "-Q", queue, "-n", f"{queue}-{log.stem}@%h"]
            + ["--concurrency", "1", "--without-mingle", "--without-gossip", "--without-heartbeat", "-l", "INFO"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: killed with its pool child
        )


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture
def sora(media_route):
    return media_route(
        "vid-sora",
        category="video",
        upstream_model="sora-2",
        media_options={"durations": [4, 8], "sizes": ["720x1280"]},
    )


def test_a_worker_killed_mid_poll_loses_nothing(
    transactional_db, client, sora, api_key, fake_media, settings, tmp_path
):
    queue = f"media-crash-{secrets.token_hex(4)}"
    settings.BELUGA = {**settings.BELUGA, "MEDIA_TASK_QUEUE": queue, "MEDIA_TASK_LEASE_SECONDS": 2}
    key_row, raw_key = api_key
    balance_before = Balance.objects.get(user_id=key_row.user_id).balance_micro_usd
    fake_media.script_video("never")
    log = tmp_path / "first.log"
    first = _worker(queue, log)
    second = None
    try:
        response = client.post(
            "/v1/videos",
            {"model": "vid-sora", "prompt": "x", "seconds": "8"},
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {raw_key}",
        )
        assert response.status_code == 200, response.content
        task_id = response.json()["id"]
        # The worker submitted the job and is polling it.
        wait_for(lambda: fake_media.get_count("/v1/videos/", "GET") >= 3, timeout=60, what="polls", log=log)

        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        task = MediaTask.objects.get(public_id=task_id)
        assert task.status == "in_progress"
        assert not task.billed
        fake_media.script_video("complete", video_id=task.upstream_job_id)

        log = tmp_path / "second.log"
        second = _worker(queue, log)
        # The message died with the first worker; the periodic resume sends it again once the
        # task is overdue and its lease has run out (here: at once, 2 s lease).
        time.sleep(2.5)
        assert media_tasks_resume(grace_seconds=0) == 1

        def completed():
            task.refresh_from_db()
            return task.status == "completed"

        wait_for(completed, timeout=60, what="the task to complete in the second worker", log=log)
    finally:
        _stop(first)
        if second is not None:
            _stop(second)

    assert fake_media.get_count("/v1/videos", "POST") == 1  # the job was not submitted twice
    assert UsageRecord.objects.count() == 1
    assert LedgerEntry.objects.filter(kind=LedgerEntry.Kind.SETTLE).count() == 1
    balance = Balance.objects.get(user_id=key_row.user_id)
    assert (balance.balance_micro_usd, balance.reserved_micro_usd) == (balance_before - 8 * VIDEO_SECOND_PRICE, 0)
    content = client.get(f"/v1/videos/{task_id}/content", HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    assert b"".join(content.streaming_content) == mp4_bytes()
