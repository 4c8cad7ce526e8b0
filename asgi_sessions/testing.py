"""Test tools: a conformance suite for store plugins, and session helpers for app tests.

**Store authors** subclass :class:`StoreConformance` and provide a ``store``
fixture; pytest then runs every check a built-in store passes::

    import pytest
    from asgi_sessions.testing import StoreConformance

    class TestMyStore(StoreConformance):
        @pytest.fixture
        async def store(self):
            store = MyStore(...)
            yield store
            await store.close()

The tests are marked for anyio's pytest plugin (shipped with anyio), so no
other plugin is needed; override the ``anyio_backend`` fixture to run them
under trio too. Class attributes relax what a store cannot promise:
``native_ttl = True`` (expiry is the backend's job, ``clear_expired`` may
return 0) and ``atomic_append = False`` (the default, non-atomic ``append``).

**App authors** use :func:`read_session` / :func:`seed_session` (and the
async :func:`aread_session` / :func:`aseed_session`) to look at or prepare
the session behind a test client, as Django's ``Client.session`` does.
"""

from __future__ import annotations

import secrets
from typing import Any

import anyio
import pytest

from ._testclient import (
    aread_session,
    aseed_session,
    find_session_middleware,
    read_session,
    seed_session,
)
from .stores.base import SessionStore

__all__ = [
    "StoreConformance",
    "aread_session",
    "aseed_session",
    "find_session_middleware",
    "new_key",
    "read_session",
    "seed_session",
]


def new_key() -> str:
    """A random, well-formed store key (64 hex digits)."""
    return secrets.token_hex(32)


_anyio = pytest.mark.anyio


