"""SQLStore against SQLite (a temporary file), PostgreSQL and MariaDB/MySQL.

Server URLs come from ``ASGI_SESSIONS_POSTGRES_URL`` and
``ASGI_SESSIONS_MYSQL_URL``. An unreachable server skips its tests, except
under ``CI=true``, where it fails them. Every store gets a random table name
and drops its table afterwards.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import os
import secrets
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from asgi_sessions import SessionMiddleware
from asgi_sessions.errors import ImproperlyConfigured, SessionStoreUnavailable
from asgi_sessions.stores import SQLStore
from asgi_sessions.stores import sql as sql_module
from asgi_sessions.testing import StoreConformance, new_key

POSTGRES_URL = os.environ.get(
    "ASGI_SESSIONS_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
MYSQL_URL = os.environ.get("ASGI_SESSIONS_MYSQL_URL", "mysql+asyncmy://root@127.0.0.1:3306/test")

BACKENDS = ["sqlite", "postgres", "mysql"]

_probed: dict[str, str | None] = {}


def _probe(url: str) -> str | None:
    """None if the server answers, else why not (run on a private event loop)."""

    async def probe() -> None:
        engine = create_async_engine(url)
        try:
            async with asyncio.timeout(3), engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
        finally:
            await engine.dispose()

    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, probe()).result()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _require(url: str) -> str:
    if url not in _probed:
        _probed[url] = _probe(url)
    reason = _probed[url]
    if reason is not None:
        message = f"{sa.make_url(url).render_as_string()} not reachable: {reason}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return url


def _url(backend: str, tmp_path: Path) -> str:
    if backend == "sqlite-memory":
        return "sqlite+aiosqlite://"
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'sessions.db'}"
    return _require(POSTGRES_URL if backend == "postgres" else MYSQL_URL)


def _table() -> str:
    return f"sess_{secrets.token_hex(6)}"


async def _drop(store: SQLStore) -> None:
    async with store.engine.begin() as conn:
        await conn.run_sync(store.users_table.drop, checkfirst=True)
        await conn.run_sync(store.table.drop, checkfirst=True)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # SQLAlchemy's async engine runs on asyncio only


@pytest.fixture(params=BACKENDS, ids=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return _url(str(request.param), tmp_path)


@pytest.fixture
async def sql_store(url: str) -> AsyncIterator[SQLStore]:
    store = SQLStore(url, table_name=_table())
    yield store
    await _drop(store)
    await store.close()


# -- the conformance suite, once per backend ------------------------------------------------


class _SQLConformance(StoreConformance):
    backend: str

    @pytest.fixture
    def anyio_backend(self) -> str:
        return "asyncio"

    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[SQLStore]:
        store = SQLStore(_url(self.backend, tmp_path), table_name=_table())
        yield store
        await _drop(store)
        await store.close()


class TestSQLiteConformance(_SQLConformance):
    backend = "sqlite"


class TestSQLiteInMemoryConformance(_SQLConformance):
    """One connection shared by every task: its racing writes used to undo each other."""

    backend = "sqlite-memory"


@pytest.mark.postgres
class TestPostgresConformance(_SQLConformance):
    backend = "postgres"


@pytest.mark.mysql
class TestMySQLConformance(_SQLConformance):
    backend = "mysql"


class _NoReturningConformance(_SQLConformance):
    """The take of databases without ``DELETE … RETURNING`` (MySQL, SQLite before 3.35).

    The servers here all have it, so the dialect is told it does not: the
    store then reads and compares-and-deletes, which must be just as atomic.
    """

    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[SQLStore]:
        store = SQLStore(_url(self.backend, tmp_path), table_name=_table())
        store.engine.dialect.delete_returning = False
        yield store
        await _drop(store)
        await store.close()


class TestSQLiteNoReturningConformance(_NoReturningConformance):
    backend = "sqlite"


@pytest.mark.mysql
class TestMySQLNoReturningConformance(_NoReturningConformance):
    backend = "mysql"


# -- schema and maintenance ----------------------------------------------------------------


@pytest.mark.anyio
async def test_expires_at_is_indexed(sql_store: SQLStore) -> None:
    await sql_store.create(new_key(), b"x", 60)  # the table is created on first use

    def indexes(conn: sa.Connection) -> list[dict[str, Any]]:
        return [dict(index) for index in sa.inspect(conn).get_indexes(sql_store.table_name)]

    async with sql_store.engine.connect() as conn:
        found = await conn.run_sync(indexes)
    assert any(index["column_names"] == ["expires_at"] for index in found), found


@pytest.mark.anyio
async def test_a_missing_index_is_created_on_the_next_start(url: str) -> None:
    """A first start cut short after CREATE TABLE (MySQL and SQLite commit DDL at once)."""
    first = SQLStore(url, table_name=_table(), create_table=False)
    async with first.engine.begin() as conn:
        await conn.run_sync(first.table.create)
        await conn.run_sync(first.users_table.create)
        for table in (first.table, first.users_table):
            for index in table.indexes:
                await conn.run_sync(index.drop)
    await first.close()
    store = SQLStore(url, table_name=first.table_name)
    assert await store.create(new_key(), b"x", 60)

    def indexes(conn: sa.Connection) -> list[list[str | None]]:
        inspector = sa.inspect(conn)
        return [
            index["column_names"]
            for name in (store.table_name, store.users_table.name)
            for index in inspector.get_indexes(name)
        ]

    async with store.engine.connect() as conn:
        assert sorted(await conn.run_sync(indexes)) == [["expires_at"], ["key"]]
    await _drop(store)
    await store.close()


@pytest.mark.anyio
async def test_sqlite_append_keeps_a_blob(tmp_path: Path) -> None:
    path = tmp_path / "blob.db"
    store = SQLStore(f"sqlite+aiosqlite:///{path}")
    key = new_key()
    await store.create(key, b"\x00\xff", 60)
    await store.append(key, b"\x80\x00", 60)
    await store.replace(key, b"\x00", b"\x01\x02", 60)
    await store.close()
    with sqlite3.connect(path) as conn:
        row = conn.execute(
            "SELECT typeof(data), data FROM asgi_sessions WHERE key = ?", (key,)
        ).fetchone()
        mode = conn.execute("PRAGMA journal_mode").fetchone()
    assert row == ("blob", b"\x01\x02\xff\x80\x00")
    assert mode == ("wal",)


@pytest.mark.anyio
async def test_clear_expired_in_batches_keeps_live_rows(sql_store: SQLStore) -> None:
    live = [new_key() for _ in range(3)]
    for key in live:
        await sql_store.create(key, b"live", 60)
    past = int(time.time()) - 10
    rows = [{"key": new_key(), "data": b"dead", "expires_at": past} for _ in range(12_000)]
    async with sql_store.engine.begin() as conn:
        await conn.execute(sa.insert(sql_store.table), rows)

    deletes: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("DELETE"):
            deletes.append(statement)

    event.listen(sql_store.engine.sync_engine, "before_cursor_execute", count)
    try:
        assert await sql_store.clear_expired() == 12_000
    finally:
        event.remove(sql_store.engine.sync_engine, "before_cursor_execute", count)
    assert len(deletes) >= 3  # 5,000 rows per transaction, not one huge delete
    for key in live:
        assert await sql_store.read(key) == b"live"
    async with sql_store.engine.connect() as conn:
        left = await conn.scalar(sa.select(sa.func.count()).select_from(sql_store.table))
    assert left == 3
    assert await sql_store.clear_expired() == 0


@pytest.mark.anyio
async def test_given_engine_is_used_and_not_disposed(url: str) -> None:
    engine = create_async_engine(url)
    store = SQLStore(engine, table_name=_table())
    key = new_key()
    assert await store.create(key, b"x", 60)
    await store.close()
    async with engine.connect() as conn:  # still usable
        assert (await conn.execute(sa.select(store.table.c.data))).scalar_one() == b"x"
    await _drop(store)
    await engine.dispose()


@pytest.mark.anyio
async def test_create_table_false_leaves_the_schema_alone(tmp_path: Path) -> None:
    store = SQLStore(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}", create_table=False)
    with pytest.raises(sa_exc.OperationalError, match="no such table"):
        await store.read(new_key())  # a misconfiguration, raised as it is: not an outage
    await store.close()


@pytest.mark.anyio
async def test_schema_bugs_are_errors_not_outages(url: str) -> None:
    # A table that migrations made without a column the store needs: every
    # database reports it as the driver's error (a 500), none as an outage.
    store = SQLStore(url, table_name=_table(), create_table=False)
    table = store.table.name
    quote = "`" if "mysql" in url else '"'
    blob = "BYTEA" if "postgresql" in url else "BLOB"
    async with store.engine.begin() as conn:
        await conn.exec_driver_sql(
            f"CREATE TABLE {table} ({quote}key{quote} VARCHAR(64) PRIMARY KEY, data {blob})"
        )
    try:
        with pytest.raises(sa_exc.DBAPIError) as caught:
            await store.read(new_key())
        assert not isinstance(caught.value, SessionStoreUnavailable)
    finally:
        async with store.engine.begin() as conn:
            await conn.exec_driver_sql(f"DROP TABLE {table}")
        await store.close()


@pytest.mark.anyio
async def test_workers_starting_together_all_get_the_table(url: str) -> None:
    # Eight workers (one store each, as in eight processes: no shared lock)
    # take their first request at once against a database without the table.
    # The CREATEs race in the database; the losers must not fail the request.
    table = _table()
    stores = [SQLStore(url, table_name=table) for _ in range(8)]
    key = new_key()
    try:
        for _ in range(3):
            results = await asyncio.gather(
                *(store.read(key) for store in stores), return_exceptions=True
            )
            assert results == [None] * len(stores)
            await _drop(stores[0])
            for store in stores:
                store._table_ready = False  # the next round starts cold again
    finally:
        await _drop(stores[0])
        for store in stores:
            await store.close()


def test_a_table_name_too_long_for_its_indexes_is_refused_at_construction() -> None:
    # PostgreSQL names are at most 63 characters: ix_<table>_expires_at of a
    # 50-character table name is 64, which failed every request.
    SQLStore(POSTGRES_URL, table_name="t" * 49)
    with pytest.raises(ValueError, match="at most 49 characters on postgresql"):
        SQLStore(POSTGRES_URL, table_name="t" * 50)


def test_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="timeout"):
        SQLStore("sqlite+aiosqlite:///x.db", timeout=0)


# -- faults -------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    "url",
    [
        "postgresql+asyncpg://postgres:hunter2@127.0.0.1:1/test",
        "mysql+asyncmy://root:hunter2@127.0.0.1:1/test",
        "sqlite+aiosqlite:////nonexistent-dir/hunter2/sessions.db",
    ],
    ids=["postgres", "mysql", "sqlite"],
)
async def test_unreachable_server_is_unavailable_within_the_timeout(url: str) -> None:
    store = SQLStore(url, timeout=0.5)
    key = new_key()
    for operation in (
        lambda: store.read(key),
        lambda: store.create(key, b"secret-data", 60),
        lambda: store.append(key, b"secret-data", 60),
        lambda: store.clear_expired(),
    ):
        started = time.monotonic()
        with pytest.raises(SessionStoreUnavailable) as info:
            await operation()
        assert time.monotonic() - started < 3
        message = str(info.value)
        assert key not in message
        assert "hunter2" not in message
        assert "secret-data" not in message
        assert info.value.__suppress_context__
    await store.close()
    # aiosqlite stops the worker thread of a failed connect in the background and
    # then reports to this event loop, which must still be open (omnilib/aiosqlite#241).
    await anyio.sleep(0.1)


@pytest.mark.anyio
async def test_a_write_that_timed_out_does_not_land_later(url: str) -> None:
    """Blocked behind another transaction's lock, the update gives up and is rolled back."""
    store = SQLStore(url, table_name=_table(), timeout=0.5)
    key = new_key()
    await store.create(key, b"before", 60)
    other = create_async_engine(url)
    try:
        async with other.connect() as conn:
            holder = sa.update(store.table).where(store.table.c.key == key).values(data=b"held")
            await conn.execute(holder)  # holds the row (SQLite: the database) lock
            started = time.monotonic()
            with pytest.raises(SessionStoreUnavailable):
                await store.update(key, b"late", 60)
            assert time.monotonic() - started < 3
            await conn.rollback()
        # Should the store's own deadline have struck first, the cancelled call's
        # connection is closed in the background: give that a moment to finish.
        await anyio.sleep(0.2)
        for _ in range(10):  # the pool recovered, and the abandoned write never landed
            assert await store.read(key) == b"before"
        assert await store.update(key, b"after", 60)
        assert await store.read(key) == b"after"
    finally:
        await other.dispose()
        await _drop(store)
        await store.close()


