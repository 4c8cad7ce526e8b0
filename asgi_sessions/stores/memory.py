"""MemoryStore: sessions in this process's memory.

For development, tests and single-process deployments. Sessions vanish when
the process exits and are not shared between workers. Bounded: past
``max_entries`` the least recently used session is evicted, so a flood of
new sessions cannot exhaust memory.

Every method completes without awaiting anything, so on one event loop each
is atomic: create-only, update-only, append and compare-and-set need no lock.
Uses no asyncio or trio API, so it runs under both. Expiry uses the monotonic
clock, so a change of the wall clock neither ends nor prolongs sessions.

It knows keys, bytes and deadlines; never a session id, a cookie or what the
bytes mean.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from .base import SessionStore, StoreKey, UserKey

__all__ = ["MemoryStore"]


class MemoryStore(SessionStore):
    """An in-process, bounded, expiring session store (LRU eviction).

    ``max_entries`` bounds the number of records: creating one more evicts
    the least recently read or written, live or not. Expired records are
    dropped when next touched by a read or write, or by :meth:`clear_expired`.
    Keeps a user index (for "log out everywhere").
    """

    has_user_index = True

    def __init__(self, max_entries: int = 100_000) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._entries: OrderedDict[StoreKey, tuple[bytes, float]] = OrderedDict()
        self._users: dict[UserKey, set[StoreKey]] = {}
        self._clock = time.monotonic

    def __len__(self) -> int:
        """Number of records held, expired ones included until they are purged."""
        return len(self._entries)

    def _live(self, key: StoreKey) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[1] <= self._clock():
            del self._entries[key]
            return None
        return entry[0]

    def _put(self, key: StoreKey, data: bytes, ttl: int) -> None:
        entries = self._entries
        entries[key] = (data, self._clock() + ttl)
        entries.move_to_end(key)
        while len(entries) > self.max_entries:
            entries.popitem(last=False)

    async def read(self, key: StoreKey) -> bytes | None:
        """The record's bytes, or ``None``; a read counts as use for LRU."""
        data = self._live(key)
        if data is not None:
            self._entries.move_to_end(key)
        return data

    async def read_with_ttl(self, key: StoreKey) -> tuple[bytes, int | None] | None:
        """The record's bytes and whole seconds left, or ``None``."""
        data = await self.read(key)
        if data is None:
            return None
        return data, max(0, int(self._entries[key][1] - self._clock()))

    async def create(self, key: StoreKey, data: bytes, ttl: int) -> bool:
        """Write only if no live record exists."""
        if self._live(key) is not None:
            return False
        self._put(key, data, ttl)
        return True

    async def update(self, key: StoreKey, data: bytes, ttl: int) -> bool:
        """Replace only if a live record exists."""
        if self._live(key) is None:
            return False
        self._put(key, data, ttl)
        return True

    async def append(self, key: StoreKey, data: bytes, ttl: int) -> bool:
        """Atomic append (nothing can run between the check and the write)."""
        current = self._live(key)
        if current is None:
            return False
        self._put(key, current + data, ttl)
        return True

    async def replace(self, key: StoreKey, expected: bytes, data: bytes, ttl: int) -> bool:
        """Atomic compare-and-set of the record's prefix."""
        current = self._live(key)
        if current is None or not current.startswith(expected):
            return False
        self._put(key, data + current[len(expected) :], ttl)
        return True

    async def touch(self, key: StoreKey, ttl: int) -> None:
        """Extend a live record's expiry."""
        data = self._live(key)
        if data is not None:
            self._put(key, data, ttl)

    async def delete(self, key: StoreKey) -> None:
        """Remove the record, if any."""
        self._entries.pop(key, None)

    async def take(self, key: StoreKey) -> bytes | None:
        """Remove the record and return its bytes; nothing can run in between."""
        data = self._live(key)
        self._entries.pop(key, None)
        return data

    async def link_user(self, user: UserKey, key: StoreKey) -> None:
        """Add ``key`` to ``user``'s set, forgetting the set's links to gone records."""
        keys = self._users.setdefault(user, set())
        keys.add(key)
        entries = self._entries
        # Test this user's links one by one: intersection_update(entries)
        # walks every record in the store, on every login.
        gone = [linked for linked in keys if linked not in entries]
        if gone:
            keys.difference_update(gone)
        # Pruning walks every link, so it waits until the users are twice the
        # records: after it no more users are left than records, so it runs
        # at most once per max_entries logins, not on every login of a full store.
        if len(self._users) > 2 * self.max_entries:
            self._prune_users()

    async def delete_user(self, user: UserKey) -> list[StoreKey]:
        """Delete ``user``'s live records; one pass, nothing can interleave."""
        deleted = [key for key in self._users.pop(user, ()) if self._live(key) is not None]
        for key in deleted:
            del self._entries[key]
        return deleted

    def _prune_users(self) -> None:
        """Drop links to records that are gone, and users left with none."""
        entries = self._entries
        for user, keys in list(self._users.items()):
            gone = [key for key in keys if key not in entries]
            if gone:
                keys.difference_update(gone)
            if not keys:
                del self._users[user]

    async def clear_expired(self) -> int:
        """Purge expired records (and the user links to them); returns how many."""
        now = self._clock()
        dead = [key for key, (_, expires) in self._entries.items() if expires <= now]
        for key in dead:
            del self._entries[key]
        self._prune_users()
        return len(dead)

    async def close(self) -> None:
        """Drop every record (nothing outlives the process anyway); safe to repeat."""
        self._entries.clear()
        self._users.clear()
