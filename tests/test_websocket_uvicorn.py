"""WebSockets over the wire: a real uvicorn server, the ``websockets`` client, every store.

DESIGN §3: websocket scopes get the session. Reading works with every store;
server stores save during the connection with ``await session.save()`` and
on disconnect; a cookie session cannot change there (no cookie can be sent)
and says so with a clear ``SessionError``. The session cookie comes from an
HTTP login over the same server, as a browser's would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.asyncio.client import connect

from asgi_sessions import SessionMiddleware, session_of
from asgi_sessions.errors import SessionError
from asgi_sessions.stores import (
    EncryptedCookieStore,
    FileStore,
    MemoryStore,
    SignedCookieStore,
)
from tests import backends

SECRET = "websocket-wire-secret-0123456789abcdefgh"
COOKIE_STORES = ["encrypted-cookie", "signed-cookie"]
SERVER_STORES = ["memory", "file", "redis", "sqlite", "postgres", "mysql"]


# -- the app -----------------------------------------------------------------------


async def login(request: Request) -> Response:
    session = session_of(request)
    await session.aset("name", request.query_params["name"])
    return JSONResponse({})


async def show_view(request: Request) -> Response:
    session = session_of(request)
    await session.load()
    return JSONResponse(dict(session))


async def ws(websocket: WebSocket) -> None:
    """A tiny command protocol: each text frame is a command, each answer JSON."""
    await websocket.accept()
    session = session_of(websocket)
    try:
        while True:
            command, _, argument = (await websocket.receive_text()).partition(" ")
            try:
                if command == "load":
                    await session.load()
                    await websocket.send_json({"session": dict(session)})
                elif command == "read":
                    await websocket.send_json({"session": dict(session)})
                elif command == "set":
                    key, _, value = argument.partition("=")
                    session[key] = value
                    await websocket.send_json({"ok": True})
                elif command == "save":
                    await session.save()
                    await websocket.send_json({"saved": True})
            except SessionError as exc:
                await websocket.send_json({"error": type(exc).__name__, "message": str(exc)})
    except WebSocketDisconnect:
        pass


def make_app(store: Any, **options: Any) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        yield
        await store.close()  # the server's loop owns the store's connections

    app = Starlette(
        routes=[Route("/login", login), Route("/show", show_view), WebSocketRoute("/ws", ws)],
        lifespan=lifespan if hasattr(store, "close") and not _is_cookie(store) else None,
    )
    app.add_middleware(SessionMiddleware, store=store, **options)
    return app


def _is_cookie(store: Any) -> bool:
    return isinstance(store, (EncryptedCookieStore, SignedCookieStore))


# -- a real server -----------------------------------------------------------------


class Server:
    def __init__(self, app: Starlette) -> None:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.socket = sock
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            app, log_level="warning", lifespan="on", ws="websockets-sansio", loop="asyncio"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]})

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.socket.close()


@contextlib.contextmanager
def store_named(name: str, tmp_path: Path) -> Iterator[Any]:
    """A store whose connections the server's event loop will own; cleaned up after."""
    suffix = secrets.token_hex(4)
    if name == "encrypted-cookie":
        yield EncryptedCookieStore(SECRET)
    elif name == "signed-cookie":
        yield SignedCookieStore(SECRET)
    elif name == "memory":
        yield MemoryStore()
    elif name == "file":
        yield FileStore(tmp_path / "sessions")
    elif name == "redis":
        prefix = f"test-ws:{suffix}:"
        store = asyncio.run(backends._redis(prefix))  # probes; the store connects lazily
        try:
            yield store
        finally:
            asyncio.run(backends._drop_redis(prefix))
    else:
        url = {
            "sqlite": f"sqlite+aiosqlite:///{tmp_path}/sessions.db",
            "postgres": backends.POSTGRES_URL,
            "mysql": backends.MYSQL_URL,
        }[name]
        table = f"ws_{suffix}"
        store = asyncio.run(backends._sql(url, table))
        try:
            yield store
        finally:
            if name != "sqlite":
                asyncio.run(backends._drop_table(url, table))


@contextlib.contextmanager
def served(name: str, tmp_path: Path, **options: Any) -> Iterator[Server]:
    with store_named(name, tmp_path) as store, Server(make_app(store, **options)) as server:
        yield server


