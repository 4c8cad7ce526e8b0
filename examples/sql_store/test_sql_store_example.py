"""The SQL cart example, on SQLite and, when they are up, PostgreSQL and MariaDB.

A server that is not reachable skips its test with the reason, or fails it
under CI=true (the rule of tests/backends.py, whose URLs are used here).
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine
from starlette.testclient import TestClient

from asgi_sessions.__main__ import main as cli
from asgi_sessions.stores import SQLStore
from examples.sql_store.app import create_app
from tests.backends import MYSQL_URL, POSTGRES_URL, unavailable


def run_sql(url: str, statement: str) -> list[Any]:
    """One statement on its own short-lived engine (the app's pool is not touched)."""

    async def run() -> list[Any]:
        engine = create_async_engine(url)
        try:
            async with engine.begin() as connection:
                result = await connection.execute(sa.text(statement))
                return list(result.all()) if result.returns_rows else []
        finally:
            await engine.dispose()

    return asyncio.run(run())


def drop_tables(url: str, prefix: str) -> None:
    async def run() -> None:
        engine = create_async_engine(url)
        try:
            async with engine.begin() as connection:
                names = await connection.run_sync(lambda c: sa.inspect(c).get_table_names())
                for name in sorted(names, key=len, reverse=True):  # `x_users` before `x`
                    if name.startswith(prefix):
                        await connection.execute(sa.text(f"DROP TABLE {name}"))
        finally:
            await engine.dispose()

    asyncio.run(run())


@pytest.fixture(params=["sqlite", "postgres", "mysql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(URL, table name) of an empty sessions table on each database."""
    if request.param == "sqlite":
        # The app's own configuration: a URL, the default table, in a fresh file.
        yield f"sqlite+aiosqlite:///{tmp_path}/sessions.db", "asgi_sessions"
        return
    url = POSTGRES_URL if request.param == "postgres" else MYSQL_URL
    try:
        run_sql(url, "SELECT 1")
    except Exception as exc:
        unavailable(f"database at {url.split('@')[-1]} not reachable: {exc}")
    table = f"example_cart_{secrets.token_hex(4)}"  # shared database: a table of our own
    try:
        yield url, table
    finally:
        drop_tables(url, table)


def app_on(url: str, table: str) -> Any:
    return create_app(url if table == "asgi_sessions" else SQLStore(url, table_name=table))


def quote(column: str, url: str) -> str:
    return f"`{column}`" if url.startswith("mysql") else f'"{column}"'


def test_cart_walkthrough(database: tuple[str, str]) -> None:
    url, table = database
    with TestClient(app_on(url, table)) as client:
        assert client.get("/cart").json() == {"items": {}, "total_cents": 0}
        assert "set-cookie" not in client.get("/cart").headers  # nothing stored yet

        client.post("/cart/items", json={"product": "apple", "quantity": 2})
        cart = client.post("/cart/items", json={"product": "fig"}).json()
        assert cart == {"items": {"apple": 2, "fig": 1}, "total_cents": 220}
        assert client.get("/cart").json() == cart  # read back from the database

        assert client.post("/cart/items", json={"product": "durian"}).status_code == 404
        assert client.post("/cart/items", json={"product": "fig", "quantity": 0}).status_code == 422

        # The database holds one row, keyed by the SHA-256 of the cookie's id.
        cookie = client.cookies["session"]
        keys = [row[0] for row in run_sql(url, f"SELECT {quote('key', url)} FROM {table}")]
        assert keys == [hashlib.sha256(cookie.encode()).hexdigest()]
        assert cookie not in keys

        assert client.delete("/cart/items/apple").json() == {
            "items": {"fig": 1},
            "total_cents": 120,
        }
        assert client.delete("/cart/items/apple").status_code == 404
        assert client.post("/checkout").json() == {"items": {"fig": 1}, "total_cents": 120}
        assert client.get("/cart").json()["items"] == {}
        assert client.post("/checkout").status_code == 400
        assert client.get("/health").json() == {"status": "ok"}


def test_clear_expired_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/sessions.db"
    with TestClient(create_app(url)) as alice, TestClient(create_app(url)) as bob:
        alice.post("/cart/items", json={"product": "plum"})
        bob.post("/cart/items", json={"product": "pear"})
    # Alice's session ran out (as if a week had passed); Bob's is current.
    alice_key = hashlib.sha256(alice.cookies["session"].encode()).hexdigest()
    run_sql(url, f"UPDATE asgi_sessions SET expires_at = 0 WHERE key = '{alice_key}'")

    # What the README tells cron to run.
    assert cli(["clear-expired", "--store", url]) == 0
    assert capsys.readouterr().out.strip() == "removed 1 expired session(s)"
    assert len(run_sql(url, "SELECT key FROM asgi_sessions")) == 1
    with TestClient(create_app(url), cookies=bob.cookies) as bob_again:
        assert bob_again.get("/cart").json()["items"] == {"pear": 1}
