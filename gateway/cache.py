"""The embedded shared cache used when REDIS_URL is not set.

Django's database cache increments by read-then-write, which two processes can
interleave. Rate-limit counters need an atomic increment, so run it in one
transaction: on SQLite (transaction_mode IMMEDIATE, see settings) that takes
the database's write lock first, which serialises every writer. Production
uses Redis, where INCR is atomic anyway.
"""

from django.core.cache.backends.db import DatabaseCache
from django.db import router, transaction


class AtomicDatabaseCache(DatabaseCache):
    def incr(self, key, delta=1, version=None):
        db = router.db_for_write(self.cache_model_class)
        with transaction.atomic(using=db):
            return super().incr(key, delta, version)
