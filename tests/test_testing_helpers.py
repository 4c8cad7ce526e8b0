"""``read_session`` / ``seed_session`` (and the async pair): the session behind a test client.

A seeded session must behave exactly like one a view created: the app sees
it, the app's later changes replace it in the client's jar, and
``read_session`` then shows those changes, for cookie and server stores,
with Starlette's TestClient and with ``httpx.AsyncClient``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from asgi_sessions import SessionMiddleware, session_of
from asgi_sessions.testing import aread_session, aseed_session, read_session, seed_session
from tests.backends import store_factory

SECRET = "testing-helpers-secret-0123456789abcdefgh"


def make_app(**options: Any) -> Starlette:
    async def show(request: Request) -> Response:
        await session_of(request).load()
        return JSONResponse(dict(request.session))

    async def add(request: Request) -> Response:
        await session_of(request).load()
        request.session["cart"] = [*request.session.get("cart", []), "tea"]
        return JSONResponse(dict(request.session))

    return Starlette(
        routes=[Route("/", show), Route("/add", add)],
        middleware=[Middleware(SessionMiddleware, **options)],
    )


@pytest.mark.parametrize("chunked", [False, True])
def test_seed_then_the_app_then_read_with_cookie_sessions(chunked: bool) -> None:
    from asgi_sessions.stores import EncryptedCookieStore

    app = make_app(store=EncryptedCookieStore(SECRET, chunked=chunked))
    with TestClient(app) as client:
        seed_session(client, {"user": 42})
        assert client.get("/").json() == {"user": 42}
        assert client.get("/add").json() == {"user": 42, "cart": ["tea"]}
        assert client.get("/").json() == {"user": 42, "cart": ["tea"]}
        assert read_session(client) == {"user": 42, "cart": ["tea"]}
        assert len(client.cookies.jar) == 1, "the seeded cookie lingers beside the app's"
        seed_session(client, {"user": 7})  # replaces the session
        assert client.get("/").json() == {"user": 7}


@pytest.mark.parametrize("server", [False, True], ids=["cookie", "memory"])
def test_aseed_session_works_for_a_client_without_base_url(server: bool) -> None:
    # An AsyncClient built without base_url has an empty one (not none at
    # all): the seeded cookie is then filed for http://testserver.
    import anyio

    from asgi_sessions.stores import MemoryStore

    app = make_app(store=MemoryStore()) if server else make_app(secret_key=SECRET)

    async def run() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport) as client:
            await aseed_session(client, {"user": 42}, app)
            assert (await client.get("http://testserver/")).json() == {"user": 42}
            await client.get("http://testserver/add")
            assert await aread_session(client, app) == {"user": 42, "cart": ["tea"]}
            assert len(client.cookies.jar) == 1

    anyio.run(run)


@pytest.mark.parametrize("name", ["memory", "file", "sqlite", "redis"])
def test_seed_then_the_app_then_read_with_server_sessions(name: str, tmp_path: Path) -> None:
    import anyio

    async def run() -> None:
        async with store_factory(name, tmp_path) as store:
            app = make_app(store=store)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                await aseed_session(client, {"user": 42}, app)
                assert (await client.get("/")).json() == {"user": 42}
                await client.get("/add")
                assert await aread_session(client, app) == {"user": 42, "cart": ["tea"]}
                assert len(client.cookies.jar) == 1

    anyio.run(run)
