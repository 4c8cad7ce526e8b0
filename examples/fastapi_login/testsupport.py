"""Test support shared by this example's tests and the browser test (tests/e2e).

A session store for the app, and a way to count its session records behind
its back (straight from SQLite or Redis), so tests can check that logout
really deleted the record.

A login (``cycle_key``) also leaves a *forward record* under the old store
key for a minute: its value is only the new store key (64 hex digits, one per
line), so that a logout racing the login can follow it. It is no session,
and these counts leave it out.
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

FORWARD = re.compile(rb"[0-9a-f]{64}(?:\n[0-9a-f]{64})*")
"""What a forward record holds; a session record starts with a binary frame length."""


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
                values = db.execute("SELECT data FROM asgi_sessions").fetchall()
            return sum(1 for (value,) in values if not FORWARD.fullmatch(value))

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

    def sessions() -> int:
        count = 0
        for key in client.scan_iter(match=prefix + "*"):
            value = client.get(key) if record.fullmatch(key) else None
            if isinstance(value, bytes) and not FORWARD.fullmatch(value):
                count += 1
        return count

    try:
        yield Backend(RedisStore(REDIS_URL, prefix=prefix), sessions)
    finally:
        keys = list(client.scan_iter(match=prefix + "*"))
        if keys:
            client.delete(*keys)
        client.close()
