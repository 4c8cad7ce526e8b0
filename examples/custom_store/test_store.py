"""The whole store contract, checked by asgi_sessions' conformance suite."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from acme_sessions import ShelfStore

from asgi_sessions.testing import StoreConformance


class TestShelfStore(StoreConformance):
    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[ShelfStore]:
        store = ShelfStore(str(tmp_path / "sessions.db"))
        yield store
        await store.close()
