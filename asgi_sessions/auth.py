"""Login and logout done right, in two calls.

The mistakes these prevent: keeping the pre-login session id (session
fixation: an attacker who planted that id is now logged in as the victim),
and a logout that empties the data but leaves the server-side record or the
cookie behind.

"Log out everywhere" (:func:`logout_everywhere`, :func:`revoke_user`) ends
every session of a user at once: after a password change, or when an
account is compromised. It needs a server store with a user index
(``MemoryStore``, ``RedisStore``, ``SQLStore``, and ``WriteThroughStore``
over one of those): cookie sessions live only in browsers, so no server can
find them, which is the main reason to choose a server store.

Never knows: users, passwords or requests; it works on a
:class:`~asgi_sessions.Session`. Each function takes ``request.session`` as
Starlette types it (a ``dict``), so ``await login(request.session, user.id)``
type-checks as written; a session that is not ours (Starlette's middleware in
front of the app) raises :class:`~asgi_sessions.errors.ImproperlyConfigured`.
"""

from __future__ import annotations

import time
from typing import Any, Final

from .crypto import store_key, user_key
from .errors import UnsupportedOperation
from .middleware import session_of
from .session import USER_KEY, Session
from .stores.base import SessionStore

__all__ = [
    "AUTH_TIME_KEY",
    "USER_KEY",
    "login",
    "logout",
    "logout_everywhere",
    "revoke_user",
    "user_of",
]

AUTH_TIME_KEY: Final = "_auth_time"
"""Unix time of the login: lets an app ask for re-authentication before
sensitive actions ("sudo mode")."""


async def login(session: Session | dict[str, Any], user_id: str | int, **extra: Any) -> None:
    """Log ``user_id`` in: a new session id, the user and the login time stored.

    The session's data is kept (a cart filled before login survives), but it
    gets a new id at commit and the old record is deleted, so an id known
    before login is worthless after it. Logging in as a different user than
    the one already logged in starts from an empty session instead, so one
    user's data never leaks into another's. ``extra`` keys are stored too.
    The absolute timeout still counts from the session's first creation. In
    a store with a user index the new session is linked to ``user_id``, so
    :func:`logout_everywhere` and :func:`revoke_user` can find it.
    """
    session = session_of(session)
    session._check_new_id()
    await session.load()
    current = session.get(USER_KEY)
    # As text, as the user index compares them: 7 and "7" are one user.
    if current is not None and str(current) != str(user_id):
        session.flush()
    else:
        session.cycle_key()
    session[USER_KEY] = user_id
    session[AUTH_TIME_KEY] = int(time.time())
    for key, value in extra.items():
        session[key] = value


async def logout(session: Session | dict[str, Any]) -> None:
    """Log out: the session is emptied, its record deleted and its cookie removed.

    Needs no load, so with a server store it costs exactly one delete.
    """
    session = session_of(session)
    await session.aflush()


def _indexed(store: SessionStore | None) -> SessionStore:
    if store is None:
        raise UnsupportedOperation(
            "cookie sessions cannot be ended from the server (they live only in the "
            "browser); use a server-side store to log users out everywhere"
        )
    if not store.has_user_index:
        raise UnsupportedOperation(
            f"{type(store).__name__} keeps no index of sessions by user, so it cannot "
            "log users out everywhere"
        )
    return store


async def logout_everywhere(
    session: Session | dict[str, Any], *, keep_current: bool = False
) -> int:
    """End every session of the logged-in user; return how many other sessions ended.

    With ``keep_current=False`` (the default) this session ends too, as with
    :func:`logout`. With ``keep_current=True`` it stays logged in under a new
    id ("sign out of all other devices", after a password change). Requests
    of the ended sessions that are in flight get
    :class:`~asgi_sessions.errors.SessionInterrupted` (400) if they try to
    save. Raises :class:`~asgi_sessions.errors.UnsupportedOperation` for
    cookie sessions and stores without a user index, even when nobody is
    logged in, so a misconfiguration shows up at once. Costs one load and
    two round trips to the store (Redis; one transaction in SQL).
    """
    session = session_of(session)
    store = _indexed(session.store)
    if keep_current:
        session._check_new_id()  # before any session is ended
    await session.load()
    user = session.get(USER_KEY)
    current = session.session_key
    ended = 0
    this_deleted = False
    if user is not None:
        deleted = await store.delete_user(user_key(user))
        this = None if current is None else store_key(current)
        ended = sum(1 for key in deleted if key != this)
        this_deleted = this in deleted
    if keep_current and user is not None:
        session.cycle_key()  # the commit stores it anew, linked to the user
        if this_deleted:
            session._gone = True  # deleted here on purpose: not a logout to give way to
        # Otherwise this session was never linked (the user id was set without
        # a new id): its old record is still there, logged in, and the cycle
        # must end it like any other, or a copy of the old cookie stays in.
    else:
        session.flush()
    return ended


async def revoke_user(store: SessionStore | None, user_id: str | int) -> int:
    """End every session of ``user_id`` from outside a request (an admin action).

    Returns how many live sessions were deleted. ``store`` is a store with a
    user index over the same backend the middleware uses (for a URL,
    :func:`~asgi_sessions.stores.store_from_url` builds one); inside a request,
    ``session_of(request).store`` will do. ``None`` (a cookie session's store)
    raises :class:`~asgi_sessions.errors.UnsupportedOperation`.
    """
    return len(await _indexed(store).delete_user(user_key(user_id)))


async def user_of(session: Session | dict[str, Any]) -> Any:
    """The logged-in user id, or ``None``."""
    session = session_of(session)
    return await session.aget(USER_KEY)
