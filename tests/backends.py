"""Every built-in server store, built against the real thing, for cross-store tests.

``store_factory(name, tmp_path)`` returns an async context manager yielding a
fresh, empty store: its own directory, Redis key prefix or SQL table, removed
afterwards. A service that is not reachable skips the test with the reason,
or fails it under CI=true.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from asgi_sessions.stores import FileStore, MemoryStore, SessionStore, WriteThroughStore

REDIS_URL = os.environ.get("ASGI_SESSIONS_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get(
    "ASGI_SESSIONS_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
MYSQL_URL = os.environ.get("ASGI_SESSIONS_MYSQL_URL", "mysql+asyncmy://root@127.0.0.1:3306/test")

STORES = ["memory", "file", "redis", "sqlite", "postgres", "mysql", "write-through"]
ASYNCIO_ONLY = {"redis", "sqlite", "postgres", "mysql", "write-through"}


def unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


async def _redis(prefix: str) -> SessionStore:
    from redis.asyncio import Redis

    from asgi_sessions.stores import RedisStore

    probe = Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        await probe.ping()
    except Exception as exc:
        unavailable(f"Redis at {REDIS_URL} not reachable: {exc}")
    finally:
        await probe.aclose()
    return RedisStore(REDIS_URL, prefix=prefix)


async def drop_redis_keys(prefix: str, url: str = REDIS_URL) -> None:
    """Delete every key under ``prefix`` (a test's own namespace) on the Redis at ``url``."""
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=prefix + "*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


async def _sql(url: str, table: str) -> SessionStore:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    from asgi_sessions.stores import SQLStore

    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception as exc:
        unavailable(f"database at {url.split('@')[-1]} not reachable: {exc}")
    finally:
        await engine.dispose()
    return SQLStore(url, table_name=table)


async def _drop_table(url: str, table: str) -> None:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.execute(text(f"DROP TABLE IF EXISTS {table}_users"))
            await connection.execute(text(f"DROP TABLE IF EXISTS {table}"))
    finally:
        await engine.dispose()


@contextlib.asynccontextmanager
async def store_factory(name: str, tmp_path: Path) -> AsyncIterator[SessionStore]:
    """A fresh store of kind ``name``; cleaned up on exit."""
    suffix = secrets.token_hex(4)
    store: SessionStore
    if name == "memory":
        store = MemoryStore()
    elif name == "file":
        store = FileStore(tmp_path / f"sessions-{suffix}")
    elif name == "redis":
        store = await _redis(f"test:{suffix}:")
    elif name == "sqlite":
        store = await _sql(f"sqlite+aiosqlite:///{tmp_path}/sessions-{suffix}.db", "sessions")
    elif name in ("postgres", "mysql"):
        url = POSTGRES_URL if name == "postgres" else MYSQL_URL
        store = await _sql(url, f"sessions_{suffix}")
    elif name == "write-through":
        store = WriteThroughStore(MemoryStore(), FileStore(tmp_path / f"db-{suffix}"))
    else:  # pragma: no cover
        raise ValueError(name)
    try:
        yield store
    finally:
        await store.close()
        if name == "redis":
            await drop_redis_keys(f"test:{suffix}:")
        elif name in ("postgres", "mysql"):
            await _drop_table(
                POSTGRES_URL if name == "postgres" else MYSQL_URL, f"sessions_{suffix}"
            )
