"""DESIGN §3's websocket promise, over a real server and a real socket, for every store.

uvicorn serves a Starlette app on a free loopback port, in this test module's
event loop (so ``MemoryStore`` and the asyncio-bound Redis and SQL clients
are shared with the server). The session cookie comes from an HTTP request
over the wire (httpx); the websocket is driven by the ``websockets`` client
with that cookie in its handshake. One server per store serves three
deployments of the same app: ``/`` (``autoload=True``), ``/lazy``
(``autoload=False``) and ``/other`` (another secret and another store, the
source of foreign cookies).

What is proved, per store:

- the session can be read in a websocket (and with ``autoload=False`` after an
  explicit ``await session.load()``);
- server stores: ``await session.save()`` during the connection is visible to
  an HTTP request before the socket closes; a change left unsaved is saved on
  disconnect; a concurrent HTTP change to another key is kept; a logout during
  the connection is not undone;
- cookie stores: a change raises ``SessionError`` (the app reports it over the
  socket), the connection carries on and closes cleanly, the cookie is intact;
- a tampered or foreign cookie gives an empty session, not a failed handshake.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import pytest_asyncio
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.asyncio.client import ClientConnection, connect

from asgi_sessions import SessionMiddleware, session_of
from asgi_sessions.auth import login, logout_everywhere
from asgi_sessions.crypto import new_session_id
from asgi_sessions.errors import SessionError
from asgi_sessions.session import USER_KEY
from asgi_sessions.stores import (
    FileStore,
    MemoryStore,
    SessionStore,
    SignedCookieStore,
)
from tests.backends import STORES, store_factory
from tests.instrumented import SECRET

OTHER_SECRET = "another-deployment-secret-that-is-long-enough-0123456789"
COOKIE_KINDS = ["encrypted-cookie", "signed-cookie"]
KINDS = COOKIE_KINDS + STORES
TIMEOUT = 5.0

on_wire = pytest.mark.asyncio(loop_scope="module")


# -- the app ---------------------------------------------------------------------------


async def seed_route(request: Request) -> Response:
    session = session_of(request)
    await session.load()
    session.update(await request.json())
    return JSONResponse({"data": dict(session)})


async def read_route(request: Request) -> Response:
    session = session_of(request)
    await session.load()
    return JSONResponse({"data": dict(session)})


async def logout_route(request: Request) -> Response:
    session_of(request).flush()
    return JSONResponse({"ok": True})


async def _serve_commands(websocket: WebSocket) -> None:
    """Run the client's commands against the session, reporting every SessionError."""
    session = session_of(websocket)
    while True:
        command = await websocket.receive_json()
        op = command["op"]
        if op == "close":
            await websocket.close()
            return
        reply: dict[str, Any]
        try:
            if op == "read":  # synchronous access, as a Starlette app would do
                reply = {"data": dict(session)}
            elif op == "load":
                await session.load()
                reply = {"data": dict(session)}
            elif op == "set":
                session[command["key"]] = command["value"]
                reply = {"modified": session.modified}
            elif op == "save":
                await session.save()
                reply = {"saved": True, "modified": session.modified}
            elif op == "cycle":  # a login's cycle_key(), which needs a new cookie
                session.cycle_key()
                reply = {"modified": session.modified}
            elif op == "login":
                await login(session, command["user"])
                reply = {"modified": session.modified}
            elif op == "logout_others":
                reply = {"ended": await logout_everywhere(session, keep_current=True)}
            elif op == "discard":
                session.modified = False
                reply = {"modified": session.modified}
            else:  # pragma: no cover - a typo in a test
                raise AssertionError(op)
        except SessionError as exc:
            reply = {"error": type(exc).__name__, "message": str(exc)}
        await websocket.send_json(reply)


async def ws_endpoint(websocket: WebSocket) -> None:
    """The usual shape: the app catches the client's disconnect and returns."""
    await websocket.accept()
    with contextlib.suppress(WebSocketDisconnect):
        await _serve_commands(websocket)


