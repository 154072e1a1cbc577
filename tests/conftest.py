"""Shared fixtures: small factories for users, plans and keys, and a clean cache per test.

Fixtures for the fake upstream and live-server clients live in tests/fixtures_*.py
modules registered below, so that each area's fixtures stay with that area.
"""

import importlib
import threading
from types import SimpleNamespace

import pytest
from django.core.cache import cache
from django.core.servers.basehttp import ThreadedWSGIServer, WSGIServer

from accounts.models import Plan
from accounts.services import _last_used_seen, api_key_create, api_key_local_forget, user_create
from billing.services import balance_grant
from gateway.wsgi import application

pytest_plugins = [
    "tests.fixtures_gateway",
    "tests.fixtures_media",
    "tests.fixtures_media_tasks",
    "tests.fixtures_browser",
    "tests.fixtures_servers",
]


class _LiveRequests:
    """Requests the live server is still handling, until the WSGI server has closed their answers.

    Beluga writes a call's usage record when the server closes the answer, after its last byte
    went out (on gateway.after_response's pool): a test can see its answer before the record is
    written. Its table flush must wait for that, or PostgreSQL's TRUNCATE and the record's INSERT
    deadlock."""

    def __init__(self) -> None:
        self.count = 0
        self.idle = threading.Condition()

    def app(self, app):
        def counted(environ, start_response):
            with self.idle:
                self.count += 1
            try:
                result = app(environ, start_response)
            except BaseException:
                self._done()
                raise
            return _Closing(result, self._done)

        return counted

    def _done(self) -> None:
        with self.idle:
            self.count -= 1
            self.idle.notify_all()

    def wait_idle(self, timeout: float = 15) -> None:
        with self.idle:
            self.idle.wait_for(lambda: self.count <= 0, timeout=timeout)


class _Closing:
    def __init__(self, result, done) -> None:
        self.result, self.done = result, done

    def __iter__(self):
        return iter(self.result)

    def close(self) -> None:
        try:
            if hasattr(self.result, "close"):
                self.result.close()
        finally:
            done, self.done = self.done, None
            if done is not None:
                done()


_live_requests = _LiveRequests()
_set_app = ThreadedWSGIServer.set_app
ThreadedWSGIServer.set_app = lambda server, app: _set_app(server, _live_requests.app(app))

# The live server's listen backlog is Django's 10: a burst of concurrent clients (the ledger's
# 50-call test) would see connections refused, which a production server (gunicorn: 2048) never does.
WSGIServer.request_queue_size = 128


def _reseed_if_flushed() -> None:
    """Transactional tests end by flushing every table, seeds included; put the
    migrations' seed data back so that each test starts from a fresh `migrate`."""
    from django.apps import apps
    from django.db import connection

    from catalog.models import AIModel

    schema_editor = SimpleNamespace(connection=connection)
    if not Plan.objects.exists():
        importlib.import_module("accounts.migrations.0002_seed_plans").seed_plans(apps, schema_editor)
        importlib.import_module("accounts.migrations.0003_key_controls_signup_grant").seed_signup_grant(
            apps, schema_editor
        )
    if not AIModel.objects.exists():
        importlib.import_module("catalog.migrations.0002_seed_catalog").seed_catalog(apps, schema_editor)


_DB_FIXTURES = {"db", "transactional_db", "live_server", "django_db_reset_sequences"}


@pytest.fixture(autouse=True)
def _clean_shared_state(request):
    """Cache entries (key lookups, rate-limit windows) and the catalog snapshot must not leak between tests.

    The embedded cache lives in the database, so it is cleared only for tests that use one.
    """
    from catalog.selectors import catalog_cache_clear

    if _uses_db(request):
        request.getfixturevalue("transactional_db" if "transactional_db" in request.fixturenames else "db")
        cache.clear()
        _reseed_if_flushed()
    catalog_cache_clear()
    _last_used_seen.clear()
    api_key_local_forget()
    _routing_reset()
    yield
    if "live_server" in request.fixturenames:
        _live_requests.wait_idle()
        application.after_response.wait_idle(timeout=15)  # records written off the connection
    catalog_cache_clear()
    if "ledger_invariants" not in request.fixturenames and _uses_db(request):
        _assert_ledger_invariants()


def _routing_reset() -> None:
    """Each process's routing state (breaker copies, credential rotation, latency, retry budget)."""
    from gateway.routing import breakers, health, plan
    from gateway.routing.budget import retry_budget

    health._memo.clear()
    breakers.reset_for_tests()
    plan.reset_for_tests()
    retry_budget.reset()


def _uses_db(request) -> bool:
    return bool(request.node.get_closest_marker("django_db") or _DB_FIXTURES & set(request.fixturenames))


def _assert_ledger_invariants() -> None:
    from billing.checks import ledger_discrepancies

    assert ledger_discrepancies() == [], "the ledger and the cached balances disagree"


@pytest.fixture(autouse=True)
def _static_files_from_source(settings):
    """Pages under test link static files by their source names: the hashed names of
    the production manifest would point at whatever an earlier collectstatic left."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture
def plan_factory(db):
    def make(slug="free", **overrides):
        plan = Plan.objects.get(slug=slug)
        for field, value in overrides.items():
            setattr(plan, field, value)
        if overrides:
            plan.save()
        return plan

    return make


@pytest.fixture
def user_factory(db):
    counter = {"n": 0}

    def make(email=None, password="correct-horse-battery-staple", plan="free", credit_micro_usd=100_000_000):
        """A user on `plan`; prepaid accounts get `credit_micro_usd` (100 USD) on top of any sign-up credit."""
        counter["n"] += 1
        email = email or f"user{counter['n']}@example.com"
        user = user_create(email=email, password=password, plan=Plan.objects.get(slug=plan))
        if credit_micro_usd:
            balance_grant(user_id=user.id, amount_micro_usd=credit_micro_usd, reason="test credit")
        return user

    return make


@pytest.fixture
def api_key_factory(db, user_factory):
    """Returns (ApiKey row, raw key string)."""

    def make(user=None, name="test key", **kwargs):
        return api_key_create(user=user or user_factory(), name=name, **kwargs)

    return make


@pytest.fixture
def ledger_invariants(db):
    """After the test: every cached balance equals the sum of its ledger entries (billing/checks.py).

    Every test that uses the database gets the same check from _clean_shared_state; a module asks
    for it by name to say that it is a billing test."""
    yield
    _assert_ledger_invariants()
