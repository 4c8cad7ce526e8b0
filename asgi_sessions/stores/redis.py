"""RedisStore: sessions in Redis, through redis-py's ``redis.asyncio``.

(``aioredis`` was merged into redis-py and is abandoned; it does not even
import on Python 3.11.)

Every operation is exactly one round trip: ``GET``; ``SET … EX NX`` for
create-only and ``SET … EX XX`` for update-only writes; ``EXPIRE`` for a
touch; ``DEL``; and small server-side Lua scripts (``EVALSHA``) for the
atomic append, compare-and-set and take (read-and-delete), so the
concurrent-merge guarantees cost no extra round trip. Expiry is Redis's own
(``EX``): ``clear_expired`` only prunes the user index (below).

Works with a plain client, a Sentinel-managed one and ``RedisCluster``
(every command and script touches one key, so slots never get in the way).
Keys are ``prefix`` + the hashed id: ``KEYS session:*`` shows nothing usable
as a session token.

The user index ("log out everywhere") is one set per user,
``prefix + "user:" + the user's hash``, holding the keys of their sessions.
Sets have no TTL (sessions kept alive by ``touch`` must stay findable);
links to records that are gone are dropped each time the set grows past
a multiple of ``_PRUNE_AT`` members (so a set stays small) and by
:meth:`RedisStore.clear_expired`, which is worth running now and then when
"log out everywhere" is used. The user hash only gives keys a fixed shape:
it is not a secret (records hold the user id anyway).

This module owns the Redis commands and the mapping of Redis failures to
:class:`~asgi_sessions.errors.SessionStoreUnavailable`. It never knows what
a record holds, what a session id is, or anything about cookies and requests.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Any, TypeAlias, TypeVar

from redis import exceptions as redis_errors
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from ..errors import ImproperlyConfigured, SessionStoreUnavailable
from .base import SessionStore, StoreKey, UserKey, on_asyncio

__all__ = ["RedisClient", "RedisStore"]

_T = TypeVar("_T")

RedisClient: TypeAlias = Redis | RedisCluster
"""What :class:`RedisStore` accepts instead of a URL.

A plain ``redis.asyncio.Redis``, a Sentinel-managed one (``master_for``
returns a ``Redis``) or a ``redis.asyncio.cluster.RedisCluster``.
"""

# KEYS[1] = key; ARGV[1] = bytes to append; ARGV[2] = ttl.
_APPEND = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('APPEND', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""

# KEYS[1] = key; ARGV[1] = expected prefix; ARGV[2] = its replacement; ARGV[3] = ttl.
_REPLACE = """
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
local size = string.len(ARGV[1])
if string.sub(current, 1, size) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2] .. string.sub(current, size + 1), 'EX', ARGV[3])
return 1
"""

# KEYS[1] = key; ARGV[1] = expected prefix; ARGV[2] = its replacement;
# ARGV[3] = bytes to append; ARGV[4] = ttl.
_COMPACT_AND_APPEND = """
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
local size = string.len(ARGV[1])
if string.sub(current, 1, size) == ARGV[1] then
  current = ARGV[2] .. string.sub(current, size + 1)
end
redis.call('SET', KEYS[1], current .. ARGV[3], 'EX', ARGV[4])
return 1
"""

# KEYS[1] = key. Returns the record's bytes (false, i.e. nil, if absent), deleting it.
_TAKE = """
local current = redis.call('GET', KEYS[1])
if current then redis.call('DEL', KEYS[1]) end
return current
"""

# KEYS[1] = the user's set; ARGV[1] = a session key. Returns the set's size.
_LINK = """
redis.call('SADD', KEYS[1], ARGV[1])
return redis.call('SCARD', KEYS[1])
"""

_PRUNE_AT = 32
"""A user's set is checked for links to gone records each time it grows past a
multiple of this many: pruning costs one round trip per member, so it is
amortised over that many logins, and a set stays small."""

# Failures of the backend, not of our commands: the store is unavailable.
# ConnectionError covers Sentinel's MasterNotFoundError, a full connection pool
# and a server still loading its dataset. RedisClusterException is what the
# cluster client raises when no node answers or slots are uncovered; the rest of
# its uses are multi-key or pipeline misuse, which single-key commands cannot
# trigger. OutOfMemoryError is a server at maxmemory refusing writes.
_UNAVAILABLE = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.ClusterDownError,
    redis_errors.TryAgainError,
    redis_errors.ReadOnlyError,
    redis_errors.OutOfMemoryError,
    redis_errors.RedisClusterException,
    OSError,
    TimeoutError,
)


_REFUSALS_FOR_NOW = {
    "MISCONF": "Redis refuses writes, it cannot persist to disk (MISCONF)",
    "BUSY": "Redis is busy running a script (BUSY)",
    "NOREPLICAS": "Redis refuses writes, too few replicas are connected (NOREPLICAS)",
    "MASTERDOWN": "the Redis replica has lost its primary (MASTERDOWN)",
}
"""Server errors that mean "not now", which redis-py has no exception class for.

