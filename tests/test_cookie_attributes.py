"""The attributes of every Set-Cookie line, and the cookie names refused up front.

``HttpOnly`` by default (``http_only=False`` drops it), ``Secure`` from
``https_only``, ``SameSite``, ``Domain``, ``Path`` (also for an app under a
``Mount``), ``partitioned`` and ``Max-Age``, spelled and ordered exactly as
Starlette's own ``SessionMiddleware`` spells them (checked against the real
thing, setting and deleting). Deleting cookies, chunks included, reuses the
same path and domain. ``__Host-``/``__Secure-`` names and invalid names are
refused at construction with the reason. ``Vary: Cookie`` is added only when
the session was accessed, merged into an existing ``Vary``. A cookie session
changed after the response headers were sent raises ``SessionError``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware as StarletteSessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.testclient import TestClient
from starlette.types import Receive, Scope, Send

from asgi_sessions import SessionMiddleware
from asgi_sessions.errors import ImproperlyConfigured, SessionError
from asgi_sessions.stores import EncryptedCookieStore
from tests.apps import SECRET, SetCookie, call, set_cookies

DATA = {"user": "alice"}
EXPIRED = "expires=Thu, 01 Jan 1970 00:00:00 GMT"


# -- apps ----------------------------------------------------------------------------


async def _show(request: Request) -> Response:
    return JSONResponse(request.session.copy())


async def _set(request: Request) -> Response:
    request.session.update(DATA)
    return JSONResponse(request.session.copy())


async def _clear(request: Request) -> Response:
    request.session.clear()
    return JSONResponse({})


async def _grow(request: Request) -> Response:
    request.session["blob"] = "".join(f"{i:05d}" for i in range(2000))
    return JSONResponse({})


async def _untouched(request: Request) -> Response:
    return PlainTextResponse("untouched")


async def _vary(request: Request) -> Response:
    request.session.get("user")
    return PlainTextResponse("vary", headers={"Vary": request.query_params["vary"]})


async def _untouched_vary(request: Request) -> Response:
    return PlainTextResponse("vary", headers={"Vary": "Accept-Encoding"})


ROUTES = [
    Route("/", _show),
    Route("/set", _set),
    Route("/clear", _clear),
    Route("/grow", _grow),
    Route("/untouched", _untouched),
    Route("/vary", _vary),
    Route("/untouched-vary", _untouched_vary),
]


def _app(middleware: type = SessionMiddleware, **options: Any) -> Starlette:
    options.setdefault("secret_key", SECRET)
    return Starlette(routes=ROUTES, middleware=[Middleware(middleware, **options)])


def _get(app: Any, path: str, cookie: str | None = None) -> Any:
    """One request from a fresh client (no cookie jar in the way)."""
    headers = {} if cookie is None else {"cookie": cookie}
    with TestClient(app, base_url="https://testserver") as client:
        return client.get(path, headers=headers)


def _set_line(middleware: type = SessionMiddleware, **options: Any) -> SetCookie:
    """The Set-Cookie line for a session saved for the first time."""
    name = options.get("session_cookie", "session")
    return set_cookies(_get(_app(middleware, **options), "/set"))[name]


def _delete_line(middleware: type = SessionMiddleware, **options: Any) -> SetCookie:
    """The Set-Cookie line that deletes the cookie when the session is cleared."""
    name = options.get("session_cookie", "session")
    app = _app(middleware, **options)
    value = set_cookies(_get(app, "/set"))[name].value
    line = set_cookies(_get(app, "/clear", f"{name}={value}"))[name]
    assert line.deletes
    return line


def _tail(line: SetCookie) -> str:
    """Everything after the value: the attributes as written, in order."""
    return line.line.split("; ", 1)[1]


# -- each attribute ----------------------------------------------------------------------


def test_default_line() -> None:
    line = _set_line()
    assert line.name == "session"
    assert _tail(line) == "path=/; Max-Age=1209600; httponly; samesite=lax"


def test_http_only_by_default_and_http_only_false_drops_it() -> None:
    assert "httponly" in _set_line().attributes
    line = _set_line(http_only=False)
    assert "httponly" not in line.line.lower()
    assert _tail(line) == "path=/; Max-Age=1209600; samesite=lax"


def test_secure_comes_from_https_only() -> None:
    assert "secure" not in _set_line().attributes
    assert "secure" in _set_line(https_only=True).attributes


@pytest.mark.parametrize("same_site", ["lax", "strict", "none"])
def test_same_site(same_site: str) -> None:
    assert _set_line(same_site=same_site, https_only=True).attribute("samesite") == same_site


def test_invalid_same_site_is_refused_at_construction() -> None:
    with pytest.raises(ImproperlyConfigured, match="same_site"):
        SessionMiddleware(_untouched, SECRET, same_site="sometimes")  # type: ignore[arg-type]


def test_domain_and_path() -> None:
    line = _set_line(domain="example.com", path="/admin")
    assert line.attribute("domain") == "example.com"
    assert line.attribute("path") == "/admin"
    assert _set_line().attribute("domain") is None


def test_partitioned() -> None:
    line = _set_line(partitioned=True, https_only=True)
    assert line.attributes[-1] == "partitioned"
    assert "partitioned" not in _set_line(https_only=True).attributes


def test_partitioned_without_secure_warns() -> None:
    with pytest.warns(UserWarning, match="partitioned"):
        SessionMiddleware(_untouched, SECRET, partitioned=True)


def test_max_age_none_makes_a_browser_session_cookie() -> None:
    line = _set_line(max_age=None)
    assert line.attribute("max-age") is None
    assert line.attribute("expires") is None


# -- exact spelling and order, against Starlette ------------------------------------------

OPTIONS = [
    {},
    {"https_only": True},
    {"same_site": "strict"},
    {"same_site": "none", "https_only": True},
    {"domain": "example.com"},
    {"path": "/admin"},
    {"partitioned": True, "https_only": True},
    {"max_age": None},
    {"max_age": 60, "session_cookie": "sid"},
    {
        "session_cookie": "__Host-sid",
        "max_age": 3600,
        "same_site": "strict",
        "https_only": True,
        "partitioned": True,
    },
    {
        "session_cookie": "__Secure-sid",
        "path": "/app",
        "domain": "example.com",
        "same_site": "none",
        "https_only": True,
        "partitioned": True,
    },
]


@pytest.mark.parametrize("options", OPTIONS, ids=lambda options: repr(options))
def test_set_cookie_spelled_and_ordered_as_starlette(options: dict[str, Any]) -> None:
    ours, theirs = _set_line(**options), _set_line(StarletteSessionMiddleware, **options)
    assert ours.name == theirs.name
    assert _tail(ours) == _tail(theirs)


@pytest.mark.parametrize("options", OPTIONS, ids=lambda options: repr(options))
def test_delete_cookie_spelled_and_ordered_as_starlette(options: dict[str, Any]) -> None:
    ours, theirs = _delete_line(**options), _delete_line(StarletteSessionMiddleware, **options)
    assert ours.line == theirs.line
    assert ours.value == "null"
    assert ours.attribute("path") == options.get("path", "/")
    assert ours.attribute("domain") == options.get("domain")


def test_deleting_stale_chunks_reuses_path_and_domain() -> None:
    store = EncryptedCookieStore(SECRET, chunked=True)
    options = {"store": store, "path": "/admin", "domain": "example.com", "https_only": True}
    app = _app(**options)
    cookies = set_cookies(_get(app, "/grow"))
    assert len(cookies) >= 3
    jar = "; ".join(f"{c.name}={c.value}" for c in cookies.values())
    deleted = set_cookies(_get(app, "/clear", jar))
    assert set(deleted) == set(cookies)
    tail = f"path=/admin; {EXPIRED}; httponly; samesite=lax; secure; domain=example.com"
    for name, line in deleted.items():
        assert line.deletes
        assert line.line == f"{name}=null; {tail}"


# -- under a Mount ----------------------------------------------------------------------------


def _mounted(middleware: type = SessionMiddleware, **options: Any) -> Starlette:
    return Starlette(routes=[Mount("/admin", app=_app(middleware, **options))])


def test_path_under_a_mount() -> None:
    app = _mounted(path="/admin")
    line = set_cookies(_get(app, "/admin/set"))["session"]
    assert line.attribute("path") == "/admin"
    assert _get(app, "/admin/", f"session={line.value}").json() == DATA
    deleted = set_cookies(_get(app, "/admin/clear", f"session={line.value}"))["session"]
    assert deleted.deletes
    assert deleted.attribute("path") == "/admin"


@pytest.mark.parametrize("options", [{}, {"path": "/admin"}], ids=["default-path", "mount-path"])
def test_path_under_a_mount_is_the_configured_one_as_in_starlette(options: dict[str, Any]) -> None:
    ours = set_cookies(_get(_mounted(**options), "/admin/set"))["session"]
    theirs = set_cookies(_get(_mounted(StarletteSessionMiddleware, **options), "/admin/set"))
    assert _tail(ours) == _tail(theirs["session"])


# -- cookie names --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "options", "reason"),
    [
        ("__Host-sid", {}, "Secure"),
        ("__Host-sid", {"https_only": True, "path": "/admin"}, "path='/'"),
        ("__Host-sid", {"https_only": True, "domain": "example.com"}, "no domain"),
        ("__host-sid", {}, "Secure"),
        ("__HOST-sid", {"https_only": True, "path": "/x"}, "path='/'"),
        ("__Secure-sid", {}, "https_only=True"),
        ("__secure-sid", {"domain": "example.com"}, "https_only=True"),
    ],
)
def test_prefixed_names_browsers_would_drop_are_refused_with_the_reason(
    name: str, options: dict[str, Any], reason: str
) -> None:
    with pytest.raises(ImproperlyConfigured, match=reason) as caught:
        SessionMiddleware(_untouched, SECRET, session_cookie=name, **options)
    assert name in str(caught.value)


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("__Host-sid", {"https_only": True}),
        ("__Secure-sid", {"https_only": True}),
        ("__Secure-sid", {"https_only": True, "path": "/app", "domain": "example.com"}),
    ],
)
def test_valid_prefixed_names(name: str, options: dict[str, Any]) -> None:
    line = _set_line(session_cookie=name, **options)
    assert line.name == name
    assert "secure" in line.attributes


@pytest.mark.parametrize(
    "name", ["", "a b", "a;b", "a=b", "a,b", 'a"b', "sé", "a\tb", "(sid)", "a/b", "a\nb"]
)
def test_invalid_cookie_names_are_refused_at_construction(name: str) -> None:
    with pytest.raises(ImproperlyConfigured, match="not a valid cookie name"):
        SessionMiddleware(_untouched, SECRET, session_cookie=name)


@pytest.mark.parametrize("name", ["sid", "my-session", "a.b", "SESSION_ID", "x!#$%&'*+^`|~"])
def test_valid_cookie_names(name: str) -> None:
    assert _set_line(session_cookie=name).name == name


# -- Vary ----------------------------------------------------------------------------------


def test_vary_cookie_only_when_the_session_was_accessed() -> None:
    app = _app()
    value = set_cookies(_get(app, "/set"))["session"].value
    assert _get(app, "/set").headers.get_list("vary") == ["Cookie"]
    assert _get(app, "/", f"session={value}").headers.get_list("vary") == ["Cookie"]
    assert _get(app, "/").headers.get_list("vary") == ["Cookie"]  # read, even if empty
    untouched = _get(app, "/untouched", f"session={value}")
    assert untouched.headers.get_list("vary") == []
    assert untouched.headers.get_list("set-cookie") == []
    assert _get(app, "/untouched-vary").headers.get_list("vary") == ["Accept-Encoding"]


@pytest.mark.parametrize("vary", ["Accept-Encoding", "Accept-Encoding, Origin", "Cookie", "origin"])
def test_vary_is_merged_into_an_existing_header_as_starlette_does(vary: str) -> None:
    ours = _get(_app(), f"/vary?vary={vary}").headers.get_list("vary")
    assert len(ours) == 1
    if vary == "Cookie":
        assert ours == ["Cookie"]  # not "Cookie, Cookie"
        return
    theirs = _get(_app(StarletteSessionMiddleware), f"/vary?vary={vary}").headers.get_list("vary")
    assert ours == theirs == [f"{vary}, Cookie"]


# -- changes after the headers were sent -----------------------------------------------------


def _late(change: bool, *, touch_first: bool = False) -> Any:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if touch_first:
            scope["session"].get("user")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        scope["session"].get("user")  # reading stays allowed
        if change:
            scope["session"]["x"] = 1
        await send({"type": "http.response.body", "body": b"late"})

    return app


@pytest.mark.parametrize("touch_first", [False, True], ids=["untouched", "read-before"])
def test_change_after_headers_were_sent_raises_session_error(touch_first: bool) -> None:
    app = SessionMiddleware(_late(change=True, touch_first=touch_first), SECRET)
    with pytest.raises(SessionError, match="after the response headers were sent"):
        asyncio.run(call(app))


def test_reading_after_headers_were_sent_is_fine() -> None:
    reply = asyncio.run(call(SessionMiddleware(_late(change=False), SECRET)))
    assert reply.status == 200
    assert reply.body == b"late"
    assert reply.get_all(b"set-cookie") == []


@pytest.mark.parametrize(
    "change",
    [
        lambda s: s.update(DATA),
        lambda s: s.clear(),
        lambda s: s.pop("user", None) or s.mark_modified(),
        lambda s: s.setdefault("x", 1),
        lambda s: s.flush(),
    ],
    ids=["update", "clear", "mark_modified", "setdefault", "flush"],
)
def test_every_kind_of_late_change_raises(change: Any) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        change(scope["session"])

    with pytest.raises(SessionError):
        asyncio.run(call(SessionMiddleware(app, SECRET)))


def test_a_background_task_changing_a_cookie_session_raises() -> None:
    async def later(request: Request) -> None:
        request.session["x"] = 1

    async def endpoint(request: Request) -> Response:
        return PlainTextResponse("ok", background=BackgroundTask(later, request))

    app = Starlette(
        routes=[Route("/", endpoint)], middleware=[Middleware(SessionMiddleware, SECRET)]
    )
    with TestClient(app) as client, pytest.raises(SessionError):
        client.get("/")
