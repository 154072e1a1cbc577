"""The shared cache backends Beluga configures (see gateway/cache.py)."""

import time

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


def _counter_cache():
    from django.conf import settings
    from django.core.cache import caches

    from gateway.cache import RequestCounterRedisCache

    cache = caches[settings.RATELIMIT_USE_CACHE]
    if not isinstance(cache, RequestCounterRedisCache):
        pytest.skip("REDIS_URL not set: django-ratelimit counts on the embedded database cache")
    return cache


def _usage(request, value: str):
    from django_ratelimit.core import get_usage

    return get_usage(request, group="probe", key=lambda _g, _r: value, rate=(1000, 60), increment=True)


def test_request_counters_count_one_call_in_one_round_trip(rf):
    """django-ratelimit's add-then-incr reaches Redis as one command per counted request."""
    import secrets

    from django_ratelimit import ALL
    from django_ratelimit.core import _get_window, _make_cache_key

    from tests.redis_watch import redis_commands

    cache = _counter_cache()
    request = rf.post("/v1/chat/completions")
    _usage(request, "warm-up")  # the first call of a process loads the Lua script
    value = f"probe-{secrets.token_hex(6)}"
    counter_key = cache.make_key(_make_cache_key("probe", _get_window(value, 60), (1000, 60), value, ALL))
    with redis_commands(touching=counter_key) as seen:
        counts = [_usage(request, value)["count"] for _ in range(5)]

    assert counts == [1, 2, 3, 4, 5]
    assert seen == ["EVALSHA"] * 5  # not SET NX, then EXISTS + INCRBY


def test_request_counters_stay_exact_across_threads(rf):
    """Every thread's count comes from its own increment: 8 threads x 40 calls give 1..320 once each."""
    from concurrent.futures import ThreadPoolExecutor

    _counter_cache()
    request = rf.post("/v1/chat/completions")
    value = f"probe-{time.time_ns()}"
    with ThreadPoolExecutor(8) as pool:
        counts = list(pool.map(lambda _: _usage(request, value)["count"], range(320)))
    assert sorted(counts) == list(range(1, 321))


@pytest.mark.django_db
def test_the_shared_cache_stores_over_an_expected_value_only():
    """set_if_unchanged, on whichever shared cache is configured (Redis or the embedded one)."""
    from django.core.cache import cache

    cache.set("cas-probe", "marker-1", 30)

    assert cache.set_if_unchanged("cas-probe", "marker-2", ("stale",), 30) is False
    assert cache.get("cas-probe") == "marker-1"
    assert cache.set_if_unchanged("cas-probe", "marker-1", ("fresh", 1), 30) is True
    assert cache.get("cas-probe") == ("fresh", 1)
    assert cache.set_if_unchanged("cas-probe", "marker-1", ("again",), 30) is False
    cache.delete("cas-probe")
    assert cache.set_if_unchanged("cas-probe", "marker-1", ("absent",), 30) is False
    assert cache.get("cas-probe") is None
