"""``python -m asgi_sessions`` and building stores from URLs (plugins included)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import anyio
import pytest

from asgi_sessions import SessionMiddleware, session_of
from asgi_sessions.__main__ import main
from asgi_sessions.errors import ImproperlyConfigured
from asgi_sessions.stores import FileStore, MemoryStore, SessionStore, store_from_url
from asgi_sessions.testing import new_key


def test_keygen_prints_a_strong_secret(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keygen"]) == 0
    first = capsys.readouterr().out.strip()
    assert main(["keygen"]) == 0
    second = capsys.readouterr().out.strip()
    assert len(first) >= 43
    assert first != second


def test_clear_expired_reports_the_count(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async def seed() -> None:
        store = FileStore(tmp_path / "s")
        for _ in range(3):
            await store.create(new_key(), b"x", 1)
        await store.create(new_key(), b"live", 600)

    anyio.run(seed)
    time.sleep(1.1)
    assert main(["clear-expired", "--store", f"file://{tmp_path / 's'}"]) == 0
    assert capsys.readouterr().out.strip() == "removed 3 expired session(s)"


def test_clear_expired_on_a_missing_directory_is_a_configuration_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A mistyped path in a cron job must fail, not create the directory and
    # report "removed 0" every night.
    missing = tmp_path / "sesions-typo" / "deep"
    assert main(["clear-expired", "--store", f"file://{missing}"]) == 2
    assert "no such directory" in capsys.readouterr().err
    assert not (tmp_path / "sesions-typo").exists()


def test_module_runs_as_a_program() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "asgi_sessions", "keygen"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert len(result.stdout.strip()) >= 43


@pytest.mark.parametrize(
    ("url", "kind"),
    [("memory://", MemoryStore), ("file:///tmp/asgi-sessions-url-test", FileStore)],
)
def test_store_from_url(url: str, kind: type) -> None:
    assert isinstance(store_from_url(url), kind)


@pytest.mark.parametrize(
    "url",
    [
        "nope://x",
        "no-scheme",
        "postgresql://missing-driver/db",
        "file://host/dir",
        "file:relative/dir",
        "file:///tmp/nul%00byte",
    ],
)
def test_bad_store_urls_are_refused_at_construction(url: str) -> None:
    with pytest.raises(ImproperlyConfigured):
        store_from_url(url)


def test_middleware_accepts_a_url() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:  # pragma: no cover
        pass

    middleware = SessionMiddleware(app, store="memory://")
    assert isinstance(middleware.store, MemoryStore)


class PluginStore(MemoryStore):
    """Stands for a third-party store registered through the entry-point group."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url


def test_plugins_register_url_schemes(monkeypatch: pytest.MonkeyPatch) -> None:
    entry = EntryPoint(name="acme", value=f"{__name__}:PluginStore", group="asgi_sessions.stores")
    import asgi_sessions.stores as stores

    def fake_entry_points(*, group: str) -> list[EntryPoint]:
        return [entry] if group == "asgi_sessions.stores" else []

    monkeypatch.setattr(stores, "entry_points", fake_entry_points)
    store = store_from_url("acme://bucket/sessions")
    assert isinstance(store, PluginStore)
    assert isinstance(store, SessionStore)
    assert store.url == "acme://bucket/sessions"


def test_an_installed_plugin_gets_its_url_scheme(tmp_path: Path) -> None:
    """The example plugin in examples/custom_store, installed by `make`, registers shelf://."""
    try:
        from acme_sessions import ShelfStore
    except ImportError:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip("examples/custom_store is not installed (make installs it)")
    store = store_from_url(f"shelf://{tmp_path}/sessions.db")
    assert isinstance(store, ShelfStore)


# -- a store built from a URL is closed at lifespan shutdown ----------------------------


