"""The embedded shared cache used when REDIS_URL is not set.

Django's database cache increments by read-then-write, which two processes can
interleave. Rate-limit counters need an atomic increment, so run it in one
transaction: on SQLite (transaction_mode IMMEDIATE, see settings) that takes
the database's write lock first, which serialises every writer. Production
uses Redis, where INCR is atomic anyway.

On Redis, django-ratelimit's counters live in a cache of their own
(`RequestCounterRedisCache`, the "ratelimit" alias) that counts in one round
trip instead of two.
"""

import threading

from django.core.cache.backends.db import DatabaseCache
from django.core.cache.backends.redis import RedisCache, RedisCacheClient
from django.db import router, transaction


class AtomicDatabaseCache(DatabaseCache):
    def incr(self, key, delta=1, version=None):
        db = router.db_for_write(self.cache_model_class)
        with transaction.atomic(using=db):
            return super().incr(key, delta, version)


_INCR_IF_EXISTS = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.call('INCRBY', KEYS[1], ARGV[1])
end
return false
"""


class _ReusedClientRedisCacheClient(RedisCacheClient):
    """Django builds a new redis.Redis object for every cache call; that
    constructor alone was a fifth of a proxied request's CPU time in the
    profile (docs/performance.md). A Redis client is thread-safe and only wraps
    the pool, so keep one per pool."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._clients = {}
        self._incr_scripts = {}

    def get_client(self, key=None, *, write=False):
        index = self._get_connection_pool_index(write)
        client = self._clients.get(index)
        if client is None:
            client = self._clients[index] = self._client(connection_pool=self._get_connection_pool(index))
        return client

    def incr(self, key, delta):
        """Django checks EXISTS then INCRs: two round trips, and the key can
        vanish in between. One Lua call does both atomically (rate-limit
        counters are incremented on every API call)."""
        client = self.get_client(key, write=True)
        script = self._incr_scripts.get(id(client))
        if script is None:
            script = self._incr_scripts[id(client)] = client.register_script(_INCR_IF_EXISTS)
        value = script(keys=[key], args=[delta])
        if value is None:
            raise ValueError(f"Key '{key}' not found.")
        return value


class ReusedClientRedisCache(RedisCache):
    def __init__(self, server, params):
        super().__init__(server, params)
        self._class = _ReusedClientRedisCacheClient


_ADD_OR_INCR = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then
  return {1, tonumber(ARGV[1])}
end
return {0, redis.call('INCRBY', KEYS[1], ARGV[3])}
"""

# The same, also returning the value stored at KEYS[2] (false when there is none).
_ADD_OR_INCR_READING = """
local along = redis.call('GET', KEYS[2])
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then
  return {1, tonumber(ARGV[1]), along}
end
return {0, redis.call('INCRBY', KEYS[1], ARGV[3]), along}
"""


class _CounterRedisCacheClient(_ReusedClientRedisCacheClient):
    """django-ratelimit counts a request with `add(key, 1)` and, when the
    window's counter already exists, `incr(key)`: two round trips on every API
    call. Here the add that finds the counter increments it in the same Lua
    call and keeps the count for this thread's `incr` of that key, which then
    answers without a round trip. The library's logic (keys, windows, limits)
    is untouched; the cache's add counts, so it holds counters and nothing else.

    `read_along` asks the next count on this thread to also read one more
    Redis key in the same call: the API-key check uses it to confirm its
    process-local copy of a key without a round trip of its own
    (accounts.limits.key_admit)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._add_scripts = {}
        self._counted = threading.local()

    def add(self, key, value, timeout):
        along = self._counted.__dict__.pop("along", None)
        if not isinstance(value, int) or not timeout:
            return super().add(key, value, timeout)
        client = self.get_client(key, write=True)
        source = _ADD_OR_INCR if along is None else _ADD_OR_INCR_READING
        script = self._add_scripts.get((id(client), source))
        if script is None:
            script = self._add_scripts[(id(client), source)] = client.register_script(source)
        # An add of 0 (django-ratelimit peeking without counting) increments by 0: it only reads.
        if along is None:
            added, count = script(keys=[key], args=[value, timeout, value])
        else:
            added, count, value_along = script(keys=[key, along], args=[value, timeout, value])
            self._counted.value_along = value_along or None
        self._counted.last = None if added or value != 1 else (key, count)
        return bool(added)

    def read_along(self, redis_key: str) -> None:
        self._counted.__dict__.pop("value_along", None)
        self._counted.along = redis_key

    def value_read_along(self) -> bytes | None:
        """What the last count read at `read_along`'s key (None: nothing stored, or no count ran)."""
        self._counted.__dict__.pop("along", None)  # a request that never counted must not leave it set
        return self._counted.__dict__.pop("value_along", None)

    def incr(self, key, delta):
        last = getattr(self._counted, "last", None)
        self._counted.last = None
        if last is not None and last[0] == key and delta == 1:
            return last[1]
        return super().incr(key, delta)


class RequestCounterRedisCache(RedisCache):
    """The "ratelimit" cache: request counters only (see _CounterRedisCacheClient)."""

    def __init__(self, server, params):
        super().__init__(server, params)
        self._class = _CounterRedisCacheClient

    def read_along(self, redis_key: str) -> None:
        """The next count on this thread also reads `redis_key` (a full Redis key name), in the same call."""
        self._cache.read_along(redis_key)

    def value_read_along(self) -> bytes | None:
        return self._cache.value_read_along()
