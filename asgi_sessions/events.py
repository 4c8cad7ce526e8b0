"""Session lifecycle events: structured log records and a hook for metrics.

Five things happen to a session that operators want to see or count:

========== ========================================================= =======
name       when                                                      level
========== ========================================================= =======
created    a new session was stored, or a new cookie session issued  INFO
cycled     a session got a new id (login, ``cycle_key``)             INFO
flushed    a session was ended (logout, ``flush``)                   INFO
expired    a cookie or record was valid but past its expiry          DEBUG
rejected   a cookie or record was refused (tampered, foreign,        DEBUG
           malformed, unknown id)
========== ========================================================= =======

``flushed`` counts sessions that ended, not calls to ``flush()``: a logout
sent with no session behind it (no cookie, a cookie that was refused or had
expired, an id the store no longer holds) ends nothing and reports only the
``rejected`` or ``expired`` it already caused.

Each is logged on the ``asgi_sessions`` logger with the attributes
``session_event`` (the name), ``session_id_hash`` and ``session_reason`` on
the record, so a JSON log formatter can print them as fields. Lifecycle
events are logged when they take effect, at commit: a ``flush()`` in a
request that ends in a 500 saved nothing and logs nothing. Client-driven
events are DEBUG so that a flood of bad cookies cannot flood the logs.

The id is never logged. ``session_id_hash`` is the first 12 hex digits of
the SHA-256 of the id, which is also the start of the session's store key:
enough to follow one session through the logs and to find its record in
the store, useless as a token. Cookie sessions have no id: it is ``None``.

For metrics, pass ``on_event=callback`` to
:class:`~asgi_sessions.SessionMiddleware`: the callback receives a
:class:`SessionEvent` for each event, synchronously, on the request's task.
Keep it cheap (increment a counter); an exception it raises is logged and
swallowed, so a broken metrics client never breaks a request.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

from .crypto import store_key

__all__ = ["LEVELS", "EventHook", "EventName", "SessionEvent", "emit", "id_hash"]

logger = logging.getLogger("asgi_sessions")

EventName: TypeAlias = Literal["created", "cycled", "flushed", "expired", "rejected"]
"""The names of :class:`SessionEvent`."""

ID_HASH_CHARS: Final = 12

LEVELS: Final[dict[str, int]] = {  # the log level of each event
    "created": logging.INFO,
    "cycled": logging.INFO,
    "flushed": logging.INFO,
    "expired": logging.DEBUG,
    "rejected": logging.DEBUG,
}


@dataclass(frozen=True, slots=True)
class SessionEvent:
    """One thing that happened to a session; what ``on_event`` receives."""

    name: EventName
    """``created``, ``cycled``, ``flushed``, ``expired`` or ``rejected``."""
    id_hash: str | None = None
    """The first 12 hex digits of SHA-256 of the session id (server stores
    only; for ``cycled``, of the new id), never the id itself."""
    reason: str | None = None
    """Why a session was rejected (``"it does not verify"``, ``"malformed"``,
    ``"unknown id"``, ...) or what expired (``"cookie"``, ``"record"``)."""


EventHook: TypeAlias = Callable[[SessionEvent], object]
"""The type of ``SessionMiddleware(on_event=...)``."""


def id_hash(session_id: str) -> str:
    """The short, non-reversible label of ``session_id`` used in events."""
    return store_key(session_id)[:ID_HASH_CHARS]


def _message(event: SessionEvent) -> str:
    if event.name == "rejected":
        return f"session cookie refused: {event.reason}"
    if event.name == "expired":
        return f"session cookie refused: expired ({event.reason})"
    if event.id_hash is not None:
        return f"session {event.name} ({event.id_hash})"
    return f"session {event.name}"


def emit(hook: EventHook | None, event: SessionEvent) -> None:
    """Log ``event`` and pass it to ``hook``; never raises."""
    level = LEVELS[event.name]
    if logger.isEnabledFor(level):
        logger.log(
            level,
            _message(event),
            extra={
                "session_event": event.name,
                "session_id_hash": event.id_hash,
                "session_reason": event.reason,
            },
        )
    if hook is not None:
        try:
            hook(event)
        except Exception:
            logger.exception("the on_event hook raised; the request goes on")
