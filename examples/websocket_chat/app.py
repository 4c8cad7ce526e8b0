"""A chat room: log in over HTTP, chat over a WebSocket that knows who you are.

The login form stores your name in the session. The browser then opens a
WebSocket to ``/ws``; the handshake carries the same session cookie, so
``SessionMiddleware`` gives the socket the same session
(``websocket.session``, i.e. ``scope["session"]``), and every message you send
is broadcast to everyone in the room prefixed with your name. A socket
without a logged-in session is refused with close code 1008 (policy
violation).

Sessions live in an encrypted cookie by default. Set ``SESSION_STORE_URL``
(``redis://127.0.0.1:6379/0``, ``sqlite+aiosqlite:///./chat.db``,
``memory://``, ...) to keep them server-side instead; nothing else changes.
Run it (from the repository root) with::

    make venv && .venv/bin/uvicorn examples.websocket_chat.app:app --reload

and open http://127.0.0.1:8000 in two browsers (or a normal and a private
window) to chat with yourself.
"""

from __future__ import annotations

import html
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import parse_qsl, urlsplit

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from asgi_sessions import SessionMiddleware
from asgi_sessions.auth import login, logout, user_of
from asgi_sessions.stores import SessionStore, store_from_url

logger = logging.getLogger(__name__)

# DEV ONLY: a fixed key so sessions survive `--reload`. Anyone can read this
# file, so anyone could forge sessions for an app that uses it: in production
# set SECRET_KEY (generate one with `python -m asgi_sessions keygen`).
DEV_ONLY_SECRET_KEY = "dev-only-websocket-chat-example-key-do-not-deploy"

SECRET_KEY = os.environ.get("SECRET_KEY") or DEV_ONLY_SECRET_KEY
if SECRET_KEY == DEV_ONLY_SECRET_KEY:
    logger.warning("SECRET_KEY is not set: using the dev-only key")

MAX_NAME = 32
MAX_MESSAGE = 500


class Room:
    """Who is connected, and a way to tell them all something.

    One process only: with several workers, each has its own room (a real
    deployment would fan messages out through Redis pub/sub or similar).
    """

    def __init__(self) -> None:
        self.members: set[WebSocket] = set()

    async def broadcast(self, text: str) -> None:
        for member in list(self.members):
            try:
                await member.send_text(text)
            except Exception:  # it went away mid-send; its own handler cleans up
                self.members.discard(member)


# -- HTTP: the page, login and logout -------------------------------------------

LOGIN_PAGE = """<!doctype html><meta charset="utf-8"><title>Chat</title>
<h1>Chat</h1>
<form method="post" action="/login">
  <input name="username" placeholder="your name" maxlength="{max_name}" required autofocus>
  <button>Enter</button>
</form>"""

CHAT_PAGE = """<!doctype html><meta charset="utf-8"><title>Chat</title>
<h1>Chat</h1>
<form method="post" action="/logout">Signed in as <b>{name}</b> <button>Log out</button></form>
<ul id="log"></ul>
<form id="say"><input id="text" maxlength="{max_message}" autocomplete="off" autofocus>
<button>Send</button></form>
<script>
const log = document.getElementById("log");
const show = (line) => {{
  const item = document.createElement("li");
  item.textContent = line;  // text, never HTML: messages come from other users
  log.append(item);
}};
const scheme = location.protocol === "https:" ? "wss" : "ws";
// The browser sends the session cookie with the handshake: no token in the URL.
const socket = new WebSocket(`${{scheme}}://${{location.host}}/ws`);
socket.onmessage = (event) => show(event.data);
socket.onclose = (event) => show(`(disconnected: ${{event.code}} ${{event.reason}})`);
document.getElementById("say").onsubmit = (event) => {{
  event.preventDefault();
  const input = document.getElementById("text");
  if (input.value) socket.send(input.value);
  input.value = "";
}};
</script>"""


async def page(request: Request) -> Response:
    # `user_of` awaits the session, so the same line works whether it lives
    # in the cookie or in a server store.
    name = await user_of(request.session)
    if name is None:
        return HTMLResponse(LOGIN_PAGE.format(max_name=MAX_NAME))
    return HTMLResponse(CHAT_PAGE.format(name=html.escape(name), max_message=MAX_MESSAGE))


