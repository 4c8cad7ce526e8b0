"""SQLStore: sessions in one SQL table, through SQLAlchemy 2's async engine.

Owns one table (``key`` the hex store key as primary key, ``data`` the
record's bytes, ``expires_at`` unix milliseconds, indexed) and every statement
that touches it. Never knows what a record means, nor session ids: rows are
keyed by the SHA-256 the session computed, so a database dump holds no
usable session token.

Each operation is one statement in its own short transaction, so the
concurrency guarantees rest on the database's row locking rather than on
anything held in this process:

- create-only is an ``INSERT`` that the primary key refuses (an expired row
  under the same key is deleted and replaced in one transaction);
- update-only, touch, append and compare-and-set are single ``UPDATE``
  statements guarded by ``key = :key AND expires_at > :now`` and judged by
  their row count (MySQL's ``FOUND_ROWS`` client flag, which SQLAlchemy sets,
  makes a no-change update count as a match); a compaction and the append
  after it share one transaction, so a write commits once;
- append concatenates in the database (``data || :x``, ``CONCAT`` on MySQL),
  so two racing appends both land.

The user index ("log out everywhere") is a second table,
``<table_name>_users`` (user hash, session key), created with the first.
Links have no expiry of their own (sessions kept alive by ``touch`` must
stay findable); :meth:`SQLStore.clear_expired` deletes links whose session
row is gone.

SQLite (aiosqlite) is the embedded default; PostgreSQL (asyncpg) and
MariaDB/MySQL (asyncmy) are the server choices. SQLAlchemy's async engine
runs on asyncio only: under another event loop (trio) every operation raises
:class:`~asgi_sessions.errors.ImproperlyConfigured`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import anyio
import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import SingletonThreadPool, StaticPool

from ..errors import ImproperlyConfigured, SessionStoreUnavailable
from .base import SessionStore, StoreKey, UserKey, on_asyncio

__all__ = ["SQLStore"]

_T = TypeVar("_T")

_CLEAR_BATCH = 5_000
"""Rows deleted per transaction by :meth:`SQLStore.clear_expired`: small
enough that a purge never holds long locks or a huge undo log."""
_CREATE_TABLE_ATTEMPTS = 4
"""Tries at creating the table on demand, when workers race to create it."""

_MYSQL = ("mysql", "mariadb")


def _now() -> int:
    """Unix time in milliseconds: ``expires_at`` is kept to the millisecond, so a
    one-second TTL means one second, not "until the next second boundary"."""
    return int(time.time() * 1000)


def _deadline(ttl: int) -> int:
    """When a record written now with ``ttl`` seconds expires (milliseconds)."""
    return _now() + ttl * 1000


_TAKE_ROUNDS = 8
"""Reads and compare-and-deletes a take without ``RETURNING`` tries."""

_UNAVAILABLE_SQLSTATES = ("08", "53", "57", "55P03", "40001", "40P01", "25006", "70100")
"""SQLSTATE classes (and codes) that mean "not now", not "wrong": connection
exceptions, insufficient resources (too many connections, disk full), operator
intervention (statement timeout, server shutting down), lock timeout,
serialization failure and deadlock (the statement may simply be retried), and
a read-only transaction (a server that just failed over to a standby),
MySQL's "query interrupted" (``max_statement_time``, a killed connection).
asyncpg reports them through SQLAlchemy as a plain ``DBAPIError``. Any other
SQLSTATE (``42…`` a missing table or column, ``28…`` denied access) is a bug
or a misconfiguration, and is raised as it is."""

_MYSQL_UNAVAILABLE = frozenset(
    {1040, 1053, 1152, 1158, 1159, 1160, 1161, 1184, 1203, 1205, 1213, 1226, 1290, 1317}
    | {1927, 1969, 3024}
)
"""MySQL/MariaDB server error numbers that mean "not now" whatever their
SQLSTATE (some share the catch-all ``42000`` with syntax errors): too many
connections (per server, per user, per hour), shutdown in progress, aborted
connection and network read/write errors, lock wait timeout, deadlock,
read-only server, query interrupted or killed, statement timeout."""

_SQLITE_UNAVAILABLE = frozenset({5, 6, 7, 8, 10, 13, 14})
"""SQLite primary result codes that mean "not now": BUSY, LOCKED, NOMEM,
READONLY, IOERR, FULL, CANTOPEN. SQLite reports all of them, and also "no
such table" (ERROR, 1), as ``OperationalError``, so the code decides."""


