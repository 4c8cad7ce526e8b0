"""Serializers that decode differently from JSON."""

from __future__ import annotations

import json
import json.scanner
import logging
import pickle
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.types import Receive, Send
from starlette.types import Scope as ASGIScope
from starlette.websockets import WebSocket

from asgi_sessions import SessionMiddleware, session_of
from asgi_sessions.errors import ImproperlyConfigured
from asgi_sessions.serializers import JSONSerializer
from asgi_sessions.stores import MemoryStore
from tests.apps import call

SECRET = "s" * 43


class _TupleJSON:
    """JSON whose arrays decode as tuples, like msgpack's ``use_list=False``."""

    def dumps(self, value: Any) -> bytes:
        return json.dumps(value).encode()

    def loads(self, data: bytes) -> Any:
        def tuples(value: Any) -> Any:
            if isinstance(value, list):
                return tuple(tuples(item) for item in value)
            if isinstance(value, dict):
                return {key: tuples(item) for key, item in value.items()}
            return value

        return tuples(json.loads(data))


async def _set(request: Request) -> JSONResponse:
    request.session.update(user="alice", flash="welcome")
    return JSONResponse({})


async def _pop(request: Request) -> JSONResponse:
    return JSONResponse({"flash": request.session.pop("flash", None)})


async def _show(request: Request) -> JSONResponse:
    return JSONResponse(dict(request.session))


def _app(store: MemoryStore, serializer: Any = None) -> Starlette:
    app = Starlette(
        routes=[
            Route("/set", _set),
            Route("/pop", _pop),
            Route("/show", _show),
        ]
    )
    options: dict[str, Any] = {} if serializer is None else {"serializer": serializer}
    app.add_middleware(SessionMiddleware, secret_key=SECRET, store=store, **options)
    return app


def test_a_removal_decoded_as_a_tuple_keeps_the_session() -> None:
    with TestClient(_app(MemoryStore(), _TupleJSON())) as client:
        client.get("/set")
        assert client.get("/pop").json() == {"flash": "welcome"}
        assert client.get("/show").json() == {"user": "alice"}


# A value the serializer cannot encode is the app's bug, but it must not cost
# the user a session that was fine, nor escape into the server after the
# response went out.


class _Unencodable:
    """A value no JSON serializer encodes."""


def _flush_app(store: MemoryStore) -> Starlette:
    async def relogin(request: Request) -> JSONResponse:
        session_of(request).flush()
        request.session["user"] = _Unencodable()
        return JSONResponse({})

    async def cycle(request: Request) -> JSONResponse:
        session_of(request).cycle_key()
        request.session["user"] = _Unencodable()
        return JSONResponse({})

    app = Starlette(
        routes=[
            Route("/set", _set),
            Route("/show", _show),
            Route("/relogin", relogin),
            Route("/cycle", cycle),
        ]
    )
    app.add_middleware(SessionMiddleware, secret_key=SECRET, store=store)
    return app


def test_an_unencodable_value_after_flush_keeps_the_old_record() -> None:
    store = MemoryStore()
    with TestClient(_flush_app(store), raise_server_exceptions=False) as client:
        client.get("/set")
        assert client.get("/relogin").status_code == 500
        # The 500 saved nothing: the flush did not delete the record either.
        assert client.get("/show").json() == {"user": "alice", "flash": "welcome"}
        assert client.get("/cycle").status_code == 500
        assert client.get("/show").json() == {"user": "alice", "flash": "welcome"}


def test_an_unencodable_value_after_flush_raises_the_serializer_error() -> None:
    with TestClient(_flush_app(MemoryStore())) as client:
        client.get("/set")
        with pytest.raises(TypeError, match="not JSON serializable"):
            client.get("/relogin")


# After the response went out (a websocket, or a body that changes the session
# after the headers) nobody is left to tell: the changes are dropped and logged,
# and nothing is raised into the server.


