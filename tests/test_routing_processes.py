"""Breakers are shared: failures seen by one gunicorn process open the breaker for another.

Two Beluga servers (separate gunicorn masters, one worker each) on the test's PostgreSQL and
Redis, in front of the same fake upstreams. PostgreSQL + Redis only (the CI runs it there).
"""

from __future__ import annotations

import time

import pytest
import requests

from tests.fake_upstream import FakeUpstream
from tests.fixtures_gateway import chat_body
from tests.fixtures_servers import ON_POSTGRES_AND_REDIS, start_gunicorn, stop_process
from tests.test_routing import add_upstream, make_model

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not ON_POSTGRES_AND_REDIS, reason="needs PostgreSQL and Redis, shared with the servers"),
]


@pytest.fixture
def two_fakes():
    fakes = [FakeUpstream().start() for _ in range(2)]
    yield fakes
    for fake in fakes:
        fake.stop()


def _call(server, raw_key: str) -> requests.Response:
    return requests.post(
        f"{server.url}/v1/chat/completions",
        json=chat_body(),
        headers={"Authorization": f"Bearer {raw_key}"},
        timeout=10,
    )


def test_a_breaker_opened_in_one_process_is_open_in_another(transactional_db, tmp_path, api_key, two_fakes):
    _, raw_key = api_key
    a, b = two_fakes
    model = make_model()
    add_upstream(model, "a", a.base_url, priority=0)
    add_upstream(model, "b", b.base_url, priority=1)
    a.fail_with(status=503)
    env = {
        "BELUGA_BREAKER_MIN_CALLS": "3",
        "BELUGA_BREAKER_COOLDOWN_SECONDS": "60",
        "BELUGA_BREAKER_REFRESH_SECONDS": "0.2",
        "BELUGA_CATALOG_CACHE_SECONDS": "0",
    }
    first = start_gunicorn(tmp_path / "one", **env)
    second = start_gunicorn(tmp_path / "two", **env)
    try:
        # The second process routes to `a` first while it is closed (its own view of the breaker).
        a.reset()
        assert _call(second, raw_key).headers["X-Beluga-Upstream"] == "a"
        a.reset()
        a.fail_with(status=503)

        for _ in range(3):
            response = _call(first, raw_key)
            assert response.status_code == 200 and response.headers["X-Beluga-Upstream"] == "b"
        reached = len(a.chat_requests)
        # Failures seen by the first process (with the second's one success: 2 of 3 failed, or 3 of 4).
        assert reached in (2, 3)
        assert _call(first, raw_key).status_code == 200
        assert len(a.chat_requests) == reached  # open in the first process
        time.sleep(0.5)  # the second process re-reads the shared states every 0.2 s

        for _ in range(3):
            response = _call(second, raw_key)
            assert response.status_code == 200 and response.headers["X-Beluga-Upstream"] == "b"
        assert len(a.chat_requests) == reached  # the second process never tried `a`
    finally:
        stop_process(first.proc, grace=20)
        stop_process(second.proc, grace=20)
