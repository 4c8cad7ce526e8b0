"""Test support shared by this example's tests and the browser test (tests/e2e).

A session store for the app, and a way to count its session records behind
its back (straight from SQLite or Redis), so tests can check that logout
really deleted the record.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from asgi_sessions.stores import RedisStore, SessionStore, SQLStore
from tests.backends import REDIS_URL, unavailable


@dataclass
class Backend:
    store: SessionStore
    records: Callable[[], int]  # how many sessions the store holds, read behind its back


@contextlib.contextmanager
def backend_for(kind: str, tmp_path: Path, label: str) -> Iterator[Backend]:
    """A fresh ``kind`` ("sqlite" or "redis") store; Redis keys under a random prefix."""
    if kind == "sqlite":
        path = tmp_path / "sessions.db"

        def rows() -> int:
            if not path.exists():
                return 0
            with sqlite3.connect(path) as db:
                return int(db.execute("SELECT COUNT(*) FROM asgi_sessions").fetchone()[0])

        yield Backend(SQLStore(f"sqlite+aiosqlite:///{path}"), rows)
        return

    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        unavailable(f"Redis at {REDIS_URL} not reachable: {exc}")
    prefix = f"{label}:{secrets.token_hex(4)}:"
    # Session records only (keyed by the hex SHA-256 of an id), not index keys.
    record = re.compile(re.escape(prefix.encode()) + rb"[0-9a-f]{64}")
    try:
        yield Backend(
            RedisStore(REDIS_URL, prefix=prefix),
            lambda: sum(1 for key in client.scan_iter(match=prefix + "*") if record.fullmatch(key)),
        )
    finally:
        keys = list(client.scan_iter(match=prefix + "*"))
        if keys:
            client.delete(*keys)
        client.close()