async def ws_uncaught_endpoint(websocket: WebSocket) -> None:
    """A plain endpoint that lets the client's disconnect (WebSocketDisconnect) propagate."""
    await websocket.accept()
    await _serve_commands(websocket)


def inner_app() -> Starlette:
    return Starlette(
        routes=[
            Route("/seed", seed_route, methods=["POST"]),
            Route("/read", read_route),
            Route("/logout", logout_route, methods=["POST"]),
            WebSocketRoute("/ws", ws_endpoint),
            WebSocketRoute("/ws-uncaught", ws_uncaught_endpoint),
        ]
    )


def build_app(
    store: Any, secret: str | None, other_store: Any, other_secret: str | None
) -> ASGIApp:
    """``/`` autoloads, ``/lazy`` does not (same store), ``/other`` is another deployment."""
    inner = inner_app()
    return Starlette(
        routes=[
            Mount(
                "/lazy",
                app=SessionMiddleware(inner, secret_key=secret, store=store, autoload=False),
            ),
            Mount(
                "/other",
                app=SessionMiddleware(inner, secret_key=other_secret, store=other_store),
            ),
            Mount("", app=SessionMiddleware(inner, secret_key=secret, store=store)),
        ]
    )


class Tracker:
    """Outermost ASGI layer: tells the test when a websocket's whole stack has returned.

    The session middleware commits after the app returns, so a test waits for
    this before checking what a disconnect saved. The outcome is ``None`` or
    the name of the exception the stack raised (re-raised to the server).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.outcomes: dict[str, asyncio.Future[str | None]] = {}

    def _future(self, tag: str) -> asyncio.Future[str | None]:
        if tag not in self.outcomes:
            self.outcomes[tag] = asyncio.get_running_loop().create_future()
        return self.outcomes[tag]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        tag = parse_qs(scope["query_string"].decode())["tag"][0]
        outcome: str | None = None
        try:
            await self.app(scope, receive, send)
        except BaseException as exc:
            outcome = type(exc).__name__
            raise
        finally:
            future = self._future(tag)
            if not future.done():
                future.set_result(outcome)

    async def outcome(self, tag: str) -> str | None:
        return await asyncio.wait_for(self._future(tag), TIMEOUT)


# -- the server ------------------------------------------------------------------------


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # Leave pytest's own SIGINT handling alone.
        yield


@contextlib.asynccontextmanager
async def serve(app: ASGIApp) -> AsyncIterator[str]:
    """Serve ``app`` on a free loopback port in this event loop; yield its host:port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        ws="websockets-sansio",
        lifespan="off",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=2,
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(TIMEOUT):
            while not server.started:
                if task.done():
                    task.result()  # startup failed: raise why
                    raise RuntimeError("uvicorn exited during startup")
                await asyncio.sleep(0.01)
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, TIMEOUT)


@dataclass
class Wire:
    """A running server for one store kind, and an HTTP client without a cookie jar."""

    kind: str
    host: str
    http: httpx.AsyncClient
    tracker: Tracker
    tags: list[str] = field(default_factory=list)

    @property
    def server_side(self) -> bool:
        return self.kind not in COOKIE_KINDS

    async def seed(self, data: dict[str, Any], prefix: str = "") -> str:
        response = await self.http.post(f"http://{self.host}{prefix}/seed", json=data)
        assert response.status_code == 200, response.text
        token = response.cookies.get("session")
        self.http.cookies.clear()
        assert token
        return token

    async def read(self, token: str | None, prefix: str = "") -> dict[str, Any]:
        headers = {"Cookie": f"session={token}"} if token is not None else {}
        response = await self.http.get(f"http://{self.host}{prefix}/read", headers=headers)
        self.http.cookies.clear()
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()["data"]
        return data

    async def logout(self, token: str) -> None:
        response = await self.http.post(
            f"http://{self.host}/logout", headers={"Cookie": f"session={token}"}
        )
        self.http.cookies.clear()
        assert response.status_code == 200, response.text

    @contextlib.asynccontextmanager
    async def socket(
        self, token: str | None, path: str = "/ws"
    ) -> AsyncIterator[tuple[ClientConnection, str]]:
        """A websocket to ``path`` whose handshake carries the session cookie."""
        tag = secrets.token_hex(8)
        headers = {"Cookie": f"session={token}"} if token is not None else None
        async with connect(
            f"ws://{self.host}{path}?tag={tag}",
            additional_headers=headers,
            open_timeout=TIMEOUT,
            close_timeout=TIMEOUT,
        ) as ws:
            assert ws.response is not None
            assert ws.response.status_code == 101
            yield ws, tag


