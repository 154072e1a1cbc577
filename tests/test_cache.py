"""The shared cache backends Beluga configures (see gateway/cache.py)."""

import pytest


def test_redis_cache_increments_in_one_step_and_refuses_missing_keys():
    from django.core.cache import caches
    from django.core.cache.backends.redis import RedisCache

    cache = caches["default"]
    if not isinstance(cache, RedisCache):
        pytest.skip("REDIS_URL not set: the embedded database cache is in use")
    cache.set("incr-probe", 5, 30)
    assert cache.incr("incr-probe") == 6
    assert cache.incr("incr-probe", 10) == 16
    cache.delete("incr-probe")
    with pytest.raises(ValueError):
        cache.incr("incr-probe")
