"""The whole store contract, checked by asgi_sessions' conformance suite."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from acme_sessions import ShelfStore

from asgi_sessions.errors import SessionStoreUnavailable
from asgi_sessions.testing import StoreConformance


class TestShelfStore(StoreConformance):
    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[ShelfStore]:
        store = ShelfStore(str(tmp_path / "sessions.db"))
        yield store
        await store.close()


# A plugin's own promises sit next to the suite.


@pytest.mark.anyio
async def test_the_database_file_is_private(tmp_path: Path) -> None:
    store = ShelfStore(str(tmp_path / "sessions.db"))
    await store.create("ab" * 32, b"secret", 60)
    await store.close()
    assert (tmp_path / "sessions.db").stat().st_mode & 0o777 == 0o600


@pytest.mark.anyio
async def test_an_unusable_path_is_unavailable_not_a_crash(tmp_path: Path) -> None:
    store = ShelfStore(str(tmp_path / "missing-dir" / "sessions.db"))
    with pytest.raises(SessionStoreUnavailable):
        await store.read("ab" * 32)
    await store.close()
