"""MemoryStore: the conformance suite (asyncio and trio) and its own promises."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from asgi_sessions.stores import MemoryStore
from asgi_sessions.testing import StoreConformance, new_key


class TestMemoryStoreConformance(StoreConformance):
    @pytest.fixture(params=["asyncio", "trio"])
    def anyio_backend(self, request: pytest.FixtureRequest) -> str:
        return str(request.param)

    @pytest.fixture
    async def store(self) -> AsyncIterator[MemoryStore]:
        store = MemoryStore()
        yield store
        await store.close()


pytestmark = pytest.mark.anyio


class FakeClock:
    """A monotonic clock the test moves by hand: expiry without sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _clocked(max_entries: int = 100_000) -> tuple[MemoryStore, FakeClock]:
    store, clock = MemoryStore(max_entries=max_entries), FakeClock()
    store._clock = clock
    return store, clock


async def test_bounded_with_lru_eviction() -> None:
    store = MemoryStore(max_entries=3)
    a, b, c, d = (new_key() for _ in range(4))
    for key in (a, b, c):
        await store.create(key, key.encode(), 60)
    await store.read(a)  # a is now the most recently used; b the least
    await store.create(d, b"d", 60)
    assert len(store) == 3
    assert await store.read(b) is None
    assert await store.read(a) == a.encode()
    assert await store.read(d) == b"d"


@pytest.mark.parametrize("use", ["update", "append", "replace", "touch", "read"])
async def test_every_access_counts_as_use(use: str) -> None:
    store = MemoryStore(max_entries=2)
    old, other, new = new_key(), new_key(), new_key()
    await store.create(old, b"v", 60)
    await store.create(other, b"v", 60)
    calls: dict[str, Callable[[], Awaitable[object]]] = {
        "update": lambda: store.update(old, b"v", 60),
        "append": lambda: store.append(old, b"+", 60),
        "replace": lambda: store.replace(old, b"v", b"w", 60),
        "touch": lambda: store.touch(old, 60),
        "read": lambda: store.read(old),
    }
    await calls[use]()
    await store.create(new, b"v", 60)
    assert await store.read(other) is None  # the least recently used went
    assert await store.read(old) is not None


async def test_the_bound_holds_under_a_flood() -> None:
    store = MemoryStore(max_entries=100)
    keys = [new_key() for _ in range(1000)]
    for key in keys:
        assert await store.create(key, b"x", 60)
        assert len(store) <= 100
    assert len(store) == 100
    assert [await store.read(k) for k in keys[-100:]] == [b"x"] * 100
    assert await store.read(keys[0]) is None


class _CountingPrunes(MemoryStore):
    prunes = 0
    links_walked = 0

    def _prune_users(self) -> None:
        self.prunes += 1
        self.links_walked += sum(len(keys) for keys in self._users.values())
        super()._prune_users()


async def test_logins_into_a_full_store_do_not_walk_the_whole_index() -> None:
    # Each login into a full store of one-session users used to prune the
    # whole user index (and intersect with every record): quadratic, seconds
    # per login at 16,000 sessions. Pruning is now amortised: counted here in
    # links walked, not timed.
    store = _CountingPrunes(max_entries=200)
    logins = 2000
    for n in range(logins):
        key = new_key()
        assert await store.create(key, b"x", 60)
        await store.link_user(f"{n:064x}", key)
        assert len(store._users) <= 2 * store.max_entries
    assert store.prunes <= logins // store.max_entries
    assert store.links_walked <= 3 * logins
    # The index still finds exactly the live sessions.
    survivors = [user for user, keys in store._users.items() if keys]
    for user in survivors[-5:]:
        assert len(await store.delete_user(user)) == 1
    assert await store.delete_user(f"{0:064x}") == []  # evicted long ago


async def test_failed_writes_do_not_grow_or_reorder() -> None:
    store = MemoryStore(max_entries=2)
    a, b, c = new_key(), new_key(), new_key()
    await store.create(a, b"a", 60)
    await store.create(b, b"b", 60)
    assert await store.update(c, b"c", 60) is False
    assert await store.append(c, b"c", 60) is False
    await store.touch(c, 60)
    assert await store.create(a, b"again", 60) is False
    assert len(store) == 2
    assert await store.read(a) == b"a"
    assert await store.read(b) == b"b"


async def test_expiry_follows_the_monotonic_clock() -> None:
    store, clock = _clocked()
    key = new_key()
    await store.create(key, b"x", 10)
    clock.now += 9.9
    assert await store.read(key) == b"x"
    await store.touch(key, 10)
    clock.now += 9.9
    assert await store.read(key) == b"x"
    clock.now += 0.1
    assert await store.read(key) is None
    assert len(store) == 0  # an expired record is dropped when it is found


async def test_clear_expired_without_sleeping() -> None:
    store, clock = _clocked()
    short = [new_key() for _ in range(5)]
    long = [new_key() for _ in range(3)]
    for key in short:
        await store.create(key, b"s", 1)
    for key in long:
        await store.create(key, b"l", 100)
    clock.now += 1
    assert await store.clear_expired() == 5
    assert await store.clear_expired() == 0
    assert len(store) == 3


async def test_close_drops_everything_and_can_repeat() -> None:
    store = MemoryStore()
    await store.create(new_key(), b"x", 60)
    await store.close()
    await store.close()
    assert len(store) == 0


def test_max_entries_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        MemoryStore(max_entries=0)
