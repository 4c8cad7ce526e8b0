"""The attributes of every Set-Cookie line, and the cookie names refused up front.

``HttpOnly`` by default (``http_only=False`` drops it), ``Secure`` from
``https_only``, ``SameSite``, ``Domain``, ``Path``, ``partitioned`` and
``Max-Age``, spelled and ordered exactly as Starlette's own
``SessionMiddleware`` spells them (checked against the real thing, setting
and deleting). The line that deletes a cookie, chunks included, repeats the
path, domain and flags of the line that set it. Under a ``Mount`` the cookie
is scoped to the configured path: a browser sends it there and nowhere else,
and deleting it uses that path too. ``__Host-``/``__Secure-`` names, whatever
the case of the prefix, and invalid names are refused at construction with
the reason. ``Vary: Cookie`` is added only when the session was accessed,
merged into an existing ``Vary`` and left out when that already names the
cookie. A cookie session changed after the response headers were sent raises
``SessionError``, at the change and up to the server; the change is not
applied and no cookie is sent. Reading it late stays allowed.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
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
from starlette.types import ASGIApp, Receive, Scope, Send

from asgi_sessions import Session, SessionMiddleware
from asgi_sessions.errors import ImproperlyConfigured, SessionError
from asgi_sessions.stores import EncryptedCookieStore
from tests.apps import SECRET, SetCookie, call, echo_session, set_cookies

MiddlewareFactory = Callable[..., ASGIApp]
"""Our ``SessionMiddleware`` or Starlette's, to compare what each one sends."""

DATA = {"user": "alice"}
EXPIRED = "expires=Thu, 01 Jan 1970 00:00:00 GMT"

# Starlette's own middleware takes ``partitioned`` from 1.7 on; we support 1.0 and later.
STARLETTE_PARTITIONS = "partitioned" in inspect.signature(StarletteSessionMiddleware).parameters


def _comparable(options: dict[str, Any]) -> None:
    """Skip a comparison the installed Starlette cannot make."""
    if options.get("partitioned") and not STARLETTE_PARTITIONS:
        pytest.skip("this Starlette's SessionMiddleware has no partitioned= (added in 1.7)")


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


def _app(middleware: MiddlewareFactory = SessionMiddleware, **options: Any) -> Starlette:
    options.setdefault("secret_key", SECRET)
    return Starlette(routes=ROUTES, middleware=[Middleware(middleware, **options)])


def _get(app: Any, path: str, cookie: str | None = None) -> Any:
    """One request from a fresh client (no cookie jar in the way)."""
    headers = {} if cookie is None else {"cookie": cookie}
    with TestClient(app, base_url="https://testserver") as client:
        return client.get(path, headers=headers)


def _set_line(middleware: MiddlewareFactory = SessionMiddleware, **options: Any) -> SetCookie:
    """The Set-Cookie line for a session saved for the first time."""
    name = options.get("session_cookie", "session")
    return set_cookies(_get(_app(middleware, **options), "/set"))[name]


def _delete_line(middleware: MiddlewareFactory = SessionMiddleware, **options: Any) -> SetCookie:
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


@pytest.mark.parametrize("https_only", [False, True], ids=["http", "https"])
@pytest.mark.parametrize("same_site", ["lax", "strict", "none"])
def test_same_site(same_site: str, https_only: bool) -> None:
    line = _set_line(same_site=same_site, https_only=https_only)
    assert line.attribute("samesite") == same_site


@pytest.mark.parametrize("same_site", ["Lax", "STRICT", "None"])
def test_same_site_in_any_case_as_starlette_takes_it(same_site: str) -> None:
    line = _set_line(same_site=same_site, https_only=True)
    assert line.attribute("samesite") == same_site.lower()


def test_invalid_same_site_is_refused_at_construction() -> None:
    with pytest.raises(ImproperlyConfigured, match="same_site"):
        SessionMiddleware(echo_session, SECRET, same_site="sometimes")  # type: ignore[arg-type]


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
        SessionMiddleware(echo_session, SECRET, partitioned=True)


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
    {
        "session_cookie": "sid",
        "max_age": 60,
        "path": "/p",
        "same_site": "strict",
        "https_only": True,
        "domain": "a.example.org",
        "partitioned": True,
    },
]


@pytest.mark.parametrize("options", OPTIONS, ids=lambda options: repr(options))
def test_set_cookie_spelled_and_ordered_as_starlette(options: dict[str, Any]) -> None:
    _comparable(options)
    ours, theirs = _set_line(**options), _set_line(StarletteSessionMiddleware, **options)
    assert ours.name == theirs.name
    assert _tail(ours) == _tail(theirs)


