"""Beluga and its workers as real processes: gunicorn on the test database, for the tests that
kill a worker, stop the server or need two processes to share state.

They need PostgreSQL and Redis, which the processes share with the test (`ON_POSTGRES_AND_REDIS`).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent
ON_POSTGRES_AND_REDIS = settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and bool(
    settings.REDIS_URL
)
# Variables of the test's own environment that must not reach the servers it starts.
_EXTERNAL = ("DEBUG", "DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "PORT", "BIND")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def database_url() -> str:
    """The test database (pytest-django's test_<name>), as a URL for the processes we start."""
    db = connection.settings_dict
    auth = quote(db["USER"] or "", safe="")
    if db["PASSWORD"]:
        auth += ":" + quote(db["PASSWORD"], safe="")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{quote(db['NAME'], safe='')}"


def server_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in _EXTERNAL}
    env |= {
        "DJANGO_SETTINGS_MODULE": "gateway.settings",
        "SECRET_KEY": "sweeper-test-not-secret",
        "ALLOWED_HOSTS": "127.0.0.1",
        "BELUGA_DATA_DIR": str(data_dir),
        "DATABASE_URL": database_url(),
        "DATABASE_POOL_MIN": "1",
        "DATABASE_POOL_MAX": "4",
        "REDIS_URL": settings.REDIS_URL,
        "CACHE_KEY_PREFIX": settings.CACHES["default"].get("KEY_PREFIX", "beluga"),
        "LOG_LEVEL": "WARNING",
    }
    return env | extra


def stop_process(proc: subprocess.Popen, *, grace: float) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def children_of(pid: int) -> list[int]:
    """The live child processes of `pid` (from /proc: gunicorn's workers are its master's children)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == pid and state != "Z":
            found.append(int(entry.name))
    return found


def wait_for(condition, *, timeout: float, what: str, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            tail = f"\n--- {log.name} ---\n{log.read_text()[-4000:]}" if log and log.exists() else ""
            pytest.fail(f"timed out after {timeout} s waiting for {what}{tail}")
        time.sleep(0.05)


class Server:
    def __init__(self, proc: subprocess.Popen, url: str, log: Path) -> None:
        self.proc = proc
        self.url = url
        self.log = log

    def worker_pid(self) -> int:
        return wait_for(lambda: children_of(self.proc.pid), timeout=15, what="a gunicorn worker", log=self.log)[0]


def start_gunicorn(tmp_path: Path, **env: str) -> Server:
    """Beluga under gunicorn on the test database; `env` adds to (or overrides) its environment.
    Stop it with `stop_process(server.proc, grace=...)`."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = server_env(
        tmp_path, **{"DEBUG": "0", "WEB_CONCURRENCY": "1", "GUNICORN_THREADS": "8", **env, "BIND": f"127.0.0.1:{port}"}
    )
    log = tmp_path / "gunicorn.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "gateway.wsgi"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:

        def listening() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"gunicorn exited with {proc.returncode}:\n{log.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return True
            except OSError:
                return False

        wait_for(listening, timeout=30, what="gunicorn to listen", log=log)
    except BaseException:
        stop_process(proc, grace=5)
        raise
    return Server(proc, f"http://127.0.0.1:{port}", log)


@pytest.fixture
def beluga_server(transactional_db, tmp_path):
    """Beluga under gunicorn (one worker), on the test database, holds expiring after 1 s."""
    server = start_gunicorn(tmp_path, BELUGA_RESERVATION_TIMEOUT_SECONDS="1")
    try:
        yield server
    finally:
        stop_process(server.proc, grace=40)