async def ask(ws: ClientConnection, op: str, **arguments: Any) -> dict[str, Any]:
    await ws.send(json.dumps({"op": op, **arguments}))
    reply: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
    return reply


def tamper(token: str) -> str:
    """The same cookie with one character in the middle changed."""
    middle = len(token) // 2
    replacement = "A" if token[middle] != "A" else "B"
    return token[:middle] + replacement + token[middle + 1 :]


def _cookie_store(kind: str, secret: str) -> Any:
    return None if kind == "encrypted-cookie" else SignedCookieStore(secret)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def wire(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Wire]:
    kind: str = request.param
    async with contextlib.AsyncExitStack() as stack:
        if kind in COOKIE_KINDS:
            app = build_app(
                _cookie_store(kind, SECRET),
                SECRET,
                _cookie_store(kind, OTHER_SECRET),
                OTHER_SECRET,
            )
        else:
            tmp_path = tmp_path_factory.mktemp(f"ws-{kind}")
            store = await stack.enter_async_context(store_factory(kind, tmp_path))
            app = build_app(store, None, MemoryStore(), None)
        tracker = Tracker(app)
        host = await stack.enter_async_context(serve(tracker))
        # No keep-alive: a reused loopback connection stalls ~40 ms per request
        # (delayed ACK), which would be most of this module's run time.
        http = await stack.enter_async_context(
            httpx.AsyncClient(timeout=TIMEOUT, limits=httpx.Limits(max_keepalive_connections=0))
        )
        yield Wire(kind, host, http, tracker)


# Which servers a test runs against (the ``wire`` fixture, one server per kind).
every_store = pytest.mark.parametrize("wire", KINDS, indirect=True)
server_stores = pytest.mark.parametrize("wire", STORES, indirect=True)
cookie_stores = pytest.mark.parametrize("wire", COOKIE_KINDS, indirect=True)


# -- reading ---------------------------------------------------------------------------


@on_wire
@every_store
async def test_websocket_reads_the_session(wire: Wire) -> None:
    token = await wire.seed({"user": "alice", "n": 1})
    async with wire.socket(token) as (ws, tag):
        assert await ask(ws, "load") == {"data": {"user": "alice", "n": 1}}
        assert await ask(ws, "read") == {"data": {"user": "alice", "n": 1}}
        await ws.send(json.dumps({"op": "close"}))
        await ws.wait_closed()
    assert ws.close_code == 1000
    assert await wire.tracker.outcome(tag) is None
    assert await wire.read(token) == {"user": "alice", "n": 1}


@on_wire
@cookie_stores
async def test_websocket_reads_a_cookie_session_synchronously(wire: Wire) -> None:
    token = await wire.seed({"user": "alice"})
    for prefix in ("", "/lazy"):  # cookie sessions always decrypt lazily on first touch
        async with wire.socket(token, f"{prefix}/ws") as (ws, tag):
            assert await ask(ws, "read") == {"data": {"user": "alice"}}
        assert await wire.tracker.outcome(tag) is None


