"""The ASGI middleware: a session in every scope, committed as the response starts.

Owns: reading the session cookie from the request, handing the app a lazy
:class:`~asgi_sessions.session.Session`, optionally loading server sessions
before the app runs, and turning the session's commit into ``Set-Cookie`` and
``Vary`` headers on ``http.response.start``.

Never knows: what a session contains, how it is stored or encrypted.

Construction does all the work that does not depend on the request (cookie
attributes, keys, the store); the per-request path is one header scan, one
object and one closure.
"""

from __future__ import annotations

import inspect
import logging
import warnings
from collections.abc import Awaitable, Sequence
from typing import Final, Literal

from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .cookies import CookieSpec
from .crypto import SecretKey
from .errors import (
    ImproperlyConfigured,
    SessionError,
    SessionInterrupted,
    SessionStoreUnavailable,
    SessionTooLarge,
)
from .events import EventHook
from .serializers import JSONSerializer, Serializer, check_serializer
from .session import (
    _COOKIE_PENDING,
    _LOADED,
    _STORE_PENDING,
    CookieUpdate,
    Session,
    SessionBackend,
    _now,
)
from .stores import CookieStore, EncryptedCookieStore, SessionStore, store_from_url

__all__ = ["SessionMiddleware", "session_of"]

_new_session = dict.__new__

logger = logging.getLogger("asgi_sessions")

_AFTER_START = (
    "the session was changed after the response headers were sent, so its cookie can "
    "no longer be updated; change cookie sessions before the response starts (or use a "
    "server-side store)"
)
_NO_NEW_ID_IN_WEBSOCKET = (
    "cycle_key() needs a new session id, and a websocket cannot send one (no cookie can be "
    "sent there); cycle the session (log in) in an HTTP request"
)
_WS_CHANGES = "websocket session changes"
_WS_ACTIVITY = "the websocket's session activity"
_IN_WEBSOCKET = (
    "a cookie session cannot be changed in a websocket: no cookie can be sent there; "
    "use a server-side store to change the session during a websocket connection"
)


def session_of(connection: HTTPConnection | Scope) -> Session:
    """The session of a request, websocket or raw scope, typed as :class:`Session`.

    Starlette types ``request.session`` as a plain ``dict``, so under a type
    checker Django-style calls (``await session.aget(...)``, ``flush()``)
    need this: ``session = session_of(request)``. From a request or
    websocket it is ``request.session`` exactly, marking the session accessed
    (so the response gets ``Vary: Cookie``); from a raw scope it marks
    nothing. ``request.session`` itself is accepted too and returned as it
    is. Raises :class:`~asgi_sessions.errors.ImproperlyConfigured` when no
    :class:`SessionMiddleware` runs in front of the app (Starlette's own
    middleware puts a plain ``dict`` there, which has none of the methods).
    """
    if isinstance(connection, Session):
        return connection
    if isinstance(connection, HTTPConnection):
        typed = session_of(connection.scope)
        typed.mark_accessed()  # what Starlette's request.session does
        return typed
    session = connection.get("session")
    if not isinstance(session, Session):
        raise ImproperlyConfigured(
            "no asgi_sessions session in this scope: add asgi_sessions.SessionMiddleware "
            "in front of the app"
        )
    return session


