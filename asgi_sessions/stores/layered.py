"""WriteThroughStore: a fast cache in front of a durable database (Django's ``cached_db``).

Reads try the cache, fall back to the database and refill the cache; writes
go to the database first (it is the truth, and decides create-only,
update-only, append and compare-and-set) and then to the cache. A cache that
is down or slow is logged and skipped: no read the database can serve fails
and no write is lost.

A cached copy never outlives its record: a refill is given the record's
remaining life as the database reports it (:meth:`SessionStore.read_with_ttl`),
so an idle timeout, which is nothing but the store's TTL, holds through the
cache too. A delete (a logout) leaves a tombstone in the cache for
``cache_ttl`` seconds instead of an empty slot, so a request that read the
record just before the delete cannot put it back: refills are create-only,
and the tombstone reads as "no session". Nor can a write that reached the
database just before the delete: after an update, append or compare-and-set,
the cached copy is changed only by a compare-and-set on the cache (to the new
bytes, or to a stale mark that the next read refills), which a tombstone laid
meanwhile makes miss.

What a cache can still get wrong is bounded, not excluded: entries live at
most ``cache_ttl`` seconds, so a value the cache kept while it could not be
told about a change (an outage, or a refill racing with an append) is
forgotten within that time. Writes never depend on the cache, so a stale read
can never overwrite newer data: appends go to the database, and a compaction
based on stale bytes fails its compare-and-set there.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from ..errors import SessionStoreUnavailable
from .base import SessionStore, StoreKey, UserKey

__all__ = ["WriteThroughStore"]

logger = logging.getLogger("asgi_sessions")

_T = TypeVar("_T")

_TOMBSTONE = b"\xff\xff\xff\xffasgi_sessions:deleted"
"""What the cache holds for a deleted record. Records are length-prefixed
frames: these first four bytes announce a 4 GiB frame, so no record of ours
is equal to it."""

_STALE = b"\xff\xff\xff\xffasgi_sessions:stale"
"""What the cache holds for a record changed in the database since it was
cached: a miss, which the next read refills. Unlike an empty slot it can be
set by compare-and-set, so it never replaces a tombstone laid meanwhile."""


class WriteThroughStore(SessionStore):
    """``cache`` (e.g. a RedisStore or MemoryStore) in front of ``db`` (e.g. an SQLStore)."""

    def __init__(self, cache: SessionStore, db: SessionStore, *, cache_ttl: int = 300) -> None:
        if cache_ttl < 1:
            raise ValueError("cache_ttl must be at least 1 second")
        self.cache = cache
        self.db = db
        self.cache_ttl = cache_ttl
        self.has_user_index = db.has_user_index

    async def _cached(self, operation: Callable[[], Awaitable[_T]], default: _T) -> _T:
        # Any failure of the cache, not only an unavailable one: most calls
        # here follow a database write that has committed, and a cache that
        # fails in a way nobody foresaw must not turn that write into a 500.
        try:
            return await operation()
        except Exception as exc:
            what = (
                "unavailable"
                if isinstance(exc, SessionStoreUnavailable)
                else f"failed ({type(exc).__name__})"
            )
            logger.warning("session cache %s; using the database alone", what)
            return default

    def _ttl(self, ttl: int) -> int:
        return min(ttl, self.cache_ttl)

    async def _put(self, key: StoreKey, data: bytes, ttl: int) -> None:
        """Cache a record the database has just created: it replaces anything cached."""

        async def put() -> None:
            if not await self.cache.update(key, data, self._ttl(ttl)):
                await self.cache.create(key, data, self._ttl(ttl))

        await self._cached(put, None)

    async def _refresh(self, key: StoreKey, data: bytes | None, ttl: int) -> None:
        """After a write to an existing record: cache ``data``, or mark the copy stale.

        Never over a tombstone. The record existed when the database took
        this write, so a tombstone now is a delete (a logout) that landed
        after it, and must go on reading as "no session". Hence a
        compare-and-set on the cached bytes, not a plain overwrite or delete:
        a tombstone laid between the read and the set makes the set miss.
        """

        async def refresh() -> None:
            current = await self.cache.read(key)
            if current == _TOMBSTONE:
                return
            if current is None:
                if data is not None:
                    await self.cache.create(key, data, self._ttl(ttl))
                return
            replacement = _STALE if data is None else data
            await self.cache.replace(key, current, replacement, self._ttl(ttl))

        await self._cached(refresh, None)

    async def _bury(self, key: StoreKey) -> None:
        """Replace the cached copy of a deleted record by a tombstone."""

        async def bury() -> None:
            # A refill can slip in between the update and the create: then
            # the update runs again, over it.
            try:
                for _ in range(2):
                    if await self.cache.update(key, _TOMBSTONE, self.cache_ttl):
                        return
                    if await self.cache.create(key, _TOMBSTONE, self.cache_ttl):
                        return
            except SessionStoreUnavailable:
                # A cache that refuses writes but still serves reads (Redis at
                # maxmemory under noeviction) would go on serving the deleted
                # record: drop the copy instead, which such a cache allows.
                await self.cache.delete(key)
                raise

        await self._cached(bury, None)

    async def _refill(self, key: StoreKey) -> tuple[bytes, int | None] | None:
        found = await self.db.read_with_ttl(key)
        if found is None:
            return None
        data, left = found
        ttl = self.cache_ttl if left is None else min(left, self.cache_ttl)
        if ttl >= 1:
            # Create-only, or over a stale mark: never over what a concurrent
            # writer just cached, nor over the tombstone of a concurrent delete.
            async def refill() -> None:
                if not await self.cache.create(key, data, ttl):
                    await self.cache.replace(key, _STALE, data, ttl)

            await self._cached(refill, None)
        return found

    async def read(self, key: StoreKey) -> bytes | None:
        """The cache's copy, else the database's (which then refills the cache)."""
        data = await self._cached(lambda: self.cache.read(key), None)
        if data is not None and data != _STALE:
            return None if data == _TOMBSTONE else data
        found = await self._refill(key)
        return None if found is None else found[0]

    async def read_with_ttl(self, key: StoreKey) -> tuple[bytes, int | None] | None:
        """:meth:`read` with the record's remaining life (the cache's copy lives no longer)."""
        found = await self._cached(lambda: self.cache.read_with_ttl(key), None)
        if found is not None and found[0] != _STALE:
            return None if found[0] == _TOMBSTONE else found
        return await self._refill(key)

    async def create(self, key: StoreKey, data: bytes, ttl: int) -> bool:
        """Create in the database (which decides), then cache."""
        if not await self.db.create(key, data, ttl):
            return False
        await self._put(key, data, ttl)
        return True

    async def update(self, key: StoreKey, data: bytes, ttl: int) -> bool:
        """Update the database, then the cache (unless a delete buried it meanwhile)."""
        if not await self.db.update(key, data, ttl):
            await self._bury(key)
            return False
        await self._refresh(key, data, ttl)
        return True

    async def append(self, key: StoreKey, data: bytes, ttl: int) -> bool:
        """Append in the database (atomically there), then mark the cached copy stale."""
        done = await self.db.append(key, data, ttl)
        await self._refresh(key, None, ttl)
        return done

    async def replace(self, key: StoreKey, expected: bytes, data: bytes, ttl: int) -> bool:
        """Compare-and-set in the database, then mark the cached copy stale."""
        done = await self.db.replace(key, expected, data, ttl)
        await self._refresh(key, None, ttl)
        return done

    async def compact_and_append(
        self, key: StoreKey, expected: bytes, replacement: bytes, data: bytes, ttl: int
    ) -> bool:
        """Both in the database, then mark the cached copy stale."""
        done = await self.db.compact_and_append(key, expected, replacement, data, ttl)
        await self._refresh(key, None, ttl)
        return done

    async def touch(self, key: StoreKey, ttl: int) -> None:
        """Extend the database's record; the cached copy may be shortened, never extended.

        Extending the cache too would let a copy outlive ``cache_ttl``: a copy
        the database no longer has (a logout whose tombstone a cache outage
        lost, or a refill that lost a race with a write) would be served, and
        kept alive, for as long as the session stays active. A copy that runs
        out is refilled from the database, with the record's remaining life.
        A copy has at most ``cache_ttl`` left, so only a touch shorter than
        that can leave it outliving the record, and costs a cache call.
        """
        await self.db.touch(key, ttl)
        if ttl >= self.cache_ttl:
            return

        async def shorten() -> None:
            found = await self.cache.read_with_ttl(key)
            if found is None or found[0] == _TOMBSTONE:
                return  # a tombstone keeps its full life: it guards against refills
            if found[1] is None or found[1] > ttl:
                await self.cache.touch(key, ttl)

        await self._cached(shorten, None)

    async def delete(self, key: StoreKey) -> None:
        """Delete from the database, then leave a tombstone in the cache (also if it failed)."""
        try:
            await self.db.delete(key)
        finally:
            await self._bury(key)

    async def take(self, key: StoreKey) -> bytes | None:
        """Take from the database (never from the cache), then leave a tombstone.

        The tombstone is left even when the database fails: the take may have
        committed before its answer was lost, and the cache must not go on
        serving the record.
        """
        try:
            return await self.db.take(key)
        finally:
            await self._bury(key)

    async def link_user(self, user: UserKey, key: StoreKey) -> None:
        """Link in the database, the store's truth (the cache keeps no index)."""
        await self.db.link_user(user, key)

    async def delete_user(self, user: UserKey) -> list[StoreKey]:
        """Delete in the database, then leave a tombstone for each deleted session in the cache."""
        deleted = await self.db.delete_user(user)
        for key in deleted:
            await self._bury(key)
        return deleted

    async def clear_expired(self) -> int:
        """Clear both; the database's count is returned."""
        await self._cached(self.cache.clear_expired, 0)
        return await self.db.clear_expired()

    async def close(self) -> None:
        """Close both."""
        try:
            await self.cache.close()
        finally:
            await self.db.close()