class StoreConformance:
    """The behaviour every :class:`~asgi_sessions.stores.SessionStore` must have.

    Subclass it in a ``Test…`` class and provide an async ``store`` fixture.
    """

    native_ttl: bool = False
    """Set by stores whose backend expires records itself (Redis)."""

    atomic_append: bool = True
    """Set to False by stores that keep the default, non-atomic ``append``."""

    atomic_replace: bool = True
    """Set to False by stores that keep the default, non-atomic ``replace``."""

    @pytest.fixture
    def anyio_backend(self) -> str:
        """The event loop the suite runs on; override to add "trio"."""
        return "asyncio"

    @pytest.fixture
    def store(self) -> SessionStore:  # pragma: no cover - overridden
        """The store under test: override in your subclass (usually an async generator)."""
        raise NotImplementedError("provide a `store` fixture in your StoreConformance subclass")

    # -- read / create ---------------------------------------------------------

    @_anyio
    async def test_read_missing_is_none(self, store: SessionStore) -> None:
        assert await store.read(new_key()) is None

    @_anyio
    async def test_create_then_read(self, store: SessionStore) -> None:
        key = new_key()
        assert await store.create(key, b"payload", 60) is True
        assert await store.read(key) == b"payload"

    @_anyio
    async def test_create_existing_key_refused_and_not_overwritten(
        self, store: SessionStore
    ) -> None:
        key = new_key()
        assert await store.create(key, b"first", 60)
        assert await store.create(key, b"second", 60) is False
        assert await store.read(key) == b"first"

    @_anyio
    async def test_keys_are_independent(self, store: SessionStore) -> None:
        a, b = new_key(), new_key()
        await store.create(a, b"a", 60)
        await store.create(b, b"b", 60)
        assert (await store.read(a), await store.read(b)) == (b"a", b"b")

    @_anyio
    async def test_concurrent_create_of_one_key_has_one_winner(self, store: SessionStore) -> None:
        key = new_key()
        results: list[bool] = []

        async def attempt(index: int) -> None:
            results.append(await store.create(key, f"writer {index}".encode(), 60))

        async with anyio.create_task_group() as group:
            for index in range(20):
                group.start_soon(attempt, index)
        assert len(results) == 20
        assert results.count(True) == 1
        assert (await store.read(key) or b"").startswith(b"writer ")

    # -- update ----------------------------------------------------------------

    @_anyio
    async def test_update_replaces(self, store: SessionStore) -> None:
        key = new_key()
        await store.create(key, b"old", 60)
        assert await store.update(key, b"new", 60) is True
        assert await store.read(key) == b"new"

    @_anyio
    async def test_update_missing_refused_and_writes_nothing(self, store: SessionStore) -> None:
        key = new_key()
        assert await store.update(key, b"ghost", 60) is False
        assert await store.read(key) is None

    @_anyio
    async def test_update_after_delete_does_not_resurrect(self, store: SessionStore) -> None:
        key = new_key()
        await store.create(key, b"alive", 60)
        await store.delete(key)
        assert await store.update(key, b"zombie", 60) is False
        assert await store.read(key) is None

    # -- append / replace --------------------------------------------------------

    @_anyio
    async def test_append_adds_bytes(self, store: SessionStore) -> None:
        key = new_key()
        await store.create(key, b"one|", 60)
        assert await store.append(key, b"two|", 60) is True
        assert await store.append(key, b"three", 60) is True
        assert await store.read(key) == b"one|two|three"

    @_anyio
    async def test_append_missing_refused_and_writes_nothing(self, store: SessionStore) -> None:
        key = new_key()
        assert await store.append(key, b"x", 60) is False
        assert await store.read(key) is None

    @_anyio
    async def test_concurrent_appends_all_land(self, store: SessionStore) -> None:
        if not self.atomic_append:
            pytest.skip("this store keeps the default, non-atomic append")
        key = new_key()
        await store.create(key, b"", 60)
        frames = [f"<{index:03d}>".encode() for index in range(50)]

        async def add(frame: bytes) -> None:
            assert await store.append(key, frame, 60)

        async with anyio.create_task_group() as group:
            for frame in frames:
                group.start_soon(add, frame)
        stored = await store.read(key) or b""
        assert len(stored) == sum(len(f) for f in frames)
        assert sorted(stored[i : i + 5] for i in range(0, len(stored), 5)) == sorted(frames)

    @_anyio
    async def test_replace_when_unchanged(self, store: SessionStore) -> None:
        key = new_key()
        await store.create(key, b"v1", 60)
        assert await store.replace(key, b"v1", b"v2", 60) is True
        assert await store.read(key) == b"v2"

    @_anyio
    async def test_replace_keeps_what_was_appended_after_the_prefix(
        self, store: SessionStore
    ) -> None:
        key = new_key()
        await store.create(key, b"a|b|c|", 60)
        await store.append(key, b"late|", 60)
        assert await store.replace(key, b"a|b|c|", b"abc|", 60) is True
        assert await store.read(key) == b"abc|late|"

    @_anyio
    async def test_replace_when_prefix_changed_refused(self, store: SessionStore) -> None:
        key = new_key()
        await store.create(key, b"v1", 60)
        await store.update(key, b"other", 60)
        assert await store.replace(key, b"v1", b"v2", 60) is False
        assert await store.read(key) == b"other"

    @_anyio
    async def test_replace_missing_refused(self, store: SessionStore) -> None:
        key = new_key()
        assert await store.replace(key, b"", b"v2", 60) is False
        assert await store.read(key) is None

    @_anyio
    async def test_replace_with_identical_bytes_succeeds(self, store: SessionStore) -> None:
        key = new_key()
        await store.create(key, b"same", 60)
        assert await store.replace(key, b"same", b"same", 60) is True
        assert await store.read(key) == b"same"

    @_anyio
    async def test_replace_binary_prefix(self, store: SessionStore) -> None:
        key = new_key()
        prefix = bytes(range(256))
        await store.create(key, prefix, 60)
        await store.append(key, b"\x00tail", 60)
        assert await store.replace(key, prefix, b"\x00\xff", 60) is True
        assert await store.read(key) == b"\x00\xff\x00tail"

    @_anyio
    async def test_compact_and_append(self, store: SessionStore) -> None:
        key = new_key()
        await store.create(key, b"a|b|", 60)
        await store.append(key, b"late|", 60)
        assert await store.compact_and_append(key, b"a|b|", b"ab|", b"mine|", 60) is True
        assert await store.read(key) == b"ab|late|mine|"
        # A prefix that no longer matches: no compaction, the append still lands.
        assert await store.compact_and_append(key, b"a|b|", b"X|", b"again|", 60) is True
        assert await store.read(key) == b"ab|late|mine|again|"

    @_anyio
    async def test_compact_and_append_missing_refused(self, store: SessionStore) -> None:
        key = new_key()
        assert await store.compact_and_append(key, b"", b"x", b"y", 60) is False
        assert await store.read(key) is None

    # -- delete ----------------------------------------------------------------

    @_anyio
    async def test_delete(self, store: SessionStore) -> None:
        key = new_key()
        await store.create(key, b"x", 60)
        await store.delete(key)
        assert await store.read(key) is None

    @_anyio
    async def test_delete_missing_is_noop(self, store: SessionStore) -> None:
        await store.delete(new_key())

    @_anyio
    async def test_create_after_delete(self, store: SessionStore) -> None:
        key = new_key()
        await store.create(key, b"a", 60)
        await store.delete(key)
        assert await store.create(key, b"b", 60) is True
        assert await store.read(key) == b"b"

    # -- expiry ----------------------------------------------------------------

    @_anyio
    async def test_record_expires_after_ttl(self, store: SessionStore) -> None:
        key = new_key()
        await store.create(key, b"short", 1)
        await anyio.sleep(1.1)
        assert await store.read(key) is None
        assert await store.update(key, b"late", 60) is False
        assert await store.append(key, b"late", 60) is False
        assert await store.create(key, b"fresh", 60) is True  # an expired key is free again

    @_anyio
    async def test_touch_extends_life_without_rewriting(self, store: SessionStore) -> None:
        key, other = new_key(), new_key()
        await store.create(key, b"kept", 1)
        await store.create(other, b"dropped", 1)
        await store.touch(key, 30)
        await anyio.sleep(1.1)
        assert await store.read(key) == b"kept"
        assert await store.read(other) is None

    @_anyio
    async def test_touch_missing_is_noop(self, store: SessionStore) -> None:
        key = new_key()
        await store.touch(key, 30)
        assert await store.read(key) is None

    @_anyio
    async def test_writes_set_a_new_ttl(self, store: SessionStore) -> None:
        key = new_key()
        await store.create(key, b"a", 60)
        await store.update(key, b"b", 1)
        await anyio.sleep(1.1)
        assert await store.read(key) is None

    @_anyio
    async def test_clear_expired(self, store: SessionStore) -> None:
        live, dead = new_key(), [new_key() for _ in range(3)]
        await store.create(live, b"live", 60)
        for key in dead:
            await store.create(key, b"dead", 1)
        await anyio.sleep(1.1)
        removed = await store.clear_expired()
        if self.native_ttl:
            assert removed >= 0
        else:
            assert removed >= len(dead)
        assert await store.read(live) == b"live"
        for key in dead:
            assert await store.read(key) is None

    # -- values ----------------------------------------------------------------

    @_anyio
    async def test_binary_safe(self, store: SessionStore) -> None:
        key = new_key()
        data = bytes(range(256)) * 4 + b"\x00\x00end"
        await store.create(key, data, 60)
        assert await store.read(key) == data
        await store.append(key, b"\x00\xff", 60)
        assert await store.read(key) == data + b"\x00\xff"

    @_anyio
    async def test_utf8_bytes_round_trip(self, store: SessionStore) -> None:
        key = new_key()
        data = "ünïcødé 🍪 ключ".encode()
        await store.create(key, data, 60)
        assert await store.read(key) == data

    @_anyio
    async def test_large_value(self, store: SessionStore) -> None:
        key = new_key()
        data = secrets.token_bytes(1024 * 1024)
        await store.create(key, data, 60)
        assert await store.read(key) == data

    @_anyio
    async def test_empty_value(self, store: SessionStore) -> None:
        key = new_key()
        assert await store.create(key, b"", 60)
        assert await store.read(key) == b""

    # -- lifecycle -------------------------------------------------------------

    @_anyio
    async def test_is_a_session_store(self, store: Any) -> None:
        assert isinstance(store, SessionStore)
