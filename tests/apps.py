"""Apps and helpers for the cookie tests: a Starlette app, a raw ASGI driver, cookie parsing.

Owns: :func:`session_app` (a Starlette app whose routes read, change, replace
and clear the session), :func:`echo_session` (a bare ASGI app that answers
with the session as JSON), :func:`call` (drives an ASGI app with raw header
bytes, far faster than a test client, and lets every exception through), and
helpers that pick Set-Cookie lines apart and open cookie tokens with the real
cipher.

Never knows: how the middleware works inside. Tests look at what a browser
would see (headers, cookies) and, where the issue names the token format, at
the token itself.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from anyio.abc import TaskGroup
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from asgi_sessions import SessionMiddleware
from asgi_sessions._record import COOKIE_HEAD
from asgi_sessions.stores import CookieStore

__all__ = [
    "OTHER_SECRET",
    "SECRET",
    "CookieHead",
    "Reply",
    "SetCookie",
    "call",
    "echo_session",
    "open_token",
    "parse_set_cookie",
    "session_app",
    "session_routes",
    "set_cookies",
]

SECRET = "cookie-tests-secret-0123456789-abcdefghijklmnop"
"""Longer than 32 bytes: no weak-secret warning (and warnings are errors here)."""
OTHER_SECRET = "another-secret-entirely-9876543210-zyxwvutsrqpon"


# -- a Starlette app ---------------------------------------------------------------


async def _show(request: Request) -> Response:
    return JSONResponse(request.session.copy())


async def _set(request: Request) -> Response:
    request.session.update(await request.json())
    return JSONResponse(request.session.copy())


async def _replace(request: Request) -> Response:
    request.session.clear()
    request.session.update(await request.json())
    return JSONResponse(request.session.copy())


async def _clear(request: Request) -> Response:
    request.session.clear()
    return JSONResponse(request.session.copy())


async def _untouched(request: Request) -> Response:
    return PlainTextResponse("untouched")


async def _vary(request: Request) -> Response:
    """Reads the session and answers with a Vary header of its own."""
    return JSONResponse(request.session.copy(), headers={"Vary": request.query_params["vary"]})


def session_routes() -> list[Route]:
    """``GET /`` shows the session; ``POST /set`` merges the JSON body into it;
    ``POST /replace`` replaces it; ``POST /clear`` empties it; ``GET /untouched``
    never touches it; ``GET /vary?vary=...`` reads it and sends that Vary header."""
    return [
        Route("/", _show),
        Route("/set", _set, methods=["POST"]),
        Route("/replace", _replace, methods=["POST"]),
        Route("/clear", _clear, methods=["POST"]),
        Route("/untouched", _untouched),
        Route("/vary", _vary),
    ]


def session_app(**options: Any) -> Starlette:
    """A Starlette app over :func:`session_routes` behind our middleware.

    ``options`` go to :class:`SessionMiddleware`; ``secret_key`` defaults to
    :data:`SECRET`.
    """
    options.setdefault("secret_key", SECRET)
    return Starlette(routes=session_routes(), middleware=[Middleware(SessionMiddleware, **options)])


# -- a bare ASGI app and a driver ----------------------------------------------------


async def echo_session(scope: Scope, receive: Receive, send: Send) -> None:
    """Answer 200 with the session's contents as JSON (a plain read, no change)."""
    body = json.dumps(scope["session"].copy()).encode("utf-8")
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


@dataclass
class Reply:
    """What an ASGI app sent: status, raw headers and the whole body."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def get_all(self, name: bytes) -> list[bytes]:
        """Every value of header ``name`` (lowercase)."""
        return [value for field, value in self.headers if field.lower() == name]

    def json(self) -> Any:
        """The body, parsed as JSON."""
        return json.loads(self.body)


async def call(
    app: ASGIApp,
    headers: Iterable[tuple[bytes, bytes]] = (),
    *,
    path: str = "/",
    method: str = "GET",
    scheme: str = "http",
) -> Reply:
    """Send one request with exactly these raw headers; any exception propagates.

    This is the strictest client there is: nothing between the test and the
    app catches anything, as ``raise_server_exceptions`` would not either.
    """
    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": method,
        "scheme": scheme,
        "path": path,
        "raw_path": path.encode("ascii"),
        "root_path": "",
        "query_string": b"",
        "headers": list(headers),
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    assert sent, "the app sent nothing"
    start, rest = sent[0], sent[1:]
    assert start["type"] == "http.response.start"
    return Reply(
        status=start["status"],
        headers=list(start.get("headers", [])),
        body=b"".join(message.get("body", b"") for message in rest),
    )


# -- cookies -----------------------------------------------------------------------


@dataclass(frozen=True)
class SetCookie:
    """One Set-Cookie line, split: ``name``, ``value`` and the attributes as written."""

    line: str
    name: str
    value: str
    attributes: tuple[str, ...]

    @property
    def deletes(self) -> bool:
        """Whether this line deletes the cookie (expires in 1970)."""
        return "expires=Thu, 01 Jan 1970 00:00:00 GMT" in self.attributes

    def attribute(self, name: str) -> str | None:
        """The value of attribute ``name`` (case-insensitive), or ``None`` if absent."""
        for item in self.attributes:
            key, _, value = item.partition("=")
            if key.lower() == name.lower():
                return value
        return None


def parse_set_cookie(line: str) -> SetCookie:
    """Split a Set-Cookie header value into name, value and attributes."""
    first, *attributes = line.split("; ")
    name, _, value = first.partition("=")
    return SetCookie(line, name, value, tuple(attributes))


def set_cookies(response: Any) -> dict[str, SetCookie]:
    """The Set-Cookie lines of a TestClient response (or :class:`Reply`), by cookie name."""
    if isinstance(response, Reply):
        lines = [value.decode("latin-1") for value in response.get_all(b"set-cookie")]
    else:
        lines = response.headers.get_list("set-cookie")
    cookies = [parse_set_cookie(line) for line in lines]
    by_name = {cookie.name: cookie for cookie in cookies}
    assert len(by_name) == len(cookies), f"one cookie set twice: {lines}"
    return by_name


@dataclass(frozen=True)
class CookieHead:
    """The times sealed inside a cookie, and its data."""

    created: int
    issued: int
    expires: int
    data: Any


def open_token(store: CookieStore, token: str, name: str = "session") -> CookieHead | None:
    """Open a cookie value with ``store`` (the real cipher) and unpack what it holds."""
    opened = store.open(token, name, None)
    if opened is None:
        return None
    payload, _, legacy = opened
    if legacy is not None:
        return CookieHead(0, 0, 0, legacy)
    created, issued, expires, _, _ = COOKIE_HEAD.unpack_from(payload)
    return CookieHead(created, issued, expires, json.loads(payload[COOKIE_HEAD.size :]))


def in_background(
    group: TaskGroup, results: dict[str, Any], name: str, request: Callable[[], Awaitable[Any]]
) -> None:
    """Start ``request()`` in ``group``; what it returns lands in ``results[name]``.

    For tests that hold one request at a point while others run.
    """

    async def run() -> None:
        results[name] = await request()

    group.start_soon(run)
