"""Every exception asgi_sessions raises on purpose.

They all derive from :class:`SessionError`, so ``except SessionError`` catches
anything this package means to raise. Errors carry a reason a developer can act
on and never the session id, cookie value or secret that caused them.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException

__all__ = [
    "ImproperlyConfigured",
    "SessionError",
    "SessionInterrupted",
    "SessionNotLoaded",
    "SessionStoreUnavailable",
    "SessionTooLarge",
    "UnsupportedOperation",
]


class SessionError(Exception):
    """Base class of every error raised by asgi_sessions.

    Raised as itself for misuse the package cannot repair, such as changing a
    cookie-backed session after the response headers have been sent.
    """


class ImproperlyConfigured(SessionError, ValueError):
    """The middleware or a store was constructed with options that cannot work.

    Raised at construction time wherever the fault can be seen there, so a
    misconfigured app fails when it starts rather than on its first visitor.
    One fault shows only per request: a store that needs asyncio (Redis,
    SQL), built at import time, then used under trio.
    """


class SessionNotLoaded(SessionError, RuntimeError):
    """A server-side session was used synchronously before it was loaded.

    Server stores need I/O to load a session, which cannot happen inside a
    synchronous ``session["key"]``. The message lists the three ways out.
    """

    def __init__(self, message: str | None = None) -> None:
        super().__init__(
            message
            or (
                "This session lives in a server-side store and has not been loaded yet. "
                "Either: (1) `await session.load()` (or use the async methods such as "
                "`await session.aget(key)`) before touching it; (2) construct "
                "SessionMiddleware with autoload=True (the default) or with autoload set "
                "to path prefixes that include this route; or (3) in FastAPI, take the "
                "session from the asgi_sessions.integrations.fastapi dependency."
            )
        )


class SessionStoreUnavailable(SessionError, ConnectionError):
    """The session store could not be reached, or did not answer in time.

    Raised where the session is loaded or committed. Applications usually map it
    to a 503 with an exception handler. The session is left untouched: a failed
    load is never followed by a write.
    """


class SessionTooLarge(SessionError, ValueError):
    """The session does not fit in a cookie.

    Browsers drop cookies whose name, value and attributes exceed 4096 bytes.
    ``size`` is the measured Set-Cookie line and ``limit`` the allowed maximum.
    Enable chunking on the cookie store, keep less in the session, or use a
    server-side store.
    """

    def __init__(self, size: int, limit: int, *, chunked: bool = False) -> None:
        self.size = size
        self.limit = limit
        self.chunked = chunked
        """Whether chunking was on (``limit`` is then the most all the chunks may hold)."""
        if chunked:
            message = (
                f"The session cookies would be {size} bytes, over the {limit} bytes that "
                "chunking spreads over at most 16 cookies. Store less in the session, "
                "or use a server-side store."
            )
        else:
            message = (
                f"The session cookie would be {size} bytes, over the browser limit of "
                f"{limit} bytes. Store less in the session, enable chunking "
                "(EncryptedCookieStore(..., chunked=True)), or use a server-side store."
            )
        super().__init__(message)


class SessionInterrupted(SessionError, HTTPException):
    """The session was deleted by a concurrent request while this one was running.

    Typically a logout in another tab. Saving would resurrect the session, so the
    change is dropped instead, and the request is answered 400 Bad Request
    (Django's rule) unless the application handles this exception itself.

    It is also Starlette's ``HTTPException(400)``, so when an early
    ``await session.save()`` raises it inside a view, Starlette's (or
    FastAPI's) exception handling answers the 400 like any other, instead of
    a 500. At commit, after the view, the middleware answers it itself.
    """

    def __init__(self, message: str) -> None:
        SessionError.__init__(self, message)
        HTTPException.__init__(self, 400, message)

    def __str__(self) -> str:
        return self.detail


class UnsupportedOperation(SessionError, NotImplementedError):
    """The store cannot do what was asked: it lacks an optional capability.

    Raised, for example, by "log out everywhere" on a cookie store (sessions
    that live only in browsers cannot be found, let alone ended, from the
    server) or on a server store that keeps no index of sessions by user.
    """