def log_in(server: Server, name: str) -> str:
    with httpx.Client(base_url=server.http) as client:
        response = client.get("/login", params={"name": name})
        assert response.status_code == 200
        return "; ".join(f"{k}={v}" for k, v in client.cookies.items())


def show(server: Server, cookie: str) -> Any:
    with httpx.Client(base_url=server.http) as client:
        return client.get("/show", headers={"cookie": cookie}).json()


async def talk(server: Server, cookie: str, *commands: str) -> list[Any]:
    """Open a socket with ``cookie``, send ``commands``, return the answers, close."""
    answers = []
    async with connect(server.ws, additional_headers={"Cookie": cookie}) as socket_:
        for command in commands:
            await socket_.send(command)
            answers.append(json.loads(await socket_.recv()))
    return answers


# -- the tests ---------------------------------------------------------------------


@pytest.mark.parametrize("name", COOKIE_STORES + SERVER_STORES)
def test_the_session_is_readable_in_a_websocket(name: str, tmp_path: Path) -> None:
    with served(name, tmp_path) as server:
        cookie = log_in(server, "ada")
        assert asyncio.run(talk(server, cookie, "read")) == [{"session": {"name": "ada"}}]
        # No cookie, or a forged one: an empty session, never a failed handshake.
        assert asyncio.run(talk(server, "", "read")) == [{"session": {}}]
        forged = cookie[:-3] + ("AAA" if not cookie.endswith("AAA") else "BBB")
        assert asyncio.run(talk(server, forged, "read")) == [{"session": {}}]


@pytest.mark.parametrize("name", SERVER_STORES)
def test_server_sessions_save_during_the_connection_and_on_disconnect(
    name: str, tmp_path: Path
) -> None:
    with served(name, tmp_path) as server:
        cookie = log_in(server, "ada")

        async def scenario() -> None:
            async with connect(server.ws, additional_headers={"Cookie": cookie}) as socket_:
                await socket_.send("set color=blue")
                assert json.loads(await socket_.recv()) == {"ok": True}
                await socket_.send("save")
                assert json.loads(await socket_.recv()) == {"saved": True}
                # Saved while the socket is still open: HTTP sees it now.
                seen = await asyncio.to_thread(show, server, cookie)
                assert seen == {"name": "ada", "color": "blue"}
                await socket_.send("set size=xl")  # left for the disconnect to save
                assert json.loads(await socket_.recv()) == {"ok": True}

        asyncio.run(scenario())
        deadline = time.monotonic() + 5
        while show(server, cookie) != {"name": "ada", "color": "blue", "size": "xl"}:
            assert time.monotonic() < deadline, "the change was not saved on disconnect"
            time.sleep(0.05)


@pytest.mark.parametrize("name", COOKIE_STORES)
def test_cookie_sessions_refuse_changes_in_a_websocket_clearly(name: str, tmp_path: Path) -> None:
    with served(name, tmp_path) as server:
        cookie = log_in(server, "ada")
        answers = asyncio.run(talk(server, cookie, "set color=blue", "save", "read"))
        assert answers[0]["error"] == "SessionError"
        assert "cannot be changed in a websocket" in answers[0]["message"]
        assert answers[1]["error"] == "SessionError"
        assert answers[2] == {"session": {"name": "ada"}}, "the socket must go on working"
        assert show(server, cookie) == {"name": "ada"}


@pytest.mark.parametrize("name", ["memory", "redis", "sqlite"])
def test_autoload_off_means_an_explicit_load(name: str, tmp_path: Path) -> None:
    with served(name, tmp_path, autoload=False) as server:
        cookie = log_in(server, "ada")
        answers = asyncio.run(talk(server, cookie, "read", "load", "read"))
        assert answers[0]["error"] == "SessionNotLoaded"
        assert answers[1] == answers[2] == {"session": {"name": "ada"}}


def test_a_new_session_cannot_start_in_a_websocket(tmp_path: Path) -> None:
    with served("memory", tmp_path) as server:
        answers = asyncio.run(talk(server, "", "set color=blue", "save"))
        assert answers[0] == {"ok": True}
        assert answers[1]["error"] == "SessionError"
        assert "cannot be issued here" in answers[1]["message"]