async def _update_under_a_held_row_lock(url: str, engine: AsyncEngine) -> tuple[str, float]:
    """An update through ``engine`` while another connection holds the row's lock.

    It must fail as :class:`SessionStoreUnavailable`, naming neither the key
    nor the bytes, and leave the record as it was; returns the message and
    how long the update took to fail.
    """
    store = SQLStore(engine, table_name=_table(), timeout=5)
    key = new_key()
    await store.create(key, b"before", 60)
    other = create_async_engine(url)
    try:
        async with other.connect() as conn:
            holder = sa.update(store.table).where(store.table.c.key == key).values(data=b"held")
            await conn.execute(holder)  # holds the row lock
            started = time.monotonic()
            with pytest.raises(SessionStoreUnavailable) as caught:
                await store.update(key, b"SECRET-BYTES", 60)
            waited = time.monotonic() - started
            await conn.rollback()
        assert key not in str(caught.value)
        assert await store.read(key) == b"before"
        return str(caught.value), waited
    finally:
        await other.dispose()
        await _drop(store)
        await store.close()
        await engine.dispose()


@pytest.mark.anyio
@pytest.mark.parametrize("setting", ["lock_timeout", "statement_timeout"])
async def test_postgres_server_side_timeouts_are_unavailable(setting: str) -> None:
    """A server-side timeout (a common guard on production roles) is an outage, not a bug.

    asyncpg reports it through SQLAlchemy as a plain ``DBAPIError`` (SQLSTATE
    55P03 or 57014); it used to escape raw, a 500 whose message held the key
    and the record's bytes.
    """
    url = _require(POSTGRES_URL)
    engine = create_async_engine(
        url, connect_args={"server_settings": {setting: "300"}}, hide_parameters=False
    )
    caught, waited = await _update_under_a_held_row_lock(url, engine)
    assert waited < 3
    assert "SECRET" not in caught