def test_a_store_built_from_a_url_is_closed_at_shutdown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse, Response
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from asgi_sessions.stores import SQLStore

    closed: list[str] = []
    real_close = SQLStore.close

    async def watched_close(self: SQLStore) -> None:
        closed.append(self.table_name)
        await real_close(self)

    monkeypatch.setattr(SQLStore, "close", watched_close)

    async def view(request: Request) -> Response:
        await session_of(request).aset("a", 1)
        return PlainTextResponse("ok")

    def app_for(store: Any) -> Starlette:
        return Starlette(
            routes=[Route("/", view)], middleware=[Middleware(SessionMiddleware, store=store)]
        )

    url = f"sqlite+aiosqlite:///{tmp_path}/s.db"
    with TestClient(app_for(url)) as client:
        assert client.get("/").status_code == 200
        assert closed == []
    assert closed == ["asgi_sessions"], "a store built from a URL was not closed at shutdown"

    closed.clear()
    mine = SQLStore(url, table_name="mine")
    with TestClient(app_for(mine)) as client:
        client.get("/")
    assert closed == [], "a store passed in belongs to the caller"
    anyio.run(mine.close)


# -- no store URL error repeats a password ------------------------------------------------

SECRET_WORD = "hunter2secret"


@pytest.mark.parametrize(
    "url",
    [
        f'"redis://:{SECRET_WORD}@127.0.0.1/0"',  # quoted, as pasted from a shell or .env
        f"'postgresql+asyncpg://u:{SECRET_WORD}@h/db'",
        f"redis//:{SECRET_WORD}@127.0.0.1/0",  # the colon forgotten
        f"redis:/:{SECRET_WORD}@h",  # a slash forgotten
        f"1redis://:{SECRET_WORD}@h",
        f"redis_://:{SECRET_WORD}@h",
        f"re dis://:{SECRET_WORD}@h",
        f"redis://u:{SECRET_WORD}@[::1/0",  # urlsplit: invalid IPv6
        f"redis://u:{SECRET_WORD}@h:99999/0",
        f"redis://u:{SECRET_WORD}@h/notanumber",
        f"redis://:p/{SECRET_WORD}@h/0",  # an unencoded slash in the password
        f"postgresql+asyncpg:u:{SECRET_WORD}@h/db",
        f"postgresql+asyncpg://u:{SECRET_WORD}@[::1/db",
        f"postgresql+asyncpg://u:{SECRET_WORD}@h:notaport/db",
        f"mysql+pymysql://root:{SECRET_WORD}@127.0.0.1/test",
        f"postgres+asyncpg://u:{SECRET_WORD}@h/db",
    ],
)
def test_a_bad_store_url_never_shows_its_password(url: str) -> None:
    with pytest.raises(ImproperlyConfigured) as raised:
        store_from_url(url)
    assert SECRET_WORD not in str(raised.value)


def test_a_quoted_url_says_to_remove_the_quotes() -> None:
    with pytest.raises(ImproperlyConfigured, match="remove the quotes"):
        store_from_url('"memory://"')


# -- clear-expired fails in one line, with a status that says why ---------------------------


def _probe(url: str) -> None:
    """Skip (fail under CI) unless the store at ``url`` answers."""
    from tests.backends import unavailable

    async def read() -> None:
        store = store_from_url(url)
        try:
            await store.read(new_key())
        finally:
            await store.close()

    try:
        anyio.run(read)
    except Exception as exc:
        unavailable(f"{url.split('@')[-1]} not reachable: {type(exc).__name__}")


@pytest.mark.parametrize(
    ("url", "status"),
    [
        (f'"redis://:{SECRET_WORD}@127.0.0.1/0"', 2),
        (f"nope://u:{SECRET_WORD}@h", 2),
        (f"redis://:{SECRET_WORD}@127.0.0.1:6379/0?prefx=app:", 2),
        (f"mysql+pymysql://root:{SECRET_WORD}@127.0.0.1/test", 2),
        (f"redis://:{SECRET_WORD}@127.0.0.1:1/0", 3),  # nothing listens on port 1
        (f"postgresql+asyncpg://postgres:{SECRET_WORD}@127.0.0.1:1/test", 3),
        (f"mysql+asyncmy://root:{SECRET_WORD}@127.0.0.1:1/test", 3),
    ],
)
def test_clear_expired_fails_in_one_line(
    url: str, status: int, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["clear-expired", "--store", url]) == status
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("clear-expired: ")
    assert SECRET_WORD not in captured.err