@pytest.mark.parametrize("options", OPTIONS, ids=lambda options: repr(options))
def test_delete_cookie_spelled_and_ordered_as_starlette(options: dict[str, Any]) -> None:
    _comparable(options)
    ours, theirs = _delete_line(**options), _delete_line(StarletteSessionMiddleware, **options)
    assert ours.line == theirs.line
    assert ours.value == "null"
    assert ours.attribute("path") == options.get("path", "/")
    assert ours.attribute("domain") == options.get("domain")
    # Whatever Starlette does: the deleting line repeats what the setting line said.
    made = _set_line(**options)
    assert ours.attribute("samesite") == made.attribute("samesite")
    flags = {"httponly", "secure", "partitioned"}
    assert flags & set(ours.attributes) == flags & set(made.attributes)
    assert ours.attribute("max-age") is None


def test_deleting_stale_chunks_reuses_path_and_domain() -> None:
    store = EncryptedCookieStore(SECRET, chunked=True)
    options: dict[str, Any] = {
        "store": store,
        "path": "/admin",
        "domain": "example.com",
        "https_only": True,
    }
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


async def _outside(request: Request) -> Response:
    return JSONResponse({"cookies": sorted(request.cookies)})


def _mounted(middleware: MiddlewareFactory = SessionMiddleware, **options: Any) -> Starlette:
    """The session app under ``/admin``, next to ``/outside``, which lists the cookies it got."""
    mount = Mount("/admin", app=_app(middleware, **options))
    return Starlette(routes=[mount, Route("/outside", _outside)])


def test_path_under_a_mount() -> None:
    """With the client's cookie jar, which keeps to Path as a browser does."""
    with TestClient(_mounted(path="/admin")) as client:
        line = set_cookies(client.get("/admin/set"))["session"]
        assert line.attribute("path") == "/admin"
        assert client.get("/admin/").json() == DATA  # sent under the mount
        assert client.get("/outside").json() == {"cookies": []}  # and nowhere else
        deleted = set_cookies(client.get("/admin/clear"))["session"]
        assert deleted.deletes
        assert deleted.attribute("path") == "/admin"
        assert not client.cookies.keys()  # the deleting line matched: the jar dropped it


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
        ("__HOST-sid", {}, "https_only=True"),
        ("__HOST-sid", {"https_only": True, "path": "/x"}, "path='/'"),
        ("__Secure-sid", {}, "https_only=True"),
        ("__Secure-sid", {"domain": "example.com"}, "https_only=True"),
        ("__secure-sid", {}, "https_only=True"),
        ("__SeCuRe-sid", {}, "https_only=True"),
        ("__secure-sid", {"domain": "example.com"}, "https_only=True"),
    ],
)
def test_prefixed_names_browsers_would_drop_are_refused_with_the_reason(
    name: str, options: dict[str, Any], reason: str
) -> None:
    """Browsers match the prefixes whatever their case (RFC 6265bis §4.1.3), so we do too."""
    with pytest.raises(ImproperlyConfigured, match=reason) as caught:
        SessionMiddleware(echo_session, SECRET, session_cookie=name, **options)
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
    assert line.attribute("path") == options.get("path", "/")
    assert line.attribute("domain") == options.get("domain")


@pytest.mark.parametrize(
    "name",
    ["", "a b", "a;b", "a=b", "a,b", 'a"b', "sé", "a\tb", "(sid)", "a(b)", "a/b", "a:b", "a\nb"],
)
def test_invalid_cookie_names_are_refused_at_construction(name: str) -> None:
    with pytest.raises(ImproperlyConfigured, match="not a valid cookie name"):
        SessionMiddleware(echo_session, SECRET, session_cookie=name)


@pytest.mark.parametrize(
    "name", ["sid", "my-session", "a.b", "SESSION_ID", "x!#$%&'*+^`|~", "S3ss!on#$%&'*+^`|~"]
)
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


@pytest.mark.parametrize("vary", ["Accept-Encoding", "Accept-Encoding, Origin", "origin"])
def test_vary_is_merged_into_an_existing_header_as_starlette_does(vary: str) -> None:
    ours = _get(_app(), f"/vary?vary={vary}").headers.get_list("vary")
    theirs = _get(_app(StarletteSessionMiddleware), f"/vary?vary={vary}").headers.get_list("vary")
    assert ours == theirs == [f"{vary}, Cookie"]


@pytest.mark.parametrize("vary", ["X-Cookie-Consent", "Set-Cookie-Hint, Origin", "cookies"])
def test_vary_that_only_contains_the_word_cookie_still_gets_cookie(vary: str) -> None:
    # A whole token is needed: before, any value holding the letters "cookie"
    # was left alone, and a shared cache could serve one session's page to all.
    assert _get(_app(), f"/vary?vary={vary}").headers.get_list("vary") == [f"{vary}, Cookie"]


