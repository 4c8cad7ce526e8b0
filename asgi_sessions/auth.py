"""Login and logout done right, in two calls.

The mistakes these prevent: keeping the pre-login session id (session
fixation: an attacker who planted that id is now logged in as the victim),
and a logout that empties the data but leaves the server-side record or the
cookie behind.

Never knows: users, passwords or requests; it works on a
:class:`~asgi_sessions.Session`.
"""

from __future__ import annotations

import time
from typing import Any, Final

from .session import Session

__all__ = ["AUTH_TIME_KEY", "USER_KEY", "login", "logout", "user_of"]

USER_KEY: Final = "_auth_user_id"
"""Where :func:`login` keeps the user id (Django's name)."""

AUTH_TIME_KEY: Final = "_auth_time"
"""Unix time of the login: lets an app ask for re-authentication before
sensitive actions ("sudo mode")."""


async def login(session: Session, user_id: str | int, **extra: Any) -> None:
    """Log ``user_id`` in: a new session id, the user and the login time stored.

    The session's data is kept (a cart filled before login survives), but it
    gets a new id at commit and the old record is deleted, so an id known
    before login is worthless after it. Logging in as a different user than
    the one already logged in starts from an empty session instead, so one
    user's data never leaks into another's. ``extra`` keys are stored too.
    The absolute timeout still counts from the session's first creation.
    """
    await session.load()
    current = session.get(USER_KEY)
    if current is not None and current != user_id:
        session.flush()
    else:
        session.cycle_key()
    session[USER_KEY] = user_id
    session[AUTH_TIME_KEY] = int(time.time())
    for key, value in extra.items():
        session[key] = value


async def logout(session: Session) -> None:
    """Log out: the session is emptied, its record deleted and its cookie removed.

    Needs no load, so with a server store it costs exactly one delete.
    """
    await session.aflush()


async def user_of(session: Session) -> Any:
    """The logged-in user id, or ``None``."""
    return await session.aget(USER_KEY)