def test_clear_expired_wrong_credentials_exit_4(capsys: pytest.CaptureFixture[str]) -> None:
    from sqlalchemy.engine import make_url

    from tests.backends import MYSQL_URL, POSTGRES_URL

    for good in (MYSQL_URL, POSTGRES_URL):
        _probe(good)
    # MariaDB's root has no password, so any is wrong; PostgreSQL trusts local
    # connections, so a role that does not exist is what it refuses.
    wrong_password = make_url(MYSQL_URL).set(password=SECRET_WORD)
    unknown_role = make_url(POSTGRES_URL).set(username="no_such_role", password=SECRET_WORD)
    for bad in (wrong_password, unknown_role):
        url = bad.render_as_string(hide_password=False)
        assert main(["clear-expired", "--store", url]) == 4
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1, err
        assert err.startswith("clear-expired: the store refused: ")
        assert SECRET_WORD not in err


def test_clear_expired_prints_no_traceback() -> None:
    """The real program, on a real unreachable Redis: one line, exit status 3."""
    result = subprocess.run(
        [
            *(sys.executable, "-m", "asgi_sessions", "clear-expired"),
            *("--store", f"redis://:{SECRET_WORD}@127.0.0.1:1/0"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 3
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("clear-expired: store unavailable")
    assert SECRET_WORD not in result.stderr


def test_clear_expired_help_lists_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["clear-expired", "--help"])
    out = capsys.readouterr().out
    assert "exit status:" in out
    for status in ("2", "3", "4"):
        assert f"  {status}  " in out


# -- clear-expired never creates a store, and says why it cannot use one ----------------------


def _one_line_failure(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("clear-expired: ")
    return lines[0]


@pytest.mark.parametrize("missing", ["typo.db", "typo-dir/sessions.db"])
def test_clear_expired_never_creates_a_sqlite_database(
    missing: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # It created an empty sessions.db (0644) and reported "removed 0"; in a
    # missing directory it failed as an outage (3), worth retrying forever.
    path = tmp_path / missing
    assert main(["clear-expired", "--store", f"sqlite+aiosqlite:///{path}"]) == 2
    line = _one_line_failure(capsys)
    assert line == f"clear-expired: bad store URL: no such SQLite database file: {path}"
    assert sorted(tmp_path.iterdir()) == []


def test_clear_expired_refuses_a_sqlite_path_that_is_a_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["clear-expired", "--store", f"sqlite+aiosqlite:///{tmp_path}"]) == 2
    assert "not a SQLite database file" in _one_line_failure(capsys)


def test_clear_expired_never_adds_its_table_to_another_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The app's own database given by mistake (app.db for sessions.db): the
    # store would create its tables there on first use, and report "removed 0".
    import sqlite3

    path = tmp_path / "app.db"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
        db.commit()
    before = path.read_bytes()
    assert main(["clear-expired", "--store", f"sqlite+aiosqlite:///{path}"]) == 4
    line = _one_line_failure(capsys)
    assert line == f"clear-expired: the store refused: no table asgi_sessions in {path}"
    assert path.read_bytes() == before
    url = f"sqlite+aiosqlite:///{path}?table_name=orders_sessions"
    assert main(["clear-expired", "--store", url]) == 4
    assert "no table orders_sessions in" in _one_line_failure(capsys)


def test_clear_expired_refuses_a_file_that_is_not_a_sqlite_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"not a database, but a file of someone's " * 100)
    before = path.read_bytes()
    assert main(["clear-expired", "--store", f"sqlite+aiosqlite:///{path}"]) == 2
    assert _one_line_failure(capsys) == (
        f"clear-expired: bad store URL: not a SQLite database file: {path}"
    )
    assert path.read_bytes() == before


def test_clear_expired_works_on_an_existing_sqlite_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The app still creates the database on demand; clear-expired then cleans it."""
    from sqlalchemy import update

    from asgi_sessions.stores import SQLStore

    monkeypatch.chdir(tmp_path)
    url = "sqlite+aiosqlite:///sessions.db"  # relative: to the current directory
    gone, live = new_key(), new_key()

    async def seed() -> None:
        store = store_from_url(url)
        assert isinstance(store, SQLStore)
        try:
            for key in (gone, live):
                assert await store.create(key, b"x", 600)
            async with store.engine.begin() as conn:
                table = store.table
                await conn.execute(update(table).where(table.c.key == gone).values(expires_at=1))
        finally:
            await store.close()

    anyio.run(seed)
    assert (tmp_path / "sessions.db").is_file()
    assert main(["clear-expired", "--store", url]) == 0
    assert capsys.readouterr().out.strip() == "removed 1 expired session(s)"


@pytest.mark.parametrize("below", ["", "/sub"])
def test_clear_expired_on_a_file_store_that_is_a_file_is_a_configuration_error(
    below: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    regular = tmp_path / "sessions"
    regular.write_bytes(b"not a directory")
    assert main(["clear-expired", "--store", f"file://{regular}{below}"]) == 2
    line = _one_line_failure(capsys)
    assert ("not a directory" if not below else "no such directory") in line
    assert regular.read_bytes() == b"not a directory"


def test_clear_expired_on_a_file_store_with_a_foreign_locks_file_is_a_configuration_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A regular file where FileStore keeps its lock directory: it exited 3
    # ("store unavailable"), which a wrapper script would retry for ever.
    (tmp_path / ".locks").write_bytes(b"")
    assert main(["clear-expired", "--store", f"file://{tmp_path}"]) == 2
    line = _one_line_failure(capsys)
    assert line.startswith("clear-expired: bad store URL: ")
    assert "EEXIST" in line


_UNPRIVILEGED = """import os, sys

import anyio, anyio.to_thread

from asgi_sessions.__main__ import main
from asgi_sessions.stores import store_from_url

# Load everything a run needs while the interpreter's own files are readable.
anyio.run(anyio.to_thread.run_sync, lambda: None)
store_from_url("sqlite+aiosqlite:///warm-up.db")  # imports the dialect and aiosqlite
if os.geteuid() == 0:  # root reads anything: become a user permissions apply to
    try:
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)
    except OSError:
        sys.exit(99)
sys.exit(main(sys.argv[1:]))
"""


def _run_unprivileged(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m asgi_sessions ARGS`` as a user whom file permissions bind.

    The tests run as root here, which no mode bits stop (CAP_DAC_OVERRIDE), so
    the child drops to ``nobody`` once its imports are done (the interpreter
    lives under /root, which ``nobody`` cannot read). A real EACCES, no mocks.
    """
    result = subprocess.run(
        [sys.executable, "-c", _UNPRIVILEGED, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode == 99:
        pytest.skip("cannot drop root privileges here (no CAP_SETUID)")
    return result


@pytest.fixture
def world_reachable_dir() -> Iterator[Path]:
    """A directory anybody may enter (pytest's tmp_path is under a 0700 one)."""
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="asgi-sessions-cli-"))
    path.chmod(0o711)
    try:
        yield path
    finally:
        for root, dirs, _ in os.walk(path):  # top-down: each one is opened before it is walked
            for name in dirs:
                os.chmod(os.path.join(root, name), 0o700)
        shutil.rmtree(path)


def _assert_refused(result: subprocess.CompletedProcess[str], named: Path) -> None:
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("clear-expired: the store refused: Permission denied (EACCES)")
    assert str(named) in lines[0]
    assert result.returncode == 4, result.stderr


@pytest.mark.parametrize("denied", ["store", "parent"])
def test_clear_expired_on_a_file_store_it_may_not_enter_exits_4(
    denied: str, world_reachable_dir: Path
) -> None:
    # The store directory itself unreadable exited 3 ("store unavailable:
    # file session store failed: EACCES"); the documented status is 4.
    parent = world_reachable_dir / "parent"
    store = parent / "sessions"
    store.mkdir(parents=True)
    (parent if denied == "parent" else store).chmod(0o000)
    result = _run_unprivileged("clear-expired", "--store", f"file://{store}")
    _assert_refused(result, store if denied == "parent" else store / ".locks")
    parent.chmod(0o700)
    store.chmod(0o700)
    assert sorted(p.name for p in store.iterdir()) == []  # not even .locks was made


def test_clear_expired_on_a_sqlite_database_it_may_not_open_exits_4(
    world_reachable_dir: Path,
) -> None:
    # SQLite's "unable to open database file" (CANTOPEN) exited 3 as an outage.
    database = world_reachable_dir / "sessions.db"
    database.write_bytes(b"")
    database.chmod(0o000)
    result = _run_unprivileged("clear-expired", "--store", f"sqlite+aiosqlite:///{database}")
    _assert_refused(result, database)


# -- query parameters: the store's own options, or refused at once ---------------------------


def test_redis_url_takes_prefix_and_timeout() -> None:
    from tests.backends import REDIS_URL, drop_redis_keys

    _probe(REDIS_URL)
    prefix = f"t-url-{new_key()[:8]}:"

    async def scenario() -> None:
        store = store_from_url(f"{REDIS_URL}?prefix={prefix}&timeout=5")
        try:
            assert getattr(store, "prefix", None) == prefix
            assert getattr(store, "timeout", None) == 5.0
            key = new_key()
            assert await store.create(key, b"x", 60)
            assert await store.read(key) == b"x"
        finally:
            await store.close()
            await drop_redis_keys(prefix, REDIS_URL)

    anyio.run(scenario)


def test_clear_expired_prunes_a_redis_store_with_a_custom_prefix(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from redis.asyncio import Redis

    from asgi_sessions.stores import RedisStore
    from tests.backends import REDIS_URL, drop_redis_keys

    _probe(REDIS_URL)
    prefix = f"t-url-{new_key()[:8]}:"
    user, gone, live = new_key(), new_key(), new_key()
    user_set = f"{prefix}user:{user}"

    async def seed() -> None:
        store = RedisStore(REDIS_URL, prefix=prefix)
        try:
            for key in (gone, live):
                assert await store.create(key, b"x", 60)
                await store.link_user(user, key)
            await store.delete(gone)  # leaves its link behind
        finally:
            await store.close()

    async def members() -> set[bytes | str]:
        client = Redis.from_url(REDIS_URL)
        try:
            return set(await client.smembers(user_set))
        finally:
            await client.aclose()

    try:
        anyio.run(seed)
        assert len(anyio.run(members)) == 2
        assert main(["clear-expired", "--store", f"{REDIS_URL}?prefix={prefix}"]) == 0
        assert "removed 0" in capsys.readouterr().out
        assert anyio.run(members) == {live.encode()}
    finally:
        anyio.run(drop_redis_keys, prefix, REDIS_URL)


def test_redis_url_keeps_redis_py_options() -> None:
    """Options redis-py parses from a URL itself still reach it (and work)."""
    from tests.backends import REDIS_URL

    _probe(REDIS_URL)
    base = REDIS_URL.split("?", 1)[0].rsplit("/", 1)[0]

    async def scenario() -> None:
        store = store_from_url(
            f"{base}/0?db=2&socket_timeout=1&health_check_interval=10&client_name=asgi-t"
        )
        try:
            key = new_key()
            assert await store.create(key, b"x", 5)
            client: Any = getattr(store, "client", None)
            assert client.connection_pool.connection_kwargs["db"] == 2
            assert await client.client_getname() in ("asgi-t", b"asgi-t")
            await store.delete(key)
        finally:
            await store.close()

    anyio.run(scenario)
    unix = store_from_url("unix:///tmp/no-such-redis.sock?db=2")
    assert getattr(unix, "client", None).connection_pool.connection_kwargs["db"] == 2  # type: ignore[union-attr]
    anyio.run(unix.close)


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("redis://127.0.0.1:6379/0?table_name=x", "prefix"),
        ("rediss://127.0.0.1:6379/0?prefx=app:", "ssl_cert_reqs"),
        ("redis://127.0.0.1:6379/0?timeout=soon", "timeout"),
        ("redis://127.0.0.1:6379/0?prefix=a&prefix=b", "twice"),
        ("sqlite+aiosqlite:///x.db?prefix=app", "table_name"),
        ("postgresql+asyncpg://postgres@127.0.0.1/test?table=x", "table_name"),
        ("postgresql+asyncpg://postgres@127.0.0.1/test?timeout=0", "timeout"),
        ("mysql+asyncmy://root@127.0.0.1/test?tablename=x", "charset"),
        ("memory://?max_entries=5", "no query"),
        ("file:///tmp/asgi-sessions-url-test?fsync=0", "no query"),
    ],
)
def test_unknown_query_parameters_are_refused_at_once(url: str, named: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=named):
        store_from_url(url)


