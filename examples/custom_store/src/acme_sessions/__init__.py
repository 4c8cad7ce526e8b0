"""acme_sessions: an example third-party session store for asgi_sessions.

``ShelfStore`` keeps sessions in one SQLite file through the standard
library's ``sqlite3`` module (no extra dependency), in a worker thread so the
event loop never blocks. It is what a plugin author writes: the five
required methods of :class:`asgi_sessions.stores.SessionStore`, plus the two
optional atomic ones, each a single SQL statement.

Registered under the URL scheme ``shelf://`` (see ``pyproject.toml``), so an
app can say ``SessionMiddleware(app, store="shelf:///var/lib/app/sessions.db")``.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlsplit

import anyio.to_thread

from asgi_sessions.errors import SessionStoreUnavailable
from asgi_sessions.stores import SessionStore

__all__ = ["ShelfStore", "from_url"]

_T = TypeVar("_T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    key TEXT PRIMARY KEY,
    data BLOB NOT NULL,
    expires REAL NOT NULL
)
"""


class ShelfStore(SessionStore):
    """Sessions in one SQLite file, via the standard library."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._local = threading.local()

    def _connection(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            # isolation_level=None: each statement is its own transaction,
            # and a single UPDATE/INSERT is atomic in SQLite.
            connection = sqlite3.connect(self.path, timeout=5, isolation_level=None)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute(_SCHEMA)
            self._local.connection = connection
        return connection

    async def _run(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        def call() -> _T:
            return work(self._connection())

        try:
            return await anyio.to_thread.run_sync(call)
        except sqlite3.OperationalError as exc:
            raise SessionStoreUnavailable(f"shelf store: {exc}") from None

    async def read(self, key: str) -> bytes | None:
        def read(db: sqlite3.Connection) -> bytes | None:
            row = db.execute(
                "SELECT data FROM sessions WHERE key = ? AND expires > ?", (key, time.time())
            ).fetchone()
            return None if row is None else bytes(row[0])

        return await self._run(read)

    async def create(self, key: str, data: bytes, ttl: int) -> bool:
        def create(db: sqlite3.Connection) -> bool:
            now = time.time()
            # Take the key if it is free or its record has expired, in one statement.
            cursor = db.execute(
                "INSERT INTO sessions (key, data, expires) VALUES (?, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET data = excluded.data, expires = excluded.expires "
                "WHERE sessions.expires <= ?",
                (key, data, now + ttl, now),
            )
            return cursor.rowcount == 1

        return await self._run(create)

    async def update(self, key: str, data: bytes, ttl: int) -> bool:
        def update(db: sqlite3.Connection) -> bool:
            now = time.time()
            cursor = db.execute(
                "UPDATE sessions SET data = ?, expires = ? WHERE key = ? AND expires > ?",
                (data, now + ttl, key, now),
            )
            return cursor.rowcount == 1

        return await self._run(update)

    async def append(self, key: str, data: bytes, ttl: int) -> bool:
        def append(db: sqlite3.Connection) -> bool:
            now = time.time()
            cursor = db.execute(
                "UPDATE sessions SET data = CAST(data || ? AS BLOB), expires = ? "
                "WHERE key = ? AND expires > ?",
                (data, now + ttl, key, now),
            )
            return cursor.rowcount == 1

        return await self._run(append)

    async def replace(self, key: str, expected: bytes, data: bytes, ttl: int) -> bool:
        def replace(db: sqlite3.Connection) -> bool:
            now = time.time()
            cursor = db.execute(
                "UPDATE sessions SET data = CAST(? || substr(data, ?) AS BLOB), expires = ? "
                "WHERE key = ? AND expires > ? AND substr(data, 1, ?) = ?",
                (data, len(expected) + 1, now + ttl, key, now, len(expected), expected),
            )
            return cursor.rowcount == 1

        return await self._run(replace)

    async def touch(self, key: str, ttl: int) -> None:
        def touch(db: sqlite3.Connection) -> None:
            now = time.time()
            db.execute(
                "UPDATE sessions SET expires = ? WHERE key = ? AND expires > ?",
                (now + ttl, key, now),
            )

        await self._run(touch)

    async def delete(self, key: str) -> None:
        await self._run(lambda db: db.execute("DELETE FROM sessions WHERE key = ?", (key,)))

    async def clear_expired(self) -> int:
        def clear(db: sqlite3.Connection) -> int:
            return db.execute("DELETE FROM sessions WHERE expires <= ?", (time.time(),)).rowcount

        return await self._run(clear)


def from_url(url: str) -> ShelfStore:
    """Entry point for ``shelf:///path/to/file.db`` URLs."""
    return ShelfStore(urlsplit(url).path)