def _seconds(name: str, value: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ImproperlyConfigured(f"{name} must be a positive number of seconds or None")
    return value


class SessionMiddleware:
    """Sessions for an ASGI app, drop-in compatible with Starlette's ``SessionMiddleware``.

    The first nine parameters are Starlette's, with its defaults and meaning.
    By default the session is kept in the cookie, encrypted with
    ``secret_key`` (a secret, or a sequence of secrets newest first for
    rotation). Pass ``store`` (a store object or URL such as
    ``"redis://localhost"``) to keep sessions server-side, where the cookie
    holds only a random id and ``secret_key`` may be ``None``. A store built
    from a URL belongs to the middleware, which closes it at lifespan
    shutdown; a store object you pass stays yours to close.

    ``idle_timeout`` expires sessions after that many seconds without a
    request that loads them; ``absolute_timeout`` ends them that long after
    creation however active they are. ``save_every_request`` re-saves (and
    re-sends the cookie) on every request. ``autoload`` (server stores):
    ``True`` loads the session before the app runs (HTTP requests and
    websockets alike) when the request carries a session cookie, a sequence
    of path prefixes limits that to those paths, ``False`` leaves loading to
    ``await session.load()``.

    ``on_event`` is called with a :class:`~asgi_sessions.events.SessionEvent`
    whenever a session is created, cycled, flushed, found expired or
    rejected: the hook for metrics. The same events are logged on the
    ``asgi_sessions`` logger (see :mod:`asgi_sessions.events`).
    """

    def __init__(
        self,
        app: ASGIApp,
        secret_key: SecretKey | Sequence[SecretKey] | None = None,
        session_cookie: str = "session",
        max_age: int | None = 14 * 24 * 60 * 60,
        path: str = "/",
        same_site: Literal["lax", "strict", "none"] = "lax",
        https_only: bool = False,
        domain: str | None = None,
        partitioned: bool = False,
        *,
        store: SessionStore | CookieStore | str | None = None,
        http_only: bool = True,
        idle_timeout: int | None = None,
        absolute_timeout: int | None = None,
        save_every_request: bool = False,
        autoload: bool | Sequence[str] = True,
        serializer: Serializer | None = None,
        on_event: EventHook | None = None,
    ) -> None:
        self.app = app
        if store is None:
            if secret_key is None:
                raise ImproperlyConfigured(
                    "secret_key is required for cookie sessions (or pass a server-side store)"
                )
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                store = EncryptedCookieStore(secret_key)
            for warning in caught:  # point at the app's code, not at ours
                warnings.warn(warning.message, warning.category, stacklevel=2)
        owned = isinstance(store, str)
        if isinstance(store, str):
            store = store_from_url(store)
        if isinstance(store, CookieStore):
            server_store, cookie_store, chunked = None, store, store.chunked
        elif isinstance(store, SessionStore):
            server_store, cookie_store, chunked = store, None, False
        else:
            raise ImproperlyConfigured(
                f"store must be a SessionStore, a CookieStore or a URL, not {type(store).__name__}"
            )
        if max_age is not None and (isinstance(max_age, bool) or not isinstance(max_age, int)):
            raise ImproperlyConfigured("max_age must be an int number of seconds or None")
        if on_event is not None and (
            inspect.iscoroutinefunction(on_event)
            or inspect.iscoroutinefunction(type(on_event).__call__)
        ):
            # It is called synchronously, mid-request: a coroutine would never run.
            raise ImproperlyConfigured(
                "on_event must be a plain function, not async: it is called synchronously "
                "on the request's task; hand async work to a queue or a task yourself"
            )
        self.store = store
        # A store built here from a URL is ours to close, at lifespan shutdown.
        self._owned_store = server_store if owned else None
        self.cookie = CookieSpec(
            session_cookie,
            path=path,
            domain=domain,
            same_site=same_site,
            https_only=https_only,
            http_only=http_only,
            partitioned=partitioned,
            chunked=chunked,
        )
        self.backend = SessionBackend(
            store=server_store,
            cookie_store=cookie_store,
            cookie_name=session_cookie,
            max_age=max_age,
            idle_timeout=_seconds("idle_timeout", idle_timeout),
            absolute_timeout=_seconds("absolute_timeout", absolute_timeout),
            save_every_request=save_every_request,
            serializer=JSONSerializer() if serializer is None else check_serializer(serializer),
            # Unchunked cookies skip read_value's reassembly step.
            read_token=self.cookie.read_value if chunked else self.cookie.read,
            on_event=on_event,
        )
        self._server = server_store is not None
        self._pending = _STORE_PENDING if self._server else _COOKIE_PENDING
        self._always_save = save_every_request
        # Whether a server session loaded with no response start to commit
        # at (a websocket, or an HTTP body streamed after the headers) is
        # written or touched even if unchanged, as a request that read it is.
        self._refreshes = self._server and (save_every_request or idle_timeout is not None)
        if isinstance(autoload, (str, bytes)):
            raise ImproperlyConfigured("autoload takes True, False or a sequence of path prefixes")
        self._autoload: bool | tuple[str, ...] = (
            autoload if isinstance(autoload, bool) else tuple(autoload)
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope_type = scope["type"]
        if scope_type != "http" and scope_type != "websocket":
            if scope_type == "lifespan" and self._owned_store is not None:
                await self.app(scope, receive, self._closing_send(send))
            else:
                await self.app(scope, receive, send)
            return
        # Session._lazy, inlined: this runs on every request. dict.__new__
        # skips Session.__init__, whose defaults are all overwritten here.
        session = _new_session(Session)
        session._backend = self.backend
        session._source = scope["headers"]
        session._state = self._pending
        session.accessed = session._modified = False
        session._token = session._created = session._issued = None
        session._changes = session._frozen = None
        scope["session"] = session
        if scope_type == "websocket":
            await self._websocket(session, scope, receive, send)
            return
        if self._server:
            await self._http_server(session, scope, receive, send)
            return

        # Cookie sessions, the default and the hot path: the commit needs no
        # I/O, so it is synchronous, and an untouched session costs two
        # attribute reads when the response starts.
        always = self._always_save

        # A plain function returning ``send``'s awaitable, not a coroutine of
        # its own: ASGI asks only for an awaitable callable, and this saves a
        # coroutine per message. Errors (SessionTooLarge) still surface at
        # the app's ``await send(...)``.
        def send_wrapper(message: Message) -> Awaitable[None]:
            if message["type"] == "http.response.start":
                if session.accessed or session._state == _LOADED or always:
                    update = session.commit_cookie(message["status"])
                    if session.accessed or update is not None:
                        try:
                            self._add_headers(message, session.accessed, update, scope["headers"])
                        except SessionTooLarge:
                            if not session._reissued:
                                raise
                            # Only a re-issue of data the app did not change:
                            # a Starlette cookie just under the limit grows
                            # some 35 bytes encrypted. Keep the one the
                            # browser has (Vary is already added).
                            logger.warning(
                                "session cookie too large to re-issue encrypted; it is "
                                "read as it is until the app changes the session"
                            )
                session._frozen = _AFTER_START
            return send(message)

        await self.app(scope, receive, send_wrapper)

    def _closing_send(self, send: Send) -> Send:
        """``send`` for the lifespan scope: closes our store before shutdown completes."""
        store = self._owned_store
        assert store is not None

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "lifespan.shutdown.complete":
                try:
                    await store.close()
                except Exception:  # shutting down regardless: say so, do not hang
                    logger.exception("closing the session store failed")
            await send(message)

        return send_wrapper

    async def _load_first(self, session: Session, scope: Scope) -> None:
        """Load a server session before the app runs, if ``autoload`` says so."""
        if self._autoloads(scope):
            try:
                await session._load(mark=False)
            except SessionStoreUnavailable:
                # The app still runs: routes that never touch the session work,
                # and those that do get SessionStoreUnavailable where they can
                # handle it (a 503 handler). Nothing will be saved.
                logger.warning("session store unavailable: the session could not be loaded")

    async def _http_server(
        self, session: Session, scope: Scope, receive: Receive, send: Send
    ) -> None:
        await self._load_first(session, scope)
        status = 0
        replaced = committed = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, replaced, committed
            if message["type"] == "http.response.start":
                status = message["status"]
                if session.accessed or session.is_loaded or self._always_save:
                    committed = True
                    try:
                        update = await session.commit(status)
                    except (SessionInterrupted, SessionStoreUnavailable) as exc:
                        replaced = True
                        await _error_response(send, exc)
                        return
                    if session.accessed or update is not None:
                        self._add_headers(message, session.accessed, update, scope["headers"])
            elif replaced:
                return  # the body of a response that was replaced by an error
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except SessionInterrupted as exc:
            # An early ``await session.save()`` that found the session ended
            # by a logout: the same 400 as at commit, unless the response
            # already started (then the app's failure is the server's to see).
            if status:
                raise
            await _error_response(send, exc)
            return

        if not status or replaced or status >= 500:
            return
        if session._modified:
            # A change made after the headers went out is still saved under
            # the same id.
            await _save_late(session, "late session changes", status)
        elif not committed and self._refreshes and session.is_loaded:
            # First loaded after the headers went out (a streamed body, with
            # autoload=False): still activity, which idle_timeout's touch
            # must see, as at response start.
            await _save_late(session, "session activity", status, refresh=True)

    def _autoloads(self, scope: Scope) -> bool:
        autoload = self._autoload
        if isinstance(autoload, bool):
            return autoload
        # Match the path as the app's routes see it: under a root_path
        # (`uvicorn --root-path /app`, or this app mounted at /app) the ASGI
        # path still starts with it, and the routes match what follows.
        path: str = scope.get("path", "")
        root: str = scope.get("root_path", "")
        if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("/", ""):
            path = path[len(root) :]
        return path.startswith(autoload)

    def _add_headers(
        self,
        message: Message,
        vary: bool,
        update: CookieUpdate | None,
        request_headers: list[tuple[bytes, bytes]],
    ) -> None:
        headers = message.get("headers")
        if type(headers) is not list:  # Starlette sends a fresh list; others may not
            headers = message["headers"] = list(headers or ())
        if vary:
            for index, (name, value) in enumerate(headers):
                # ASGI says response header names are lowercase; tolerate apps
                # that do not, without lowering every name on the way.
                if name == b"vary" or (len(name) == 4 and name.lower() == b"vary"):
                    # Whole tokens: "X-Cookie-Consent" is not "Cookie", and
                    # "*" already varies on everything.
                    tokens = [token.strip() for token in value.lower().split(b",")]
                    if b"cookie" not in tokens and b"*" not in tokens:
                        headers[index] = (name, value + b", Cookie" if any(tokens) else b"Cookie")
                    break
            else:
                headers.append((b"vary", b"Cookie"))
        if update is None:
            return
        cookie = self.cookie
        value = update.value
        if value is not None and not cookie.chunked:
            # The common case, a single cookie: no chunks to assemble or delete.
            headers.append((b"set-cookie", cookie.set_line(value, update.max_age)))
            return
        chunks = cookie.chunk_count(request_headers)
        if value is None:
            lines = cookie.delete_headers(chunks)
        else:
            lines = cookie.set_headers(value, update.max_age, chunks)
        headers.extend([(b"set-cookie", line.encode("latin-1")) for line in lines])

    async def _websocket(
        self, session: Session, scope: Scope, receive: Receive, send: Send
    ) -> None:
        if self.backend.store is None:
            session.freeze(_IN_WEBSOCKET)
            await self.app(scope, receive, send)  # nothing to save: changes are refused
            return
        session._no_new_id = _NO_NEW_ID_IN_WEBSOCKET
        await self._load_first(session, scope)
        disconnected = dropped = closed = False
        # A websocket that loaded the session is activity, as an HTTP request
        # that read it is: rolling expiry (idle_timeout's touch) and
        # save_every_request apply when it is accepted and again when it
        # ends, so a long connection also counts until its last moment.
        refresh = self._refreshes
        refreshed_at = -1

        async def receive_wrapper() -> Message:
            nonlocal disconnected
            message = await receive()
            if message["type"] == "websocket.disconnect":
                disconnected = True
            return message

        async def send_wrapper(message: Message) -> None:
            nonlocal disconnected, dropped, closed, refreshed_at
            kind = message["type"]
            if kind == "websocket.accept":
                # The handshake succeeded with the session loaded (autoload,
                # the FastAPI dependency or the handler's own load). Pending
                # changes wait for the end, as before: a handler that fails
                # later must not have persisted half of them.
                if refresh and not session._modified and session.is_loaded:
                    await _save_late(session, _WS_ACTIVITY, refresh=True)
                    refreshed_at = _now()
            elif kind == "websocket.close":
                # Save before the close frame goes out: a client that sees the
                # close and then makes a request reads what this socket wrote.
                dropped = await _save_late(
                    session, _WS_CHANGES, refresh=refresh and _now() != refreshed_at
                )
                closed = True
            try:
                await send(message)
            except OSError:
                # ASGI: sending on a closed connection raises an OSError
                # (Starlette turns it into WebSocketDisconnect). An endpoint
                # that only pushes learns of the disconnect this way.
                disconnected = True
                raise

        def refresh_due() -> bool:
            # Not again if the close frame's save did it, nor twice in one
            # second: a touch then moves the deadline nowhere.
            return refresh and not closed and _now() != refreshed_at

        try:
            await self.app(scope, receive_wrapper, send_wrapper)
        except Exception:
            # A handler that lets the client's disconnect propagate (Starlette's
            # WebSocketDisconnect) still ended normally; any other failure saves
            # nothing, as a 5xx does not.
            if disconnected and not dropped:
                await _save_late(session, _WS_CHANGES, refresh=refresh_due())
            raise
        if not dropped:  # changes dropped at the close stay dropped, logged once
            await _save_late(session, _WS_CHANGES, refresh=refresh_due())


_ENCODING_ERRORS: Final = (TypeError, ValueError, OverflowError, RecursionError)
"""What a serializer raises for a value it cannot encode (json, msgpack, pickle)."""


async def _save_late(
    session: Session, what: str, status: int = 200, *, refresh: bool = False
) -> bool:
    """Save a server session's pending changes after its response has gone out.

    That is a websocket that ends, or an HTTP response whose body changed
    the session after the headers were sent. Nobody is left to tell of a
    failure, so it is logged instead of raised into the server: a logout in
    another tab (the change must not resurrect the session), a store that
    is down, a session that never had an id (no cookie can carry a new
    one now), or a value the serializer cannot encode. Returns whether the
    changes were dropped.

    ``refresh`` commits a loaded session even if nothing changed, so that
    ``idle_timeout`` touches it and ``save_every_request`` rewrites it: what
    the commit at response start does for HTTP, for a websocket that has
    no response start. A session that was never loaded costs nothing.
    """
    if not session._modified and not (refresh and session.is_loaded):
        return False
    try:
        await session.commit(status, can_set_cookie=False)
    except SessionInterrupted:
        logger.info("session deleted by a concurrent request; %s dropped", what)
    except SessionStoreUnavailable:
        logger.warning("session store unavailable: %s could not be saved", what)
    except SessionError as exc:
        logger.warning("%s dropped: %s", what, exc)
    except _ENCODING_ERRORS as exc:
        # A value the serializer refuses: the app's bug, but raising it here
        # would only reach the server (or the handler's close()), after the
        # client was answered. JSONSerializer's message names the type, not
        # the value.
        logger.error(
            "%s dropped: the session could not be serialized (%s: %s)",
            what,
            type(exc).__name__,
            exc,
        )
    else:
        return False
    return True


async def _error_response(send: Send, exc: SessionError) -> None:
    """Answer in place of the app when the session could not be committed.

    The app's exception handlers cannot help here: as far as they know, the
    response has already started.
    """
    if isinstance(exc, SessionInterrupted):
        logger.info("session deleted by a concurrent request; changes dropped")
        status, body = 400, b"Session interrupted: it was ended while this request ran."
    else:
        logger.warning("session store unavailable: the session could not be saved")
        status, body = 503, b"Session store unavailable."
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode("ascii")),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
