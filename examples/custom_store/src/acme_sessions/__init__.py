"""acme_sessions: an example third-party session store for asgi_sessions.

``ShelfStore`` keeps sessions in one SQLite file through the standard
library's ``sqlite3`` module (no extra dependency), in a worker thread so the
event loop never blocks. It is what a plugin author writes: the five
required methods of :class:`asgi_sessions.stores.SessionStore`, plus the two
optional atomic ones, each a single SQL statement.

Registered under the URL scheme ``shelf://`` (see ``pyproject.toml``), so an
app can say ``SessionMiddleware(app, store="shelf:///var/lib/app/sessions.db")``.

Like every store it sees only hashed keys and opaque bytes: never a session
id, a cookie or a request.
"""

from __future__ import annotations

import os
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
    """Sessions in one SQLite file, via the standard library.

    ``timeout`` is how long a statement waits for another writer's lock
    before the store reports itself unavailable.
    """

    def __init__(self, path: str, *, timeout: float = 2.0) -> None:
        self.path = path
        self.timeout = timeout
        self._local = threading.local()  # one connection per worker thread
        self._opened: list[sqlite3.Connection] = []
        self._opened_lock = threading.Lock()
        self._ready = False

    def _connection(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            # Sessions are secrets: create the file readable by its owner only
            # (SQLite gives its -wal and -shm files the same mode).
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
            # isolation_level=None: each statement is its own transaction,
            # and a single UPDATE/INSERT is atomic in SQLite.
            connection = sqlite3.connect(
                self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
            )
            with self._opened_lock:
                self._opened.append(connection)
                # Once per store, not per connection: threads racing to switch
                # a new file to WAL would get "database is locked" at once.
                if not self._ready:
                    connection.execute("PRAGMA journal_mode=WAL")
                    connection.execute(_SCHEMA)
                    self._ready = True
            self._local.connection = connection
        return connection

    async def _run(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        def call() -> _T:
            return work(self._connection())

        try:
            return await anyio.to_thread.run_sync(call)
        except (sqlite3.OperationalError, OSError) as exc:
            # "database is locked" past the timeout, a missing directory, a full disk.
            # The message names the failure, never a key or a value.
            raise SessionStoreUnavailable(f"shelf store: {type(exc).__name__}") from None

    async def close(self) -> None:
        """Close every connection the worker threads opened; safe to repeat."""

        def close_all() -> None:
            with self._opened_lock:
                opened, self._opened = self._opened, []
            for connection in opened:
                connection.close()

        await anyio.to_thread.run_sync(close_all)

    async def read(self, key: str) -> bytes | None:
        """The live record's bytes; expired rows read as absent until cleared."""

        def read(db: sqlite3.Connection) -> bytes | None:
            row = db.execute(
                "SELECT data FROM sessions WHERE key = ? AND expires > ?", (key, time.time())
            ).fetchone()
            return None if row is None else bytes(row[0])

        return await self._run(read)

    async def create(self, key: str, data: bytes, ttl: int) -> bool:
        """Insert, or take over an expired row; never a live one."""

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
        """Overwrite a live row only: a deleted session stays deleted."""

        def update(db: sqlite3.Connection) -> bool:
            now = time.time()
            cursor = db.execute(
                "UPDATE sessions SET data = ?, expires = ? WHERE key = ? AND expires > ?",
                (data, now + ttl, key, now),
            )
            return cursor.rowcount == 1

        return await self._run(update)

    async def append(self, key: str, data: bytes, ttl: int) -> bool:
        """Concatenate in the database, so racing appends all land."""

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
        """Swap the prefix only if it is still ``expected``: one guarded UPDATE."""

        def replace(db: sqlite3.Connection) -> bool:
            now = time.time()
            # coalesce: SQLite's substr() of an empty blob is NULL, not X''.
            cursor = db.execute(
                "UPDATE sessions "
                "SET data = CAST(? || coalesce(substr(data, ?), X'') AS BLOB), expires = ? "
                "WHERE key = ? AND expires > ? AND coalesce(substr(data, 1, ?), X'') = ?",
                (data, len(expected) + 1, now + ttl, key, now, len(expected), expected),
            )
            return cursor.rowcount == 1

        return await self._run(replace)

    async def touch(self, key: str, ttl: int) -> None:
        """Move a live row's expiry; the data is not rewritten."""

        def touch(db: sqlite3.Connection) -> None:
            now = time.time()
            db.execute(
                "UPDATE sessions SET expires = ? WHERE key = ? AND expires > ?",
                (now + ttl, key, now),
            )

        await self._run(touch)

    async def delete(self, key: str) -> None:
        """Remove the row, if any."""
        await self._run(lambda db: db.execute("DELETE FROM sessions WHERE key = ?", (key,)))

    async def take(self, key: str) -> bytes | None:
        """Delete the row and return its live data, in one statement (SQLite 3.35+)."""

        def take(db: sqlite3.Connection) -> bytes | None:
            row = db.execute(
                "DELETE FROM sessions WHERE key = ? RETURNING data, expires", (key,)
            ).fetchone()
            return None if row is None or row[1] <= time.time() else bytes(row[0])

        return await self._run(take)

    async def clear_expired(self) -> int:
        """Delete expired rows; SQLite has no TTL of its own."""

        def clear(db: sqlite3.Connection) -> int:
            return db.execute("DELETE FROM sessions WHERE expires <= ?", (time.time(),)).rowcount

        return await self._run(clear)


def from_url(url: str) -> ShelfStore:
    """Entry point for ``shelf:///path/to/file.db`` URLs."""
    return ShelfStore(urlsplit(url).path)
