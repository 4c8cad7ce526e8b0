"""WriteThroughStore: memory or Redis cache in front of a file or SQLite database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from asgi_sessions.stores import FileStore, MemoryStore, RedisStore, SQLStore, WriteThroughStore
from asgi_sessions.testing import StoreConformance, new_key


class TestMemoryOverFileConformance(StoreConformance):
    @pytest.fixture(params=["asyncio", "trio"])
    def anyio_backend(self, request: pytest.FixtureRequest) -> str:
        return str(request.param)

    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[WriteThroughStore]:
        store = WriteThroughStore(MemoryStore(), FileStore(tmp_path / "db"))
        yield store
        await store.close()


def _dead_redis() -> RedisStore:
    # A real client pointed at a port nothing listens on: every call fails fast.
    return RedisStore("redis://127.0.0.1:1/0", timeout=0.3)


class TestDeadCacheConformance(StoreConformance):
    """With the cache down, the database alone still meets the whole contract."""

    @pytest.fixture
    def anyio_backend(self) -> str:
        return "asyncio"

    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[WriteThroughStore]:
        store = WriteThroughStore(_dead_redis(), FileStore(tmp_path / "db"))
        yield store
        await store.close()


class TestMemoryOverSQLiteConformance(StoreConformance):
    """Over a database with a user index, the layered store has one too."""

    @pytest.fixture
    def anyio_backend(self) -> str:
        return "asyncio"

    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[WriteThroughStore]:
        store = WriteThroughStore(
            MemoryStore(), SQLStore(f"sqlite+aiosqlite:///{tmp_path}/db.sqlite")
        )
        assert store.has_user_index
        yield store
        await store.close()


pytestmark = pytest.mark.anyio


async def test_cache_miss_reads_the_db_and_refills(tmp_path: Path) -> None:
    cache, db = MemoryStore(), FileStore(tmp_path / "db")
    store = WriteThroughStore(cache, db)
    key = new_key()
    await db.create(key, b"from the db", 60)
    assert await cache.read(key) is None
    assert await store.read(key) == b"from the db"
    assert await cache.read(key) == b"from the db"


async def test_writes_reach_both(tmp_path: Path) -> None:
    cache, db = MemoryStore(), FileStore(tmp_path / "db")
    store = WriteThroughStore(cache, db)
    key = new_key()
    await store.create(key, b"v1", 60)
    assert (await cache.read(key), await db.read(key)) == (b"v1", b"v1")
    await store.update(key, b"v2", 60)
    assert (await cache.read(key), await db.read(key)) == (b"v2", b"v2")
    await store.append(key, b"+", 60)
    assert await db.read(key) == b"v2+"
    assert await store.read(key) == b"v2+"  # the cached copy was dropped, not left stale
    await store.delete(key)
    assert (await cache.read(key), await db.read(key)) == (None, None)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_dead_cache_loses_no_write(tmp_path: Path, anyio_backend: str) -> None:
    db = FileStore(tmp_path / "db")
    store = WriteThroughStore(_dead_redis(), db)
    key = new_key()
    assert await store.create(key, b"kept", 60)
    assert await store.append(key, b"+more", 60)
    assert await db.read(key) == b"kept+more"
    assert await store.read(key) == b"kept+more"


def test_cache_ttl_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cache_ttl"):
        WriteThroughStore(MemoryStore(), FileStore(tmp_path), cache_ttl=0)
