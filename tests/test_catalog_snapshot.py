"""The per-process catalog snapshot: fresh within its TTL, never a queue when stale."""

import pytest

from catalog import selectors
from catalog.models import AIModel

pytestmark = pytest.mark.django_db


def test_edits_show_after_the_snapshot_expires(settings):
    settings.BELUGA = {**settings.BELUGA, "CATALOG_CACHE_SECONDS": 0}
    assert selectors.model_get(slug="beluga-demo") is not None
    AIModel.objects.filter(slug="beluga-demo").update(enabled=False)
    assert selectors.model_get(slug="beluga-demo") is None


def test_a_stale_snapshot_is_served_while_another_thread_reloads(settings, django_assert_num_queries):
    assert selectors.model_get(slug="beluga-demo") is not None  # first load
    settings.BELUGA = {**settings.BELUGA, "CATALOG_CACHE_SECONDS": 0}
    AIModel.objects.filter(slug="beluga-demo").update(enabled=False)
    selectors._snapshot.lock.acquire()  # another thread is reloading
    try:
        with django_assert_num_queries(0):
            # No wait for the lock, no query: the old snapshot answers.
            assert selectors.model_get(slug="beluga-demo") is not None
    finally:
        selectors._snapshot.lock.release()
    assert selectors.model_get(slug="beluga-demo") is None  # the next caller reloads


PROVIDER_VARS = [
    "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "DEEPSEEK_API_KEY",
    "ZHIPU_API_KEY", "MOONSHOT_API_KEY", "MINIMAX_API_KEY", "EDGE_API_KEY",
]  # fmt: skip


def test_the_example_model_is_one_a_new_key_can_call(monkeypatch):
    for name in PROVIDER_VARS:
        monkeypatch.delenv(name, raising=False)
    selectors.catalog_cache_clear()
    # Seeded provider upstreams read env:VAR credentials, unset here; the demo upstream has its own.
    assert selectors.model_example_slug() == "beluga-demo"
    AIModel.objects.filter(slug="beluga-demo").update(enabled=False)
    selectors.catalog_cache_clear()
    assert selectors.model_example_slug() is None
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    selectors.catalog_cache_clear()
    assert AIModel.objects.get(slug=selectors.model_example_slug()).vendor == "OpenAI"