@on_wire
@server_stores
async def test_autoload_applies_to_websockets(wire: Wire) -> None:
    """autoload=True: plain synchronous access works in the websocket, as with Starlette."""
    token = await wire.seed({"user": "alice"})
    async with wire.socket(token) as (ws, tag):
        assert await ask(ws, "read") == {"data": {"user": "alice"}}
        assert await ask(ws, "set", key="ws", value="sync") == {"modified": True}
    assert await wire.tracker.outcome(tag) is None
    assert await wire.read(token) == {"user": "alice", "ws": "sync"}


@on_wire
@server_stores
async def test_without_autoload_the_websocket_loads_explicitly(wire: Wire) -> None:
    token = await wire.seed({"user": "alice"})
    async with wire.socket(token, "/lazy/ws") as (ws, tag):
        reply = await ask(ws, "read")
        assert reply["error"] == "SessionNotLoaded"
        assert "await session.load()" in reply["message"]
        assert await ask(ws, "load") == {"data": {"user": "alice"}}
        assert await ask(ws, "read") == {"data": {"user": "alice"}}
        assert await ask(ws, "set", key="ws", value="lazy") == {"modified": True}
        assert await ask(ws, "save") == {"saved": True, "modified": False}
        assert await wire.read(token) == {"user": "alice", "ws": "lazy"}
    assert await wire.tracker.outcome(tag) is None


# -- server stores: saving -------------------------------------------------------------


@on_wire
@server_stores
@pytest.mark.parametrize("prefix", ["", "/lazy"])
async def test_save_during_the_connection_is_visible_before_it_closes(
    wire: Wire, prefix: str
) -> None:
    token = await wire.seed({"user": "alice"})
    async with wire.socket(token, f"{prefix}/ws") as (ws, tag):
        await ask(ws, "load")
        assert await ask(ws, "set", key="ws", value="saved") == {"modified": True}
        assert await ask(ws, "save") == {"saved": True, "modified": False}
        # The socket is still open: an HTTP request with the same cookie sees it.
        assert await wire.read(token) == {"user": "alice", "ws": "saved"}
        # A second change and save in the same connection.
        await ask(ws, "set", key="ws", value="again")
        assert await ask(ws, "save") == {"saved": True, "modified": False}
        assert await wire.read(token) == {"user": "alice", "ws": "again"}
        assert not ws.close_code
    assert await wire.tracker.outcome(tag) is None
    assert await wire.read(token) == {"user": "alice", "ws": "again"}


@on_wire
@server_stores
async def test_a_change_is_saved_before_the_server_closes(wire: Wire) -> None:
    # A client that sees the close frame and then makes a request (a page
    # reloading after its socket ended) reads what the socket wrote: the
    # save is not left to run after the close went out.
    token = await wire.seed({"user": "alice"})
    async with wire.socket(token) as (ws, tag):
        await ask(ws, "load")
        assert await ask(ws, "set", key="ws", value="on-close") == {"modified": True}
        await ws.send(json.dumps({"op": "close"}))
        await ws.wait_closed()
        assert await wire.read(token) == {"user": "alice", "ws": "on-close"}
    assert await wire.tracker.outcome(tag) is None


@on_wire
@server_stores
@pytest.mark.parametrize("closed_by", ["client", "server"])
async def test_an_unsaved_change_is_saved_on_disconnect(wire: Wire, closed_by: str) -> None:
    token = await wire.seed({"user": "alice"})
    async with wire.socket(token) as (ws, tag):
        await ask(ws, "load")
        assert await ask(ws, "set", key="ws", value="unsaved") == {"modified": True}
        assert await wire.read(token) == {"user": "alice"}  # not saved yet
        if closed_by == "server":
            await ws.send(json.dumps({"op": "close"}))
            await ws.wait_closed()
    assert await wire.tracker.outcome(tag) is None
    assert await wire.read(token) == {"user": "alice", "ws": "unsaved"}


