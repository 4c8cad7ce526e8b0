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
other plugin is needed, and they run unchanged under pytest-asyncio's strict
mode and ``filterwarnings = error``. Override the ``anyio_backend`` fixture
to run them under trio too. Class attributes relax what a store cannot
promise: ``native_ttl = True`` (expiry is the backend's job, so
``clear_expired`` may return 0), ``atomic_append = False``,
``atomic_replace = False`` and ``atomic_take = False`` (the base class's
non-atomic defaults are kept), ``shared_backend = True`` (other processes
write to the backend meanwhile, so ``clear_expired`` may count their records).

**App authors** use :func:`read_session` / :func:`seed_session` (and the
async :func:`aread_session` / :func:`aseed_session`) to look at or prepare
the session behind a test client, as Django's ``Client.session`` does.

The suite knows only the :class:`~asgi_sessions.stores.SessionStore`
contract: never a concrete store, a cookie, a request or a backend.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Coroutine
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
from .errors import UnsupportedOperation
from .stores.base import SessionStore, StoreKey

# Test-client helpers (asgi_sessions._testclient).
__all__ = [
    "aread_session",
    "aseed_session",
    "find_session_middleware",
    "read_session",
    "seed_session",
]
# The store conformance suite (the section below).
__all__ += ["StoreConformance", "new_key"]


# =============================================================================
# Store conformance suite
#
# Self-contained: uses only the SessionStore ABC, anyio, pytest and secrets.
# Its public API is StoreConformance (its fixtures, its class attributes
# native_ttl / atomic_append / atomic_replace / atomic_take) and new_key; plugins rely on
# both, so they change only compatibly.
# =============================================================================

_FRAME = 5  # bytes per frame in the concurrency tests: b"<000>"


def new_key() -> StoreKey:
    """A random, well-formed store key: 64 lowercase hex digits.

    Random so that suites running against a shared backend (one Redis, one
    database) never collide with each other or with an earlier run.
    """
    return secrets.token_hex(32)


def _frames(count: int) -> list[bytes]:
    return [f"<{index:03d}>".encode() for index in range(count)]


def _split_frames(data: bytes) -> list[bytes]:
    return sorted(data[i : i + _FRAME] for i in range(0, len(data), _FRAME))


_anyio = pytest.mark.anyio


async def _compaction_racing_appends(
    store: SessionStore,
    compact: Callable[[StoreKey, bytes], Coroutine[Any, Any, bool]],
    mine: bytes,
) -> None:
    """One compaction of a record's loaded prefix (to ``{SNAP}``) racing 30 appends.

    ``compact(key, loaded)`` is ``replace`` or ``compact_and_append``; ``mine``
    is what it appends itself (nothing for ``replace``). Every append must
    land after the new prefix.
    """
    key = new_key()
    loaded = b"{snap}" + b"".join(_frames(3))
    await store.create(key, loaded, 60)
    frames = [b"[%03d]" % index for index in range(30)]
    compacted: list[bool] = []

    async def add(frame: bytes) -> None:
        assert await store.append(key, frame, 60)

    async def run() -> None:
        compacted.append(await compact(key, loaded))

    async with anyio.create_task_group() as group:
        for frame in frames[:15]:
            group.start_soon(add, frame)
        group.start_soon(run)
        for frame in frames[15:]:
            group.start_soon(add, frame)
    # Appends only ever extend the record, so the loaded prefix matched: it was compacted.
    assert compacted == [True]
    stored = await store.read(key) or b""
    assert stored.startswith(b"{SNAP}")
    expected = sorted([*frames, mine] if mine else frames)
    assert _split_frames(stored[len(b"{SNAP}") :]) == expected, (
        "an append that raced the compaction was lost"
    )


def _needs_user_index(store: SessionStore) -> None:
    if not store.has_user_index:
        pytest.skip("this store keeps no user index")


