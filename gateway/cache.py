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

import base64
import pickle
import threading
from datetime import UTC, datetime

from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.db import DatabaseCache
from django.core.cache.backends.redis import RedisCache, RedisCacheClient
from django.db import connections, router, transaction


class AtomicDatabaseCache(DatabaseCache):
    def incr(self, key, delta=1, version=None):
        db = router.db_for_write(self.cache_model_class)
        with transaction.atomic(using=db):
            return super().incr(key, delta, version)

    def set_if_unchanged(self, key, expected, value, timeout=DEFAULT_TIMEOUT, version=None) -> bool:
        """Store `value` only if the entry still holds `expected` (see ReusedClientRedisCache's).

        One conditional UPDATE, so no write that came in between is overwritten.
        The stored form is Django's own (base64 of the pickle, expiry to the second).
        """
        key = self.make_and_validate_key(key, version=version)
        timeout = self.get_backend_timeout(timeout)
        db = router.db_for_write(self.cache_model_class)
        connection = connections[db]
        quote_name = connection.ops.quote_name
        expires = datetime.max if timeout is None else datetime.fromtimestamp(timeout, tz=UTC)
        expires = connection.ops.adapt_datetimefield_value(expires.replace(microsecond=0))
        table, value_column, expires_column, key_column = map(
            quote_name, (self._table, "value", "expires", "cache_key")
        )
        update = f"UPDATE {table} SET {value_column} = %s, {expires_column} = %s WHERE {key_column} = %s AND {value_column} = %s"  # noqa: E501, S608 - quoted names only
        with connection.cursor() as cursor:
            cursor.execute(update, [self._encoded(value), expires, key, self._encoded(expected)])
            return cursor.rowcount == 1

    def _encoded(self, value) -> str:
        return base64.b64encode(pickle.dumps(value, self.pickle_protocol)).decode("latin1")


_INCR_IF_EXISTS = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.call('INCRBY', KEYS[1], ARGV[1])
end
return false
"""


# ARGV[3]: seconds to keep the value, 0 for no expiry.
_SET_IF_UNCHANGED = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
if tonumber(ARGV[3]) > 0 then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
else
  redis.call('SET', KEYS[1], ARGV[2])
end
return 1
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
        self._set_if_scripts = {}

    def get_client(self, key=None, *, write=False):
        index = self._get_connection_pool_index(write)
        client = self._clients.get(index)
        if client is None:
            client = self._clients[index] = self._client(connection_pool=self._get_connection_pool(index))
        return client

    def set_if_unchanged(self, key, expected, value, timeout) -> bool:
        if timeout is not None and timeout <= 0:
            return False  # an entry that would expire at once: nothing to store
        client = self.get_client(key, write=True)
        script = self._set_if_scripts.get(id(client))
        if script is None:
            script = self._set_if_scripts[id(client)] = client.register_script(_SET_IF_UNCHANGED)
        dumps = self._serializer.dumps
        return bool(script(keys=[key], args=[dumps(expected), dumps(value), timeout or 0]))

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

    def set_if_unchanged(self, key, expected, value, timeout=DEFAULT_TIMEOUT, version=None) -> bool:
        """Store `value` only if the entry still holds `expected`; True when it did.

        A compare-and-set: a value computed from what `expected` stood for never
        overwrites a newer write (the API-key check uses it, accounts.services).
        """
        key = self.make_and_validate_key(key, version=version)
        timeout = self.get_backend_timeout(timeout)
        return self._cache.set_if_unchanged(key, expected, value, timeout)


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
