"""The real server starts: gunicorn with gunicorn.conf.py, production settings, embedded SQLite.

This catches what in-process tests cannot: the gunicorn config, the WSGI entry
point, settings with DEBUG off, and static files served by WhiteNoise after
collectstatic.
"""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
# Variables that would point the server away from its own temporary SQLite setup.
_EXTERNAL = ("DEBUG", "DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "PORT", "BIND")


@pytest.fixture(autouse=True)
def _clean_shared_state():
    """Overrides conftest's: the server under test is another process with its own database."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server_url(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("beluga-data")
    port = _free_port()
    env = {key: value for key, value in os.environ.items() if key not in _EXTERNAL}
    env |= {
        "BELUGA_DATA_DIR": str(data_dir),
        "SECRET_KEY": "smoke-test-not-secret",
        "ALLOWED_HOSTS": "127.0.0.1",
        "DJANGO_SETTINGS_MODULE": "gateway.settings",
        "BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "1",
        "GUNICORN_THREADS": "4",
    }
    for command in (["migrate", "--noinput"], ["createcachetable"], ["collectstatic", "--noinput"]):
        subprocess.run([sys.executable, "manage.py", *command, "-v", "0"], cwd=ROOT, env=env, check=True, timeout=60)

    log = (data_dir / "gunicorn.log").open("w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "gateway.wsgi"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 15
        while True:
            if proc.poll() is not None:
                log.seek(0)
                pytest.fail(f"gunicorn exited with {proc.returncode}:\n{log.read()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("gunicorn did not listen within 15 s")
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_health_answers_json_with_a_request_id(server_url):
    response = requests.get(f"{server_url}/v1/health", timeout=10)

    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.headers.get("X-Request-Id")
    assert response.json()["status"] == "ok"


def test_static_files_are_served_by_whitenoise(server_url):
    response = requests.get(f"{server_url}/static/css/beluga.css", timeout=10)

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/css")
    assert "max-age" in response.headers.get("Cache-Control", "")