def test_sqlite_url_takes_table_name_and_timeout(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = store_from_url(f"sqlite+aiosqlite:///{tmp_path}/s.db?table_name=t_url&timeout=3")
        try:
            assert getattr(store, "table_name", None) == "t_url"
            assert getattr(store, "timeout", None) == 3.0
            key = new_key()
            assert await store.create(key, b"x", 60)
            assert await store.read(key) == b"x"
        finally:
            await store.close()

    anyio.run(scenario)  # filterwarnings=error: SQLite's "argument ignored" warning fails it


@pytest.mark.parametrize(
    ("which", "options"),
    [
        ("postgres", "table_name={table}&ssl=disable&prepared_statement_cache_size=0"),
        ("mysql", "table_name={table}&charset=utf8mb4&timeout=4"),
    ],
)
def test_sql_url_options_reach_the_store_and_the_driver(which: str, options: str) -> None:
    from sqlalchemy import text

    from tests.backends import MYSQL_URL, POSTGRES_URL

    url = POSTGRES_URL if which == "postgres" else MYSQL_URL
    _probe(url)
    table = f"t_url_{new_key()[:8]}"

    async def scenario() -> None:
        store = store_from_url(f"{url}?{options.format(table=table)}")
        try:
            assert getattr(store, "table_name", None) == table
            key = new_key()
            assert await store.create(key, b"x", 60)
            assert await store.read(key) == b"x"
        finally:
            engine: Any = getattr(store, "_engine", None)
            async with engine.begin() as connection:
                for name in (f"{table}_users", table):
                    await connection.execute(text(f"DROP TABLE IF EXISTS {name}"))
            await store.close()

    anyio.run(scenario)


# -- a SQL URL that cannot work says which drivers can -----------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "mysql+pymysql://root@127.0.0.1/test",  # not installed, and not async
        "sqlite+pysqlite:///x.db",  # installed, but not async
        "postgresql+psycopg2://u@h/db",
        "postgresql+nosuchdriver://u@h/db",
        "postgres+asyncpg://u@h/db",  # SQLAlchemy has no "postgres" dialect
        "postgresql+asyncpg://u@h:notaport/db",
        "postgresql+asyncpg:u@h/db",
        "sqlite+aiosqlite:relative.db",
    ],
)
def test_bad_sql_urls_name_the_supported_drivers(url: str) -> None:
    with pytest.raises(ImproperlyConfigured) as raised:
        store_from_url(url)
    message = str(raised.value)
    for driver in ("aiosqlite", "asyncpg", "asyncmy"):
        assert driver in message


