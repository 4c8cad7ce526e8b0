"""MemoryStore: the conformance suite (asyncio and trio) and its own promises."""

from __future__ import annotations

from collections.abc import AsyncIterator

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


@pytest.mark.anyio
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


def test_max_entries_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        MemoryStore(max_entries=0)
