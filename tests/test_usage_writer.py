"""Usage records that move no money are written in batches by one thread per process
(billing/usage_writer.py); these check what it promises: one INSERT for many, nothing lost."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from billing import usage_writer as writer_module
from billing.models import UsageRecord
from billing.services import usage_record
from billing.usage_writer import batching, usage_writer

pytestmark = pytest.mark.django_db(transaction=True)


def record(user, request_id: str, **fields) -> None:
    defaults = {
        "api_key_id": None,
        "model": "test-model",
        "upstream": "up",
        "upstream_model": "m",
        "endpoint": "chat.completions",
        "stream": False,
        "status_code": 200,
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "cost_micro_usd": 7,
    }
    usage_record(request_id=request_id, user_id=user.id, **{**defaults, **fields})


def test_outside_batching_a_record_is_written_at_once(user_factory):
    user = user_factory(password=None)
    record(user, "req_now")
    assert UsageRecord.objects.filter(request_id="req_now").exists()


def test_records_closed_together_share_one_insert(user_factory):
    user = user_factory(password=None)
    writer_queries = []
    original = writer_module._UsageWriter._write

    def counted(self, batch, **options):
        with CaptureQueriesContext(connection) as queries:
            try:
                return original(self, batch, **options)
            finally:
                writer_queries.extend(q["sql"] for q in queries.captured_queries)

    threads = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(writer_module._UsageWriter, "_write", counted)
        for n in range(20):

            def close(n=n):
                with batching():
                    record(user, f"req_batch_{n}")

            threads.append(threading.Thread(target=close))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert usage_writer.flush(timeout=10)

    ids = set(UsageRecord.objects.values_list("request_id", flat=True))
    assert ids == {f"req_batch_{n}" for n in range(20)}
    inserts = [sql for sql in writer_queries if sql.startswith("INSERT")]
    assert 1 <= len(inserts) < 20  # many records per statement


def test_a_record_the_database_refuses_does_not_keep_the_others_out(user_factory, caplog):
    user = user_factory(password=None)
    with batching():
        record(user, "req_good_1")
        record(user, "x" * 200)  # longer than the column (PostgreSQL refuses it; SQLite keeps it)
        record(user, "req_good_2")
    assert usage_writer.flush(timeout=10)

    ids = set(UsageRecord.objects.values_list("request_id", flat=True))
    assert {"req_good_1", "req_good_2"} <= ids


def test_records_wait_while_the_database_is_unavailable_and_are_written_after(user_factory, monkeypatch):
    user = user_factory(password=None)
    from django.db import OperationalError

    from billing import services

    failures = {"left": 2}
    real_insert = services.usage_records_insert

    def flaky(rows):
        if failures["left"] > 0:
            failures["left"] -= 1
            raise OperationalError("the database is restarting")
        real_insert(rows)

    monkeypatch.setattr(services, "usage_records_insert", flaky)
    monkeypatch.setattr(writer_module, "RETRY_SECONDS", 0.05)
    with batching():
        record(user, "req_retry_1")
        record(user, "req_retry_2")
    assert usage_writer.flush(timeout=10)

    assert failures["left"] == 0
    assert set(UsageRecord.objects.values_list("request_id", flat=True)) == {"req_retry_1", "req_retry_2"}


def test_records_that_move_money_are_never_queued(user_factory):
    user = user_factory(password=None, plan="pro")
    with batching():
        record(user, "req_charged", charge_balance=True)
    assert UsageRecord.objects.filter(request_id="req_charged").exists()  # written at once, with its charge


def test_a_retry_after_a_commit_that_went_through_writes_nothing_twice(user_factory, monkeypatch):
    from django.db import OperationalError

    from billing import services

    user = user_factory(password=None)
    real_insert = services.usage_records_insert
    broke = {"once": True}

    def commits_then_breaks(rows):
        real_insert(rows)
        if broke["once"]:
            broke["once"] = False
            raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(services, "usage_records_insert", commits_then_breaks)
    monkeypatch.setattr(writer_module, "RETRY_SECONDS", 0.05)
    with batching():
        for n in range(3):
            record(user, f"req_once_{n}")
    assert usage_writer.flush(timeout=10)

    ids = sorted(UsageRecord.objects.values_list("request_id", flat=True))
    assert ids == ["req_once_0", "req_once_1", "req_once_2"]


def test_a_record_that_cannot_be_stored_is_left_out_and_the_others_written(user_factory):
    user = user_factory(password=None)
    with batching():
        record(user, "req_fine_1")
        record(user, "req_too_big", prompt_tokens=2**70)  # past a bigint: no database can store it
        record(user, "req_fine_2")
    assert usage_writer.flush(timeout=10)

    assert set(UsageRecord.objects.values_list("request_id", flat=True)) == {"req_fine_1", "req_fine_2"}


def test_a_full_queue_hands_the_record_back_to_its_own_thread(user_factory, monkeypatch):
    monkeypatch.setattr(writer_module, "QUEUE_ROWS", 0)
    user = user_factory(password=None)
    with batching():
        record(user, "req_own_thread")
        assert UsageRecord.objects.filter(request_id="req_own_thread").exists()  # written before returning
