"""The chat example: HTTP login, then WebSockets that know who is talking.

In process with Starlette's TestClient (cookie and server store), and over
the wire: a real uvicorn on a free loopback port, logged into with httpx,
chatted with through the ``websockets`` client sending the session cookie.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
import uvicorn
from starlette.applications import Starlette
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from asgi_sessions import SessionMiddleware
from examples.websocket_chat.app import create_app, login_view


def log_in(client: TestClient, name: str) -> dict[str, str]:
    """Log ``name`` in; the headers that make a later request theirs.

    One TestClient (one event loop) serves every user, as one server does;
    each user is a cookie header rather than a client with its own jar.
    """
    client.cookies.clear()
    response = client.post("/login", data={"username": name}, follow_redirects=False)
    assert response.status_code == 303
    client.cookies.clear()
    return {"cookie": f"session={response.cookies['session']}"}


@pytest.mark.parametrize("store_url", [None, "memory://"], ids=["cookie", "memory-store"])
def test_two_users_chat_and_everybody_sees_names(store_url: str | None) -> None:
    with TestClient(create_app(store_url)) as client:
        alice, bob = log_in(client, "alice"), log_in(client, "bob")
        assert "Signed in as <b>alice</b>" in client.get("/", headers=alice).text

        with client.websocket_connect("/ws", headers=alice) as alice_ws:
            assert alice_ws.receive_text() == "* alice joined"
            with client.websocket_connect("/ws", headers=bob) as bob_ws:
                assert alice_ws.receive_text() == "* bob joined"
                assert bob_ws.receive_text() == "* bob joined"

                alice_ws.send_text("hi bob")
                assert alice_ws.receive_text() == "alice: hi bob"
                assert bob_ws.receive_text() == "alice: hi bob"
                bob_ws.send_text("hello")
                assert alice_ws.receive_text() == "bob: hello"
                assert bob_ws.receive_text() == "bob: hello"
            assert alice_ws.receive_text() == "* bob left"


def test_anonymous_and_cross_site_sockets_are_refused_with_1008() -> None:
    with TestClient(create_app()) as anonymous:
        assert "your name" in anonymous.get("/").text
        with anonymous.websocket_connect("/ws") as ws, pytest.raises(WebSocketDisconnect) as info:
            ws.receive_text()
        assert info.value.code == 1008

        evil = {**log_in(anonymous, "alice"), "origin": "https://evil.example"}
        with (
            anonymous.websocket_connect("/ws", headers=evil) as ws,
            pytest.raises(WebSocketDisconnect) as info,
        ):
            ws.receive_text()
        assert info.value.code == 1008


def test_logout_ends_the_chat_identity() -> None:
    with TestClient(create_app()) as client:
        client.post("/login", data={"username": "alice"})
        assert "Signed in as" in client.get("/").text
        response = client.post("/logout", follow_redirects=False)
        assert "expires=Thu, 01 Jan 1970" in response.headers["set-cookie"]
        with client.websocket_connect("/ws") as ws, pytest.raises(WebSocketDisconnect) as info:
            ws.receive_text()
        assert info.value.code == 1008


@pytest.mark.parametrize(
    "headers",
    [{"origin": "https://evil.example"}, {"sec-fetch-site": "cross-site"}, {"origin": "null"}],
    ids=["origin", "sec-fetch-site", "null-origin"],
)
def test_cross_site_logins_and_logouts_are_refused(headers: dict[str, str]) -> None:
    with TestClient(create_app()) as client:
        # Login CSRF: another site posts its own name; no session cookie comes back.
        response = client.post("/login", data={"username": "mallory"}, headers=headers)
        assert response.status_code == 403
        assert "set-cookie" not in response.headers
        assert "session" not in client.cookies

        client.post("/login", data={"username": "alice"})
        response = client.post("/logout", headers=headers)
        assert response.status_code == 403
        assert "set-cookie" not in response.headers
        assert "Signed in as <b>alice</b>" in client.get("/").text


def test_same_origin_logins_are_accepted() -> None:
    browser = {"origin": "http://testserver", "sec-fetch-site": "same-origin"}
    with TestClient(create_app()) as client:
        response = client.post(
            "/login", data={"username": "alice"}, headers=browser, follow_redirects=False
        )
        assert response.status_code == 303
        assert "session" in client.cookies
        assert "Signed in as <b>alice</b>" in client.get("/").text
        with client.websocket_connect("/ws", headers=browser) as ws:
            assert ws.receive_text() == "* alice joined"
        assert client.post("/logout", headers=browser, follow_redirects=False).status_code == 303


def test_a_name_is_required() -> None:
    with TestClient(create_app()) as client:
        assert client.post("/login", data={"username": "  "}).status_code == 400
        assert client.post("/login", data={"username": "x" * 33}).status_code == 400


# -- over the wire ---------------------------------------------------------------------


@pytest_asyncio.fixture
async def server() -> AsyncIterator[str]:
    """The chat app on a real uvicorn, on a free loopback port: its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))  # the kernel picks a free port; no race for it
    port = sock.getsockname()[1]
    config = uvicorn.Config(create_app(), log_level="warning", lifespan="on")
    uv = uvicorn.Server(config)
    task = asyncio.create_task(uv.serve(sockets=[sock]))
    try:
        for _ in range(500):
            if uv.started:
                break
            await asyncio.sleep(0.01)
        assert uv.started, "uvicorn did not start"
        yield f"127.0.0.1:{port}"
    finally:
        uv.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()


