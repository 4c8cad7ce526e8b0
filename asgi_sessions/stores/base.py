"""The contract a server-side session store implements.

A store is an async key-value map with expiry. It never sees a session id,
a cookie or a request: keys are :data:`StoreKey` strings (the hex SHA-256 of a
session id, computed by asgi_sessions) and values are opaque ``bytes`` that
already carry their own expiry time. Everything else (serialisation, expiry
arithmetic, id generation, dirty tracking) lives in the session.

Writes come in two kinds because that is what makes sessions correct under
concurrency: :meth:`SessionStore.create` only writes a key that does not exist
(so two new sessions can never share an id) and :meth:`SessionStore.update`
only writes a key that still exists (so a slow request cannot resurrect a
session that a concurrent logout deleted).

A minimal plugin::

    class DictStore(SessionStore):
        def __init__(self) -> None:
            self._data: dict[str, tuple[bytes, float]] = {}

        async def read(self, key: str) -> bytes | None:
            item = self._data.get(key)
            if item is None or item[1] <= time.time():
                return None
            return item[0]

        async def create(self, key: str, data: bytes, ttl: int) -> bool:
            if await self.read(key) is not None:
                return False
            self._data[key] = (data, time.time() + ttl)
            return True

        async def update(self, key: str, data: bytes, ttl: int) -> bool:
            if await self.read(key) is None:
                return False
            self._data[key] = (data, time.time() + ttl)
            return True

        async def touch(self, key: str, ttl: int) -> None:
            item = self._data.get(key)
            if item is not None:
                self._data[key] = (item[0], time.time() + ttl)

        async def delete(self, key: str) -> None:
            self._data.pop(key, None)

        async def clear_expired(self) -> int:
            now = time.time()
            dead = [k for k, (_, exp) in self._data.items() if exp <= now]
            for k in dead:
                del self._data[k]
            return len(dead)

Run :mod:`asgi_sessions.testing`'s conformance suite against it to prove it.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from typing import TypeAlias

from ..errors import UnsupportedOperation

__all__ = ["SessionStore", "StoreKey", "UserKey"]

StoreKey: TypeAlias = str
"""A session's key in a store: 64 lowercase hex digits, the SHA-256 of its id.

Safe to use verbatim as a file name, a Redis key suffix or a primary key.
"""

UserKey: TypeAlias = str
"""A user in a store's user index: 64 lowercase hex digits, the SHA-256 of the
user id's text (see :func:`asgi_sessions.auth.user_key`)."""


