"""Stores that cannot be reached, through the real middleware (DESIGN §6).

Redis and SQL stores pointed at a loopback port where nothing listens: a
request that needs the session gets ``SessionStoreUnavailable`` within the
store's timeout, which the app's handler turns into a 503; a request that
never touches the session still succeeds; nothing is written. (A real
outage with a restart and every session intact is tested against a Redis
that the test stops and starts: tests/stores/test_redis.py.)
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from asgi_sessions import SessionMiddleware
from asgi_sessions.crypto import new_session_id
from asgi_sessions.errors import SessionStoreUnavailable
from asgi_sessions.stores import SessionStore

TIMEOUT = 0.5


def _redis() -> SessionStore:
    from asgi_sessions.stores import RedisStore

    return RedisStore("redis://127.0.0.1:1/0", timeout=TIMEOUT)


def _postgres() -> SessionStore:
    from asgi_sessions.stores import SQLStore

    return SQLStore("postgresql+asyncpg://postgres@127.0.0.1:1/test", timeout=TIMEOUT)


def _mysql() -> SessionStore:
    from asgi_sessions.stores import SQLStore

    return SQLStore("mysql+asyncmy://root@127.0.0.1:1/test", timeout=TIMEOUT)


STORES: dict[str, Callable[[], SessionStore]] = {
    "redis": _redis,
    "postgres": _postgres,
    "mysql": _mysql,
}


def make_app(store: SessionStore) -> Starlette:
    async def whoami(request: Request) -> Response:
        return JSONResponse({"user": request.session.get("user")})

    async def login(request: Request) -> Response:
        request.session["user"] = "mallory"
        return PlainTextResponse("ok")

    async def health(request: Request) -> Response:
        return PlainTextResponse("alive")

    async def unavailable(request: Request, exc: Exception) -> Response:
        return PlainTextResponse("sessions are down, try again", status_code=503)

    return Starlette(
        routes=[Route("/whoami", whoami), Route("/login", login), Route("/health", health)],
        middleware=[Middleware(SessionMiddleware, store=store)],
        exception_handlers={SessionStoreUnavailable: unavailable},
    )


@pytest.mark.parametrize("name", list(STORES))
def test_unreachable_store(name: str) -> None:
    app = make_app(STORES[name]())
    with TestClient(app) as client:
        client.cookies.set("session", new_session_id())
        for path in ("/whoami", "/login"):
            started = time.monotonic()
            response = client.get(path)
            assert response.status_code == 503, path
            assert time.monotonic() - started < TIMEOUT + 2.5
            assert "set-cookie" not in response.headers
        assert client.get("/health").text == "alive"

        # Without a session cookie, nothing needs the store until it is written.
        client.cookies.clear()
        assert client.get("/whoami").json() == {"user": None}
        started = time.monotonic()
        assert client.get("/login").status_code == 503  # the create fails: no cookie issued
        assert time.monotonic() - started < TIMEOUT + 2.5