Each holds until the server recovers, so each is an outage of the store,
not a bug in the command: ``MISCONF``, a Redis whose last RDB snapshot
failed (disk full, no permission) with ``stop-writes-on-bgsave-error`` (the
default); ``BUSY``, another client's script running past
``busy-reply-threshold``; ``NOREPLICAS``, fewer replicas than
``min-replicas-to-write``; ``MASTERDOWN``, a replica with
``replica-serve-stale-data no`` cut off from its primary (a class of its own,
in :data:`_UNAVAILABLE`, in newer redis-py, not in 5). ``READONLY``, ``TRYAGAIN`` and
``OOM`` have classes in :data:`_UNAVAILABLE`.
"""


_REFUSAL_CODE = re.compile(
    # At the start, or after the ": " of a pipeline's or a script's prefix,
    # which redis-py 5 follows with the repr of the error's args: ("MISCONF …",)
    r"""(?:^|: \(?["']?)(""" + "|".join(_REFUSALS_FOR_NOW) + ") "
)


def _refusal_for_now(error: redis_errors.ResponseError) -> str | None:
    """What :data:`_REFUSALS_FOR_NOW` says of ``error``, or ``None``.

    redis-py raises a plain ``ResponseError`` carrying the server's message,
    which a pipeline prefixes with ``Command # n (…) of pipeline caused
    error: `` (redis-py 5 then quotes it: ``("MISCONF …",)``) and Redis < 7
    a script's with ``… @user_script:n: ``.
    """
    message = str(error.args[0]) if error.args else ""
    found = _REFUSAL_CODE.search(message)
    return None if found is None else _REFUSALS_FOR_NOW[found.group(1)]


_ASYNCIO_ONLY = (
    "RedisStore runs on asyncio only: redis.asyncio needs an asyncio event loop "
    "(this event loop is not asyncio, e.g. trio)"
)


class _Script:
    """A Lua script called by SHA (``EVALSHA``), loaded on first ``NOSCRIPT``.

    Lighter than redis-py's ``Script`` helper on the hot path, and the same
    protocol: one round trip once the server has the script cached.
    """

    __slots__ = ("sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    async def __call__(self, client: RedisClient, key: str, *args: bytes | str | int) -> Any:
        try:
            return await client.evalsha(self.sha, 1, key, *args)
        except redis_errors.NoScriptError:
            return await client.eval(self.source, 1, key, *args)


class RedisStore(SessionStore):
    """Sessions in Redis with native expiry.

    ``client`` is a URL (``redis://``, ``rediss://``, ``unix://``), for which
    the store builds and owns a client, or a ready ``redis.asyncio`` client
    (plain, ``Sentinel(...).master_for(...)``, or ``RedisCluster``) that the
    caller owns unless ``owns_client=True``. Every call is bounded by
    ``timeout`` seconds, whatever the client's own socket timeouts; a Redis
    that is down or slow raises
    :class:`~asgi_sessions.errors.SessionStoreUnavailable`. A client that
    lost its server reconnects by itself, so the same store works again once
    Redis is back.

    ``prefix`` namespaces the keys, so one Redis can serve several apps.
    Runs on asyncio only, as ``redis.asyncio`` does: under another event loop
    (trio) every operation raises
    :class:`~asgi_sessions.errors.ImproperlyConfigured`.
    """

    has_user_index = True

    def __init__(
        self,
        client: str | RedisClient,
        *,
        prefix: str = "session:",
        timeout: float = 2.0,
        owns_client: bool | None = None,
    ) -> None:
        if not timeout > 0:
            raise ImproperlyConfigured("RedisStore timeout must be a positive number of seconds")
        if isinstance(client, str):
            client = Redis.from_url(client, socket_timeout=timeout, socket_connect_timeout=timeout)
            owns_client = True if owns_client is None else owns_client
        if client.get_encoder().decode_responses:
            # Records are opaque bytes; a decoding client would turn them into
            # str, or fail on the first one that is not UTF-8.
            raise ImproperlyConfigured(
                "RedisStore needs a client with decode_responses=False (the default)"
            )
        self.client: RedisClient = client
        self.prefix = prefix
        self.timeout = timeout
        self._owns_client = bool(owns_client)
        self._append = _Script(_APPEND)
        self._replace = _Script(_REPLACE)
        self._compact_and_append = _Script(_COMPACT_AND_APPEND)
        self._take = _Script(_TAKE)
        self._link = _Script(_LINK)

    def _key(self, key: StoreKey) -> str:
        return self.prefix + key

    def _user(self, user: UserKey) -> str:
        return self.prefix + "user:" + user

    async def _call(self, operation: Callable[[], Awaitable[_T]]) -> _T:
        # redis.asyncio is asyncio-only, so asyncio's own timeout (cheaper than
        # a portable cancel scope) bounds every call.
        try:
            async with asyncio.timeout(self.timeout):
                return await operation()
        except _UNAVAILABLE as exc:
            raise SessionStoreUnavailable(
                f"Redis session store unavailable ({type(exc).__name__})"
            ) from None
        except Exception as exc:
            # Only on the error path: under trio, asyncio.timeout (or the
            # client) fails with "no running event loop".
            if not on_asyncio():
                raise ImproperlyConfigured(_ASYNCIO_ONLY) from exc
            refusal = _refusal_for_now(exc) if isinstance(exc, redis_errors.ResponseError) else None
            if refusal is not None:
                # Without the server's message: in a pipeline, redis-py adds the keys to it.
                raise SessionStoreUnavailable(
                    f"Redis session store unavailable: {refusal}"
                ) from None
            raise

    async def read(self, key: StoreKey) -> bytes | None:
        """``GET``: one round trip."""
        value: bytes | str | None = await self._call(lambda: self.client.get(self._key(key)))
        assert not isinstance(value, str)  # refused decode_responses=True in __init__
        return value

    async def read_with_ttl(self, key: StoreKey) -> tuple[bytes, int | None] | None:
        """``GET`` and ``PTTL`` in one pipeline: one round trip.

        ``PTTL``, not ``TTL``: Redis rounds ``TTL`` to the nearest second, so
        8.9 s left would read as 9 and a cache could outlive the record.
        """
        name = self._key(key)

        async def read() -> list[Any]:
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.get(name)
                pipe.pttl(name)
                return await pipe.execute()

        value, left = await self._call(read)
        if value is None:
            return None
        # PTTL is -1 for a key without expiry (none of ours) and -2 if it just expired.
        return value, None if left == -1 else max(0, int(left)) // 1000

    async def create(self, key: StoreKey, data: bytes, ttl: int) -> bool:
        """``SET … EX ttl NX``: only if absent, atomically."""
        done = await self._call(lambda: self.client.set(self._key(key), data, ex=ttl, nx=True))
        return bool(done)

    async def update(self, key: StoreKey, data: bytes, ttl: int) -> bool:
        """``SET … EX ttl XX``: only if present, atomically."""
        done = await self._call(lambda: self.client.set(self._key(key), data, ex=ttl, xx=True))
        return bool(done)

    async def append(self, key: StoreKey, data: bytes, ttl: int) -> bool:
        """A Lua script: ``EXISTS`` then ``APPEND`` and ``EXPIRE``, atomically."""
        done = await self._call(lambda: self._append(self.client, self._key(key), data, ttl))
        return bool(done)

    async def replace(self, key: StoreKey, expected: bytes, data: bytes, ttl: int) -> bool:
        """A Lua compare-and-set of the record's prefix."""
        done = await self._call(
            lambda: self._replace(self.client, self._key(key), expected, data, ttl)
        )
        return bool(done)

    async def compact_and_append(
        self, key: StoreKey, expected: bytes, replacement: bytes, data: bytes, ttl: int
    ) -> bool:
        """Both in one Lua script: one round trip."""
        done = await self._call(
            lambda: self._compact_and_append(
                self.client, self._key(key), expected, replacement, data, ttl
            )
        )
        return bool(done)

    async def touch(self, key: StoreKey, ttl: int) -> None:
        """``EXPIRE``: moves the expiry, rewrites nothing; no-op on a missing key."""
        await self._call(lambda: self.client.expire(self._key(key), ttl))

    async def delete(self, key: StoreKey) -> None:
        """``DEL``."""
        await self._call(lambda: self.client.delete(self._key(key)))

    async def take(self, key: StoreKey) -> bytes | None:
        """A Lua ``GET`` then ``DEL``, atomically (``GETDEL`` needs Redis 6.2)."""
        value: bytes | None = await self._call(lambda: self._take(self.client, self._key(key)))
        return value

    async def link_user(self, user: UserKey, key: StoreKey) -> None:
        """``SADD`` to the user's set (one script, one round trip); prunes big sets."""
        size = int(await self._call(lambda: self._link(self.client, self._user(user), key)))
        if size > _PRUNE_AT and size % _PRUNE_AT == 1:  # once per _PRUNE_AT links, not each
            await self._prune(self._user(user))

    async def _members(self, set_key: str) -> list[StoreKey]:
        members = await self._call(lambda: self.client.smembers(set_key))
        return sorted(m.decode("ascii") if isinstance(m, bytes) else str(m) for m in members)

    async def _prune(self, set_key: str) -> int:
        """Drop the set's links to records that no longer exist; returns how many."""
        keys = await self._members(set_key)
        if not keys:
            return 0

        async def check() -> list[Any]:
            async with self.client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.exists(self._key(key))
                return await pipe.execute()

        exists = await self._call(check)
        gone = [key for key, found in zip(keys, exists, strict=True) if not found]
        if gone:
            await self._call(lambda: self.client.srem(set_key, *gone))
        return len(gone)

    async def delete_user(self, user: UserKey) -> list[StoreKey]:
        """``SMEMBERS``, then one pipeline of ``DEL`` per session and ``SREM``: two round trips."""
        set_key = self._user(user)
        keys = await self._members(set_key)
        if not keys:
            return []

        async def delete() -> list[Any]:
            async with self.client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.delete(self._key(key))
                pipe.srem(set_key, *keys)
                return await pipe.execute()

        results = await self._call(delete)
        return [key for key, deleted in zip(keys, results, strict=False) if deleted]

    async def clear_expired(self) -> int:
        """Redis expires records itself; this only prunes the user index.

        Scans the ``prefix + "user:*"`` sets and drops their links to records
        that are gone (and so sets left empty). Returns 0: no record is removed.

        ``timeout`` bounds each ``SCAN`` page and each set's pruning, not the
        whole walk: ``SCAN`` visits every key of the database, and in a Redis
        of a few million keys (a cache shared with the sessions) the whole
        walk takes longer than any timeout meant for one request.
        """
        async for page in self._scan_pages(self._user("*")):
            for name in page:
                await self._prune(name.decode() if isinstance(name, bytes) else str(name))
        return 0

    async def _scan_pages(self, match: str) -> AsyncIterator[list[Any]]:
        """The keys matching ``match``, one ``SCAN`` page (each its own call) at a time.

        Not ``scan_iter``: it yields only keys that match, so one step of it
        can walk any number of pages that match nothing, past any timeout.
        """
        client = self.client
        if isinstance(client, RedisCluster):
            for node in client.get_primaries():  # every key lives on one primary
                cursor = 0
                while True:
                    scan: Callable[[], Awaitable[Any]] = partial(
                        client.scan, cursor, match, 1000, target_nodes=node
                    )
                    # A cluster's SCAN answers {node name: next cursor}, keys.
                    cursors, page = await self._call(scan)
                    yield page
                    cursor = cursors[node.name]
                    if not cursor:
                        break
        else:
            cursor = 0
            while True:
                cursor, page = await self._call(partial(client.scan, cursor, match, 1000))
                yield page
                if not cursor:
                    break

    async def close(self) -> None:
        """Close the client if this store created it."""
        if self._owns_client:
            if not on_asyncio():
                # Checked first (closing is no hot path): under trio, redis-py's
                # close asks asyncio for a loop, which either fails or has one
                # made and left open. A client used only under trio holds no
                # connection, so nothing is left behind.
                raise ImproperlyConfigured(_ASYNCIO_ONLY)
            await self.client.aclose()
