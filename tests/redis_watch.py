"""Which commands reach Redis while a test runs a block: MONITOR, filtered to one key."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings


@contextmanager
def redis_commands(*, touching: str) -> Iterator[list[str]]:
    """The names of the commands sent inside the block whose text contains `touching` (a full Redis
    key). Other tests' background threads write to Redis too; the Lua scripts' own commands are left out."""
    import redis

    sentinel = f"end-{secrets.token_hex(6)}"
    seen: list[str] = []
    ready = threading.Event()

    def watch() -> None:
        with redis.Redis.from_url(settings.REDIS_URL).monitor() as monitor:
            ready.set()
            for command in monitor.listen():
                if sentinel in command["command"]:
                    return
                if command.get("client_type") != "lua" and touching in command["command"]:
                    seen.append(command["command"].split()[0].upper())

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    assert ready.wait(5)
    time.sleep(0.2)  # MONITOR is registered once the server answered it
    yield seen
    redis.Redis.from_url(settings.REDIS_URL).echo(sentinel)
    watcher.join(10)