@pytest.mark.parametrize("url", ["postgres+asyncpg://u@h/db", "postgres://u@h/db"])
def test_the_postgres_spelling_is_corrected(url: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=r"is spelled postgresql\+asyncpg://"):
        store_from_url(url)


# -- plugins, installed for real (a dist-info on sys.path) -------------------------------------


def _install_plugin(path: Path, monkeypatch: pytest.MonkeyPatch, entries: dict[str, str]) -> str:
    """A distribution with ``entries`` in the store group; returns its module's name."""
    module = f"t_plugin_{new_key()[:8]}"
    (path / f"{module}.py").write_text(
        "from asgi_sessions.stores import MemoryStore\n\n"
        "def build(url):\n    return MemoryStore()\n"
    )
    info = path / f"{module}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n")
    lines = "".join(f"{name} = {value.format(module=module)}\n" for name, value in entries.items())
    (info / "entry_points.txt").write_text(f"[asgi_sessions.stores]\n{lines}")
    monkeypatch.syspath_prepend(str(path))
    return module


def test_plugin_scheme_names_match_in_any_case(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _install_plugin(tmp_path, monkeypatch, {"MixedCase": "{module}:build"})
    assert isinstance(store_from_url("mixedcase://x"), MemoryStore)
    assert isinstance(store_from_url("MixedCase://x"), MemoryStore)


def test_a_plugin_that_cannot_be_imported_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = _install_plugin(tmp_path, monkeypatch, {"brokenplug": "{module}_missing:build"})
    with pytest.raises(ImproperlyConfigured) as raised:
        store_from_url("brokenplug://x")
    message = str(raised.value)
    assert "brokenplug" in message
    assert module in message  # the distribution
    assert f"{module}_missing" in message  # what failed to import
    assert isinstance(raised.value.__cause__, ImportError)