async def _websocket(app: Any, path: str, cookie: bytes) -> list[dict[str, Any]]:
    """Run one websocket connection to its end (tests.apps.call is HTTP only); what the app sent."""
    scope: dict[str, Any] = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "scheme": "ws",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver"), (b"cookie", cookie)],
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 1234),
        "subprotocols": [],
    }
    inbox: list[dict[str, Any]] = [{"type": "websocket.connect"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if inbox:
            return inbox.pop(0)
        await anyio.sleep(0.01)
        return {"type": "websocket.disconnect", "code": 1000}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


def _late_app(store: MemoryStore) -> Starlette:
    async def ws_close(websocket: WebSocket) -> None:
        await websocket.accept()
        websocket.session["user"] = _Unencodable()
        await websocket.close()

    async def ws_return(websocket: WebSocket) -> None:
        await websocket.accept()
        websocket.session["user"] = _Unencodable()

    async def ws_save(websocket: WebSocket) -> None:
        await websocket.accept()
        websocket.session["user"] = _Unencodable()
        try:
            await session_of(websocket).save()
        except TypeError:
            await websocket.send_text("TypeError")

    async def late(request: Request) -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            yield b"headers are out; "
            request.session["user"] = _Unencodable()
            yield b"done"

        return StreamingResponse(body())

    app = Starlette(
        routes=[
            Route("/set", _set),
            Route("/show", _show),
            Route("/late", late),
            WebSocketRoute("/ws-close", ws_close),
            WebSocketRoute("/ws-return", ws_return),
            WebSocketRoute("/ws-save", ws_save),
        ]
    )
    app.add_middleware(SessionMiddleware, secret_key=SECRET, store=store)
    return app


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("path", ["/ws-close", "/ws-return", "/ws-save", "/late"])
async def test_an_unencodable_value_after_the_response_is_dropped_and_logged(
    path: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = _late_app(MemoryStore())
    cookie = (await call(app, path="/set")).get_all(b"set-cookie")[0].split(b";")[0]
    with caplog.at_level(logging.WARNING, logger="asgi_sessions"):  # nothing raised
        if path == "/late":
            await call(app, [(b"cookie", cookie)], path=path)
            sent = []
        else:
            sent = await _websocket(app, path, cookie)
    if path == "/ws-close":
        assert sent[-1]["type"] == "websocket.close"  # the close frame still went out
    if path == "/ws-save":  # an explicit save raises the serializer's error in the handler
        assert {"type": "websocket.send", "text": "TypeError"} in sent
    dropped = [r for r in caplog.records if "could not be serialized" in r.getMessage()]
    assert len(dropped) == 1
    assert dropped[0].levelno == logging.ERROR
    assert "TypeError" in dropped[0].getMessage()
    assert cookie.split(b"=", 1)[1].decode() not in caplog.text
    shown = await call(app, [(b"cookie", cookie)], path="/show")
    assert shown.json() == {"user": "alice", "flash": "welcome"}


# A record nested deeper than the decoder's recursion allows (written by another
# process with a higher recursion limit, or encoded at a shallower stack than it
# is read at) is one we cannot read: a fresh session, not a 500 on every request.


class _DeepWriter:
    """JSON that spells the string "DEEP" as a list nested ``depth`` levels deep."""

    def __init__(self, depth: int) -> None:
        self._deep = b"[" * depth + b"]" * depth

    def dumps(self, value: Any) -> bytes:
        return json.dumps(value).encode().replace(b'"DEEP"', self._deep)

    def loads(self, data: bytes) -> Any:
        return json.loads(data)


def too_deep_for_json() -> int:
    """The least of a few depths of nested lists that the C JSON scanner refuses here.

    It depends on the interpreter: about 1,000 levels on 3.11, where the
    Python recursion limit applies; several thousand on 3.12+, where a C
    stack limit does.
    """
    for depth in (1_500, 3_000, 6_000, 12_000, 24_000, 48_000):
        try:
            json.loads("[" * depth + "]" * depth)
        except RecursionError:
            return depth
    pytest.fail("json.loads decoded 48,000 nested lists")


class _PyJSON:
    """JSON through the standard library's pure-Python scanner, which recurses in Python.

    So ``sys.getrecursionlimit()`` bounds it on every interpreter: a cookie
    nested 1,200 levels deep (small enough for one cookie) is too deep for it.
    """

    def __init__(self) -> None:
        scanner: Any = json.scanner  # typeshed does not list py_make_scanner
        self._scan = scanner.py_make_scanner(json.JSONDecoder())

    def dumps(self, value: Any) -> bytes:
        return json.dumps(value).encode()

    def loads(self, data: bytes) -> Any:
        value, _ = self._scan(data.decode(), 0)
        return value


def _deep_app(store: MemoryStore | None, serializer: Any = None) -> Starlette:
    async def deep(request: Request) -> JSONResponse:
        request.session.update(user="alice", tree="DEEP")
        return JSONResponse({})

    app = Starlette(routes=[Route("/deep", deep), Route("/show", _show), Route("/set", _set)])
    options: dict[str, Any] = {} if serializer is None else {"serializer": serializer}
    if store is not None:
        options["store"] = store
    app.add_middleware(SessionMiddleware, secret_key=SECRET, **options)
    return app


@pytest.mark.parametrize("server", [True, False], ids=["server-store", "cookie"])
def test_a_record_nested_too_deeply_to_decode_is_a_fresh_session(
    server: bool, caplog: pytest.LogCaptureFixture
) -> None:
    # A server record can be as deep as the default serializer refuses; a
    # cookie must fit in 4 KB, so it is read with a serializer that recurses
    # in Python (the default's C scanner takes thousands of levels on 3.12+).
    store = MemoryStore() if server else None
    writer = _deep_app(store, _DeepWriter(too_deep_for_json() if server else 1_200))
    with TestClient(writer) as client:
        client.get("/deep")
        cookie = client.cookies["session"]
    sent = {"cookie": f"session={cookie}"}
    with (
        TestClient(_deep_app(store, None if server else _PyJSON())) as client,
        caplog.at_level(logging.DEBUG, logger="asgi_sessions"),
    ):
        response = client.get("/show", headers=sent)
        assert response.status_code == 200
        assert response.json() == {}
        assert "malformed" in caplog.text
        # A record the store holds is ours: the operator hears of it. A
        # cookie, which the browser replays on every request, stays at DEBUG.
        warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(warned) == (1 if server else 0)
        assert all("could not be decoded" in message for message in warned)
        client.get("/set", headers=sent)  # the session goes on, under a fresh id
        assert client.get("/show").json() == {"user": "alice", "flash": "welcome"}


# A serializer that cannot work is refused when the middleware is built, not
# found out at the first write (a 500) or, worse, at every read (sessions that
# silently start empty).


async def _bare(scope: ASGIScope, receive: Receive, send: Send) -> None:
    """An ASGI app that is never called: these tests build middleware only."""


class _BytesKeys:
    """msgpack with ``raw=True``, in effect: strings come back as bytes."""

    def dumps(self, value: Any) -> bytes:
        return json.dumps(value).encode()

    def loads(self, data: bytes) -> Any:
        def raw(value: Any) -> Any:
            if isinstance(value, dict):
                return {key.encode(): raw(item) for key, item in value.items()}
            return value.encode() if isinstance(value, str) else value

        return raw(json.loads(data))


class _NoLoads:
    def dumps(self, value: Any) -> bytes:
        return b""


@pytest.mark.parametrize(
    ("serializer", "message"),
    [
        (pickle, "run code"),
        (json, "must return bytes, not str"),
        (JSONSerializer, "class passed instead of an instance"),
        (_BytesKeys(), "did not give back"),
        (_NoLoads(), "must have dumps"),
    ],
    ids=["pickle", "json-module", "a-class", "bytes-strings", "no-loads"],
)
@pytest.mark.parametrize("server", [True, False], ids=["server-store", "cookie"])
def test_a_serializer_that_cannot_work_is_refused_at_construction(
    serializer: Any, message: str, server: bool
) -> None:
    options: dict[str, Any] = {"store": MemoryStore()} if server else {}
    with pytest.raises(ImproperlyConfigured, match=message):
        SessionMiddleware(_bare, secret_key=SECRET, serializer=serializer, **options)


class _Falsy(_TupleJSON):
    def __len__(self) -> int:
        return 0


@pytest.mark.parametrize("serializer", [_TupleJSON(), _Falsy()], ids=["tuples", "falsy"])
def test_a_serializer_that_works_is_taken_as_given(serializer: Any) -> None:
    middleware = SessionMiddleware(_bare, secret_key=SECRET, serializer=serializer)
    assert middleware.backend.serializer is serializer


class _OrderedJSON:
    """JSON whose objects decode as ``OrderedDict`` (``object_pairs_hook``)."""

    def dumps(self, value: Any) -> bytes:
        return json.dumps(value).encode()

    def loads(self, data: bytes) -> Any:
        return json.loads(data, object_pairs_hook=OrderedDict)


@pytest.mark.parametrize("server", [True, False], ids=["server-store", "cookie"])
def test_a_mapping_decoded_as_a_dict_subclass_keeps_the_session(server: bool) -> None:
    store = MemoryStore() if server else None
    options: dict[str, Any] = {"store": store} if server else {}
    app = Starlette(routes=[Route("/set", _set), Route("/show", _show)])
    app.add_middleware(SessionMiddleware, secret_key=SECRET, serializer=_OrderedJSON(), **options)
    with TestClient(app) as client:
        client.get("/set")
        assert client.get("/show").json() == {"user": "alice", "flash": "welcome"}