class StoreConformance:
    """The behaviour every :class:`~asgi_sessions.stores.SessionStore` must have.

    Subclass it in a ``Test…`` class and provide a ``store`` fixture (usually
    an async generator that closes the store). Each test uses fresh random
    keys, so the store may be shared and need not be empty. Six tests sleep
    1.1 s to watch a 1 s TTL run out.
    """

    native_ttl: bool = False
    """True for stores whose backend expires records itself (Redis):
    ``clear_expired`` may then return 0."""

    atomic_append: bool = True
    """False for stores that keep the base class's read-then-update ``append``,
    which can lose one of two racing appends: skips the concurrency test."""

    atomic_replace: bool = True
    """False for stores that keep the base class's read-compare-update
    ``replace``: skips the test of a compaction racing appends."""

    atomic_take: bool = True
    """False for stores that keep the base class's read-then-delete ``take``:
    skips the test of a take racing appends."""

    shared_backend: bool = False
    """True when other processes may write to the backend while the suite
    runs (a shared database): ``clear_expired``'s count is then checked as a
    lower bound only, since it may also remove their expired records."""

    @pytest.fixture
    def anyio_backend(self) -> str:
        """The event loop the suite runs on; override (or parametrize) to add "trio"."""
        return "asyncio"

    @pytest.fixture
    def store(self) -> SessionStore:  # pragma: no cover - always overridden
        """The store under test: override it in your subclass."""
        raise NotImplementedError("provide a `store` fixture in your StoreConformance subclass")

    # -- read / create ---------------------------------------------------------

    @_anyio
    async def test_read_missing_is_none(self, store: SessionStore) -> None:
        """An unknown key reads as ``None``, not an error or empty bytes."""
        assert await store.read(new_key()) is None

    @_anyio
    async def test_create_then_read(self, store: SessionStore) -> None:
        """What ``create`` wrote, ``read`` returns byte for byte."""
        key = new_key()
        assert await store.create(key, b"payload", 60) is True
        assert await store.read(key) == b"payload"

    @_anyio
    async def test_read_with_ttl_matches_read(self, store: SessionStore) -> None:
        """``read_with_ttl`` returns what ``read`` does, and no more life than the TTL left.

        ``None`` for the seconds left is allowed (the store cannot tell); a
        number must not exceed what was written, or a cache in front would
        keep the record past its expiry.
        """
        key, touched = new_key(), new_key()
        assert await store.read_with_ttl(new_key()) is None
        await store.create(key, b"payload", 60)
        await store.create(touched, b"payload", 600)
        await store.touch(touched, 30)
        found = await store.read_with_ttl(key)
        assert found is not None
        assert found[0] == b"payload"
        assert found[1] is None or 55 <= found[1] <= 60, f"{found[1]} s left of 60"
        found = await store.read_with_ttl(touched)
        assert found is not None
        assert found[1] is None or 25 <= found[1] <= 30, f"{found[1]} s left after touch(30)"
        await store.delete(key)
        assert await store.read_with_ttl(key) is None

    @_anyio
    async def test_create_existing_key_refused_and_not_overwritten(
        self, store: SessionStore
    ) -> None:
        """``create`` is create-only: two sessions can never share a key."""
        key = new_key()
        assert await store.create(key, b"first", 60)
        assert await store.create(key, b"second", 60) is False, "create overwrote a live record"
        assert await store.read(key) == b"first", "a refused create changed the record"

    @_anyio
    async def test_keys_are_independent(self, store: SessionStore) -> None:
        """Writing one key leaves every other key alone."""
        a, b = new_key(), new_key()
        await store.create(a, b"a", 60)
        await store.create(b, b"b", 60)
        await store.update(a, b"a2", 60)
        await store.delete(b)
        assert (await store.read(a), await store.read(b)) == (b"a2", None)

    @_anyio
    async def test_keys_sharing_a_long_prefix_are_independent(self, store: SessionStore) -> None:
        """Keys that differ only in their last digit are 16 records: no key is cut short."""
        stem = new_key()[:-1]
        keys = [stem + digit for digit in "0123456789abcdef"]
        for key in keys:
            assert await store.create(key, key[-1].encode(), 60), "create refused a new key"
        await store.delete(keys[0])
        await store.update(keys[1], b"changed", 60)
        found = [await store.read(key) for key in keys]
        assert found == [None, b"changed", *(key[-1].encode() for key in keys[2:])]

    @_anyio
    async def test_concurrent_create_of_one_key_has_one_winner(self, store: SessionStore) -> None:
        """Of 20 racing creates of one key exactly one succeeds (create is atomic)."""
        key = new_key()
        results: list[bool] = []

        async def attempt(index: int) -> None:
            results.append(await store.create(key, f"writer {index:02d}".encode(), 60))

        async with anyio.create_task_group() as group:
            for index in range(20):
                group.start_soon(attempt, index)
        assert len(results) == 20
        assert results.count(True) == 1, f"{results.count(True)} of 20 racing creates succeeded"
        stored = await store.read(key)
        assert stored is not None
        assert stored.startswith(b"writer ")
        assert len(stored) == len(b"writer 00")

    # -- update ----------------------------------------------------------------

    @_anyio
    async def test_update_replaces(self, store: SessionStore) -> None:
        """``update`` of a live record replaces the whole value."""
        key = new_key()
        await store.create(key, b"old value", 60)
        assert await store.update(key, b"new", 60) is True
        assert await store.read(key) == b"new"

    @_anyio
    async def test_update_missing_refused_and_writes_nothing(self, store: SessionStore) -> None:
        """``update`` is update-only: it never creates a record."""
        key = new_key()
        assert await store.update(key, b"ghost", 60) is False
        assert await store.read(key) is None, "update created a record"

    @_anyio
    async def test_update_after_delete_does_not_resurrect(self, store: SessionStore) -> None:
        """A slow request's update cannot bring back a session a logout deleted."""
        key = new_key()
        await store.create(key, b"alive", 60)
        await store.delete(key)
        assert await store.update(key, b"zombie", 60) is False
        assert await store.read(key) is None, "update resurrected a deleted record"

    @_anyio
    async def test_writes_racing_delete_do_not_resurrect(self, store: SessionStore) -> None:
        """A write racing a logout's delete lands before it or fails: the record stays gone.

        Each of ``update``, ``append``, ``compact_and_append`` and ``touch``
        races one ``delete``, started once before it and once after. A store
        that checks the record exists, then writes in a second step, lets
        the delete fall in between and brings the session back.
        """
        writes: dict[str, Callable[[StoreKey], Coroutine[Any, Any, object]]] = {
            "update": lambda key: store.update(key, b"zombie", 60),
            "append": lambda key: store.append(key, b"zombie", 60),
            "compact_and_append": lambda key: store.compact_and_append(
                key, b"alive", b"A", b"zombie", 60
            ),
            "touch": lambda key: store.touch(key, 60),
        }
        for name, write in writes.items():
            for write_first in (True, False):
                key = new_key()
                await store.create(key, b"alive", 60)
                async with anyio.create_task_group() as group:
                    if write_first:
                        group.start_soon(write, key)
                    group.start_soon(store.delete, key)
                    if not write_first:
                        group.start_soon(write, key)
                assert await store.read(key) is None, f"{name} racing a delete resurrected it"

    # -- append / replace --------------------------------------------------------

    @_anyio
    async def test_append_adds_bytes(self, store: SessionStore) -> None:
        """``append`` adds to the end of the record, keeping what was there."""
        key = new_key()
        await store.create(key, b"one|", 60)
        assert await store.append(key, b"two|", 60) is True
        assert await store.append(key, b"three", 60) is True
        assert await store.read(key) == b"one|two|three"

    @_anyio
    async def test_append_missing_refused_and_writes_nothing(self, store: SessionStore) -> None:
        """``append`` to an absent key returns False and creates nothing."""
        key = new_key()
        assert await store.append(key, b"x", 60) is False
        assert await store.read(key) is None, "append created a record"

    @_anyio
    async def test_concurrent_appends_all_land(self, store: SessionStore) -> None:
        """50 racing appends of distinct frames: every frame is in the record once."""
        if not self.atomic_append:
            pytest.skip("this store keeps the default, non-atomic append")
        key = new_key()
        await store.create(key, b"", 60)
        frames = _frames(50)
        results: list[bool] = []

        async def add(frame: bytes) -> None:
            results.append(await store.append(key, frame, 60))

        async with anyio.create_task_group() as group:
            for frame in frames:
                group.start_soon(add, frame)
        assert results == [True] * len(frames)
        stored = await store.read(key) or b""
        assert _split_frames(stored) == sorted(frames), (
            f"{len(frames) - len(stored) // _FRAME} of {len(frames)} racing appends were lost"
        )

    @_anyio
    async def test_replace_when_unchanged(self, store: SessionStore) -> None:
        """``replace`` with the current value as ``expected`` swaps it."""
        key = new_key()
        await store.create(key, b"v1", 60)
        assert await store.replace(key, b"v1", b"v2", 60) is True
        assert await store.read(key) == b"v2"

    @_anyio
    async def test_replace_keeps_what_was_appended_after_the_prefix(
        self, store: SessionStore
    ) -> None:
        """``replace`` swaps only the ``expected`` prefix; later appends stay, after it."""
        key = new_key()
        await store.create(key, b"a|b|c|", 60)
        await store.append(key, b"late|", 60)
        assert await store.replace(key, b"a|b|c|", b"abc|", 60) is True
        assert await store.read(key) == b"abc|late|"

    @_anyio
    async def test_replace_when_prefix_changed_refused(self, store: SessionStore) -> None:
        """A compare-and-set whose ``expected`` no longer matches writes nothing."""
        key = new_key()
        await store.create(key, b"v1", 60)
        await store.update(key, b"other", 60)
        assert await store.replace(key, b"v1", b"v2", 60) is False
        assert await store.read(key) == b"other", "a refused replace changed the record"

    @_anyio
    async def test_replace_missing_refused(self, store: SessionStore) -> None:
        """``replace`` never creates a record, even with an empty ``expected``."""
        key = new_key()
        assert await store.replace(key, b"", b"v2", 60) is False
        assert await store.read(key) is None, "replace created a record"

    @_anyio
    async def test_replace_with_identical_bytes_succeeds(self, store: SessionStore) -> None:
        """Replacing a value by itself is a success, not a "nothing changed" failure."""
        key = new_key()
        await store.create(key, b"same", 60)
        assert await store.replace(key, b"same", b"same", 60) is True
        assert await store.read(key) == b"same"

    @_anyio
    async def test_replace_binary_prefix(self, store: SessionStore) -> None:
        """The prefix comparison is on raw bytes (NUL and high bytes included)."""
        key = new_key()
        prefix = bytes(range(256))
        await store.create(key, prefix, 60)
        await store.append(key, b"\x00tail", 60)
        assert await store.replace(key, prefix[:-1] + b"\xfe", b"X", 60) is False
        assert await store.replace(key, prefix, b"\x00\xff", 60) is True
        assert await store.read(key) == b"\x00\xff\x00tail"

    @_anyio
    async def test_replace_racing_appends_loses_none(self, store: SessionStore) -> None:
        """A compaction (``replace``) racing 30 appends keeps every appended frame."""
        if not (self.atomic_replace and self.atomic_append):
            pytest.skip("this store keeps a default, non-atomic append or replace")
        await _compaction_racing_appends(
            store, lambda key, loaded: store.replace(key, loaded, b"{SNAP}", 60), mine=b""
        )

    @_anyio
    async def test_compact_and_append(self, store: SessionStore) -> None:
        """Compaction is best effort; the append after it always lands."""
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
        """``compact_and_append`` to an absent key creates nothing."""
        key = new_key()
        assert await store.compact_and_append(key, b"", b"x", b"y", 60) is False
        assert await store.read(key) is None

    @_anyio
    async def test_compact_and_append_racing_appends_loses_none(self, store: SessionStore) -> None:
        """A commit that compacts (``compact_and_append``) racing 30 appends keeps every frame."""
        if not (self.atomic_replace and self.atomic_append):
            pytest.skip("this store keeps a default, non-atomic append or replace")
        mine = b"(me!)"
        await _compaction_racing_appends(
            store,
            lambda key, loaded: store.compact_and_append(key, loaded, b"{SNAP}", mine, 60),
            mine=mine,
        )

    # -- delete ----------------------------------------------------------------

    @_anyio
    async def test_delete(self, store: SessionStore) -> None:
        """A deleted record is gone."""
        key = new_key()
        await store.create(key, b"x", 60)
        await store.delete(key)
        assert await store.read(key) is None

    @_anyio
    async def test_delete_missing_is_noop(self, store: SessionStore) -> None:
        """Deleting an absent key is not an error (logout twice is fine)."""
        await store.delete(new_key())
        key = new_key()
        await store.create(key, b"x", 60)
        await store.delete(key)
        await store.delete(key)

    @_anyio
    async def test_take_returns_and_deletes(self, store: SessionStore) -> None:
        """``take`` returns the record's bytes, and the record is gone."""
        key = new_key()
        await store.create(key, b"a", 60)
        await store.append(key, b"b", 60)
        assert await store.take(key) == b"ab"
        assert await store.read(key) is None
        assert await store.take(key) is None
        assert not await store.append(key, b"c", 60)

    @_anyio
    async def test_take_missing_or_expired_is_none(self, store: SessionStore) -> None:
        """An absent or expired record takes as ``None``, and an expired one is gone."""
        assert await store.take(new_key()) is None
        key = new_key()
        await store.create(key, b"x", 1)
        await anyio.sleep(1.1)
        assert await store.take(key) is None
        assert await store.create(key, b"y", 60)

    @_anyio
    async def test_take_racing_appends_loses_none(self, store: SessionStore) -> None:
        """20 appends racing one take: each lands in what was taken, or reports failure."""
        if not self.atomic_take:
            pytest.skip("this store keeps the default, non-atomic take")
        key = new_key()
        await store.create(key, b"", 60)
        frames = _frames(20)
        landed: list[bytes] = []
        taken: list[bytes | None] = []

        async def add(frame: bytes) -> None:
            if await store.append(key, frame, 60):
                landed.append(frame)

        async def take() -> None:
            taken.append(await store.take(key))

        async with anyio.create_task_group() as group:
            for index, frame in enumerate(frames):
                group.start_soon(add, frame)
                if index == len(frames) // 2:
                    group.start_soon(take)
        assert taken[0] is not None
        assert _split_frames(taken[0]) == sorted(landed), (
            "an append reported success but is not in what take returned"
        )
        assert await store.read(key) is None

    @_anyio
    async def test_create_after_delete(self, store: SessionStore) -> None:
        """A deleted key is free for ``create`` again."""
        key = new_key()
        await store.create(key, b"a", 60)
        await store.delete(key)
        assert await store.create(key, b"b", 60) is True
        assert await store.read(key) == b"b"

    # -- expiry (the tests that sleep) -----------------------------------------

    @_anyio
    async def test_record_expires_after_ttl(self, store: SessionStore) -> None:
        """After its TTL a record is gone for every operation, and its key is free."""
        # One key per operation, each tried first: a store that drops an
        # expired record when it reads it must not hide a bug in the others.
        read, with_ttl, touched, updated, appended, replaced, compacted, created = (
            new_key() for _ in range(8)
        )
        for key in (read, with_ttl, touched, updated, appended, replaced, compacted, created):
            await store.create(key, b"short", 1)
        await anyio.sleep(1.1)
        assert await store.read(read) is None, "a record outlived its TTL"
        assert await store.read_with_ttl(with_ttl) is None, "read_with_ttl of an expired record"
        await store.touch(touched, 60)
        assert await store.read(touched) is None, "touch brought back an expired record"
        assert await store.update(updated, b"late", 60) is False, "update of an expired record"
        assert await store.read(updated) is None
        assert await store.append(appended, b"late", 60) is False, "append to an expired record"
        assert await store.read(appended) is None
        assert await store.replace(replaced, b"short", b"late", 60) is False
        assert await store.read(replaced) is None, "replace of an expired record"
        assert await store.compact_and_append(compacted, b"short", b"S", b"late", 60) is False
        assert await store.read(compacted) is None, "compact_and_append of an expired record"
        assert await store.create(created, b"fresh", 60) is True, "an expired key was not free"
        assert await store.read(created) == b"fresh"

    @_anyio
    async def test_touch_extends_life_without_rewriting(self, store: SessionStore) -> None:
        """``touch`` moves the expiry of a 1 s record so it outlives 1 s; data unchanged.

        The seconds ``read_with_ttl`` reports count down from the touch.
        """
        key, other = new_key(), new_key()
        await store.create(key, b"kept", 1)
        await store.create(other, b"dropped", 1)
        await store.touch(key, 10)
        await anyio.sleep(1.1)
        assert await store.read(key) == b"kept", "touch did not extend the record's life"
        assert await store.read(other) is None
        found = await store.read_with_ttl(key)
        assert found is not None
        # Under 8.9 s are left; rounded down, as a cache in front needs, that is 8 at most.
        assert found[1] is None or found[1] <= 8, f"{found[1]} s left 1.1 s after touch(10)"

    @_anyio
    async def test_touch_missing_is_noop(self, store: SessionStore) -> None:
        """``touch`` of an absent key creates nothing."""
        key = new_key()
        await store.touch(key, 30)
        assert await store.read(key) is None, "touch created a record"

    @_anyio
    async def test_writes_set_a_new_ttl(self, store: SessionStore) -> None:
        """Every write sets the record's TTL to the one it is given, shorter or longer."""
        updated, appended, replaced, compacted, kept = (new_key() for _ in range(5))
        for key in (updated, appended, replaced, compacted, kept):
            await store.create(key, b"a", 60)
        await store.update(updated, b"b", 1)
        await store.append(appended, b"b", 1)
        await store.replace(replaced, b"a", b"b", 1)
        await store.compact_and_append(compacted, b"a", b"b", b"c", 1)
        await store.update(kept, b"b", 60)
        await anyio.sleep(1.1)
        assert await store.read(updated) is None, "update did not set the new TTL"
        assert await store.read(appended) is None, "append did not set the new TTL"
        assert await store.read(replaced) is None, "replace did not set the new TTL"
        assert await store.read(compacted) is None, "compact_and_append did not set the new TTL"
        assert await store.read(kept) == b"b"

    @_anyio
    async def test_clear_expired(self, store: SessionStore) -> None:
        """``clear_expired`` removes expired records, counts them and keeps live ones."""
        await store.clear_expired()  # what earlier tests left to expire
        live, dead = new_key(), [new_key() for _ in range(3)]
        await store.create(live, b"live", 60)
        for key in dead:
            await store.create(key, b"dead", 1)
        await anyio.sleep(1.1)
        removed = await store.clear_expired()
        assert isinstance(removed, int)
        if self.native_ttl:
            assert removed >= 0
        elif self.shared_backend:
            assert removed >= len(dead), f"clear_expired reported {removed} of {len(dead)}"
        else:
            assert removed == len(dead), f"clear_expired reported {removed} of {len(dead)}"
        assert await store.read(live) == b"live", "clear_expired removed a live record"
        for key in dead:
            assert await store.read(key) is None

    # -- the optional user index ("log out everywhere") -------------------------

    @_anyio
    async def test_user_index_is_declared_honestly(self, store: SessionStore) -> None:
        """Without ``has_user_index`` both methods raise ``UnsupportedOperation``."""
        if store.has_user_index:
            await store.link_user(new_key(), new_key())  # must not raise
            assert await store.delete_user(new_key()) == []
            return
        with pytest.raises(UnsupportedOperation):
            await store.link_user(new_key(), new_key())
        with pytest.raises(UnsupportedOperation):
            await store.delete_user(new_key())

    @_anyio
    async def test_delete_user_deletes_their_live_sessions_only(self, store: SessionStore) -> None:
        """``delete_user`` deletes and returns the user's live records, no one else's."""
        _needs_user_index(store)
        user, other = new_key(), new_key()
        mine, theirs = [new_key(), new_key(), new_key()], new_key()
        for key in mine:
            await store.create(key, b"mine", 60)
            await store.link_user(user, key)
        await store.create(theirs, b"theirs", 60)
        await store.link_user(other, theirs)
        await store.link_user(user, mine[0])  # linking twice is harmless
        deleted = await store.delete_user(user)
        assert sorted(deleted) == sorted(mine), "delete_user returned the wrong keys"
        for key in mine:
            assert await store.read(key) is None, "a session of the user survived"
        assert await store.read(theirs) == b"theirs", "another user's session was deleted"
        assert await store.delete_user(user) == [], "the links outlived delete_user"
        assert await store.delete_user(other) == [theirs]

    @_anyio
    async def test_delete_user_skips_links_to_gone_records(self, store: SessionStore) -> None:
        """Links to deleted or expired records do not count; a touched record's link does."""
        _needs_user_index(store)
        user = new_key()
        deleted, expired, live, touched = (new_key() for _ in range(4))
        await store.create(deleted, b"x", 60)
        await store.create(expired, b"x", 1)
        await store.create(live, b"x", 60)
        await store.create(touched, b"x", 1)
        for key in (deleted, expired, live, touched):
            await store.link_user(user, key)
        await store.delete(deleted)
        await store.touch(touched, 60)  # kept alive by touch: its link must live on too
        await anyio.sleep(1.1)
        assert sorted(await store.delete_user(user)) == sorted([live, touched])

    @_anyio
    async def test_user_index_with_many_sessions(self, store: SessionStore) -> None:
        """40 logins, 30 of them since logged out: the 10 live ones are all found."""
        _needs_user_index(store)
        user = new_key()
        keys = [new_key() for _ in range(40)]
        for index, key in enumerate(keys):
            await store.create(key, b"x", 60)
            await store.link_user(user, key)
            if index % 4:  # 30 of 40 end, interleaved with later logins
                await store.delete(key)
        live = [key for index, key in enumerate(keys) if not index % 4]
        assert sorted(await store.delete_user(user)) == sorted(live)

    @_anyio
    async def test_clear_expired_keeps_links_of_live_sessions(self, store: SessionStore) -> None:
        """``clear_expired`` may prune links, never those of live records."""
        _needs_user_index(store)
        user = new_key()
        live, gone = new_key(), new_key()
        await store.create(live, b"x", 60)
        await store.create(gone, b"x", 60)
        await store.link_user(user, live)
        await store.link_user(user, gone)
        await store.delete(gone)
        await store.clear_expired()
        assert await store.delete_user(user) == [live]

    # -- values ----------------------------------------------------------------

    @_anyio
    async def test_binary_safe(self, store: SessionStore) -> None:
        """Values are bytes: all 256 byte values and NULs survive every write."""
        key = new_key()
        data = bytes(range(256)) * 4 + b"\x00\x00end"
        await store.create(key, data, 60)
        assert await store.read(key) == data
        await store.append(key, b"\x00\xff", 60)
        assert await store.read(key) == data + b"\x00\xff"
        await store.update(key, b"\x00", 60)
        assert await store.read(key) == b"\x00"

    @_anyio
    async def test_utf8_bytes_round_trip(self, store: SessionStore) -> None:
        """Values are never decoded or re-encoded as text."""
        key = new_key()
        data = "ünïcødé 🍪 ключ".encode()
        await store.create(key, data, 60)
        assert await store.read(key) == data
        latin1 = "é".encode("latin-1")  # not valid UTF-8 on its own
        await store.append(key, latin1, 60)
        assert await store.read(key) == data + latin1

    @_anyio
    async def test_large_value(self, store: SessionStore) -> None:
        """A 1 MiB value round-trips, and grows by append."""
        key = new_key()
        data = secrets.token_bytes(1024 * 1024)
        await store.create(key, data, 60)
        assert await store.read(key) == data
        await store.append(key, data[:1024], 60)
        assert await store.read(key) == data + data[:1024]

    @_anyio
    async def test_empty_value(self, store: SessionStore) -> None:
        """An empty value is a record, distinct from no record."""
        key = new_key()
        assert await store.create(key, b"", 60)
        assert await store.read(key) == b""
        assert await store.create(key, b"x", 60) is False
        assert await store.update(key, b"", 60) is True
        assert await store.replace(key, b"", b"P", 60) is True
        assert await store.update(key, b"", 60) is True
        assert await store.compact_and_append(key, b"", b"P", b"x", 60) is True
        assert await store.read(key) == b"Px"

    @_anyio
    async def test_returns_bytes(self, store: SessionStore) -> None:
        """``read`` returns ``bytes`` (not a memoryview, bytearray or str)."""
        key = new_key()
        await store.create(key, b"x", 60)
        assert type(await store.read(key)) is bytes

    # -- lifecycle -------------------------------------------------------------

    @_anyio
    async def test_is_a_session_store(self, store: Any) -> None:
        """The fixture gives a :class:`SessionStore` (what the middleware accepts)."""
        assert isinstance(store, SessionStore)

    @_anyio
    async def test_close_twice_is_safe(self, store: SessionStore) -> None:
        """``close`` may be called again (here twice, then by the fixture)."""
        await store.create(new_key(), b"x", 60)
        await store.close()
        await store.close()
