"""WriteThroughStore: a fast cache in front of a durable database (Django's ``cached_db``).

Reads try the cache, fall back to the database and refill the cache; writes
go to the database first (it is the truth, and decides create-only,
update-only, append and compare-and-set) and then to the cache. A cache that
is down or slow is logged and skipped: no read the database can serve fails
and no write is lost.

What a cache can get wrong is bounded, not excluded: entries live at most
``cache_ttl`` seconds, so a value the cache kept while it could not be told
about a change (an outage, or a refill racing with an append) is forgotten
within that time. Writes never depend on the cache, so a stale read can
never overwrite newer data: appends go to the database, and a compaction
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
        try:
            return await operation()
        except SessionStoreUnavailable:
            logger.warning("session cache unavailable; using the database alone")
            return default

    def _ttl(self, ttl: int) -> int:
        return min(ttl, self.cache_ttl)

    async def _put(self, key: StoreKey, data: bytes, ttl: int) -> None:
        async def put() -> None:
            if not await self.cache.update(key, data, self._ttl(ttl)):
                await self.cache.create(key, data, self._ttl(ttl))

        await self._cached(put, None)

    async def _forget(self, key: StoreKey) -> None:
        await self._cached(lambda: self.cache.delete(key), None)

    async def read(self, key: StoreKey) -> bytes | None:
        """The cache's copy, else the database's (which then refills the cache)."""
        data = await self._cached(lambda: self.cache.read(key), None)
        if data is not None:
            return data
        data = await self.db.read(key)
        if data is not None:
            # Create-only: never overwrite what a concurrent writer just cached.
            await self._cached(lambda: self.cache.create(key, data, self.cache_ttl), False)
        return data

    async def create(self, key: StoreKey, data: bytes, ttl: int) -> bool:
        """Create in the database (which decides), then cache."""
        if not await self.db.create(key, data, ttl):
            return False
        await self._put(key, data, ttl)
        return True

    async def update(self, key: StoreKey, data: bytes, ttl: int) -> bool:
        """Update the database, then the cache."""
        if not await self.db.update(key, data, ttl):
            await self._forget(key)
            return False
        await self._put(key, data, ttl)
        return True

    async def append(self, key: StoreKey, data: bytes, ttl: int) -> bool:
        """Append in the database (atomically there), then drop the cached copy."""
        done = await self.db.append(key, data, ttl)
        await self._forget(key)
        return done

    async def replace(self, key: StoreKey, expected: bytes, data: bytes, ttl: int) -> bool:
        """Compare-and-set in the database, then drop the cached copy."""
        done = await self.db.replace(key, expected, data, ttl)
        await self._forget(key)
        return done

    async def compact_and_append(
        self, key: StoreKey, expected: bytes, replacement: bytes, data: bytes, ttl: int
    ) -> bool:
        """Both in the database, then drop the cached copy."""
        done = await self.db.compact_and_append(key, expected, replacement, data, ttl)
        await self._forget(key)
        return done

    async def touch(self, key: StoreKey, ttl: int) -> None:
        """Extend both."""
        await self.db.touch(key, ttl)
        await self._cached(lambda: self.cache.touch(key, self._ttl(ttl)), None)

    async def delete(self, key: StoreKey) -> None:
        """Delete from both (the database first)."""
        await self.db.delete(key)
        await self._forget(key)

    async def link_user(self, user: UserKey, key: StoreKey) -> None:
        """Link in the database, the store's truth (the cache keeps no index)."""
        await self.db.link_user(user, key)

    async def delete_user(self, user: UserKey) -> list[StoreKey]:
        """Delete in the database, then drop each deleted session from the cache."""
        deleted = await self.db.delete_user(user)
        for key in deleted:
            await self._forget(key)
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