@pytest.mark.parametrize(
    ("errno", "outage"),
    [(1054, False), (1146, False), (1045, False), (1205, True), (1160, True), (2013, True)],
)
def test_mysql_errors_without_a_sqlstate_are_told_apart_by_number(errno: int, outage: bool) -> None:
    # asyncmy before 0.2.14 raises its errors with no SQLSTATE: an unknown
    # column (1054) must still be a bug, a lost connection (2013) an outage.
    asyncmy_errors = pytest.importorskip("asyncmy.errors")
    driver_error = asyncmy_errors.OperationalError(errno, "message")
    assert not getattr(driver_error, "sqlstate", None)
    error = sa_exc.OperationalError("SELECT 1", {}, driver_error)
    assert sql_module._is_unavailable(error) is outage


@pytest.mark.anyio
async def test_mariadb_statement_timeout_is_unavailable() -> None:
    """MariaDB's ``max_statement_time`` (error 1969, SQLSTATE 70100) is an outage, not a bug."""
    url = _require(MYSQL_URL)
    engine = create_async_engine(
        url, connect_args={"init_command": "SET SESSION max_statement_time=0.3"}
    )
    caught, _ = await _update_under_a_held_row_lock(url, engine)
    assert "OperationalError" in caught
    assert "SECRET" not in caught


