"""WriteThroughStore: memory or Redis cache in front of a file or SQLite database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from asgi_sessions.errors import SessionStoreUnavailable
from asgi_sessions.stores import (
    FileStore,
    MemoryStore,
    RedisStore,
    SQLStore,
    StoreKey,
    WriteThroughStore,
)
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
    assert await store.read(key) == b"v2+"  # the cached copy was marked stale, and refilled
    await store.delete(key)
    assert await db.read(key) is None
    assert await store.read(key) is None
    assert await cache.read(key) not in (None, b"v2+")  # a tombstone, not an empty slot


class _BrokenCache(MemoryStore):
    """A cache failing in a way nobody foresaw, after the database committed."""

    async def read(self, key: StoreKey) -> bytes | None:
        raise RuntimeError("unexpected cache failure")

    async def update(self, key: StoreKey, data: bytes, ttl: int) -> bool:
        raise RuntimeError("unexpected cache failure")

    async def replace(self, key: StoreKey, expected: bytes, data: bytes, ttl: int) -> bool:
        raise RuntimeError("unexpected cache failure")


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("cache", ["dead", "broken"])
async def test_a_failing_cache_loses_no_write(
    tmp_path: Path, anyio_backend: str, cache: str
) -> None:
    # Dead: a Redis nobody listens for. Broken: a cache failing in a way
    # nobody foresaw, after the database committed; neither may fail a write.
    db = FileStore(tmp_path / "db")
    store = WriteThroughStore(_dead_redis() if cache == "dead" else _BrokenCache(), db)
    key = new_key()
    assert await store.create(key, b"kept", 60)
    assert await store.update(key, b"kept", 60)
    assert await store.append(key, b"+more", 60)
    assert await db.read(key) == b"kept+more"
    assert await store.read(key) == b"kept+more"
    await store.delete(key)
    assert await db.read(key) is None


def test_cache_ttl_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cache_ttl"):
        WriteThroughStore(MemoryStore(), FileStore(tmp_path), cache_ttl=0)


async def test_a_refill_lives_no_longer_than_the_record(tmp_path: Path) -> None:
    # An idle timeout is the store's TTL: a copy refilled into the cache must
    # expire with the record, not cache_ttl seconds later.
    cache, db = MemoryStore(), FileStore(tmp_path / "db")
    store = WriteThroughStore(cache, db, cache_ttl=300)
    key = new_key()
    await db.create(key, b"idle session", 2)
    assert await store.read(key) == b"idle session"  # a miss: refilled from the db
    found = await cache.read_with_ttl(key)
    assert found is not None
    assert found[1] is not None
    assert found[1] <= 2
    await anyio.sleep(2.1)
    assert await db.read(key) is None
    assert await store.read(key) is None, "the cache kept the record past its TTL"


async def test_a_read_racing_a_logout_cannot_put_the_session_back(tmp_path: Path) -> None:
    # A parallel request read the record from the db just before a logout
    # deleted it; its refill of the cache then lands after the delete.
    read_done, go_on = anyio.Event(), anyio.Event()

    class PausingFileStore(FileStore):
        async def read_with_ttl(self, key: str) -> tuple[bytes, int | None] | None:
            found = await super().read_with_ttl(key)
            read_done.set()
            await go_on.wait()
            return found

    store = WriteThroughStore(MemoryStore(), PausingFileStore(tmp_path / "db"))
    key = new_key()
    await store.db.create(key, b"logged in", 60)
    results: list[bytes | None] = []

    async def parallel_request() -> None:
        results.append(await store.read(key))

    async with anyio.create_task_group() as tg:
        tg.start_soon(parallel_request)
        await read_done.wait()
        await store.delete(key)  # the logout
        go_on.set()
    assert results == [b"logged in"]  # it began before the logout: it may see it
    assert await store.read(key) is None, "the logged-out session came back from the cache"
    assert await store.read_with_ttl(key) is None
    assert await store.db.read(key) is None


class _SlowCache(MemoryStore):
    """A cache whose next write (other than a tombstone) waits for ``gate``."""

    gate: anyio.Event | None = None
    reached: anyio.Event | None = None

    async def _pause(self, data: bytes) -> None:
        gate = self.gate
        if gate is not None and b"asgi_sessions:deleted" not in data:
            self.gate = None
            assert self.reached is not None
            self.reached.set()
            await gate.wait()

    async def update(self, key: StoreKey, data: bytes, ttl: int) -> bool:
        await self._pause(data)
        return await super().update(key, data, ttl)

    async def replace(self, key: StoreKey, expected: bytes, data: bytes, ttl: int) -> bool:
        await self._pause(data)
        return await super().replace(key, expected, data, ttl)

    async def delete(self, key: StoreKey) -> None:
        await self._pause(b"")
        await super().delete(key)


@pytest.mark.parametrize("write", ["update", "append", "replace", "compact_and_append"])
async def test_a_write_racing_a_logout_cannot_put_the_session_back(
    tmp_path: Path, write: str
) -> None:
    # The write reached the database before the logout, and its cache step
    # lands after the logout's tombstone. Before, an update overwrote the
    # tombstone with the logged-in record (served for cache_ttl), and the
    # others deleted it, so a refill racing with them could do the same.
    cache = _SlowCache()
    store = WriteThroughStore(cache, FileStore(tmp_path / "db"))
    key = new_key()
    await store.create(key, b"v1", 60)
    assert await store.read(key) == b"v1"  # cached
    gate = cache.gate = anyio.Event()
    reached = cache.reached = anyio.Event()
    calls = {
        "update": lambda: store.update(key, b"v2", 60),
        "append": lambda: store.append(key, b"+", 60),
        "replace": lambda: store.replace(key, b"v1", b"v2", 60),
        "compact_and_append": lambda: store.compact_and_append(key, b"v1", b"v", b"+", 60),
    }
    results: list[bool] = []

    async def in_flight() -> None:
        results.append(await calls[write]())

    async with anyio.create_task_group() as tg:
        tg.start_soon(in_flight)
        with anyio.fail_after(5):
            await reached.wait()  # the database has the write; the cache not yet
        await store.delete(key)  # the logout
        gate.set()
    assert results == [True]
    # The tombstone stayed: a read that began before the logout cannot refill.
    assert await cache.read(key) not in (None, b"v1", b"v2", b"v1+", b"v+")
    assert await store.db.read(key) is None
    assert await store.read(key) is None, "the logged-out session came back from the cache"
    assert await store.read_with_ttl(key) is None


async def test_a_stale_mark_is_refilled_by_the_next_read(tmp_path: Path) -> None:
    cache = MemoryStore()
    store = WriteThroughStore(cache, FileStore(tmp_path / "db"))
    key = new_key()
    await store.create(key, b"v1", 60)
    assert await store.append(key, b"+", 60)
    assert await cache.read(key) not in (None, b"v1")  # marked, not deleted
    assert await store.read_with_ttl(key) is not None
    assert await store.read(key) == b"v1+"
    assert await cache.read(key) == b"v1+"  # refilled over the mark
    assert await store.update(key, b"v2", 60)
    assert await cache.read(key) == b"v2"


async def test_a_new_record_replaces_a_tombstone(tmp_path: Path) -> None:
    store = WriteThroughStore(MemoryStore(), FileStore(tmp_path / "db"))
    key = new_key()
    await store.create(key, b"first", 60)
    await store.delete(key)
    assert await store.read(key) is None
    assert await store.create(key, b"second", 60)
    assert await store.read(key) == b"second"


class _LostReply(FileStore):
    """A database whose delete and take commit, and then their answer is lost."""

    async def delete(self, key: StoreKey) -> None:
        await super().delete(key)
        raise SessionStoreUnavailable("the reply was lost")

    async def take(self, key: StoreKey) -> bytes | None:
        await super().take(key)
        raise SessionStoreUnavailable("the reply was lost")


@pytest.mark.parametrize("method", ["delete", "take"])
async def test_a_failed_delete_still_buries_the_cached_copy(tmp_path: Path, method: str) -> None:
    # The database may have committed before its answer was lost: the cache
    # must not go on serving a logged-out (or taken) session for cache_ttl.
    store = WriteThroughStore(MemoryStore(), _LostReply(tmp_path / "db"))
    key = new_key()
    await store.create(key, b"logged in", 60)
    assert await store.read(key) == b"logged in"  # cached
    with pytest.raises(SessionStoreUnavailable):
        await getattr(store, method)(key)
    assert await store.read(key) is None


async def test_a_touch_does_not_keep_a_cached_copy_past_cache_ttl(tmp_path: Path) -> None:
    # A copy the database no longer has (its tombstone lost to a cache
    # outage) must not be kept alive by an active session's touches.
    cache, db = MemoryStore(), FileStore(tmp_path / "db")
    store = WriteThroughStore(cache, db, cache_ttl=1)
    key = new_key()
    assert await store.create(key, b"logged in", 60)
    await db.delete(key)  # the logout reached the database alone
    for _ in range(3):
        await store.touch(key, 60)
        await anyio.sleep(0.4)
    assert await store.read(key) is None


class _WriteRefusingCache(MemoryStore):
    """A cache that serves reads and deletes but refuses writes (Redis at maxmemory)."""

    refusing = False

    async def update(self, key: StoreKey, data: bytes, ttl: int) -> bool:
        if self.refusing:
            raise SessionStoreUnavailable("OOM")
        return await super().update(key, data, ttl)

    async def create(self, key: StoreKey, data: bytes, ttl: int) -> bool:
        if self.refusing:
            raise SessionStoreUnavailable("OOM")
        return await super().create(key, data, ttl)


async def test_a_cache_refusing_writes_drops_a_deleted_copy(tmp_path: Path) -> None:
    cache = _WriteRefusingCache()
    store = WriteThroughStore(cache, FileStore(tmp_path / "db"))
    key = new_key()
    assert await store.create(key, b"logged in", 60)
    cache.refusing = True
    await store.delete(key)
    assert await store.read(key) is None