class SessionStore(ABC):
    """Base class of every server-side session store.

    ``ttl`` arguments are whole seconds, always ``>= 1``: the time after which
    the store may forget the record. Stores with native expiry (Redis) use it
    directly; others record it and check it on read. Either way the record's
    own expiry, stored inside ``data``, is checked again by the session, so a
    store that keeps records too long is still correct, only larger.

    Methods raise :class:`~asgi_sessions.errors.SessionStoreUnavailable` when
    the backend cannot be reached or does not answer in time; any other
    exception is treated as a bug and propagates.

    **Optional capability: a user index.** A store that sets
    ``has_user_index = True`` implements :meth:`link_user` and
    :meth:`delete_user`, which is what "log out everywhere"
    (:func:`asgi_sessions.auth.logout_everywhere`) needs. The session links
    every record of a logged-in session to its user right after creating
    it (on login, and on every later change of id).
    """

    has_user_index: bool = False
    """Whether :meth:`link_user` and :meth:`delete_user` are implemented."""

    @abstractmethod
    async def read(self, key: StoreKey) -> bytes | None:
        """Return the stored bytes for ``key``, or ``None`` if absent or expired."""

    async def read_with_ttl(self, key: StoreKey) -> tuple[bytes, int | None] | None:
        """:meth:`read`, with the whole seconds the record has left (``None``: unknown).

        What a cache in front of this store needs to keep a copy no longer
        than the record lives (:class:`~asgi_sessions.stores.WriteThroughStore`
        refilling its cache): an idle timeout is nothing but the store's TTL.
        Round down. The default knows no TTL; a store that keeps one should
        say it, in the same round trip as the read.
        """
        data = await self.read(key)
        return None if data is None else (data, None)

    @abstractmethod
    async def create(self, key: StoreKey, data: bytes, ttl: int) -> bool:
        """Store ``data`` under ``key`` only if no live record exists.

        Return ``False`` (and write nothing) if the key already exists. This
        must be atomic: of two concurrent creates of one key, one returns False.
        """

    @abstractmethod
    async def update(self, key: StoreKey, data: bytes, ttl: int) -> bool:
        """Replace the record under ``key`` only if it still exists.

        Return ``False`` (and write nothing) if the key is absent or expired:
        the session was deleted meanwhile and must not be resurrected.
        """

    @abstractmethod
    async def touch(self, key: StoreKey, ttl: int) -> None:
        """Extend the life of ``key`` to ``ttl`` seconds from now, without rewriting it.

        A no-op when the key is absent. This is what keeps rolling
        (idle-timeout) expiry cheap.
        """

    @abstractmethod
    async def delete(self, key: StoreKey) -> None:
        """Remove ``key``; a no-op when it is absent."""

    async def take(self, key: StoreKey) -> bytes | None:
        """Delete the record under ``key`` and return what it held (``None``: absent or expired).

        What moving a session to a new id (``cycle_key``, login) needs: the
        old record's last contents, with no write to it able to land after
        they were read and still report success. The answer must come from
        where writes are decided (a cache in front must not answer it).
        Override it with one atomic operation of your backend (Redis
        ``GETDEL``, SQL ``DELETE … RETURNING``).

        The default reads, then deletes: correct for one request at a time,
        but an append that lands between the two is lost.
        """
        data = await self.read(key)
        if data is not None:
            await self.delete(key)
        return data

    async def append(self, key: StoreKey, data: bytes, ttl: int) -> bool:
        """Atomically add ``data`` to the end of the record under ``key``.

        Return ``False`` (and write nothing) if the key is absent or expired.
        This is how concurrent requests on one session merge instead of
        overwriting each other: each commit appends the keys it changed, and a
        read replays them in order. Override it with one atomic operation of
        your backend (Redis ``APPEND`` in a script, SQL ``data = data || :x``).

        The default reads and updates, which is correct for a single request
        at a time but can lose one of two appends that race.
        """
        current = await self.read(key)
        if current is None:
            return False
        return await self.update(key, current + data, ttl)

    async def replace(self, key: StoreKey, expected: bytes, data: bytes, ttl: int) -> bool:
        """If the record starts with ``expected``, replace that prefix with ``data``.

        Whatever was appended after ``expected`` is kept, after ``data``.
        Return ``False`` (and write nothing) if the record is absent, expired,
        or no longer starts with ``expected``. The session uses it to compact
        the frames it loaded into one, atomically, without losing appends that
        landed meanwhile. Override it with a compare-and-set of your backend.

        The default reads, compares and updates: not atomic across processes.
        """
        current = await self.read(key)
        if current is None or not current.startswith(expected):
            return False
        return await self.update(key, data + current[len(expected) :], ttl)

    async def compact_and_append(
        self, key: StoreKey, expected: bytes, replacement: bytes, data: bytes, ttl: int
    ) -> bool:
        """:meth:`replace` (prefix ``expected`` by ``replacement``) then :meth:`append`.

        The replacement is best-effort (skipped if the prefix changed); the
        append is not. Return ``False`` only if the key is gone. Stores that
        can do both in one round trip override this (Redis: one script).
        """
        await self.replace(key, expected, replacement, ttl)
        return await self.append(key, data, ttl)

    async def link_user(self, user: UserKey, key: StoreKey) -> None:
        """Record that the session under ``key`` belongs to ``user``.

        Called right after ``key`` was created, so a link to a missing record
        means that record is gone for good: a store may forget such links
        whenever convenient (on the next link, in :meth:`clear_expired`). A
        link must live at least as long as its record; records are kept
        alive by :meth:`touch`, which does not know the user, so links must
        not expire by time alone.
        """
        raise UnsupportedOperation(f"{type(self).__name__} keeps no index of sessions by user")

    async def delete_user(self, user: UserKey) -> list[StoreKey]:
        """Delete every record linked to ``user``, and the links.

        Returns the keys of the live records that were deleted (a link to a
        missing or expired record does not count). A session created while
        this runs may survive: it began after the call did.
        """
        raise UnsupportedOperation(f"{type(self).__name__} keeps no index of sessions by user")

    async def clear_expired(self) -> int:
        """Remove expired records and return how many were removed.

        Stores with native expiry return ``0``: they have nothing to do.
        """
        return 0

    async def close(self) -> None:
        """Release connections and files. The store is not used afterwards."""
        return None

    async def __aenter__(self) -> SessionStore:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


def on_asyncio() -> bool:
    """Whether an asyncio event loop runs this task (not trio, say).

    For the stores whose drivers need asyncio (Redis, SQL): they call it
    only once a call has failed, to say so instead of the driver's
    "no running event loop".
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
