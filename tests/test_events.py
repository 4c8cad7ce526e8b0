"""Session lifecycle events: the log records and the ``on_event`` metrics hook.

Each event (created, cycled, flushed, expired, rejected) is produced through
the real middleware and a real store, and checked three ways: the hook got a
:class:`SessionEvent`, the ``asgi_sessions`` logger got a record with the
structured attributes, and no log line holds a session id or cookie value.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from asgi_sessions import SessionMiddleware, session_of
from asgi_sessions.crypto import store_key
from asgi_sessions.errors import ImproperlyConfigured
from asgi_sessions.events import SessionEvent, id_hash
from asgi_sessions.stores import MemoryStore
from tests.apps import SECRET
from tests.instrumented import CountingCookieStore

LOGGER = "asgi_sessions"


async def _set(request: Request) -> Response:
    request.session.update(dict(request.query_params))
    return JSONResponse(request.session.copy())


async def _read(request: Request) -> Response:
    return JSONResponse(request.session.copy())


async def _untouched(request: Request) -> Response:
    return PlainTextResponse("untouched")


async def _cycle(request: Request) -> Response:
    await session_of(request).acycle_key()
    return PlainTextResponse("cycled")


async def _flush(request: Request) -> Response:
    await session_of(request).aflush()
    return PlainTextResponse("flushed")


async def _flush_raw(request: Request) -> Response:
    # From the scope, not request.session: the cookie is not opened first.
    session_of(request.scope).flush()
    return PlainTextResponse("flushed")


async def _flush_then_fail(request: Request) -> Response:
    await session_of(request).aflush()
    return PlainTextResponse("boom", status_code=500)


def _app(events: list[SessionEvent], **options: Any) -> Starlette:
    routes = [
        Route("/set", _set),
        Route("/read", _read),
        Route("/untouched", _untouched),
        Route("/cycle", _cycle),
        Route("/flush", _flush),
        Route("/flush-raw", _flush_raw),
        Route("/flush-then-fail", _flush_then_fail),
    ]
    middleware = [Middleware(SessionMiddleware, on_event=events.append, **options)]
    return Starlette(routes=routes, middleware=middleware)


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    return caplog


def _names(events: list[SessionEvent]) -> list[str]:
    return [event.name for event in events]


def _event_records(records: list[logging.LogRecord]) -> list[logging.LogRecord]:
    return [r for r in records if hasattr(r, "session_event")]


def _assert_no_secrets(records: list[logging.LogRecord], *secrets: str) -> None:
    for record in records:
        text = record.getMessage() + repr(record.__dict__)
        for secret in secrets:
            assert secret not in text, "a log record holds a session id or cookie value"


# -- cookie sessions ------------------------------------------------------------------


def test_cookie_session_lifecycle(logs: pytest.LogCaptureFixture) -> None:
    events: list[SessionEvent] = []
    with TestClient(_app(events, secret_key=SECRET)) as client:
        client.get("/untouched")
        assert events == []
        client.get("/set", params={"user": "ada"})
        assert events == [SessionEvent("created")]
        token = client.cookies["session"]
        client.get("/read")
        client.get("/set", params={"cart": "1"})
        assert _names(events) == ["created"], "reads and updates are not events"
        client.get("/cycle")
        assert _names(events) == ["created", "cycled"]
        client.get("/flush")
        assert _names(events) == ["created", "cycled", "flushed"]
        assert all(event.id_hash is None for event in events), "cookie sessions have no id"
    logged = _event_records(logs.records)
    assert [r.session_event for r in logged] == ["created", "cycled", "flushed"]  # type: ignore[attr-defined]
    assert {r.levelno for r in logged} == {logging.INFO}
    _assert_no_secrets(logs.records, token, SECRET)


def test_cookie_rejected_and_expired_say_why(logs: pytest.LogCaptureFixture) -> None:
    events: list[SessionEvent] = []
    app = _app(events, secret_key=SECRET, max_age=1)
    with TestClient(app) as client:
        client.get("/set", params={"a": "1"})
        token = client.cookies["session"]
        events.clear()
        client.cookies.clear()  # one session cookie, as a browser would hold
        client.cookies["session"] = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
        assert client.get("/read").json() == {}
        assert events == [SessionEvent("rejected", reason="it does not verify")]
    rejected = [r for r in logs.records if getattr(r, "session_event", None) == "rejected"]
    assert rejected
    assert rejected[0].levelno == logging.DEBUG
    assert rejected[0].session_reason == "it does not verify"  # type: ignore[attr-defined]
    assert rejected[0].session_id_hash is None  # type: ignore[attr-defined]
    _assert_no_secrets(logs.records, token)


@pytest.mark.parametrize("route", ["/read", "/flush"])
def test_expired_cookie_is_an_expired_event(monkeypatch: pytest.MonkeyPatch, route: str) -> None:
    # A logout with an expired cookie ends nothing: "expired", never "flushed".
    from asgi_sessions import session as session_module

    events: list[SessionEvent] = []
    with TestClient(_app(events, secret_key=SECRET, max_age=60)) as client:
        client.get("/set", params={"a": "1"})
        clock = session_module._time
        monkeypatch.setattr(session_module, "_time", lambda: clock() + 120)
        events.clear()
        response = client.get(route)
        if route == "/read":
            assert response.json() == {}
        assert events == [SessionEvent("expired", reason="cookie")]


def test_a_failed_response_logs_no_flush() -> None:
    events: list[SessionEvent] = []
    with TestClient(_app(events, secret_key=SECRET), raise_server_exceptions=False) as client:
        client.get("/set", params={"a": "1"})
        events.clear()
        assert client.get("/flush-then-fail").status_code == 500
        assert events == [], "nothing was saved, so nothing happened"
        assert client.get("/read").json() == {"a": "1"}


@pytest.mark.parametrize("path", ["/flush", "/flush-raw"])
def test_a_cookie_logout_is_flushed_only_if_the_cookie_opened(path: str) -> None:
    # A logout sent with a cookie that was refused ended no session: it is
    # reported as rejected, and counting it as flushed would over-count
    # logouts (after a key rotation, say). The cookie is deleted either way.
    events: list[SessionEvent] = []
    with TestClient(_app(events, secret_key=SECRET)) as client:
        client.get("/set", params={"a": "1"})
        events.clear()
        response = client.get(path)
        assert events == [SessionEvent("flushed")]
        assert "session=null" in response.headers["set-cookie"]
        events.clear()
        client.cookies["session"] = "garbage"
        response = client.get(path)
        assert events == [SessionEvent("rejected", reason="it does not verify")]
        assert "session=null" in response.headers["set-cookie"]


@pytest.mark.parametrize("listening", [False, True])
def test_a_cookie_logout_decrypts_only_where_the_event_is_seen(
    logs: pytest.LogCaptureFixture, listening: bool
) -> None:
    # Telling a real logout from a refused cookie takes a decrypt, which a
    # logout that nobody counts does not pay.
    logs.set_level(logging.INFO if listening else logging.WARNING, logger=LOGGER)
    cookies = CountingCookieStore(SECRET)
    app = Starlette(
        routes=[Route("/set", _set), Route("/flush-raw", _flush_raw)],
        middleware=[Middleware(SessionMiddleware, store=cookies)],
    )
    with TestClient(app) as client:
        client.get("/set", params={"a": "1"})
        cookies.reset()
        response = client.get("/flush-raw")
    assert "session=null" in response.headers["set-cookie"]
    assert (cookies.opens, cookies.seals) == ((1, 0) if listening else (0, 0))
    flushed = [r for r in logs.records if getattr(r, "session_event", None) == "flushed"]
    assert len(flushed) == (1 if listening else 0)


# -- server sessions ------------------------------------------------------------------


def test_server_session_lifecycle_carries_the_id_hash(logs: pytest.LogCaptureFixture) -> None:
    events: list[SessionEvent] = []
    with TestClient(_app(events, store=MemoryStore())) as client:
        client.get("/set", params={"user": "ada"})
        first = client.cookies["session"]
        client.get("/read")
        client.get("/cycle")
        second = client.cookies["session"]
        client.get("/flush")
    assert events == [
        SessionEvent("created", id_hash(first)),
        SessionEvent("cycled", id_hash(second)),
        SessionEvent("flushed", id_hash(second)),
    ]
    # The hash is the start of the store key: an operator can find the record.
    assert store_key(first).startswith(events[0].id_hash or "-")
    assert len(events[0].id_hash or "") == 12
    messages = [r.getMessage() for r in _event_records(logs.records)]
    assert messages == [
        f"session created ({id_hash(first)})",
        f"session cycled ({id_hash(second)})",
        f"session flushed ({id_hash(second)})",
    ]
    _assert_no_secrets(logs.records, first, second)


def test_server_rejections(logs: pytest.LogCaptureFixture) -> None:
    events: list[SessionEvent] = []
    store = MemoryStore()
    with TestClient(_app(events, store=store)) as client:
        client.cookies["session"] = "not-an-id"
        client.get("/read")
        assert events == [SessionEvent("rejected", reason="not a well-formed session id")]
        events.clear()
        unknown = "A" * 43
        client.cookies["session"] = unknown
        client.get("/read")
        assert events == [SessionEvent("rejected", id_hash(unknown), "unknown id")]
    _assert_no_secrets(logs.records, unknown)


@pytest.mark.parametrize("autoload", [True, False])
def test_a_server_logout_of_an_unknown_id_is_not_flushed(autoload: bool) -> None:
    # An id the store does not hold (expired by its TTL, or never ours), found
    # by the load (autoload) or only by the logout's delete (no load).
    events: list[SessionEvent] = []
    with TestClient(_app(events, store=MemoryStore(), autoload=autoload)) as client:
        unknown = "A" * 43
        client.cookies["session"] = unknown
        response = client.get("/flush")
        assert "session=null" in response.headers["set-cookie"]
    rejected = SessionEvent("rejected", id_hash(unknown), "unknown id")
    assert events == ([rejected] if autoload else [])


@pytest.mark.parametrize("route", ["/read", "/flush"])
def test_expired_server_record(monkeypatch: pytest.MonkeyPatch, route: str) -> None:
    # A logout of an expired record ends nothing: "expired", never "flushed".
    from asgi_sessions import session as session_module

    events: list[SessionEvent] = []
    with TestClient(_app(events, store=MemoryStore(), absolute_timeout=60)) as client:
        client.get("/set", params={"a": "1"})
        sid = client.cookies["session"]
        clock = session_module._time
        monkeypatch.setattr(session_module, "_time", lambda: clock() + 120)
        events.clear()
        response = client.get(route)
        if route == "/read":
            assert response.json() == {}
        assert events == [SessionEvent("expired", id_hash(sid), "record")]


def test_a_broken_hook_never_breaks_a_request(logs: pytest.LogCaptureFixture) -> None:
    def explode(event: SessionEvent) -> None:
        raise RuntimeError("metrics backend down")

    app = Starlette(
        routes=[Route("/set", _set)],
        middleware=[Middleware(SessionMiddleware, secret_key=SECRET, on_event=explode)],
    )
    with TestClient(app) as client:
        response = client.get("/set", params={"a": "1"})
    assert response.status_code == 200
    assert "session" in response.cookies
    assert any("on_event hook raised" in r.getMessage() for r in logs.records)


def test_events_cost_nothing_when_nobody_listens(
    logs: pytest.LogCaptureFixture,
) -> None:
    logs.set_level(logging.WARNING, logger=LOGGER)
    app = Starlette(
        routes=[Route("/set", _set)],
        middleware=[Middleware(SessionMiddleware, secret_key=SECRET)],
    )
    with TestClient(app) as client:
        assert client.get("/set", params={"a": "1"}).status_code == 200
    assert _event_records(logs.records) == []


async def _async_hook(event: SessionEvent) -> None:  # pragma: no cover - never called
    pass


class _AsyncCallable:
    async def __call__(self, event: SessionEvent) -> None:  # pragma: no cover - never called
        pass


@pytest.mark.parametrize("hook", [_async_hook, _AsyncCallable()])
def test_an_async_hook_is_refused_at_construction(hook: Any) -> None:
    # It is called synchronously: the coroutine would never be awaited, and
    # the metrics would silently stay at zero.
    with pytest.raises(ImproperlyConfigured, match="not async"):
        SessionMiddleware(Starlette(), secret_key=SECRET, on_event=hook)
