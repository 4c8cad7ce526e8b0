"""The session: a lazily loaded ``dict`` with Django's session API.

Owns: every session semantic, in one place (as Django's ``SessionBase``):
lazy loading, modified/accessed flags, which keys changed, expiry
arithmetic, idle and absolute timeouts, ``flush``/``cycle_key``, the test
cookie, and deciding at commit what to write to the store and what cookie
value (if any) the client must receive.

Never knows: ASGI, headers or requests. The middleware hands it a raw cookie
value and asks :meth:`Session.commit` for a :class:`CookieUpdate`.

A ``Session`` built directly (``Session({"a": 1})``) is an ordinary, loaded
mapping with the flags, which is all Starlette's own ``Session`` is.
"""

from __future__ import annotations

import contextlib
import struct
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Final, NamedTuple

from ._record import (
    COOKIE_HEAD,
    Expiry,
    Record,
    decode_frames,
    encode_frame,
    frame_bytes,
    pack_cookie,
    unpack_expiry,
)
from .crypto import (
    forward_key,
    is_session_id,
    is_store_key,
    new_session_id,
    store_key,
    user_key,
)
from .errors import (
    SessionError,
    SessionInterrupted,
    SessionNotLoaded,
    SessionStoreUnavailable,
)
from .events import LEVELS as _EVENT_LEVELS
from .events import EventHook, EventName, SessionEvent, emit, id_hash, logger
from .serializers import JSONSerializer, Serializer
from .stores.base import SessionStore
from .stores.cookie import CookieRefused, CookieStore

__all__ = ["CookieUpdate", "Session", "SessionBackend"]


_MISSING: Any = object()

# Load states. A plain Session() is _LOADED; the middleware creates the others.
_LOADED: Final = 0
_COOKIE_PENDING: Final = 1  # a cookie value to open, synchronously, on first touch
_STORE_PENDING: Final = 2  # a session id to read from a server store: needs `await load()`
_FAILED: Final = 3  # the store could not be read: every access raises
# Loaded by the middleware (autoload) but not yet used by the app. It counts as
# loaded; the first use marks the session accessed, so the reply gets
# ``Vary: Cookie`` even where nothing calls ``mark_accessed()`` (pure ASGI apps,
# Starlette before 1.0, whose ``request.session`` does not).
_PRIMED: Final = 4

USER_KEY: Final = "_auth_user_id"
"""Where the logged-in user's id is kept (Django's name). A server session
holding it is linked to its user in stores with a user index, so "log out
everywhere" can find it (see :mod:`asgi_sessions.auth`)."""

TEST_COOKIE_NAME: Final = "testcookie"
TEST_COOKIE_VALUE: Final = "worked"

# A write to a server record that was loaded with this many frames first
# folds them into one snapshot (a compare-and-set of that prefix, so no
# concurrent append is lost). At 2, a record is at most a snapshot and a few
# patches: loads stay one short decode, and the fold rides on the same round
# trip as the append.
COMPACT_AFTER_FRAMES: Final = 2
# Server-side lifetime of sessions whose cookie has no Max-Age and no other
# limit applies (Django's SESSION_COOKIE_AGE).
DEFAULT_SERVER_AGE: Final = 1_209_600
_CREATE_ATTEMPTS: Final = 4
_LAST_SECOND: Final = 2**32 - 1
"""The latest moment (2106-02-07) a session can be set to expire at: the most
a cookie's sealed head holds. A later expiry (a "forever" ``max_age``, say)
is brought down to it rather than failing the save."""
_FORWARD_TTL: Final = 60
"""Seconds a cycled session's forward record lives. It serves requests sent
with the old id before the new cookie reached the browser, which arrive
within a network delay of the cycle; short, because whoever holds the old id
(a fixation attempt's planted cookie, say) can end the new session with it."""
_FORWARD_HOPS: Final = 8
"""The most records a logout follows through forward records."""
_CYCLE_OVERTAKEN: Final = (
    "the session was deleted (for example by a logout in another tab) "
    "while this request was cycling its key; no new id was issued"
)


_time = time.time
_unpack_head = COOKIE_HEAD.unpack_from
_pack_head = COOKIE_HEAD.pack
_HEAD_SIZE: Final = COOKIE_HEAD.size


def _now() -> int:
    return int(_time())


class CookieUpdate(NamedTuple):
    """What the client's cookie must become after a commit.

    ``value=None`` deletes the cookie; otherwise it is set with ``max_age``
    (``None``: a browser-session cookie).
    """

    value: str | None
    max_age: int | None = None


_DELETE: Final = CookieUpdate(None)
# NamedTuple's generated __new__ is a Python function; building the tuple
# directly skips it on every cookie write.
_cookie_update: Callable[[tuple[str | None, int | None]], CookieUpdate] = partial(
    tuple.__new__, CookieUpdate
)


_CreatePlan = tuple[int, int | None, int, bytes]
"""A new record, encoded before any store I/O: (created, cookie Max-Age, TTL, blob)."""


def _no_token(source: Any) -> str | None:
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionBackend:
    """Where sessions of one middleware live and how long, built once.

    Exactly one of ``store`` (server-side) and ``cookie_store`` (client-side)
    is set. ``cookie_name`` labels cookie tokens so they cannot be replayed
    under another name. Times are in seconds.
    """

    store: SessionStore | None = None
    cookie_store: CookieStore | None = None
    cookie_name: str = "session"
    max_age: int | None = 1_209_600
    idle_timeout: int | None = None
    absolute_timeout: int | None = None
    save_every_request: bool = False
    serializer: Serializer = JSONSerializer()  # noqa: RUF009 - stateless and shared on purpose
    read_token: Callable[[Any], str | None] = _no_token
    """Extracts the cookie value from the request's opaque ``source`` (the
    middleware passes the ASGI headers and a cookie reader). Called only when
    the session is first used, so untouched sessions never parse a cookie."""
    on_event: EventHook | None = None
    """Receives every :class:`~asgi_sessions.events.SessionEvent` (metrics)."""


_PLAIN: Final = SessionBackend(cookie_store=None)