def same_origin(conn: HTTPConnection) -> bool:
    """Did this request (a form post, or a socket's handshake) come from our own page?

    Browsers say where a request comes from (``Origin``, ``Sec-Fetch-Site``).
    Two attacks need this check:

    - Login CSRF: SameSite=Lax keeps our cookie off a cross-site POST, but
      another site can still post *its* name to ``/login``, and the browser
      keeps the cookie we answer with: the victim then chats as the attacker.
    - Cross-site WebSocket hijacking: browsers send cookies with WebSocket
      handshakes but do not apply CORS to them, so any site could open a
      socket *as* a visitor who is logged in here.

    A request with neither header (curl, a script, the ``websockets`` client)
    is not a browser sent by another site, so it is let through; such a
    client has to hold the cookie itself. Behind a proxy that rewrites
    ``Host``, compare ``Origin`` with your public origin instead.
    """
    origin = conn.headers.get("origin")
    if conn.headers.get("sec-fetch-site") == "cross-site":
        return False
    return origin is None or urlsplit(origin).netloc == conn.headers.get("host")


CROSS_SITE = "Cross-site form posts are refused."


async def login_view(request: Request) -> Response:
    if not same_origin(request):
        return HTMLResponse(CROSS_SITE, status_code=403)
    body = (await request.body())[:1000].decode("utf-8", "replace")
    name = dict(parse_qsl(body)).get("username", "").strip()
    if not name or len(name) > MAX_NAME:
        return HTMLResponse(f"Pick a name of 1 to {MAX_NAME} characters.", status_code=400)
    # A new session id on login (no session fixation), the name and login time stored.
    await login(request.session, name)
    return RedirectResponse("/", status_code=303)


async def logout_view(request: Request) -> Response:
    if not same_origin(request):
        return HTMLResponse(CROSS_SITE, status_code=403)
    await logout(request.session)  # the cookie is deleted with this response
    return RedirectResponse("/", status_code=303)


# -- WebSocket: the chat ------------------------------------------------------------


async def chat(websocket: WebSocket) -> None:
    # The handshake's cookie gave this socket the session of the page that
    # opened it. Reading works with every store; a cookie session cannot be
    # *changed* here (no response can carry a new cookie), a server session can.
    name = await user_of(websocket.session)
    await websocket.accept()
    # Accept, then close with a code (1008: policy violation) and a reason the
    # page can show: refusing the handshake would reach the browser as a bare 1006.
    if not same_origin(websocket):
        await websocket.close(code=1008, reason="cross-site socket")
        return
    if name is None:
        await websocket.close(code=1008, reason="log in first")
        return

    room: Room = websocket.app.state.room
    room.members.add(websocket)
    await room.broadcast(f"* {name} joined")
    try:
        while True:
            text = (await websocket.receive_text())[:MAX_MESSAGE]
            await room.broadcast(f"{name}: {text}")
    except WebSocketDisconnect:
        pass
    finally:
        room.members.discard(websocket)
        await room.broadcast(f"* {name} left")


def create_app(store_url: str | None = None) -> Starlette:
    """The chat app; sessions in an encrypted cookie, or in ``store_url``."""
    store: SessionStore | None = store_from_url(store_url) if store_url else None

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.room = Room()
        yield
        if store is not None:
            await store.close()  # connection pools, file handles: closed on shutdown

    return Starlette(
        routes=[
            Route("/", page),
            Route("/login", login_view, methods=["POST"]),
            Route("/logout", logout_view, methods=["POST"]),
            WebSocketRoute("/ws", chat),
        ],
        # In production, behind HTTPS, add https_only=True: the cookie is then
        # marked Secure and never sent over plain http:// (or ws://), where anyone
        # on the network could read and replay it. Off here only because the
        # example is served on plain http://127.0.0.1:8000.
        middleware=[Middleware(SessionMiddleware, secret_key=SECRET_KEY, store=store)],
        lifespan=lifespan,
    )


app = create_app(os.environ.get("SESSION_STORE_URL"))
