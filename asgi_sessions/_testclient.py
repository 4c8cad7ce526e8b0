"""Reading and seeding sessions from tests, for every store.

What Django's test ``Client.session`` and Flask's ``session_transaction()``
give their users: look at the session behind a test client's cookie jar, or
put one there before a request, without going through a view. Works with
Starlette's ``TestClient`` (sync) and ``httpx.AsyncClient`` (async) and with
cookie and server-side stores alike, because it goes through the same
:class:`~asgi_sessions.session.Session` code the middleware uses.

Re-exported by :mod:`asgi_sessions.testing`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import anyio

from .middleware import SessionMiddleware
from .session import Session

__all__ = [
    "aread_session",
    "aseed_session",
    "find_session_middleware",
    "read_session",
    "seed_session",
]

_T = TypeVar("_T")


def find_session_middleware(app: Any) -> SessionMiddleware:
    """The :class:`SessionMiddleware` wrapping ``app`` (a Starlette/FastAPI app or any ASGI app).

    Follows the chain of ``.app`` attributes; for Starlette applications it
    looks inside the built middleware stack (building it the way Starlette
    would on its first request, so the app keeps using the same instances).
    """
    node = app
    for _ in range(100):
        if isinstance(node, SessionMiddleware):
            return node
        if hasattr(node, "build_middleware_stack") and hasattr(node, "middleware_stack"):
            if node.middleware_stack is None:
                node.middleware_stack = node.build_middleware_stack()
            node = node.middleware_stack
            continue
        node = getattr(node, "app", None)
        if node is None:
            break
    raise LookupError("no asgi_sessions.SessionMiddleware found around this app")


def _cookie_jar(client: Any) -> Any:
    return client.cookies


def _session_for(middleware: SessionMiddleware, jar: Any) -> Session:
    name = middleware.cookie.name
    pairs = []
    for cookie in jar.jar:
        if cookie.name == name or cookie.name.startswith(name + "."):
            pairs.append(f"{cookie.name}={cookie.value}")
    headers = [(b"cookie", "; ".join(pairs).encode("latin-1"))] if pairs else []
    return Session._lazy(middleware.backend, headers)


async def aread_session(client: Any, app: Any | None = None) -> dict[str, Any]:
    """The data of the session behind ``client``'s cookies (``{}`` if none or invalid).

    ``app`` defaults to ``client.app`` (Starlette's TestClient); pass it for
    an ``httpx.AsyncClient`` over an ``ASGITransport``.
    """
    middleware = find_session_middleware(app if app is not None else client.app)
    session = _session_for(middleware, _cookie_jar(client))
    await session.load()
    return dict(dict.items(session))


async def aseed_session(client: Any, data: Mapping[str, Any], app: Any | None = None) -> None:
    """Start a new session holding ``data`` and put its cookie in ``client``'s jar.

    The next request the client makes is in that session, as if a view had
    created it. Any session the client had is replaced (not deleted).
    """
    middleware = find_session_middleware(app if app is not None else client.app)
    session = Session._lazy(middleware.backend, [])
    await session.load()
    session.update(data)
    update = await session.commit(200)
    jar = _cookie_jar(client)
    name = middleware.cookie.name
    for cookie in list(jar.jar):
        if cookie.name == name or cookie.name.startswith(name + "."):
            jar.delete(cookie.name, domain=cookie.domain, path=cookie.path)
    if update is None or update.value is None:
        return
    # Let the client file the cookie exactly as it files one from a response
    # (same domain and path), so the app's later Set-Cookie replaces it
    # instead of sitting beside it.
    import httpx

    lines = middleware.cookie.set_headers(update.value, update.max_age, 0)
    request = httpx.Request("GET", _base_url(client))
    response = httpx.Response(200, headers=[("set-cookie", line) for line in lines])
    response.request = request
    jar.extract_cookies(response)


def _base_url(client: Any) -> str:
    """Where ``client``'s requests go, for filing a cookie under it.

    ``http://testserver`` when it says nothing: Starlette's TestClient always
    has a base URL, but an ``httpx.AsyncClient`` built without ``base_url``
    has an empty one (and requests absolute URLs).
    """
    return str(getattr(client, "base_url", "") or "") or "http://testserver"


def _run_sync(client: Any, func: Callable[[], Awaitable[_T]]) -> _T:
    portal = getattr(client, "portal", None)
    if portal is not None:  # inside `with TestClient(app) as client:`: the app's own loop
        result: _T = portal.call(func)
        return result
    return anyio.run(func)


def read_session(client: Any, app: Any | None = None) -> dict[str, Any]:
    """Synchronous :func:`aread_session`, for Starlette's ``TestClient``.

    Inside ``with TestClient(app) as client:`` it runs on the app's event
    loop, which server stores whose connections belong to one loop (Redis,
    SQL) need; cookie, memory and file stores work either way.
    """
    return _run_sync(client, lambda: aread_session(client, app))


def seed_session(client: Any, data: Mapping[str, Any], app: Any | None = None) -> None:
    """Synchronous :func:`aseed_session`, for Starlette's ``TestClient``."""
    _run_sync(client, lambda: aseed_session(client, data, app))