@pytest.mark.parametrize("vary", ["Cookie", "Accept, cookie", "Origin ,COOKIE ", "*"])
def test_vary_that_already_names_cookie_is_left_alone(vary: str) -> None:
    assert _get(_app(), f"/vary?vary={vary}").headers.get_list("vary") == [vary]  # no second one


# -- changes after the headers were sent -----------------------------------------------------


def _valid_cookie() -> bytes:
    """A Cookie header holding a session with :data:`DATA`."""
    return f"session={_set_line().value}".encode()


def _late(*, touch_first: bool = False) -> Any:
    """A raw ASGI app that starts the response, reads the session, then changes it."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if touch_first:
            scope["session"].get("user")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        scope["session"].get("user")  # reading stays allowed
        scope["session"]["x"] = 1
        await send({"type": "http.response.body", "body": b"late"})

    return app


@pytest.mark.parametrize("touch_first", [False, True], ids=["untouched", "read-before"])
def test_change_after_headers_were_sent_raises_session_error(touch_first: bool) -> None:
    app = SessionMiddleware(_late(touch_first=touch_first), SECRET)
    with pytest.raises(SessionError, match="after the response headers were sent"):
        asyncio.run(call(app))


def test_change_after_headers_were_sent_reaches_the_server_as_session_error() -> None:
    client = TestClient(SessionMiddleware(_late(), SECRET))  # no lifespan: a bare app
    with pytest.raises(SessionError, match="after the response headers were sent"):
        client.get("/")


@pytest.mark.parametrize("cookie", [False, True], ids=["empty", "loaded"])
def test_reading_after_headers_were_sent_is_fine(cookie: bool) -> None:
    seen: dict[str, Any] = {}

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        seen["late read"] = scope["session"].copy()
        await send({"type": "http.response.body", "body": b"late"})

    headers = [(b"cookie", _valid_cookie())] if cookie else []
    reply = asyncio.run(call(SessionMiddleware(app, SECRET), headers))
    assert reply.status == 200
    assert reply.body == b"late"
    assert reply.get_all(b"set-cookie") == []
    assert seen["late read"] == (DATA if cookie else {})


LATE_CHANGES: dict[str, Callable[[Session], Any]] = {
    "setitem": lambda s: s.__setitem__("x", 1),
    "delitem": lambda s: s.__delitem__("user"),
    "pop": lambda s: s.pop("user"),
    "popitem": lambda s: s.popitem(),
    "setdefault": lambda s: s.setdefault("x", 1),
    "update": lambda s: s.update(x=1),
    "clear": lambda s: s.clear(),
    "flush": lambda s: s.flush(),
    "cycle_key": lambda s: s.cycle_key(),
    "set_expiry": lambda s: s.set_expiry(60),
    "mark_modified": lambda s: s.mark_modified(),
}
_NEED_A_KEY = {"delitem", "pop", "popitem"}
"""Changes that fail with KeyError on an empty session before the guard is reached."""
EMPTY_CHANGES = {name: change for name, change in LATE_CHANGES.items() if name not in _NEED_A_KEY}


@pytest.mark.parametrize("change", EMPTY_CHANGES.values(), ids=EMPTY_CHANGES.keys())
def test_every_kind_of_late_change_to_an_empty_session_raises(
    change: Callable[[Session], Any],
) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        change(scope["session"])

    with pytest.raises(SessionError):
        asyncio.run(call(SessionMiddleware(app, SECRET)))


@pytest.mark.parametrize("change", LATE_CHANGES.values(), ids=LATE_CHANGES.keys())
def test_a_late_change_to_a_loaded_session_is_refused_and_sends_no_cookie(
    change: Callable[[Session], Any],
) -> None:
    outcome: dict[str, Any] = {}

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        session = scope["session"]
        outcome["before"] = session.copy()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            change(session)
        except SessionError as exc:
            outcome["error"] = exc
        outcome["after"] = session.copy()
        await send({"type": "http.response.body", "body": b"done"})

    reply = asyncio.run(call(SessionMiddleware(app, SECRET), [(b"cookie", _valid_cookie())]))
    assert isinstance(outcome.get("error"), SessionError)
    assert "after the response headers were sent" in str(outcome["error"])
    assert outcome["before"] == outcome["after"] == DATA  # the change was not applied
    assert reply.get_all(b"set-cookie") == []  # nor any cookie sent
    assert reply.body == b"done"


def test_a_background_task_changing_a_cookie_session_raises() -> None:
    async def later(request: Request) -> None:
        request.session["x"] = 1

    async def endpoint(request: Request) -> Response:
        return PlainTextResponse("ok", background=BackgroundTask(later, request))

    app = Starlette(
        routes=[Route("/", endpoint)], middleware=[Middleware(SessionMiddleware, secret_key=SECRET)]
    )
    with TestClient(app) as client, pytest.raises(SessionError):
        client.get("/")