async def session_cookie(base: str, name: str) -> str:
    async with httpx.AsyncClient(base_url=f"http://{base}") as http:
        response = await http.post("/login", data={"username": name})
        assert response.status_code == 303
        return response.cookies["session"]


@pytest.mark.asyncio
async def test_chat_over_a_real_server(server: str) -> None:
    alice_cookie = await session_cookie(server, "alice")
    bob_cookie = await session_cookie(server, "bob")

    url = f"ws://{server}/ws"
    async with (
        connect(url, additional_headers={"Cookie": f"session={alice_cookie}"}) as alice,
        connect(url, additional_headers={"Cookie": f"session={bob_cookie}"}) as bob,
    ):
        assert await asyncio.wait_for(alice.recv(), 5) == "* alice joined"
        assert await asyncio.wait_for(alice.recv(), 5) == "* bob joined"
        assert await asyncio.wait_for(bob.recv(), 5) == "* bob joined"
        await bob.send("hi from bob")
        assert await asyncio.wait_for(alice.recv(), 5) == "bob: hi from bob"
        assert await asyncio.wait_for(bob.recv(), 5) == "bob: hi from bob"

    # No cookie: the server closes with 1008 and says why.
    async with connect(f"ws://{server}/ws") as anonymous:
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(anonymous.recv(), 5)
    assert info.value.rcvd is not None
    assert (info.value.rcvd.code, info.value.rcvd.reason) == (1008, "log in first")

    # A browser on another site that holds the cookie is refused too.
    origin = "http://evil.example"
    async with connect(
        f"ws://{server}/ws",
        additional_headers={"Cookie": f"session={alice_cookie}", "Origin": origin},
    ) as hijack:
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(hijack.recv(), 5)
    assert info.value.rcvd is not None
    assert (info.value.rcvd.code, info.value.rcvd.reason) == (1008, "cross-site socket")


# -- autoload covers websockets too ---------------------------------------------------


def test_autoload_loads_server_sessions_in_websockets() -> None:
    async def sync_read(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(str(websocket.session.get("_auth_user_id")))
        await websocket.close()

    app = Starlette(
        routes=[Route("/login", login_view, methods=["POST"]), WebSocketRoute("/ws", sync_read)]
    )
    app.add_middleware(SessionMiddleware, store="memory://", autoload=True)
    with TestClient(app) as client:
        client.post("/login", data={"username": "alice"}, follow_redirects=False)
        with client.websocket_connect("/ws") as ws:
            assert ws.receive_text() == "alice"
