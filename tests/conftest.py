"""Shared fixtures: small factories for users, plans and keys, and a clean cache per test.

Fixtures for the fake upstream and live-server clients live in tests/fixtures_*.py
modules registered below, so that each area's fixtures stay with that area.
"""

import pytest
from django.core.cache import cache

from accounts.models import Plan
from accounts.services import api_key_create, user_create

pytest_plugins = []


@pytest.fixture(autouse=True)
def _clean_shared_state():
    """Cache entries (key lookups, rate-limit windows) and the catalog snapshot must not leak between tests."""
    from catalog.selectors import catalog_cache_clear

    cache.clear()
    catalog_cache_clear()
    yield
    catalog_cache_clear()


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

    def make(email=None, password="correct-horse-battery-staple", plan="free"):
        counter["n"] += 1
        email = email or f"user{counter['n']}@example.com"
        return user_create(email=email, password=password, plan=Plan.objects.get(slug=plan))

    return make


@pytest.fixture
def api_key_factory(db, user_factory):
    """Returns (ApiKey row, raw key string)."""

    def make(user=None, name="test key", **kwargs):
        return api_key_create(user=user or user_factory(), name=name, **kwargs)

    return make