@pytest.mark.anyio
async def test_a_read_only_postgres_is_an_outage() -> None:
    """A standby just promoted to, or a primary demoted to, read-only (SQLSTATE 25006)."""
    url = _require(POSTGRES_URL)
    writable = SQLStore(url, table_name=_table())
    key = new_key()
    await writable.create(key, b"kept", 60)  # the table exists
    engine = create_async_engine(
        url, connect_args={"server_settings": {"default_transaction_read_only": "on"}}
    )
    store = SQLStore(engine, table_name=writable.table.name)
    try:
        assert await store.read(key) == b"kept"  # reads still work
        with pytest.raises(SessionStoreUnavailable, match="25006"):
            await store.create(new_key(), b"new", 60)
    finally:
        await store.close()
        await engine.dispose()
        await _drop(writable)
        await writable.close()


def test_engines_the_store_makes_hide_parameters(tmp_path: Path) -> None:
    # An error that escapes (a bug, not an outage) must not carry session bytes.
    store = SQLStore(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
    assert store.engine.sync_engine.hide_parameters


# -- through the middleware ---------------------------------------------------------------


def _app(store: SQLStore) -> Starlette:
    async def login(request: Request) -> Response:
        request.session["user"] = "alice"
        return PlainTextResponse("ok")

    async def whoami(request: Request) -> Response:
        return PlainTextResponse(str(request.session.get("user")))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await store.close()  # its pool belongs to this event loop

    return Starlette(
        routes=[Route("/login", login), Route("/whoami", whoami)],
        middleware=[Middleware(SessionMiddleware, store=store)],
        lifespan=lifespan,
    )


def _keys(url: str, table: str) -> list[str]:
    async def fetch() -> list[str]:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:
                query = sa.select(sa.column("key", sa.String())).select_from(sa.table(table))
                return [str(key) for key in (await conn.execute(query)).scalars()]
        finally:
            await engine.dispose()

    return asyncio.run(fetch())


@pytest.fixture
def sync_table(url: str) -> Iterator[tuple[str, str]]:
    table = _table()
    yield url, table

    async def drop() -> None:
        store = SQLStore(url, table_name=table)
        await _drop(store)
        await store.close()

    asyncio.run(drop())


def test_rows_are_keyed_by_the_hash_of_the_session_id(sync_table: tuple[str, str]) -> None:
    url, table = sync_table
    with TestClient(_app(SQLStore(url, table_name=table))) as client:
        assert client.get("/login").status_code == 200
        session_id = client.cookies["session"]
        assert client.get("/whoami").text == "alice"
    keys = _keys(url, table)
    assert keys == [hashlib.sha256(session_id.encode()).hexdigest()]
    assert all(session_id not in key for key in keys)


# -- connections lost at the worst moment ------------------------------------------------


@pytest.mark.anyio
async def test_mariadb_connection_closed_while_idle_is_replaced() -> None:
    """MariaDB closes connections idle past ``wait_timeout`` (8 h by default).

    The first read on each of them used to fail with the driver's raw error
    (a 500): switching a MySQL connection to autocommit at checkout is a round
    trip that SQLAlchemy cannot tell from a bug.
    """
    engine = create_async_engine(
        _require(MYSQL_URL), connect_args={"init_command": "SET SESSION wait_timeout=1"}
    )
    store = SQLStore(engine, table_name=_table())
    key = new_key()
    assert await store.create(key, b"x", 60)
    assert await asyncio.gather(*(store.read(key) for _ in range(3))) == [b"x"] * 3
    await anyio.sleep(2.5)  # the server closes the three pooled connections
    assert await asyncio.gather(*(store.read(key) for _ in range(3))) == [b"x"] * 3
    assert await store.read_with_ttl(key) is not None
    await _drop(store)
    await store.close()
    await engine.dispose()


@pytest.mark.anyio
@pytest.mark.parametrize("create_table", [True, False])
async def test_mysql_without_strict_mode_is_refused(create_table: bool) -> None:
    """Non-strict MySQL stores an oversized append as an empty record and calls it a success."""
    engine = create_async_engine(
        _require(MYSQL_URL), connect_args={"init_command": "SET SESSION sql_mode = ''"}
    )
    store = SQLStore(engine, table_name=_table(), create_table=create_table)
    with pytest.raises(ImproperlyConfigured, match="strict sql_mode"):
        await store.read(new_key())
    await store.close()
    await engine.dispose()


class _CommitCutter:
    """A TCP proxy that, when armed, passes a COMMIT on and cuts the client off.

    The COMMIT lands on the server; the store never hears the answer: what
    a server restart or a network cut at that moment does.
    """

    def __init__(self, target: int) -> None:
        self.target = target
        self.armed = False
        self.cuts = 0
        self._streams: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def _handle(self, client_in: asyncio.StreamReader, client: asyncio.StreamWriter) -> None:
        server_in, server = await asyncio.open_connection("127.0.0.1", self.target)
        self._streams += [client, server]
        cut = asyncio.Event()

        async def up() -> None:
            while data := await client_in.read(65536):
                server.write(data)
                await server.drain()
                # The statement COMMIT, not READ COMMITTED in a BEGIN.
                if self.armed and data.rstrip(b";\x00").upper().endswith(b"COMMIT"):
                    self.armed = False
                    self.cuts += 1
                    cut.set()
                    client.transport.abort()
                    return

        async def down() -> None:
            while (data := await server_in.read(65536)) and not cut.is_set():
                client.write(data)
                await client.drain()

        for job in (up(), down()):
            task = asyncio.ensure_future(job)
            self._tasks.add(task)

    async def close(self) -> None:
        self._server.close()
        for stream in self._streams:
            stream.transport.abort()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@pytest.mark.anyio
@pytest.mark.parametrize("backend", ["postgres", "mysql"])
async def test_a_commit_that_lost_its_connection_is_not_run_again(backend: str) -> None:
    """The COMMIT landed but its answer was lost: a 503, never a second append."""
    url = sa.make_url(_require(POSTGRES_URL if backend == "postgres" else MYSQL_URL))
    assert url.port is not None
    cutter = _CommitCutter(url.port)
    proxied = url.set(port=await cutter.start())
    direct = SQLStore(url, table_name=_table())
    store = SQLStore(proxied, table_name=direct.table_name, timeout=3)
    key = new_key()
    assert await direct.create(key, b"A", 60)
    assert await store.read(key) == b"A"  # the table is there, a connection is pooled
    cutter.armed = True
    with pytest.raises(SessionStoreUnavailable, match="COMMIT, its outcome unknown"):
        await store.append(key, b"+x", 60)
    assert cutter.cuts == 1
    assert await direct.read(key) == b"A+x", "the append was applied twice"
    await store.close()
    await cutter.close()
    await _drop(direct)
    await direct.close()