@on_wire
@server_stores
async def test_an_unsaved_change_is_saved_when_the_disconnect_propagates(wire: Wire) -> None:
    token = await wire.seed({"user": "alice"})
    async with wire.socket(token, "/ws-uncaught") as (ws, tag):
        await ask(ws, "load")
        await ask(ws, "set", key="ws", value="unsaved")
    assert await wire.tracker.outcome(tag) == "WebSocketDisconnect"
    assert await wire.read(token) == {"user": "alice", "ws": "unsaved"}


@on_wire
@server_stores
async def test_a_concurrent_http_change_is_kept(wire: Wire) -> None:
    token = await wire.seed({"user": "alice"})
    async with wire.socket(token) as (ws, tag):
        await ask(ws, "load")  # the socket's copy: {"user": "alice"}
        response = await wire.http.post(
            f"http://{wire.host}/seed",
            json={"cart": ["tea"]},
            headers={"Cookie": f"session={token}"},
        )
        wire.http.cookies.clear()
        assert response.status_code == 200
        await ask(ws, "set", key="ws", value="saved")
        assert await ask(ws, "save") == {"saved": True, "modified": False}
        assert await wire.read(token) == {"user": "alice", "cart": ["tea"], "ws": "saved"}
    assert await wire.tracker.outcome(tag) is None


@on_wire
@server_stores
async def test_cycle_key_in_a_websocket_is_refused_at_once(wire: Wire) -> None:
    # A new id needs a cookie, which a websocket cannot send: cycle_key()
    # (a login) says so when it is called, not later at save, and the
    # session and its id stay usable.
    alice = {"user": "alice", USER_KEY: "alice"}  # logged in
    token = await wire.seed(alice)
    async with wire.socket(token) as (ws, tag):
        await ask(ws, "load")
        for command in ({"op": "cycle"}, {"op": "login", "user": "bob"}):
            reply = await ask(ws, **command)
            assert reply["error"] == "SessionError"
            assert "new session id" in reply["message"]
            assert "websocket" in reply["message"]
        # Keeping this session under a new id is refused before anything is
        # ended (stores without a user index refuse it anyway).
        reply = await ask(ws, "logout_others")
        assert reply["error"] in {"SessionError", "UnsupportedOperation"}
        assert await ask(ws, "read") == {"data": alice}
        assert await ask(ws, "set", key="ws", value="saved") == {"modified": True}
        assert await ask(ws, "save") == {"saved": True, "modified": False}
    assert await wire.tracker.outcome(tag) is None
    assert await wire.read(token) == {**alice, "ws": "saved"}


@on_wire
@server_stores
@pytest.mark.parametrize("save", [True, False])
async def test_a_logout_during_the_connection_is_not_undone(wire: Wire, save: bool) -> None:
    token = await wire.seed({"user": "alice"})
    async with wire.socket(token) as (ws, tag):
        await ask(ws, "load")
        await wire.logout(token)  # another tab logs out
        await ask(ws, "set", key="ws", value="late")
        if save:
            reply = await ask(ws, "save")
            assert reply["error"] == "SessionInterrupted"
    # Neither the explicit save nor the save on disconnect resurrects the session.
    assert await wire.tracker.outcome(tag) is None
    assert await wire.read(token) == {}


# -- cookie stores: changes are refused, clearly ---------------------------------------


@on_wire
@cookie_stores
@pytest.mark.parametrize("op", ["set", "save"])
async def test_a_cookie_session_cannot_change_in_a_websocket(wire: Wire, op: str) -> None:
    token = await wire.seed({"user": "alice"})
    async with wire.socket(token) as (ws, tag):
        assert await ask(ws, "read") == {"data": {"user": "alice"}}
        if op == "set":
            reply = await ask(ws, "set", key="user", value="mallory")
            assert reply["error"] == "SessionError"
            assert "websocket" in reply["message"]
            assert "server-side store" in reply["message"]
        else:
            reply = await ask(ws, "save")
            assert reply["error"] == "SessionError"
            assert "cookie sessions" in reply["message"]
        # Nothing broke: the session is as it was and the connection goes on.
        assert await ask(ws, "read") == {"data": {"user": "alice"}}
        await ws.send(json.dumps({"op": "close"}))
        await ws.wait_closed()
    assert ws.close_code == 1000
    assert await wire.tracker.outcome(tag) is None
    assert await wire.read(token) == {"user": "alice"}


