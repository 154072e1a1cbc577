"""Answers are closed off their connection (gateway/after_response.py): a call's usage record is written
on a small pool, and a graceful stop still writes every one of them."""

from __future__ import annotations

import signal
import threading
import time

import psycopg
import pytest
import requests

from billing.checks import ledger_discrepancies
from billing.models import Balance, Reservation, UsageRecord
from gateway.after_response import AfterResponse
from tests.fixtures_gateway import chat_body
from tests.fixtures_servers import (
    ON_POSTGRES_AND_REDIS,
    children_of,
    database_url,
    start_gunicorn,
    stop_process,
)

CREDIT = 100_000_000  # what user_factory grants: 100 USD


class Answer:
    """A WSGI answer whose close() may wait for a gate, and notes the thread it ran in."""

    records_on_close = True

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.gate = gate
        self.closed_in: str | None = None

    def __iter__(self):
        return iter([b"{}"])

    def close(self) -> None:
        if self.gate is not None:
            assert self.gate.wait(10)
        self.closed_in = threading.current_thread().name


def test_answers_that_record_are_closed_on_the_pool_and_others_as_they_are():
    after = AfterResponse(threads=1)
    plain = type("Plain", (), {"close": lambda self: None})()
    assert after.wrap(plain) is plain
    gate = threading.Event()
    first = Answer(gate)
    wrapped = after.wrap(first)
    assert list(wrapped) == [b"{}"]
    wrapped.close()  # returns at once: the pool's thread waits for the gate
    assert first.closed_in is None
    # The only pool thread is busy: the next answer is closed in the caller's thread, as without a pool.
    second = Answer()
    after.wrap(second).close()
    assert second.closed_in == threading.current_thread().name
    assert after.wait_idle(timeout=0.2) is False
    gate.set()
    assert after.wait_idle(timeout=10)
    assert first.closed_in.startswith("beluga-record")
    wrapped.close()  # a second close is a no-op


def test_without_threads_every_answer_is_closed_in_the_request_thread():
    after = AfterResponse(threads=0)
    answer = Answer()
    assert after.wrap(answer) is answer


@pytest.mark.slow
@pytest.mark.skipif(
    not ON_POSTGRES_AND_REDIS,
    reason="needs PostgreSQL and Redis: the gunicorn subprocess shares them with the test (the CI runs it there)",
)
def test_records_wait_off_the_connection_and_a_graceful_stop_writes_them_all(
    transactional_db, tmp_path, chat_route, api_key, fake_upstream
):
    key_row, raw_key = api_key
    server = start_gunicorn(tmp_path, BELUGA_RECORD_THREADS="2")
    lock = psycopg.connect(database_url())
    try:
        # Nothing can write a usage record until the lock goes (reads still work).
        lock.execute("LOCK TABLE billing_usagerecord IN EXCLUSIVE MODE")
        costs = []
        with requests.Session() as session:  # one keep-alive connection for both calls
            for _ in range(2):
                response = session.post(
                    f"{server.url}/v1/chat/completions",
                    json=chat_body(),
                    headers={"Authorization": f"Bearer {raw_key}"},
                    timeout=10,
                )
                assert response.status_code == 200, response.text
                costs.append(int(response.headers["X-Request-Cost-Micro-Usd"]))
        # Both answers came back on the same connection while neither record could be written.
        assert UsageRecord.objects.count() == 0
        assert Reservation.objects.filter(state=Reservation.State.OPEN).count() == 2

        worker = server.worker_pid()
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(1.5)
        # The stopping worker waits for its two records rather than dropping them.
        assert worker in children_of(server.proc.pid)
        lock.rollback()
        assert server.proc.wait(timeout=40) == 0
    finally:
        lock.close()
        stop_process(server.proc, grace=5)

    records = list(UsageRecord.objects.order_by("id"))
    assert [r.status_code for r in records] == [200, 200]
    assert [r.cost_micro_usd for r in records] == costs
    assert all(cost > 0 for cost in costs)
    assert not Reservation.objects.filter(state=Reservation.State.OPEN).exists()
    balance = Balance.objects.get(user_id=key_row.user_id)
    assert (balance.balance_micro_usd, balance.reserved_micro_usd) == (CREDIT - sum(costs), 0)
    assert ledger_discrepancies() == []


@pytest.mark.slow
@pytest.mark.skipif(
    not ON_POSTGRES_AND_REDIS,
    reason="needs PostgreSQL and Redis: the gunicorn subprocess shares them with the test (the CI runs it there)",
)
def test_postpaid_records_are_batched_and_a_graceful_stop_writes_them_all(
    transactional_db, tmp_path, chat_route, api_key_factory, user_factory, fake_upstream
):
    _, raw_key = api_key_factory(user=user_factory(plan="enterprise", password=None))  # postpaid: no hold
    server = start_gunicorn(tmp_path, BELUGA_RECORD_THREADS="2")
    lock = psycopg.connect(database_url())
    try:
        lock.execute("LOCK TABLE billing_usagerecord IN EXCLUSIVE MODE")
        costs = []
        with requests.Session() as session:
            for _ in range(5):
                response = session.post(
                    f"{server.url}/v1/chat/completions",
                    json=chat_body(),
                    headers={"Authorization": f"Bearer {raw_key}"},
                    timeout=10,
                )
                assert response.status_code == 200, response.text
                costs.append(int(response.headers["X-Request-Cost-Micro-Usd"]))
        time.sleep(0.5)
        assert UsageRecord.objects.count() == 0  # queued for the writer, which waits on the lock

        worker = server.worker_pid()
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(1.5)
        assert worker in children_of(server.proc.pid)  # the stopping worker waits for its records
        lock.rollback()
        assert server.proc.wait(timeout=40) == 0
    finally:
        lock.close()
        stop_process(server.proc, grace=5)

    records = list(UsageRecord.objects.order_by("id"))
    assert [r.status_code for r in records] == [200] * 5
    assert sorted(r.cost_micro_usd for r in records) == sorted(costs)
    assert all(cost > 0 for cost in costs)