class _CommitUnknown(Exception):
    """The connection was lost during COMMIT: the write may or may not have landed."""


def _is_unavailable(error: BaseException) -> bool:
    """Whether ``error`` means "the database cannot be reached", not a bug."""
    if isinstance(error, (TimeoutError, OSError, exc.TimeoutError)):
        return True
    if not isinstance(error, exc.DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    args = getattr(error.orig, "args", ())
    errno = args[0] if args and isinstance(args[0], int) else None  # asyncmy: (errno, message)
    if errno in _MYSQL_UNAVAILABLE:
        return True
    sqlstate = getattr(error.orig, "sqlstate", None)
    if errno is not None and not sqlstate:
        # asyncmy before 0.2.14 sends no SQLSTATE. The number decides: 2000-2999
        # are the client's own errors (cannot connect, server gone away, lost
        # connection); a server's error not listed above is a bug.
        return 2000 <= errno < 3000
    if isinstance(sqlstate, str) and sqlstate and sqlstate != "HY000":
        # HY000 is MySQL's "general error", which its client errors (lost
        # connection, server gone away) carry: decided by the type below.
        return sqlstate.startswith(_UNAVAILABLE_SQLSTATES)
    code = getattr(error.orig, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in _SQLITE_UNAVAILABLE
    return isinstance(error, (exc.OperationalError, exc.InterfaceError))


def _describe(error: BaseException) -> str:
    """Name the failure without its message: driver messages can echo SQL parameters."""
    if isinstance(error, TimeoutError):
        return "timed out"
    if isinstance(error, exc.DBAPIError) and error.orig is not None:
        sqlstate = getattr(error.orig, "sqlstate", None)
        name = type(error.orig).__name__
        return f"{name} {sqlstate}" if isinstance(sqlstate, str) else name
    return type(error).__name__


def _statement_timeout(timeout: float) -> float:
    """The driver's own per-statement limit: a little under ``timeout``.

    A driver that gives up by itself (asyncpg cancels the query on the
    server, SQLite stops waiting for the lock) leaves its connection usable;
    when ``timeout`` strikes first, the call is cancelled and the connection
    has to be thrown away.
    """
    return max(0.05, timeout * 0.75)


def _connect_args(url: URL, timeout: float) -> dict[str, Any]:
    """Driver options that bound connecting and, where offered, each statement."""
    driver = url.get_driver_name()
    if driver == "asyncpg":
        return {"timeout": timeout, "command_timeout": _statement_timeout(timeout)}
    if driver == "asyncmy":
        # binary_prefix sends bytes as _binary'…', so the server never reads
        # session bytes as text in the connection's character set.
        return {"connect_timeout": timeout, "read_timeout": timeout, "binary_prefix": True}
    if driver in ("aiosqlite", "pysqlite"):
        return {"timeout": _statement_timeout(timeout)}
    return {}


def _sqlite_pragmas(engine: AsyncEngine, timeout: float) -> None:
    """WAL and a busy timeout: concurrent writers wait for the lock instead of failing."""
    busy_ms = max(1, int(_statement_timeout(timeout) * 1000))

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, connection_record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {busy_ms}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
        finally:
            cursor.close()


def _hex64() -> sa.types.TypeEngine[str]:
    """A column for 64 hex digits (ASCII, compared byte for byte on MySQL)."""
    return sa.String(64).with_variant(
        mysql.VARCHAR(64, charset="ascii", collation="ascii_bin"), *_MYSQL
    )


class SQLStore(SessionStore):
    """Sessions in one table of a SQL database (SQLAlchemy 2 async).

    ``engine_or_url`` is an async SQLAlchemy URL (``sqlite+aiosqlite:///path``,
    ``postgresql+asyncpg://…``, ``mysql+asyncmy://…``), from which the store
    builds and owns an engine (disposed by :meth:`close`), or an existing
    :class:`~sqlalchemy.ext.asyncio.AsyncEngine`, which the store only uses.

    Every operation is bounded by ``timeout`` seconds; a database that is down
    or slow raises :class:`~asgi_sessions.errors.SessionStoreUnavailable`.
    With ``create_table`` (the default) the table and its index are created on
    first use if missing; pass False when migrations own the schema.
    """

    def __init__(
        self,
        engine_or_url: AsyncEngine | str | URL,
        *,
        table_name: str = "asgi_sessions",
        timeout: float = 2.0,
        create_table: bool = True,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.timeout = timeout
        self.table_name = table_name
        if isinstance(engine_or_url, AsyncEngine):
            self._engine = engine_or_url
            self._owns_engine = False
        else:
            url = make_url(engine_or_url)
            # No pool_pre_ping: it costs a round trip on every checkout. A
            # connection that died with its server is retried once instead
            # (see _run), which is the same recovery for free.
            # hide_parameters: an error that does escape must not carry a
            # record's bytes (or its key) into a log or a traceback page.
            self._engine = create_async_engine(
                url, connect_args=_connect_args(url, timeout), hide_parameters=True
            )
            self._owns_engine = True
            if url.get_backend_name() == "sqlite":
                _sqlite_pragmas(self._engine, timeout)
        self._dialect = self._engine.dialect.name
        # The longest name the store makes is the index ix_<table>_expires_at.
        longest = self._engine.dialect.max_identifier_length - len("ix__expires_at")
        if len(table_name) > longest:
            raise ValueError(
                f"table_name must be at most {longest} characters on {self._dialect} "
                f"(its index names add 14)"
            )
        # Reads need no transaction: one autocommit SELECT is one round trip
        # instead of BEGIN, SELECT, COMMIT. Not on MySQL: there the switch is
        # a round trip of its own at every checkout (and another to switch
        # back), made before SQLAlchemy can tell a dead pooled connection from
        # a bug, so a connection the server closed while idle (wait_timeout)
        # failed the read with the driver's raw error. A plain connection's
        # SELECT takes no locks; the rollback on its return to the pool ends
        # the snapshot it read from.
        self._reader = (
            self._engine
            if self._dialect in _MYSQL
            else self._engine.execution_options(isolation_level="AUTOCOMMIT")
        )
        self._metadata = sa.MetaData()
        self.table = sa.Table(
            table_name,
            self._metadata,
            sa.Column("key", _hex64(), primary_key=True),
            sa.Column(
                "data", sa.LargeBinary().with_variant(mysql.LONGBLOB(), *_MYSQL), nullable=False
            ),
            sa.Column("expires_at", sa.BigInteger(), nullable=False),
            sa.Index(f"ix_{table_name}_expires_at", "expires_at"),
        )
        self.users_table = sa.Table(
            f"{table_name}_users",
            self._metadata,
            sa.Column("user_key", _hex64(), primary_key=True),
            sa.Column("key", _hex64(), primary_key=True),
            sa.Index(f"ix_{table_name}_users_key", "key"),
        )
        self._create_table = create_table
        # MySQL's sql_mode is checked once, with or without create_table.
        self._table_ready = not create_table and self._dialect not in _MYSQL
        self._table_lock = anyio.Lock()
        # An in-memory SQLite database lives in one connection that every
        # task shares (SQLAlchemy gives it a StaticPool). Operations must not
        # overlap on it: one task's rollback on return to the pool would undo
        # another's write that already reported success.
        shared = isinstance(self._engine.sync_engine.pool, (StaticPool, SingletonThreadPool))
        self._serial: anyio.Lock | None = anyio.Lock() if shared else None

    @property
    def engine(self) -> AsyncEngine:
        """The engine the store runs on."""
        return self._engine

    # -- plumbing --------------------------------------------------------------

    async def _ensure_table(self) -> None:
        if self._table_ready:
            return
        async with self._table_lock:
            if self._table_ready:
                return
            if self._dialect in _MYSQL:
                await self._require_strict_mode()
            for attempt in range(_CREATE_TABLE_ATTEMPTS if self._create_table else 0):
                try:
                    async with self._engine.begin() as conn:
                        await conn.run_sync(self._create_schema)
                    break
                except exc.DBAPIError:
                    # Workers of one app (separate processes, so separate locks)
                    # starting together race between the check and the CREATE:
                    # the losers fail with "already exists" or a unique
                    # violation on the catalog. The winner's table is there by
                    # the next check. A server that is down fails every
                    # attempt, within the same timeout.
                    if attempt == _CREATE_TABLE_ATTEMPTS - 1:
                        raise
                    await anyio.sleep(0.05 * (attempt + 1))
            self._table_ready = True

    async def _require_strict_mode(self) -> None:
        """Refuse a MySQL connection whose ``sql_mode`` is not strict.

        Without strict mode, an append whose result outgrows
        ``max_allowed_packet`` makes ``CONCAT`` return NULL, which MySQL then
        stores as an empty record and counts as a success: the session is
        wiped. Strict mode (the default since MySQL 5.7 and MariaDB 10.2.4)
        fails that statement instead.
        """
        async with self._engine.connect() as conn:
            mode = (await conn.execute(sa.text("SELECT @@SESSION.sql_mode"))).scalar_one()
        if not {"STRICT_TRANS_TABLES", "STRICT_ALL_TABLES"} & set(str(mode).upper().split(",")):
            raise ImproperlyConfigured(
                "SQLStore needs MySQL/MariaDB in a strict sql_mode (STRICT_TRANS_TABLES, the "
                "default): without it an oversized write empties the session record"
            )

    def _create_schema(self, conn: sa.Connection) -> None:
        """The tables, and then each index again if it is missing.

        ``create_all`` skips the indexes of a table that exists. MySQL and
        SQLite commit each DDL statement on its own, so a first start cut
        short after CREATE TABLE (a timeout, a lost connection) left a table
        without its ``expires_at`` index for good: every ``clear_expired``
        then scanned the whole table.
        """
        self._metadata.create_all(conn, checkfirst=True)
        for table in (self.table, self.users_table):
            for index in table.indexes:
                index.create(conn, checkfirst=True)

    async def _run(self, operation: Callable[[], Awaitable[_T]]) -> _T:
        """Run one operation under the timeout, mapping outages to SessionStoreUnavailable."""
        try:
            with anyio.fail_after(self.timeout):
                if self._serial is None:
                    return await self._attempt(operation)
                async with self._serial:
                    return await self._attempt(operation)
        except _CommitUnknown as unknown:
            raise SessionStoreUnavailable(
                f"SQL session store unavailable ({self._dialect}: "
                f"{_describe(unknown.__cause__ or unknown)} during COMMIT, its outcome unknown)"
            ) from None
        except Exception as error:
            if not on_asyncio():
                # Under trio the drivers fail with "no running event loop" or a
                # TypeError about an asyncio Future: say what is wrong instead.
                raise ImproperlyConfigured(
                    "SQLStore runs on asyncio only: SQLAlchemy's async engine and its "
                    "drivers need an asyncio event loop (this event loop is not asyncio, "
                    "e.g. trio)"
                ) from error
            if _is_unavailable(error):
                raise SessionStoreUnavailable(
                    f"SQL session store unavailable ({self._dialect}: {_describe(error)})"
                ) from None
            raise

    async def _attempt(self, operation: Callable[[], Awaitable[_T]]) -> _T:
        await self._ensure_table()
        try:
            return await operation()
        except exc.DBAPIError as error:
            # A pooled connection whose server restarted fails once and is
            # discarded; the operation then runs on a fresh connection. Safe
            # because a connection lost before COMMIT rolls its transaction
            # back: nothing of the first attempt landed. A COMMIT that lost
            # its connection is _CommitUnknown, never retried.
            if not error.connection_invalidated:
                raise
            return await operation()

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncConnection]:
        """A short transaction (one statement; two in create).

        Not autocommit, though one statement is atomic on its own: a statement
        that outlives ``timeout`` (say, waiting for a row lock) keeps running
        on the server after we give up, and in autocommit mode it would then
        commit a write we already reported as failed. In a transaction its
        COMMIT is never sent and the write is rolled back.
        """
        async with self._engine.connect() as conn:
            await conn.begin()
            yield conn
            try:
                await conn.commit()
            except exc.DBAPIError as error:
                if not error.connection_invalidated:
                    raise
                # The COMMIT may have landed or not: running the operation
                # again could apply an append twice, or call a record this
                # operation created or took somebody else's.
                raise _CommitUnknown from error

    def _live(self, key: StoreKey, now: int) -> sa.ColumnElement[bool]:
        table = self.table
        return sa.and_(table.c.key == key, table.c.expires_at > now)

    def _binary(self, value: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        """SQLite's ``||`` yields TEXT; cast the result back so the column stays a BLOB."""
        if self._dialect == "sqlite":
            return sa.cast(value, sa.LargeBinary())
        return value

    def _concat(self, *parts: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        if self._dialect in _MYSQL:
            return sa.func.concat(*parts, type_=sa.LargeBinary())
        result = parts[0]
        for part in parts[1:]:
            result = result.op("||", return_type=sa.LargeBinary())(part)
        return self._binary(result)

    # -- the store -------------------------------------------------------------

    async def read(self, key: StoreKey) -> bytes | None:
        """One SELECT of the live row."""
        table = self.table
        query = sa.select(table.c.data).where(self._live(key, _now()))

        async def read() -> bytes | None:
            async with self._reader.connect() as conn:
                value = (await conn.execute(query)).scalar_one_or_none()
            return None if value is None else bytes(value)

        return await self._run(read)

    async def read_with_ttl(self, key: StoreKey) -> tuple[bytes, int | None] | None:
        """One SELECT of the live row's data and ``expires_at``."""
        table = self.table
        now = _now()
        query = sa.select(table.c.data, table.c.expires_at).where(self._live(key, now))

        async def read() -> tuple[bytes, int | None] | None:
            async with self._reader.connect() as conn:
                row = (await conn.execute(query)).one_or_none()
            if row is None:
                return None
            return bytes(row[0]), max(0, (int(row[1]) - now) // 1000)

        return await self._run(read)

    async def create(self, key: StoreKey, data: bytes, ttl: int) -> bool:
        """INSERT; a live row under ``key`` refuses it, an expired one is replaced."""
        table = self.table

        async def create() -> bool:
            now = _now()
            insert = sa.insert(table).values(key=key, data=data, expires_at=_deadline(ttl))
            try:
                async with self._transaction() as conn:
                    await conn.execute(insert)
                return True
            except exc.IntegrityError:
                pass
            # The key is taken: free it only if that row has expired.
            stale = sa.delete(table).where(table.c.key == key, table.c.expires_at <= now)
            try:
                async with self._transaction() as conn:  # delete and insert together
                    if (await conn.execute(stale)).rowcount != 1:
                        return False
                    await conn.execute(insert)
                return True
            except exc.IntegrityError:
                return False  # a concurrent create won the freed key

        return await self._run(create)

    async def update(self, key: StoreKey, data: bytes, ttl: int) -> bool:
        """UPDATE of the live row; False if there is none."""
        table = self.table

        async def update() -> bool:
            now = _now()
            stmt = (
                sa.update(table)
                .where(self._live(key, now))
                .values(data=data, expires_at=_deadline(ttl))
            )
            async with self._transaction() as conn:
                return (await conn.execute(stmt)).rowcount == 1

        return await self._run(update)

    def _append_statement(self, key: StoreKey, data: bytes, ttl: int, now: int) -> sa.Update:
        table = self.table
        suffix = sa.bindparam("suffix", data, type_=sa.LargeBinary())
        return (
            sa.update(table)
            .where(self._live(key, now))
            .values(data=self._concat(table.c.data, suffix), expires_at=_deadline(ttl))
        )

    def _replace_statement(
        self, key: StoreKey, expected: bytes, data: bytes, ttl: int, now: int
    ) -> sa.Update:
        table = self.table
        size = len(expected)
        condition = self._live(key, now)
        if size:
            prefix = sa.func.substr(table.c.data, 1, size, type_=sa.LargeBinary())
            condition = sa.and_(
                condition,
                prefix == sa.bindparam("expected", expected, type_=sa.LargeBinary()),
            )
        rest: sa.ColumnElement[Any] = sa.func.substr(table.c.data, size + 1, type_=sa.LargeBinary())
        if self._dialect == "sqlite":
            # SQLite's substr() of an empty blob is NULL, not an empty blob.
            rest = sa.func.coalesce(rest, sa.literal(b"", sa.LargeBinary()))
        new = sa.bindparam("replacement", data, type_=sa.LargeBinary())
        return (
            sa.update(table)
            .where(condition)
            .values(data=self._concat(new, rest), expires_at=_deadline(ttl))
        )

    async def append(self, key: StoreKey, data: bytes, ttl: int) -> bool:
        """One UPDATE that concatenates in the database, so racing appends all land."""

        async def append() -> bool:
            stmt = self._append_statement(key, data, ttl, _now())
            async with self._transaction() as conn:
                return (await conn.execute(stmt)).rowcount == 1

        return await self._run(append)

    async def replace(self, key: StoreKey, expected: bytes, data: bytes, ttl: int) -> bool:
        """One UPDATE guarded by the record's prefix: a compare-and-set in the database."""

        async def replace() -> bool:
            stmt = self._replace_statement(key, expected, data, ttl, _now())
            async with self._transaction() as conn:
                return (await conn.execute(stmt)).rowcount == 1

        return await self._run(replace)

    async def compact_and_append(
        self, key: StoreKey, expected: bytes, replacement: bytes, data: bytes, ttl: int
    ) -> bool:
        """Both UPDATEs in one transaction: one commit (one fsync) instead of two."""

        async def compact_and_append() -> bool:
            now = _now()
            fold = self._replace_statement(key, expected, replacement, ttl, now)
            add = self._append_statement(key, data, ttl, now)
            async with self._transaction() as conn:
                await conn.execute(fold)  # best effort: skipped if the prefix changed
                return (await conn.execute(add)).rowcount == 1

        return await self._run(compact_and_append)

    async def touch(self, key: StoreKey, ttl: int) -> None:
        """UPDATE of ``expires_at`` alone: the data is not rewritten."""
        table = self.table

        async def touch() -> None:
            now = _now()
            stmt = sa.update(table).where(self._live(key, now)).values(expires_at=_deadline(ttl))
            async with self._transaction() as conn:
                await conn.execute(stmt)

        await self._run(touch)

    async def delete(self, key: StoreKey) -> None:
        """DELETE of the row, if any."""
        table = self.table
        stmt = sa.delete(table).where(table.c.key == key)

        async def delete() -> None:
            async with self._transaction() as conn:
                await conn.execute(stmt)

        await self._run(delete)

    async def take(self, key: StoreKey) -> bytes | None:
        """``DELETE … RETURNING`` the row; where unsupported, read then compare-and-delete.

        Without ``RETURNING`` (MySQL, MariaDB before 10.0.5, SQLite before
        3.35) the row is read (locked where the database can) and deleted only
        if its data is still what was read; an append that slipped in between
        makes the delete miss, and the read is repeated, so no write can land
        in between and be lost. (SQLite takes no lock on a read; its delete
        does, so the second round always succeeds.)
        """
        table = self.table
        returning = (
            sa.delete(table).where(table.c.key == key).returning(table.c.data, table.c.expires_at)
        )
        locked = (
            sa.select(table.c.data, table.c.expires_at).where(table.c.key == key).with_for_update()
        )

        async def take() -> bytes | None:
            now = _now()
            async with self._transaction() as conn:
                if conn.dialect.delete_returning:
                    row = (await conn.execute(returning)).one_or_none()
                else:
                    for _ in range(_TAKE_ROUNDS):
                        row = (await conn.execute(locked)).one_or_none()
                        if row is None:
                            break
                        unchanged = sa.and_(table.c.key == key, table.c.data == row[0])
                        if (await conn.execute(sa.delete(table).where(unchanged))).rowcount:
                            break
                    else:
                        raise SessionStoreUnavailable(
                            "the session record changed under every attempt to take it"
                        )
            if row is None or int(row[1]) <= now:
                return None
            return bytes(row[0])

        return await self._run(take)

    has_user_index = True

    async def link_user(self, user: UserKey, key: StoreKey) -> None:
        """INSERT of the (user, key) row; an existing link is left as it is."""
        stmt = sa.insert(self.users_table).values(user_key=user, key=key)

        async def link() -> None:
            try:
                async with self._transaction() as conn:
                    await conn.execute(stmt)
            except exc.IntegrityError:
                pass  # already linked

        await self._run(link)

    async def delete_user(self, user: UserKey) -> list[StoreKey]:
        """One transaction: find the user's live sessions, delete them and the links."""
        table, users = self.table, self.users_table
        linked = sa.select(users.c.key).where(users.c.user_key == user)

        async def delete() -> list[StoreKey]:
            now = _now()
            async with self._transaction() as conn:
                keys = list((await conn.execute(linked)).scalars())
                if not keys:
                    return []
                live_query = sa.select(table.c.key).where(
                    table.c.key.in_(keys), table.c.expires_at > now
                )
                live = list((await conn.execute(live_query)).scalars())
                await conn.execute(sa.delete(table).where(table.c.key.in_(keys)))
                await conn.execute(
                    sa.delete(users).where(users.c.user_key == user, users.c.key.in_(keys))
                )
            return sorted(live)

        return await self._run(delete)

    async def _delete_in_batches(self, table: sa.Table, condition: sa.ColumnElement[bool]) -> int:
        """Delete ``table``'s rows matching ``condition``, 5,000 per transaction.

        Batches keep each transaction short, so a large purge never blocks
        live sessions for long. Each batch (not the whole purge) is bounded
        by ``timeout``. Returns how many rows went.
        """
        if self._dialect in _MYSQL:
            # MySQL cannot delete from a table it selects from in a subquery,
            # but it has DELETE … LIMIT.
            stmt = sa.delete(table).where(condition)
            stmt = stmt.with_dialect_options(**{f"{self._dialect}_limit": _CLEAR_BATCH})
        else:
            batch = sa.select(table.c.key).where(condition).limit(_CLEAR_BATCH)
            stmt = sa.delete(table).where(table.c.key.in_(batch))

        async def clear_batch() -> int:
            async with self._transaction() as conn:
                return max(0, (await conn.execute(stmt)).rowcount)

        total = 0
        while True:
            removed = await self._run(clear_batch)
            total += removed
            if removed < _CLEAR_BATCH:
                return total

    async def clear_expired(self) -> int:
        """Delete expired rows in batches of 5,000, one transaction each.

        Then the user index's links to rows that are gone, the same way.
        Returns how many session rows were deleted.
        """
        table, users = self.table, self.users_table
        removed = await self._delete_in_batches(table, table.c.expires_at <= _now())
        await self._delete_in_batches(users, ~sa.exists().where(table.c.key == users.c.key))
        return removed

    async def close(self) -> None:
        """Dispose of the engine if the store created it."""
        if self._owns_engine:
            await self._engine.dispose()
