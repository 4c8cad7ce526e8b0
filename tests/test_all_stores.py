"""Promises every built-in server store keeps, through the real middleware.

- The store never holds a session id: every key it holds is the SHA-256 of
  one, and no key, row or file name contains the cookie value.
- Idle and absolute timeouts end sessions on every store.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from asgi_sessions import SessionMiddleware, session_of
from asgi_sessions._record import encode_frame, frame_bytes
from asgi_sessions.crypto import new_session_id, store_key
from asgi_sessions.serializers import JSONSerializer
from asgi_sessions.stores import FileStore, MemoryStore, SessionStore, WriteThroughStore
from tests.backends import STORES, store_factory
from tests.test_concurrency import call

pytestmark = pytest.mark.anyio


@pytest.fixture(params=STORES)
def store_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def make_app(store: SessionStore, **options: Any) -> Starlette:
    async def login(request: Request) -> Response:
        request.session["user"] = "alice"
        return PlainTextResponse("ok")

    async def whoami(request: Request) -> Response:
        return JSONResponse({"user": request.session.get("user")})

    return Starlette(
        routes=[Route("/login", login), Route("/whoami", whoami)],
        middleware=[Middleware(SessionMiddleware, store=store, **options)],
    )


async def stored_keys(store: SessionStore) -> list[str]:
    """Every key the backend holds, read from the backend itself."""
    if isinstance(store, MemoryStore):
        return list(store._entries)
    if isinstance(store, FileStore):
        return [p.name for p in store.directory.iterdir() if not p.name.startswith(".")]
    if isinstance(store, WriteThroughStore):
        return sorted(set(await stored_keys(store.cache)) | set(await stored_keys(store.db)))
    from asgi_sessions.stores import RedisStore, SQLStore

    if isinstance(store, RedisStore):
        return [k.decode() async for k in store.client.scan_iter(match=store.prefix + "*")]
    if isinstance(store, SQLStore):
        import sqlalchemy as sa

        async with store.engine.connect() as connection:
            rows = await connection.execute(sa.select(store.table.c.key))
            return [row[0] for row in rows]
    raise AssertionError(type(store))


async def test_the_store_never_holds_the_session_id(store_name: str, tmp_path: Path) -> None:
    async with store_factory(store_name, tmp_path) as store:
        app = make_app(store)
        _, cookie, _ = await call(app, "/login")
        assert cookie is not None
        keys = await stored_keys(store)
        expected = hashlib.sha256(cookie.encode()).hexdigest()
        assert [key.removeprefix(getattr(store, "prefix", "")) for key in keys] == [expected]
        assert all(cookie not in key for key in keys)
        blob = await store.read(expected)
        assert blob is not None
        assert cookie.encode() not in blob


async def test_idle_timeout_ends_sessions(store_name: str, tmp_path: Path) -> None:
    async with store_factory(store_name, tmp_path) as store:
        app = make_app(store, idle_timeout=1)
        _, cookie, _ = await call(app, "/login")
        await anyio.sleep(0.6)
        _, _, body = await call(app, "/whoami", cookie)  # a load: the TTL moves on
        assert body == b'{"user":"alice"}'
        await anyio.sleep(0.6)
        _, _, body = await call(app, "/whoami", cookie)  # 1.2 s since login: still alive
        assert body == b'{"user":"alice"}'
        await anyio.sleep(1.2)
        _, _, body = await call(app, "/whoami", cookie)
        assert body == b'{"user":null}'


async def test_absolute_timeout_ends_active_sessions(store_name: str, tmp_path: Path) -> None:
    async with store_factory(store_name, tmp_path) as store:
        app = make_app(store, absolute_timeout=60)
        session_id = new_session_id()
        now = int(time.time())
        # A session created 61 s ago and active a second ago.
        frame = encode_frame(
            created=now - 61,
            issued=now - 1,
            expires=now + 3600,
            expiry=None,
            snapshot={"user": "alice"},
        )
        await store.create(store_key(session_id), frame_bytes(JSONSerializer(), frame), 3600)
        _, _, body = await call(app, "/whoami", session_id)
        assert body == b'{"user":null}'
        fresh = encode_frame(
            created=now - 30,
            issued=now - 1,
            expires=now + 3600,
            expiry=None,
            snapshot={"user": "bob"},
        )
        other = new_session_id()
        await store.create(store_key(other), frame_bytes(JSONSerializer(), fresh), 3600)
        _, _, body = await call(app, "/whoami", other)
        assert body == b'{"user":"bob"}'


async def test_far_future_expiries_save_on_every_store(store_name: str, tmp_path: Path) -> None:
    # A "forever" max_age (a hundred years) and a set_expiry beyond what any
    # store or the cookie head can hold are brought down to 2106, not a 500.
    async with store_factory(store_name, tmp_path) as store:
        app = make_app(store, max_age=100 * 365 * 86_400)
        status, cookie, _ = await call(app, "/login")
        assert status == 200
        assert cookie is not None
        _, _, body = await call(app, "/whoami", cookie)
        assert body == b'{"user":"alice"}'

        async def forever(request: Request) -> Response:
            session = session_of(request)
            session["user"] = "bob"
            session.set_expiry(10**30)
            return PlainTextResponse("ok")

        app.router.add_route("/forever", forever)
        status, cookie, _ = await call(app, "/forever")
        assert status == 200
        assert cookie is not None
        _, _, body = await call(app, "/whoami", cookie)
        assert body == b'{"user":"bob"}'