class Session(dict[str, Any]):
    """A session: a real ``dict`` whose contents are loaded on first use.

    Behaves like Starlette's ``Session`` (the flags, ``mark_accessed()``,
    ``mark_modified()``) and implements Django's session API: ``flush``,
    ``cycle_key``, expiry, the test cookie and the ``a*`` async mirrors.

    With a server-side store the session must be loaded with ``await
    session.load()`` (or the async methods, or the middleware's ``autoload``)
    before synchronous use; until then synchronous access raises
    :class:`~asgi_sessions.errors.SessionNotLoaded`.
    """

    # The state every request sets or reads lives in slots, set by __init__
    # and by the middleware (which skips __init__): an untouched or read-only
    # request then never creates an instance ``__dict__``, which costs more
    # than all of these stores together.
    __slots__ = (
        "__dict__",
        "_backend",
        "_changes",
        "_created",
        "_frozen",
        "_issued",
        "_modified",
        "_source",
        "_state",
        "_token",
        "accessed",
    )
    accessed: bool
    """The session was read or written (the response then varies by Cookie)."""
    _modified: bool
    _backend: SessionBackend
    _state: int
    _source: Any  # where the cookie value is, until it is read
    _token: str | None  # raw cookie value as received
    _created: int | None
    _issued: int | None
    _changes: set[str] | None  # keys this request set or deleted
    _frozen: str | None  # why changes are refused now (headers sent), or None

    # The rest is per-instance state as class-level defaults: a request pays
    # only for what it uses.
    _key: str | None = None  # the verified session id (server stores)
    _old_key: str | None = None  # id whose record must be deleted at commit
    _error: SessionStoreUnavailable | None = None
    _expiry: Expiry = None
    _frames: int = 0
    _blob: bytes | None = None  # the stored bytes this request loaded
    _loaded: Record | None = None  # and what they decoded to
    _origin: bytes | None = None  # the whole record as last read or written here
    _all_dirty: bool = False
    _cleared: bool = False
    _flushed: bool = False
    _ended: bool = False  # flush() had a session to end (the ``flushed`` event; see flush)
    _cycle: bool = False
    _gone: bool = False  # the record under _key was deleted on purpose (logout_everywhere)
    _unknown: str | None = None  # a well-formed id the store did not know (see _end)
    _reissue: bool = False
    _reissued: bool = False  # the last commit_cookie only re-issued unchanged data
    _no_new_id: str | None = None  # why no new id can be issued (a websocket)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """A loaded session holding ``dict(*args, **kwargs)``, like any ``dict``."""
        dict.__init__(self, *args, **kwargs)
        self.accessed = self._modified = False
        self._backend = _PLAIN
        self._state = _LOADED
        self._source = self._token = self._created = self._issued = None
        self._changes = self._frozen = None

    @classmethod
    def _lazy(cls, backend: SessionBackend, source: Any) -> Session:
        """A session of ``backend`` for a request whose cookie is in ``source``.

        Costs no cookie parsing, decryption or I/O; that happens on first use.
        """
        session = cls()
        session._backend = backend
        session._source = source
        session._state = _COOKIE_PENDING if backend.store is None else _STORE_PENDING
        return session

    def _take_token(self) -> str | None:
        """The request's cookie value (read from the source once)."""
        source = self._source
        if source is not None:
            self._source = None
            self._token = self._backend.read_token(source)
        return self._token

    def _take_session_id(self) -> str | None:
        """The request's cookie value if it is a well-formed session id."""
        token = self._take_token()
        if token is None:
            return None
        if not is_session_id(token):
            self._event("rejected", reason="not a well-formed session id")
            return None
        return token

    def _event(
        self, name: EventName, session_id: str | None = None, reason: str | None = None
    ) -> None:
        """Report a lifecycle event (see :mod:`asgi_sessions.events`); cheap when nobody listens."""
        if not self._observed(name):
            return
        emit(
            self._backend.on_event,
            SessionEvent(name, None if session_id is None else id_hash(session_id), reason),
        )

    def _observed(self, name: EventName) -> bool:
        """Whether an event ``name`` would reach the hook or the log."""
        return self._backend.on_event is not None or logger.isEnabledFor(_EVENT_LEVELS[name])

    # -- loading ---------------------------------------------------------------

    @property
    def is_loaded(self) -> bool:
        """Whether the contents are available (loading them if that needs no I/O)."""
        state = self._state
        if state == _COOKIE_PENDING:
            self._open_cookie()
            return True
        return state in (_LOADED, _PRIMED)

    async def load(self) -> None:
        """Load the session from its store; a no-op if already loaded.

        Raises :class:`~asgi_sessions.errors.SessionStoreUnavailable` if the
        store cannot be reached; the session then refuses every access and
        is never saved, so stored data is never overwritten by a failed read.
        """
        await self._load(mark=True)

    async def _load(self, *, mark: bool) -> None:
        state = self._state
        if state == _LOADED:
            return
        if state == _PRIMED:
            if mark:
                self._state = _LOADED
                self.accessed = True
            return
        if state == _COOKIE_PENDING:
            self._open_cookie()
            return
        loaded = _LOADED if mark else _PRIMED
        session_id = self._take_session_id()
        if session_id is None:
            # No (usable) cookie: a new session, no I/O. Reading it is still an
            # access: the reply depends on the Cookie header carrying no
            # session, so it must vary on it (a cookie session does the same).
            self._state = loaded
            if mark:
                self.accessed = True
            return
        store = self._backend.store
        assert store is not None
        try:
            blob = await store.read(store_key(session_id))
        except SessionStoreUnavailable as exc:
            self._state = _FAILED
            self._error = exc
            raise
        self._state = loaded
        self._error = None
        if mark:
            self.accessed = True
        if blob is None:
            # Expired by the store's TTL, deleted, or never issued by us.
            self._event("rejected", session_id, "unknown id")
            self._unknown = session_id  # a logout still follows where a login moved it
            return
        try:
            record = decode_frames(self._backend.serializer, blob)
        except (ValueError, TypeError):
            self._event("rejected", session_id, "malformed record")
            # Unlike a bad cookie (anyone can send one), a record the store
            # holds under a valid id is ours: a changed serializer, or
            # corruption. The operator should hear of it, as Django logs it.
            logger.warning("a stored session record could not be decoded; the session starts empty")
            return
        if self._expired(record, _now()):
            self._event("expired", session_id, "record")
            self._old_key = session_id
            return
        self._key = session_id
        self._blob = self._origin = blob
        self._loaded = record
        self._adopt(record)

    def _open_cookie(self) -> None:
        backend = self._backend
        cookie_store = backend.cookie_store
        assert cookie_store is not None
        self._state = _LOADED
        self.accessed = True
        source = self._source
        if source is None:
            token = self._token
        else:  # _take_token, inlined: this runs on every read
            self._source = None
            self._token = token = backend.read_token(source)
        if token is None:
            return
        try:
            opened = cookie_store.open(token, backend.cookie_name, backend.max_age)
        except CookieRefused as refused:
            self._event("rejected", reason=refused.reason)
            return
        if opened is None:
            self._event("rejected", reason="it does not verify")
            return
        now = int(_time())
        payload, reissue, legacy = opened
        if legacy is not None:
            created = issued = now
            expires: int = 0
            expiry: Expiry = None
            data: Any = legacy
        else:
            try:
                created, issued, expires, kind, value = _unpack_head(payload)
                expiry = None if kind == 0 else unpack_expiry(kind, value)
                data = backend.serializer.loads(payload[_HEAD_SIZE:])
            except (ValueError, TypeError, RecursionError, struct.error):
                data = None
            # The exact type first: it is what every built-in serializer
            # returns, and the cheaper test on a path every read takes.
            if type(data) is not dict and not isinstance(data, dict):
                # DEBUG only, like every refused cookie: a browser replays it on
                # every request until the session is next written.
                self._event("rejected", reason="malformed payload")
                return
        if expiry is None:
            # max_age as configured now, not only as sealed: lowering it ends
            # the cookies already issued, as Starlette's middleware does.
            age = backend.max_age
            limit = issued + (DEFAULT_SERVER_AGE if age is None else age)
            if not expires or limit < expires:
                expires = limit
        elif not expires:  # written before expiry was always sealed: cap it anyway
            expires = issued + DEFAULT_SERVER_AGE
        idle, absolute = backend.idle_timeout, backend.absolute_timeout
        if (
            now >= expires
            # Times are whole seconds: ">" so that a cookie is never refused
            # before idle_timeout seconds of real inactivity (">=" refused one
            # issued at x.99 s a few ms later when idle_timeout=1).
            or (idle is not None and now - issued > idle)
            or (absolute is not None and now - created >= absolute)
        ):
            self._event("expired", reason="cookie")
            return
        dict.update(self, data)
        self._created = created
        self._issued = issued
        # The class defaults already say None and False: setting them again
        # would only grow the instance dict on every read.
        if expiry is not None:
            self._expiry = expiry
        if reissue:
            self._reissue = True

    def _expired(self, record: Record, now: int) -> bool:
        # Server records: idle expiry is the store's TTL, refreshed by touch().
        if record.expires is not None and now >= record.expires:
            return True
        if record.expiry is None and record.issued is not None:
            # max_age as configured now: lowering it ends the records already written.
            age = self._backend.max_age
            if now - record.issued >= (DEFAULT_SERVER_AGE if age is None else age):
                return True
        timeout = self._backend.absolute_timeout
        return timeout is not None and now - record.created >= timeout

    def _adopt(self, record: Record) -> None:
        dict.update(self, record.data)
        self._created = record.created
        self._issued = record.issued
        self._expiry = record.expiry
        self._frames = record.frames

    def _ensure(self) -> None:
        state = self._state
        if state == _LOADED:
            return
        if state == _COOKIE_PENDING:  # the common case first
            self._open_cookie()
        elif state == _PRIMED:
            self._state = _LOADED
            self.accessed = True
        elif state == _FAILED:
            assert self._error is not None
            raise SessionStoreUnavailable(str(self._error)) from self._error
        elif self._take_session_id() is None:
            self._state = _LOADED  # nothing to load: a new, empty session
            self.accessed = True  # as when a cookie session opens: see _load
        else:
            raise SessionNotLoaded()

    # -- flags -----------------------------------------------------------------

    def mark_accessed(self) -> None:
        """Record that the session was used (Starlette's ``request.session`` calls this).

        A cookie session is decrypted here, so that code handing the session
        straight to ``json.dumps`` sees its contents.
        """
        self.accessed = True
        if self._state == _COOKIE_PENDING:
            self._open_cookie()

    @property
    def modified(self) -> bool:
        """The session was changed and must be saved.

        Setting it to ``True`` by hand (Django's idiom after changing a
        nested value, ``session["cart"].append(x)``) is the same as
        :meth:`mark_modified`: every key is saved, since the session cannot
        tell which one changed. Setting it to ``False`` discards the pending
        save.
        """
        return self._modified

    @modified.setter
    def modified(self, value: bool) -> None:
        if value:
            self.mark_modified()
        else:
            self._modified = False

    def mark_modified(self) -> None:
        """Record that the session changed in a way it cannot see (a nested value).

        Every key whose value now differs from the record as loaded is then
        saved (on a server store; a cookie is always rewritten whole), so a
        key that a parallel request changed meanwhile, and this one did not,
        keeps that change.
        """
        self._check_open()
        self.accessed = True
        self._modified = True
        self._all_dirty = True

    def _check_open(self) -> None:
        if self._frozen is not None:
            raise SessionError(self._frozen)

    def _dirty(self, key: str) -> None:
        if self._frozen is not None:
            raise SessionError(self._frozen)
        self.accessed = True
        self._modified = True
        changes = self._changes
        if changes is None:
            self._changes = {key}
        else:
            changes.add(key)

    def _dirty_many(self, keys: Iterable[str]) -> None:
        if self._frozen is not None:
            raise SessionError(self._frozen)
        self.accessed = True
        self._modified = True
        if self._changes is None:
            self._changes = set(keys)
        else:
            self._changes.update(keys)

    # -- reading (dict API) ----------------------------------------------------

    def __getitem__(self, key: str) -> Any:
        if self._state:
            self._ensure()
        return dict.__getitem__(self, key)

    def __contains__(self, key: object) -> bool:
        if self._state:
            self._ensure()
        return dict.__contains__(self, key)

    def __iter__(self) -> Iterator[str]:
        if self._state:
            self._ensure()
        return dict.__iter__(self)

    def __reversed__(self) -> Iterator[str]:
        if self._state:
            self._ensure()
        return dict.__reversed__(self)

    def __len__(self) -> int:
        if self._state:
            self._ensure()
        return dict.__len__(self)

    def __eq__(self, other: object) -> bool:
        if self._state:
            self._ensure()
        return dict.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        if self._state:
            self._ensure()
        return dict.__ne__(self, other)

    __hash__ = None

    def __or__(self, other: Any) -> dict[str, Any]:  # type: ignore[override]
        if self._state:
            self._ensure()
        return dict(dict.items(self)) | other  # type: ignore[no-any-return]

    def __ror__(self, other: Any) -> dict[str, Any]:  # type: ignore[override]
        if self._state:
            self._ensure()
        return other | dict(dict.items(self))  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        # Not is_loaded: that decrypts a pending cookie, and a repr (a log
        # line of the scope) must not count as the app touching the session.
        if self._state not in (_LOADED, _PRIMED):
            return f"<{type(self).__name__} (not loaded)>"
        return f"{type(self).__name__}({dict.__repr__(self)})"

    def __reduce__(self) -> tuple[type[Session], tuple[dict[str, Any]]]:
        """Copies and pickles are standalone sessions holding the same data.

        The middleware, store and cookie state of a request's session belong
        to that request and are not carried along.
        """
        return (type(self), (dict(self.items()),))

    def get(self, key: str, default: Any = None) -> Any:
        """``dict.get``, loading first."""
        if self._state:
            self._ensure()
        return dict.get(self, key, default)

    def keys(self) -> Any:
        """``dict.keys``, loading first."""
        if self._state:
            self._ensure()
        return dict.keys(self)

    def values(self) -> Any:
        """``dict.values``, loading first."""
        if self._state:
            self._ensure()
        return dict.values(self)

    def items(self) -> Any:
        """``dict.items``, loading first."""
        if self._state:
            self._ensure()
        return dict.items(self)

    def copy(self) -> dict[str, Any]:
        """A plain ``dict`` copy of the contents."""
        if self._state:
            self._ensure()
        return dict(dict.items(self))

    # -- writing (dict API) ----------------------------------------------------

    def __setitem__(self, key: str, value: Any) -> None:
        if self._state:
            self._ensure()
        self._dirty(key)
        dict.__setitem__(self, key, value)

    def __delitem__(self, key: str) -> None:
        if self._state:
            self._ensure()
        if not dict.__contains__(self, key):
            # Marked modified all the same, as Starlette's Session does, but
            # with no change of ``key`` recorded: a removal saved here would
            # delete the key that a parallel request has set meanwhile.
            self._dirty_many(())
            raise KeyError(key)
        self._dirty(key)
        dict.__delitem__(self, key)

    def clear(self) -> None:
        """Remove every key (the session stays; use :meth:`flush` to log out)."""
        if self._state:
            self._ensure()
        self._check_open()
        self.accessed = True
        self._modified = True
        self._cleared = True
        self._changes = None
        dict.clear(self)

    def pop(self, key: str, default: Any = _MISSING) -> Any:
        """``dict.pop``; marks the session modified only if ``key`` was present."""
        if self._state:
            self._ensure()
        if dict.__contains__(self, key):
            self._dirty(key)
            return dict.pop(self, key)
        if default is _MISSING:
            raise KeyError(key)
        return default

    def has_key(self, key: str) -> bool:
        """``key in self`` (Django's name)."""
        if self._state:
            self._ensure()
        return dict.__contains__(self, key)

    def popitem(self) -> tuple[str, Any]:
        """``dict.popitem``; always marks the session modified."""
        if self._state:
            self._ensure()
        self._check_open()
        item = dict.popitem(self)
        self._dirty(item[0])
        return item

    def setdefault(self, key: str, default: Any = None) -> Any:
        """``dict.setdefault``; marks the session modified only if ``key`` was absent."""
        if self._state:
            self._ensure()
        if not dict.__contains__(self, key):
            self._dirty(key)
        return dict.setdefault(self, key, default)

    def update(self, *args: Any, **kwargs: Any) -> None:
        """``dict.update``; always marks the session modified."""
        if self._state:
            self._ensure()
        self._check_open()
        changes = dict(*args, **kwargs)
        self._dirty_many(changes)
        dict.update(self, changes)

    def __ior__(self, other: Any) -> Session:  # type: ignore[override]
        self.update(other)
        return self

    # -- async mirrors (Django 5.1 names) --------------------------------------

    async def aget(self, key: str, default: Any = None) -> Any:
        """Load, then ``get``."""
        await self.load()
        return dict.get(self, key, default)

    async def aset(self, key: str, value: Any) -> None:
        """Load, then ``self[key] = value``."""
        await self.load()
        self[key] = value

    async def asetdefault(self, key: str, default: Any = None) -> Any:
        """Load, then ``setdefault``."""
        await self.load()
        return self.setdefault(key, default)

    async def apop(self, key: str, default: Any = _MISSING) -> Any:
        """Load, then ``pop``."""
        await self.load()
        return self.pop(key, default)

    async def aupdate(self, *args: Any, **kwargs: Any) -> None:
        """Load, then ``update``."""
        await self.load()
        self.update(*args, **kwargs)

    async def ahas_key(self, key: str) -> bool:
        """Load, then ``key in self``."""
        await self.load()
        return dict.__contains__(self, key)

    async def akeys(self) -> list[str]:
        """Load, then the keys as a list."""
        await self.load()
        return list(dict.keys(self))

    async def avalues(self) -> list[Any]:
        """Load, then the values as a list."""
        await self.load()
        return list(dict.values(self))

    async def aitems(self) -> list[tuple[str, Any]]:
        """Load, then the items as a list."""
        await self.load()
        return list(dict.items(self))

    async def aflush(self) -> None:
        """:meth:`flush` (needs no load)."""
        self.flush()

    async def acycle_key(self) -> None:
        """Load, then :meth:`cycle_key`."""
        await self.load()
        self.cycle_key()

    async def aset_expiry(self, value: int | float | timedelta | datetime | None) -> None:
        """Load, then :meth:`set_expiry`."""
        await self.load()
        self.set_expiry(value)

    async def aget_expiry_age(
        self, *, modification: datetime | None = None, expiry: Any = _MISSING
    ) -> int:
        """Load, then :meth:`get_expiry_age`."""
        await self.load()
        return self.get_expiry_age(modification=modification, expiry=expiry)

    async def aget_expiry_date(
        self, *, modification: datetime | None = None, expiry: Any = _MISSING
    ) -> datetime:
        """Load, then :meth:`get_expiry_date`."""
        await self.load()
        return self.get_expiry_date(modification=modification, expiry=expiry)

    async def aget_expire_at_browser_close(self) -> bool:
        """Load, then :meth:`get_expire_at_browser_close`."""
        await self.load()
        return self.get_expire_at_browser_close()

    async def aget_session_cookie_age(self) -> int:
        """:meth:`get_session_cookie_age` (needs no load)."""
        return self.get_session_cookie_age()

    async def aset_test_cookie(self) -> None:
        """Load, then :meth:`set_test_cookie`."""
        await self.load()
        self.set_test_cookie()

    async def atest_cookie_worked(self) -> bool:
        """Load, then :meth:`test_cookie_worked`."""
        await self.load()
        return self.test_cookie_worked()

    async def adelete_test_cookie(self) -> None:
        """Load, then :meth:`delete_test_cookie`."""
        await self.load()
        self.delete_test_cookie()

    # -- Django's session API --------------------------------------------------

    @property
    def store(self) -> SessionStore | None:
        """The server-side store behind this session; ``None`` for cookie sessions."""
        return self._backend.store

    @property
    def session_key(self) -> str | None:
        """The session id (server stores), or ``None`` for cookie stores and new sessions.

        After :meth:`cycle_key` or for a new session, the new id exists only
        once the session has been committed.
        """
        return self._key

    def is_empty(self) -> bool:
        """True when there is neither a stored session nor any data (no load needed)."""
        if self._state == _COOKIE_PENDING or self._state == _STORE_PENDING:
            return self._take_token() is None
        return self._key is None and not dict.__len__(self)

    def flush(self) -> None:
        """Empty the session and forget its id: use it for logout.

        The stored record is deleted at commit and the cookie is deleted,
        unless new data is set afterwards (then it gets a new id). A server
        session need not be loaded first: logout costs one delete.
        """
        self._check_open()
        if self._state == _COOKIE_PENDING and self._observed("flushed"):
            # ``flushed`` reports a session that ended, and only opening the
            # cookie tells whether there was one (it may be garbage, signed
            # with a retired key, or expired). That decrypt is paid only
            # where the event is seen; otherwise a logout costs nothing.
            self._open_cookie()
        if self._created is not None and self._backend.store is None:
            self._ended = True  # a cookie session that opened: the logout ends it
        old = self._key
        if old is None and self._state in (_STORE_PENDING, _FAILED):
            # A failed read must not stop a logout: the delete needs no load.
            old = self._take_session_id()
        if old is None:
            old, self._unknown = self._unknown, None
        self._take_token()  # whether a cookie must be deleted
        if old is not None:
            self._old_key = old
            # An id to end; whether the store still held it, _end tells. A
            # record this request found expired (_old_key set by the load)
            # was no session any more.
            self._ended = True
        self._state = _LOADED
        dict.clear(self)
        self._key = None
        self._created = None
        self._expiry = None
        self._changes = None
        self._all_dirty = False
        self._cleared = True
        self._flushed = True
        self._cycle = False
        self.accessed = True
        self._modified = True

    def cycle_key(self) -> None:
        """Keep the data under a new id, deleting the old record at commit.

        Call it on login and on every privilege change, against session
        fixation. Cookie sessions are re-issued (a fresh nonce). The absolute
        timeout still counts from the session's first creation.

        Raises :class:`~asgi_sessions.errors.SessionError` at once where no
        new id could reach the client (a websocket on a server store), rather
        than when the session is saved.
        """
        if self._state:
            self._ensure()
        self._check_open()
        self._check_new_id()
        self._cycle = True
        self.accessed = True
        self._modified = True

    def _check_new_id(self) -> None:
        """Raise ``SessionError`` where no new id could reach the client (a websocket)."""
        if self._no_new_id is not None:
            raise SessionError(self._no_new_id)

    def set_expiry(self, value: int | float | timedelta | datetime | None) -> None:
        """Set when this session expires.

        An ``int`` (or ``timedelta``) is seconds of inactivity; ``0`` means at
        browser close; a ``datetime`` is a fixed moment (naive means UTC);
        ``None`` goes back to the middleware's ``max_age``. A negative value
        expires the session at commit.
        """
        if self._state:
            self._ensure()
        self._check_open()
        if value is None:
            expiry: Expiry = None
        elif isinstance(value, datetime):
            expiry = ("at", int(_aware(value).timestamp()))
        elif isinstance(value, timedelta):
            expiry = int(value.total_seconds())
        else:
            expiry = int(value)
        if isinstance(expiry, int):
            # Beyond this either way means "never" or "already": keep it small
            # enough for every store and the cookie head.
            expiry = max(-_LAST_SECOND, min(expiry, _LAST_SECOND))
        self._expiry = expiry
        self.accessed = True
        self._modified = True

    def get_session_cookie_age(self) -> int:
        """The middleware's ``max_age`` (or the server default when it is ``None``)."""
        age = self._backend.max_age
        return DEFAULT_SERVER_AGE if age is None else age

    def get_expiry_age(
        self, *, modification: datetime | None = None, expiry: Any = _MISSING
    ) -> int:
        """Seconds from ``modification`` (default: now) until the session expires."""
        if expiry is _MISSING:
            if self._state:
                self._ensure()
            expiry = self._expiry
        if isinstance(expiry, datetime):
            expiry = ("at", int(_aware(expiry).timestamp()))
        if isinstance(expiry, timedelta):
            expiry = int(expiry.total_seconds())
        if not expiry:  # None or 0: the cookie age applies on the server
            return self.get_session_cookie_age()
        if isinstance(expiry, tuple):
            start = _now() if modification is None else int(_aware(modification).timestamp())
            return int(expiry[1]) - start
        return int(expiry)

    def get_expiry_date(
        self, *, modification: datetime | None = None, expiry: Any = _MISSING
    ) -> datetime:
        """The moment (UTC) the session expires, counting from ``modification``."""
        start = datetime.now(UTC) if modification is None else _aware(modification)
        if expiry is _MISSING:
            if self._state:
                self._ensure()
            expiry = self._expiry
        if isinstance(expiry, tuple):
            return datetime.fromtimestamp(expiry[1], UTC)
        if isinstance(expiry, datetime):
            return _aware(expiry)
        return start + timedelta(
            seconds=self.get_expiry_age(modification=modification, expiry=expiry)
        )

    def get_expire_at_browser_close(self) -> bool:
        """Whether the cookie ends with the browser (``set_expiry(0)``, ``max_age=None``)."""
        if self._state:
            self._ensure()
        if self._expiry is None:
            return self._backend.max_age is None
        return bool(self._expiry == 0)

    def set_test_cookie(self) -> None:
        """Store a marker to check on the next request whether the browser keeps cookies."""
        self[TEST_COOKIE_NAME] = TEST_COOKIE_VALUE

    def test_cookie_worked(self) -> bool:
        """Whether the marker set by :meth:`set_test_cookie` came back."""
        return bool(self.get(TEST_COOKIE_NAME) == TEST_COOKIE_VALUE)

    def delete_test_cookie(self) -> None:
        """Remove the marker."""
        self.pop(TEST_COOKIE_NAME, None)

    # -- expiry arithmetic -----------------------------------------------------

    def _plan_expiry(self, now: int, created: int) -> tuple[int, int | None]:
        """(record expires at, cookie Max-Age) for a save happening ``now``."""
        backend = self._backend
        expiry = self._expiry
        expires: int | None
        cookie_age: int | None
        if expiry is None:
            cookie_age = backend.max_age
            expires = None if cookie_age is None else now + cookie_age
        elif isinstance(expiry, tuple):
            expires = expiry[1]
            cookie_age = expires - now
        elif expiry == 0:
            cookie_age = None
            expires = None if backend.max_age is None else now + backend.max_age
        else:
            cookie_age = expiry
            expires = now + expiry
        if expires is None:
            # A browser-session cookie still ends on the server (Django's rule):
            # a copied cookie must not be replayable forever.
            expires = now + DEFAULT_SERVER_AGE
        if backend.absolute_timeout is not None:
            limit = created + backend.absolute_timeout
            expires = min(expires, limit)
            if cookie_age is not None:
                cookie_age = min(cookie_age, limit - now)
        # Within what a cookie head can hold; 1, not 0, for a moment long
        # past: 0 there means "no expiry recorded".
        return max(1, min(expires, _LAST_SECOND)), cookie_age

    def _ttl(self, now: int, expires: int | None) -> int:
        ttl = DEFAULT_SERVER_AGE if expires is None else expires - now
        idle = self._backend.idle_timeout
        if idle is not None:
            ttl = min(ttl, idle)
        return ttl

    # -- commit ----------------------------------------------------------------

    def freeze(self, reason: str) -> None:
        """Refuse every later change with ``SessionError(reason)``.

        The middleware calls this once a cookie session's cookie can no longer
        be sent (headers gone, or a websocket).
        """
        self._frozen = reason

    def _reset_changes(self) -> None:
        self._modified = False
        self._changes = None
        self._all_dirty = False
        self._cleared = False
        self._flushed = False
        self._ended = False
        self._cycle = False
        self._gone = False
        self._old_key = None

    async def commit(
        self, status: int = 200, *, can_set_cookie: bool = True
    ) -> CookieUpdate | None:
        """Persist what changed and say what the cookie must become.

        Called by the middleware when the response starts (``status``: its
        status code; nothing is written for 5xx). With ``can_set_cookie=False``
        (after headers were sent, or in a websocket) a change that would need
        a new cookie raises :class:`~asgi_sessions.errors.SessionError`.
        """
        if status >= 500 or self._state == _FAILED:
            return None
        if self._backend.store is None:
            return self.commit_cookie(status)
        return await self._commit_server(can_set_cookie)

    async def save(self) -> None:
        """Write a server-side session now, keeping its id (websockets, background work).

        A new session, or one whose id must change (``cycle_key``, ``flush``
        followed by new data), cannot be saved where no cookie can be sent.
        """
        if self._backend.store is None:
            raise SessionError("cookie sessions are saved by the middleware, with the response")
        await self.commit(can_set_cookie=False)

    def commit_cookie(self, status: int = 200) -> CookieUpdate | None:
        """:meth:`commit` for cookie sessions, which needs no I/O and so no ``await``."""
        if status >= 500:
            return None
        backend = self._backend
        # Only _open_cookie below could set _reissue, and it runs only when
        # save_every_request already makes this True.
        changed = self._modified or self._reissue or backend.save_every_request
        if not changed and backend.idle_timeout is None:
            return None  # untouched or only read: nothing to send, no clock needed
        if self._state != _LOADED:
            if not backend.save_every_request:
                return None  # untouched: no decrypt, no cookie
            self._open_cookie()
        now = int(_time())
        if not dict.__len__(self):
            if (self._modified or self._reissue) and self._take_token() is not None:
                self._modified = False
                if self._flushed:
                    self._cookie_flushed()
                return _DELETE
            return None
        if not changed and now == self._issued:
            return None  # idle_timeout refresh: at most once a second
        cookie_store = backend.cookie_store
        assert cookie_store is not None
        created = self._created if self._created is not None else now
        expiry = self._expiry
        if expiry is None and backend.absolute_timeout is None:
            # The common case of _plan_expiry, inlined: every write takes it.
            cookie_age = backend.max_age
            expires = now + (DEFAULT_SERVER_AGE if cookie_age is None else cookie_age)
            if expires > _LAST_SECOND:
                expires = _LAST_SECOND
        else:
            expires, cookie_age = self._plan_expiry(now, created)
        data = backend.serializer.dumps(dict(dict.items(self)))
        if expiry is None:  # pack_cookie's common case, without the call
            payload = _pack_head(created, now, expires, 0, 0) + data
        else:
            payload = pack_cookie(data, created=created, issued=now, expires=expires, expiry=expiry)
        token = cookie_store.seal(payload, backend.cookie_name)
        if self._flushed or self._cycle or self._created is None:
            self._cookie_events()
        self._created = created
        self._issued = now
        if self._reissue:
            self._reissue = False
            # Set only here, on the rare path of an old-secret or Starlette
            # cookie: the middleware then tolerates a line too large to send.
            self._reissued = not self._modified
        self._modified = False
        return _cookie_update((token, cookie_age))

    def _cookie_flushed(self) -> None:
        """Report a cookie session's ``flush()``, if it ended one.

        A logout sent with a cookie that did not open (refused or expired,
        already reported as such) ends nothing: counting it as ``flushed``
        would count logouts that never were.
        """
        self._flushed = False
        if self._ended:
            self._ended = False
            self._event("flushed")

    def _cookie_events(self) -> None:
        """The events of a cookie session being written (off the hot path)."""
        if self._flushed:
            self._cookie_flushed()
        if self._created is None:
            self._event("created")
        elif self._cycle:
            self._event("cycled")
        self._flushed = self._cycle = False

    async def _commit_server(self, can_set_cookie: bool) -> CookieUpdate | None:
        backend = self._backend
        store = backend.store
        assert store is not None
        if not self.is_loaded:
            if backend.save_every_request and self._state == _STORE_PENDING:
                await self._load(mark=False)
            else:
                return None  # untouched: no store I/O
        now = _now()
        key = self._key
        # Emptied by flush() or clear() (a logout, as Starlette apps write
        # it), or never stored. A session emptied key by key is written (and
        # cycled, and touched) like any other: a parallel request may have
        # added a key meanwhile, which must survive.
        emptied = not dict.__len__(self) and (key is None or self._cleared)
        # A new record is encoded before any store I/O: a value the
        # serializer refuses (the app's bug, a 500) must not come after the
        # old record was deleted (flush() then new data), nor after anything
        # else was written.
        plan = None if emptied or not (key is None or self._cycle) else self._plan_create(now)
        old_key = self._old_key
        update: CookieUpdate | None = None
        if old_key is not None and old_key != key:
            # Only a record that was there ended a session: an id the store
            # no longer held (expired, never ours) ends nothing.
            if await _end(store, store_key(old_key)) and self._flushed and self._ended:
                self._event("flushed", old_key)
            if not dict.__len__(self) and self._take_token() is not None:
                update = _DELETE
        if self._cleared and self._unknown is not None:
            # clear() on an id the store did not know, with or without new
            # data after it: a login may have moved it just before (a logout
            # racing a login), so end wherever it went.
            await _end(store, store_key(self._unknown))
            self._unknown = None
        if emptied:
            if key is not None and self._modified:
                await _end(store, store_key(key))
                self._key = None
                update = _DELETE if self._take_token() is not None else update
            elif self._flushed and update is None and self._take_token() is not None:
                # A logout with a cookie whose id the store did not know (it
                # expired, or it was never ours): nothing to delete but the cookie.
                update = _DELETE
            self._reset_changes()
            return update
        if plan is not None or key is None:
            assert plan is not None  # every session not emptied with no key gets one
            if key is None and self._unknown is not None:
                await self._refuse_if_moved(store, self._unknown)
            origin = self._origin  # _create replaces it with the copy's
            update = await self._create(store, now, plan, can_set_cookie)
            if key is not None and not self._gone:
                await self._retire(store, key, update, now, origin)
            else:
                # The old record was ended on purpose (flush() then new data:
                # a login as another user, a logout with a flash message; or
                # logout_everywhere(keep_current=True)). Say where the browser
                # went, as a cycle does, so a request still in flight with the
                # old id gets a 400 instead of a fresh session whose cookie
                # would replace this one.
                moved = key if key is not None else old_key if self._flushed else None
                if moved is not None and update.value is not None:
                    await _leave_forward_quietly(store, store_key(moved), store_key(update.value))
            self._event("created" if key is None else "cycled", update.value)
        elif self._modified or backend.save_every_request:
            await self._write(store, key, now)
            _, cookie_age = self._plan_expiry(now, self._created or now)
            update = CookieUpdate(key, cookie_age)
        elif backend.idle_timeout is not None:
            expires, _ = self._plan_expiry(self._issued or now, self._created or now)
            ttl = self._ttl(now, expires)
            if ttl >= 1:
                await store.touch(store_key(key), ttl)
        self._reset_changes()
        return update

    def _plan_create(self, now: int) -> _CreatePlan:
        """Everything a new record needs, encoded, with no store I/O yet."""
        created = self._created if self._created is not None and not self._flushed else now
        expires, cookie_age = self._plan_expiry(now, created)
        ttl = self._ttl(now, expires)
        frame = encode_frame(
            created=created,
            issued=now,
            expires=expires,
            expiry=self._expiry,
            snapshot=dict(dict.items(self)),
        )
        blob = frame_bytes(self._backend.serializer, frame)
        return created, cookie_age, ttl, blob

    async def _create(
        self, store: SessionStore, now: int, plan: _CreatePlan, can_set_cookie: bool
    ) -> CookieUpdate:
        """Store the record ``plan`` holds under a fresh id.

        Refused where no cookie can carry the id. The old record is ended
        first all the same: a flush() there is a logout, which must hold
        even if the data meant for a new session is dropped.
        """
        if not can_set_cookie:
            raise SessionError(
                "a new session id cannot be issued here (no cookie can be sent: the "
                "response has started or this is a websocket); create or cycle the "
                "session in an HTTP request before its response starts"
            )
        created, cookie_age, ttl, blob = plan
        if ttl >= 1:
            for _ in range(_CREATE_ATTEMPTS):
                new_id = new_session_id()
                new_key = store_key(new_id)
                if await store.create(new_key, blob, ttl):
                    break
            else:  # pragma: no cover - needs 4 collisions of 256-bit ids
                raise SessionError("could not create a unique session id")
            user = dict.get(self, USER_KEY)
            if user is not None and store.has_user_index:
                # After the create: a link always points at a record that
                # existed. If it fails the request fails (503) and the new
                # record, whose id nobody received, simply expires.
                await store.link_user(user_key(user), new_key)
        else:
            new_id = new_session_id()  # expired on arrival: nothing to store
        self._key = new_id
        self._created = created
        self._issued = now
        self._blob = self._origin = blob
        self._frames = 1
        return CookieUpdate(new_id, cookie_age)

    async def _refuse_if_moved(self, store: SessionStore, unknown: str) -> None:
        """Refuse to start a session for an id that a login just moved elsewhere.

        A request sent with the old id before the login's new cookie arrived
        finds nothing under it. Starting a fresh session would send a cookie
        that replaces the logged-in one in the browser, so it gets
        :class:`SessionInterrupted` (a 400) instead, as any request overtaken
        by a cycle does. It never gets the moved session: only its new id
        does. Costs one read, only when an unknown id is about to get data.
        """
        if await store.read(forward_key(store_key(unknown))) is not None:
            self._key = None
            raise SessionInterrupted(
                "this session moved to a new id (a login) while this request was on "
                "its way; its changes were not saved"
            )

    async def _retire(
        self,
        store: SessionStore,
        old_id: str,
        update: CookieUpdate,
        now: int,
        origin: bytes | None,
    ) -> None:
        """End the record a cycled session leaves behind, after its copy was created.

        The old record is taken (read and deleted in one atomic step, by the
        store's truth, not a cache), so a write to the old id cannot land
        after this and still succeed: it gets :class:`SessionInterrupted`.
        If the old record is already gone, a logout (in another tab, say)
        ended the session while this request ran: the new copy is deleted
        too and this request gets :class:`SessionInterrupted`, so no fresh
        id outlives the logout. Otherwise what parallel requests wrote to the
        old record since this one read it is carried over (:meth:`_carry_over`).

        Before the take, the old key's forward record gets the new key, so a
        logout that reaches the old id after the take (it was sent before
        this response reached the browser) ends the new record too.
        """
        assert update.value is not None
        new = store_key(update.value)
        old = store_key(old_id)
        try:
            await _leave_forward(store, old, new)
            current = await store.take(old)
        except SessionStoreUnavailable:
            # No new id goes out (a 503): do not leave its copy behind,
            # linked to the user, for a whole session lifetime.
            with contextlib.suppress(SessionStoreUnavailable):
                await store.delete(new)
            raise
        if current is None:
            await store.delete(new)
            self._key = None
            raise SessionInterrupted(_CYCLE_OVERTAKEN)
        if current != origin and origin is not None and not self._cleared:
            await self._carry_over(store, new, origin, current, now)

    async def _carry_over(
        self, store: SessionStore, new: str, origin: bytes, current: bytes, now: int
    ) -> None:
        """Give the new copy the keys parallel requests changed in the old record meanwhile.

        The copy holds what this request loaded plus its own changes. A key
        that another request set or deleted since ``origin`` (the record as
        this request last knew it whole), and that this one did not change
        itself, is taken from the old record: a key set by a parallel
        request during a login survives the login, as it survives any other
        write. A key both changed is this request's (it committed last).
        Comparing against a fresh decode of ``origin`` keeps nested changes
        made in place by this request.
        """
        serializer = self._backend.serializer
        try:
            before = decode_frames(serializer, origin).data
            theirs = decode_frames(serializer, current).data
        except (ValueError, TypeError):
            return  # not ours to read: keep the copy as created
        mine = set(self._changed_keys())
        merged = dict(dict.items(self))
        for name in before.keys() | theirs.keys():
            if name in mine or before.get(name, _MISSING) == theirs.get(name, _MISSING):
                continue
            if name in theirs:
                merged[name] = theirs[name]
            else:
                merged.pop(name, None)
        if merged == dict(dict.items(self)):
            return  # only a compaction, or writes this request overrides
        assert self._created is not None
        expires, _ = self._plan_expiry(now, self._created)
        ttl = self._ttl(now, expires)
        blob = frame_bytes(
            serializer,
            encode_frame(
                created=self._created,
                issued=now,
                expires=expires,
                expiry=self._expiry,
                snapshot=merged,
            ),
        )
        if ttl < 1:
            return
        if not await store.update(new, blob, ttl):
            # A logout reached the old id after the take and followed its
            # forward record here: the new copy is gone, and stays gone.
            self._key = None
            raise SessionInterrupted(_CYCLE_OVERTAKEN)
        user = merged.get(USER_KEY)
        if user is not None and user != dict.get(self, USER_KEY) and store.has_user_index:
            # A user id carried over from the old record: link the copy too,
            # so logout_everywhere() finds it (_create linked only its own).
            await store.link_user(user_key(user), new)
        dict.clear(self)
        dict.update(self, merged)
        self._blob = self._origin = blob

    def _changed_keys(self) -> Iterable[str]:
        """The keys this request changed: set, replaced or deleted."""
        keys: Iterable[str] = self._changes or ()
        if self._all_dirty:
            # mark_modified(): something changed in place, nobody said where.
            # Compare each key with the record as loaded, decoded afresh (the
            # loaded copy shares its nested values with this dict): writing
            # the keys that did not change would undo what parallel requests
            # wrote to them meanwhile.
            explicit = set(keys)
            pristine = self._pristine()
            before = pristine.data if pristine is not None else None
            names: list[str] = [*dict.keys(self)]
            present = [
                name
                for name in names
                if before is None
                or name in explicit
                or name not in before
                or before[name] != dict.__getitem__(self, name)
            ]
            gone = explicit
            if before is not None:
                gone.update(before)
            elif self._loaded is not None:
                gone.update(self._loaded.data)
            gone.difference_update(names)
            keys = [*present, *sorted(gone)]
        return keys

    def _pristine(self) -> Record | None:
        """The record as this request loaded it, decoded afresh; ``None`` if unknown.

        Fresh, because the loaded record shares its nested values with this
        dict, and an in-place change (``session["cart"].append(x)``) shows in
        both.
        """
        blob = self._blob
        if blob is None or self._loaded is None:
            return None
        try:
            return decode_frames(self._backend.serializer, blob)
        except (ValueError, TypeError):
            return None

    def _compacted(self, loaded: Record) -> bytes:
        """The frames this request loaded, rewritten as one snapshot frame.

        The store swaps that prefix only if the record still starts with it,
        keeping whatever other requests appended since, so concurrent writers
        never lose a change and a record under constant concurrent writes
        still stays short. ``loaded`` must be a fresh decode (:meth:`_pristine`):
        the snapshot stands for the stored frames, not for in-place changes
        this request made to nested values and did not mark.
        """
        return frame_bytes(
            self._backend.serializer,
            encode_frame(
                created=loaded.created,
                issued=loaded.issued,
                expires=loaded.expires,
                expiry=loaded.expiry,
                snapshot=loaded.data,
            ),
        )

    async def _write(self, store: SessionStore, key: str, now: int) -> None:
        created = self._created if self._created is not None else now
        expires, _ = self._plan_expiry(now, created)
        ttl = self._ttl(now, expires)
        skey = store_key(key)
        serializer = self._backend.serializer
        if ttl < 1:
            await store.delete(skey)
            self._key = None
            return
        if self._cleared:
            # A snapshot frame: replaying it drops everything before it, so a
            # clear() wins over earlier writes and loses to later ones.
            frame = encode_frame(
                created=created,
                issued=now,
                expires=expires,
                expiry=self._expiry,
                snapshot=dict(dict.items(self)),
            )
        else:
            keys = self._changed_keys()
            frame = encode_frame(
                created=created,
                issued=now,
                expires=expires,
                expiry=self._expiry,
                changed={k: dict.__getitem__(self, k) for k in keys if dict.__contains__(self, k)},
                removed=[k for k in keys if not dict.__contains__(self, k)],
            )
        patch = frame_bytes(serializer, frame)
        blob = self._blob
        compacted = None
        if self._frames >= COMPACT_AFTER_FRAMES and blob is not None and self._loaded is not None:
            pristine = self._pristine()
            if pristine is not None:
                compacted = self._compacted(pristine)
        if compacted is not None:
            assert blob is not None
            done = await store.compact_and_append(skey, blob, compacted, patch, ttl)
        else:
            done = await store.append(skey, patch, ttl)
        if not done:
            if self._cleared:
                # A clear() (a logout) that found its record gone: a login may
                # have moved it meanwhile, and the logout must end that too.
                await _end(store, skey)
            raise SessionInterrupted(
                "the session was deleted (for example by a logout in another tab) "
                "while this request was running; its changes were not saved"
            )
        self._blob = self._loaded = None  # others may have appended: stored bytes unknown
        self._frames += 1
        self._created = created
        self._issued = now


