"""Instruments for the tests: stores that count their work, and a raw ASGI client.

Owns: :class:`CountingCookieStore` (counts decryptions and encryptions),
:class:`CountingStore` (forwards to a real store and counts every call, and
can be told to fail some of them as an outage would), :class:`UnavailableStore`
(a store that is down), a Starlette app factory for session tests, a
minimal raw ASGI client for driving overlapping requests, and Set-Cookie
helpers.

Never knows: how the session layer works inside. The I/O promise is checked
by counting what reaches the store or the cipher, not by timing anything.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Message

from asgi_sessions import SessionMiddleware
from asgi_sessions.errors import SessionStoreUnavailable
from asgi_sessions.stores import EncryptedCookieStore, SessionStore, StoreKey
from asgi_sessions.stores.cookie import OpenedCookie

__all__ = [
    "SECRET",
    "WRITES",
    "Backend",
    "ClientFactory",
    "CountingCookieStore",
    "CountingStore",
    "RawResponse",
    "UnavailableStore",
    "cookie_line",
    "cookie_value",
    "in_loop",
    "make_backend",
    "max_age_of",
    "raw_request",
    "session_app",
]

SECRET = "a-test-secret-that-is-long-enough-for-hkdf-0123456789"
"""A secret of more than 32 bytes, so no weak-secret warning (warnings are errors)."""

T = TypeVar("T")

WRITES = ("create", "update", "append", "replace")
"""The store methods that write session data."""


class CountingCookieStore(EncryptedCookieStore):
    """The real encrypted cookie store, counting each ``open`` and ``seal``."""

    def __init__(self, secret_key: str = SECRET, **kwargs: Any) -> None:
        super().__init__(secret_key, **kwargs)
        self.opens = 0
        self.seals = 0

    def open(self, token: str, name: str, max_age: int | None) -> OpenedCookie | None:
        """Count, then decrypt."""
        self.opens += 1
        return super().open(token, name, max_age)

    def seal(self, payload: bytes, name: str) -> str:
        """Count, then encrypt."""
        self.seals += 1
        return super().seal(payload, name)

    def reset(self) -> None:
        """Forget the counts so far."""
        self.opens = 0
        self.seals = 0


class CountingStore(SessionStore):
    """A real store behind a counter.

    Every call is forwarded to ``inner`` (``append`` and ``replace`` to the
    inner store's own, atomic versions) and counted in :attr:`calls`; the
    keys it was given are kept in :attr:`log`. Methods named in
    :attr:`fail` raise :class:`SessionStoreUnavailable` instead of
    forwarding, as during an outage (they are still counted).
    """

    def __init__(self, inner: SessionStore, *, fail: Iterable[str] = ()) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()
        self.log: list[tuple[str, StoreKey]] = []
        self.fail: set[str] = set(fail)

    def _enter(self, method: str, key: StoreKey | None = None) -> None:
        self.calls[method] += 1
        if key is not None:
            self.log.append((method, key))
        if method in self.fail:
            raise SessionStoreUnavailable("the test store is down")

    @property
    def keys(self) -> list[StoreKey]:
        """Every key the store was given, in order."""
        return [key for _, key in self.log]

    @property
    def writes(self) -> int:
        """How many calls wrote session data."""
        return sum(self.calls[name] for name in WRITES)

    @property
    def total(self) -> int:
        """How many calls reached the store at all."""
        return sum(self.calls.values())

    def reset(self) -> None:
        """Forget the counts and keys so far."""
        self.calls.clear()
        self.log.clear()

    async def read(self, key: StoreKey) -> bytes | None:
        """Count, then read."""
        self._enter("read", key)
        return await self.inner.read(key)

    async def create(self, key: StoreKey, data: bytes, ttl: int) -> bool:
        """Count, then create."""
        self._enter("create", key)
        return await self.inner.create(key, data, ttl)

    async def update(self, key: StoreKey, data: bytes, ttl: int) -> bool:
        """Count, then update."""
        self._enter("update", key)
        return await self.inner.update(key, data, ttl)

    async def append(self, key: StoreKey, data: bytes, ttl: int) -> bool:
        """Count, then append."""
        self._enter("append", key)
        return await self.inner.append(key, data, ttl)

    async def replace(self, key: StoreKey, expected: bytes, data: bytes, ttl: int) -> bool:
        """Count, then compare-and-set."""
        self._enter("replace", key)
        return await self.inner.replace(key, expected, data, ttl)

    async def touch(self, key: StoreKey, ttl: int) -> None:
        """Count, then touch."""
        self._enter("touch", key)
        await self.inner.touch(key, ttl)

    async def delete(self, key: StoreKey) -> None:
        """Count, then delete."""
        self._enter("delete", key)
        await self.inner.delete(key)

    async def take(self, key: StoreKey) -> bytes | None:
        """Count, then take (the inner store's own, atomic version)."""
        self._enter("take", key)
        return await self.inner.take(key)

    async def clear_expired(self) -> int:
        """Count, then clear."""
        self._enter("clear_expired")
        return await self.inner.clear_expired()

    async def close(self) -> None:
        """Count, then close."""
        self._enter("close")
        await self.inner.close()


class UnavailableStore(SessionStore):
    """A store whose backend is down: every call raises, and is counted.

    It stands in for an outage in tests that need no real service.
    """

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    def _down(self, method: str) -> SessionStoreUnavailable:
        self.calls[method] += 1
        return SessionStoreUnavailable("the test store is down")

    async def read(self, key: StoreKey) -> bytes | None:
        """Always down."""
        raise self._down("read")

    async def create(self, key: StoreKey, data: bytes, ttl: int) -> bool:
        """Always down."""
        raise self._down("create")

    async def update(self, key: StoreKey, data: bytes, ttl: int) -> bool:
        """Always down."""
        raise self._down("update")

    async def append(self, key: StoreKey, data: bytes, ttl: int) -> bool:
        """Always down."""
        raise self._down("append")

    async def replace(self, key: StoreKey, expected: bytes, data: bytes, ttl: int) -> bool:
        """Always down."""
        raise self._down("replace")

    async def touch(self, key: StoreKey, ttl: int) -> None:
        """Always down."""
        raise self._down("touch")

    async def delete(self, key: StoreKey) -> None:
        """Always down."""
        raise self._down("delete")


# -- a Starlette app whose routes are plain functions of the request -----------

Handler = Callable[[Request], Awaitable[Any]]


def session_app(
    routes: Mapping[str, Handler],
    *,
    exception_handlers: Mapping[Any, Callable[..., Any]] | None = None,
    secret_key: str | None = SECRET,
    **middleware: Any,
) -> Starlette:
    """A Starlette app with our middleware and one route per ``routes`` entry.

    A handler returns a ``Response`` or anything JSON-serialisable (sent as
    ``JSONResponse``). ``middleware`` goes to :class:`SessionMiddleware`.
    """

    def endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            result = await handler(request)
            if isinstance(result, Response):
                return result
            return JSONResponse(result)

        return run

    return Starlette(
        routes=[
            Route(path, endpoint(handler), methods=["GET", "POST"])
            for path, handler in routes.items()
        ],
        middleware=[Middleware(SessionMiddleware, secret_key=secret_key, **middleware)],
        exception_handlers=dict(exception_handlers or {}),
    )


# -- a raw ASGI client, for requests that must overlap ---------------------------


@dataclass
class RawResponse:
    """What a raw request got back."""

    status: int = 0
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""

    def header_values(self, name: str) -> list[str]:
        """Every value of header ``name`` (case-insensitive)."""
        wanted = name.lower().encode("latin-1")
        return [v.decode("latin-1") for k, v in self.headers if k.lower() == wanted]

    @property
    def set_cookies(self) -> list[str]:
        """The Set-Cookie header values."""
        return self.header_values("set-cookie")


async def raw_request(
    app: ASGIApp, path: str = "/", *, cookie: str | None = None, name: str = "session"
) -> RawResponse:
    """Send one GET through ``app`` with our own ``receive``/``send``.

    Unlike a test client, several of these can run at once on one event loop.
    """
    headers = [(b"host", b"testserver")]
    if cookie is not None:
        headers.append((b"cookie", f"{name}={cookie}".encode("latin-1")))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode("ascii"),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "state": {},
    }
    response = RawResponse()
    sent_request = False

    async def receive() -> Message:
        nonlocal sent_request
        if not sent_request:
            sent_request = True
            return {"type": "http.request", "body": b"", "more_body": False}
        # Nothing more will come: wait like a connection that stays open.
        await anyio.sleep_forever()
        raise AssertionError("unreachable")  # pragma: no cover

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            response.status = message["status"]
            response.headers = list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            response.body += message.get("body", b"")

    await app(scope, receive, send)
    return response


# -- Set-Cookie helpers ----------------------------------------------------------


def cookie_line(set_cookies: Iterable[str], name: str = "session") -> str | None:
    """The Set-Cookie value for cookie ``name``, or ``None``."""
    for line in set_cookies:
        if line.startswith(name + "="):
            return line
    return None


def cookie_value(set_cookies: Iterable[str], name: str = "session") -> str | None:
    """The value that Set-Cookie gives cookie ``name``, or ``None`` if not set."""
    line = cookie_line(set_cookies, name)
    if line is None:
        return None
    return line.split(";", 1)[0][len(name) + 1 :]


def max_age_of(line: str) -> int | None:
    """The ``Max-Age`` attribute of a Set-Cookie line, or ``None`` if absent."""
    for part in line.split(";"):
        attr, _, value = part.strip().partition("=")
        if attr.lower() == "max-age":
            return int(value)
    return None


# -- the stores the request-level tests run against -------------------------------


@dataclass
class Backend:
    """One store configuration for parametrised tests.

    ``kind`` is ``"cookie"`` (encrypted cookie sessions, counted) or
    ``"memory"`` (a counted :class:`~asgi_sessions.stores.MemoryStore`).
    """

    kind: str
    store: CountingCookieStore | CountingStore

    @property
    def server(self) -> bool:
        """Whether sessions live server-side."""
        return self.kind != "cookie"

    @property
    def counting(self) -> CountingStore:
        """The counted server store (server backends only)."""
        assert isinstance(self.store, CountingStore)
        return self.store

    @property
    def cookies(self) -> CountingCookieStore:
        """The counted cookie store (cookie backends only)."""
        assert isinstance(self.store, CountingCookieStore)
        return self.store


ClientFactory = Callable[..., TestClient]
"""The type of the ``make_client`` fixture (``tests/conftest.py``)."""


def make_backend(kind: str, **store_kwargs: Any) -> Backend:
    """A fresh :class:`Backend` of ``kind`` (``"cookie"`` or ``"memory"``)."""
    if kind == "cookie":
        return Backend(kind, CountingCookieStore(**store_kwargs))
    if kind == "memory":
        from asgi_sessions.stores import MemoryStore

        return Backend(kind, CountingStore(MemoryStore(**store_kwargs)))
    raise ValueError(kind)


def in_loop(client: Any, function: Callable[..., Awaitable[T]], *args: Any) -> T:
    """Run ``function(*args)`` on the event loop of an entered ``TestClient``.

    The store then sees the same loop as the requests do.
    """
    portal = client.portal
    assert portal is not None, "enter the TestClient (with TestClient(app) as client)"
    result: T = portal.call(function, *args)
    return result
