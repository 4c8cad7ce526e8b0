"""FastAPI: the session as a dependency, loaded and typed.

``SessionDep`` (or ``Depends(get_session)``) hands a path operation the
request's :class:`~asgi_sessions.Session`, already loaded, so synchronous
``session["cart"]`` works with every store and with ``autoload=False``. The
dependency also documents the session cookie in the OpenAPI schema as an
API key in a cookie (a security scheme, not a bogus parameter), so the docs
say which operations use the session.

Owns nothing but that glue: the session comes from ``SessionMiddleware``.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends
from fastapi.requests import HTTPConnection
from fastapi.security import APIKeyCookie

from ..session import Session

__all__ = ["SessionDep", "get_session", "session_dependency"]

# OpenAPI: component names match ^[a-zA-Z0-9.\-_]+$; cookie names may hold more.
_NOT_IN_A_COMPONENT_NAME = re.compile(r"[^a-zA-Z0-9.\-_]")


def _scheme_name(cookie_name: str) -> str:
    """The OpenAPI security scheme that documents the cookie ``cookie_name``.

    ``"session"`` for the default cookie (the name it always had, which
    clients generated from the schema may refer to), ``"session-<name>"``
    for any other: FastAPI keys schemes by name, so one shared name let the
    last cookie registered overwrite the others.
    """
    if cookie_name == "session":
        return "session"
    return "session-" + _NOT_IN_A_COMPONENT_NAME.sub("_", cookie_name)


def session_dependency(cookie_name: str = "session") -> Callable[..., Awaitable[Session]]:
    """A dependency for a middleware whose cookie is ``cookie_name``.

    Use it when ``SessionMiddleware(session_cookie=...)`` is not the default,
    so the OpenAPI schema names the right cookie::

        get_session = session_dependency("__Host-sid")
        SessionDep = Annotated[Session, Depends(get_session)]

    Each cookie name is its own security scheme, ``session-<cookie name>``
    (the default cookie's stays ``session``), so an app with two session
    middlewares documents both cookies.
    """
    cookie = APIKeyCookie(
        name=cookie_name,
        scheme_name=_scheme_name(cookie_name),
        description="The session cookie set by asgi_sessions (HttpOnly; sent by the browser).",
        auto_error=False,  # a request without a session is a new, empty session
    )

    # A default rather than an Annotated[] hint: the scheme is a local object,
    # which FastAPI could not resolve from a postponed annotation.
    async def get_session(
        connection: HTTPConnection,
        _cookie: str | None = Depends(cookie),
    ) -> Session:
        session = connection.scope.get("session")
        if not isinstance(session, Session):
            raise RuntimeError(
                "asgi_sessions.SessionMiddleware is not installed around this app "
                "(app.add_middleware(SessionMiddleware, ...))"
            )
        await session.load()
        return session

    return get_session


get_session = session_dependency()
"""The loaded session of the current request (cookie named ``session``)."""

SessionDep = Annotated[Session, Depends(get_session)]
"""``def view(session: SessionDep)``: the loaded session, typed as :class:`Session`."""