def _aware(moment: datetime) -> datetime:
    """``moment`` with a time zone: a naive datetime means UTC throughout the session API."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


async def _leave_forward(store: SessionStore, old: str, new: str) -> None:
    """Record in ``old``'s forward record that its session moved to ``new``.

    Two requests cycling one session at once both get listed (the create
    of one and the append of the other cannot both miss).
    """
    forward = forward_key(old)
    target = new.encode("ascii")
    for _ in range(_CREATE_ATTEMPTS):
        if await store.create(forward, target, _FORWARD_TTL):
            return
        if await store.append(forward, b"\n" + target, _FORWARD_TTL):
            return


async def _leave_forward_quietly(store: SessionStore, old: str, new: str) -> None:
    """:func:`_leave_forward` where it only spares in-flight requests a lost cookie.

    The new session exists already and its cookie must go out: a store that
    fails here costs that nicety, not the response.
    """
    try:
        await _leave_forward(store, old, new)
    except SessionStoreUnavailable:
        logger.warning("session store unavailable: no forward record left for a new session id")


async def _end(store: SessionStore, key: str) -> bool:
    """Delete the record under ``key`` for a logout, wherever a cycle moved it.

    Returns whether a record was there to delete (a session ended), which
    is what the ``flushed`` event reports.

    A logout sent with the old id while a login (a ``cycle_key``) was in
    flight can land after the login took the old record; the record is then
    already gone and its forward record names the new one, which is ended
    too (and so on, for a few hops). A plain logout costs one ``take``.
    The forward record is read, not taken, and left to expire: a logout
    that failed part-way (a 503) and is retried still finds it.
    """
    pending = [key]
    ended = False
    for _ in range(_FORWARD_HOPS):
        if not pending:
            return ended
        current = pending.pop()
        if await store.take(current) is not None:
            ended = True
            continue
        moved = await store.read(forward_key(current))
        if moved:
            targets = moved.decode("ascii", "replace").split("\n")
            pending.extend(target for target in targets if is_store_key(target))
    if pending:
        # Only more logins of one session within _FORWARD_TTL than there are
        # hops get here; say so rather than leave a session logged in silently.
        logger.warning(
            "logout stopped after following %d logins of one session within %d s; "
            "%d newer session record(s) were not ended",
            _FORWARD_HOPS,
            _FORWARD_TTL,
            len(pending),
        )
    return ended
