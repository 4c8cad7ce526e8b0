"""RedisStore and SQLStore under trio: ImproperlyConfigured, not a driver's traceback.

Their drivers (``redis.asyncio``; SQLAlchemy's async engine over aiosqlite,
asyncpg or asyncmy) run on asyncio only. Under trio they fail inside the
driver with "no running event loop" or a ``TypeError`` about an asyncio
``Future``; the store says what is wrong instead, on every operation.

Nothing connects under trio: the drivers fail before opening a socket, so
the Redis and PostgreSQL tests need no server (only the driver installed).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from asgi_sessions.errors import ImproperlyConfigured
from asgi_sessions.stores import RedisStore, SessionStore, SQLStore
from asgi_sessions.testing import new_key
from tests.backends import POSTGRES_URL, REDIS_URL

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "trio"


def _operations(store: SessionStore) -> dict[str, Callable[[], Awaitable[object]]]:
    """Every operation of the store that does I/O."""
    key, user = new_key(), new_key()
    return {
        "read": lambda: store.read(key),
        "read_with_ttl": lambda: store.read_with_ttl(key),
        "create": lambda: store.create(key, b"x", 60),
        "update": lambda: store.update(key, b"x", 60),
        "append": lambda: store.append(key, b"x", 60),
        "replace": lambda: store.replace(key, b"x", b"y", 60),
        "compact_and_append": lambda: store.compact_and_append(key, b"x", b"y", b"z", 60),
        "touch": lambda: store.touch(key, 60),
        "delete": lambda: store.delete(key),
        "take": lambda: store.take(key),
        "link_user": lambda: store.link_user(user, key),
        "delete_user": lambda: store.delete_user(user),
        "clear_expired": store.clear_expired,
    }


def _expected(name: str) -> str:
    return rf"^{name} runs on asyncio only: .* \(this event loop is not asyncio, e\.g\. trio\)$"


async def _assert_asyncio_only(store: SessionStore, name: str) -> None:
    for operation, call in _operations(store).items():
        with pytest.raises(ImproperlyConfigured, match=_expected(name)) as caught:
            await call()
        # The driver's own error stays attached, for whoever digs further.
        assert caught.value.__cause__ is not None, operation


async def test_redis_store_under_trio() -> None:
    store = RedisStore(REDIS_URL, prefix="test:trio:")
    await _assert_asyncio_only(store, "RedisStore")
    # Closing says so too, rather than have asyncio make (and leave open) a
    # loop for redis-py. The client never connected: dropping it leaks nothing.
    with pytest.raises(ImproperlyConfigured, match=_expected("RedisStore")):
        await store.close()


async def _assert_sql_asyncio_only(store: SQLStore) -> None:
    try:
        await _assert_asyncio_only(store, "SQLStore")
    finally:
        # Disposing of an engine that holds no connection needs no event loop.
        await store.close()


async def test_sqlite_store_under_trio(tmp_path: Path) -> None:
    await _assert_sql_asyncio_only(SQLStore(f"sqlite+aiosqlite:///{tmp_path / 'sessions.db'}"))


async def test_sqlite_in_memory_store_under_trio() -> None:
    await _assert_sql_asyncio_only(SQLStore("sqlite+aiosqlite://"))


async def test_postgres_store_under_trio() -> None:
    pytest.importorskip("asyncpg")
    await _assert_sql_asyncio_only(SQLStore(POSTGRES_URL))


# Not MySQL: asyncmy under trio creates loop.create_connection() coroutines it
# never awaits, which nothing outside the driver can close (the store still
# raises ImproperlyConfigured there, but the test would fail on the warnings).