# -- bad cookies -----------------------------------------------------------------------


async def _foreign_token(wire: Wire, how: str) -> str:
    if how == "tampered":
        return tamper(await wire.seed({"user": "alice"}))
    if how == "foreign":  # issued by another deployment (other secret, other store)
        return await wire.seed({"user": "mallory"}, prefix="/other")
    if how == "unknown-id":
        return new_session_id()
    return "not-a-session-at-all"


@on_wire
@every_store
@pytest.mark.parametrize("how", ["tampered", "foreign", "unknown-id", "garbage"])
@pytest.mark.parametrize("prefix", ["", "/lazy"])
async def test_a_bad_cookie_gives_an_empty_session(wire: Wire, how: str, prefix: str) -> None:
    token = await _foreign_token(wire, how)
    async with wire.socket(token, f"{prefix}/ws") as (ws, tag):  # the handshake succeeds
        assert await ask(ws, "load") == {"data": {}}
        assert await ask(ws, "read") == {"data": {}}
        reply = await ask(ws, "set", key="user", value="mallory")
        if wire.server_side:
            # No new session id can be issued where no cookie can be sent.
            assert reply == {"modified": True}
            reply = await ask(ws, "save")
            assert reply["error"] == "SessionError"
            assert "new session id" in reply["message"]
            assert await ask(ws, "discard") == {"modified": False}
        else:
            assert reply["error"] == "SessionError"
    assert await wire.tracker.outcome(tag) is None
    assert await wire.read(token) == {}


@on_wire
@every_store
async def test_no_cookie_gives_an_empty_session(wire: Wire) -> None:
    async with wire.socket(None) as (ws, tag):
        assert await ask(ws, "read") == {"data": {}}
        assert await ask(ws, "load") == {"data": {}}
    assert await wire.tracker.outcome(tag) is None


# -- the same flow through Starlette's TestClient ---------------------------------------


@pytest.mark.parametrize("kind", ["memory", "file"])
def test_testclient_save_during_connection_is_visible_before_it_closes(
    kind: str, tmp_path: Path
) -> None:
    store: SessionStore = MemoryStore() if kind == "memory" else FileStore(tmp_path / "s")
    app = build_app(store, None, MemoryStore(), None)
    with TestClient(app) as client:
        token = client.post("/seed", json={"user": "alice"}).cookies.get("session")
        assert token
        client.cookies.clear()
        cookie = {"cookie": f"session={token}"}
        with client.websocket_connect("/ws", headers=cookie) as ws:
            ws.send_json({"op": "load"})
            assert ws.receive_json() == {"data": {"user": "alice"}}
            ws.send_json({"op": "set", "key": "ws", "value": "saved"})
            assert ws.receive_json() == {"modified": True}
            ws.send_json({"op": "save"})
            assert ws.receive_json() == {"saved": True, "modified": False}
            assert client.get("/read", headers=cookie).json()["data"] == {
                "user": "alice",
                "ws": "saved",
            }
            ws.send_json({"op": "set", "key": "ws", "value": "on-close"})
            assert ws.receive_json() == {"modified": True}
            ws.send_json({"op": "close"})
            # Saved before the close frame is sent: seeing it is enough. (Leaving
            # the block at once would race TestClient's cancelling the app.)
            assert ws.receive()["type"] == "websocket.close"
        assert client.get("/read", headers=cookie).json()["data"] == {
            "user": "alice",
            "ws": "on-close",
        }
