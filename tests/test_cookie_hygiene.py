"""Cookie hygiene: the attributes of every Set-Cookie line, and what is refused up front.

``HttpOnly`` by default (``http_only=False`` drops it), ``Secure`` from
``https_only``, ``SameSite``, ``Domain``, ``Path`` (also for an app under a
``Mount``), ``Partitioned``, ``Max-Age``; all spelled exactly as Starlette's
own ``SessionMiddleware`` spells them, which is checked against the real
thing. Deleting a cookie reuses its path and domain. ``__Host-`` and
``__Secure-`` names and invalid names are refused at construction.
``Vary: Cookie`` is added only when the session was accessed, merged into
an existing ``Vary``. A cookie session changed after the headers were sent
raises :class:`SessionError` and sends no cookie.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware as StarletteSessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from asgi_sessions import Session, SessionMiddleware
from asgi_sessions.errors import ImproperlyConfigured, SessionError
from tests.apps import (
    SECRET,
    SetCookie,
    call,
    echo_session,
    session_app,
    session_routes,
    set_cookies,
)

DATA = {"user": "alice"}


def _set_line(**options: Any) -> SetCookie:
    """The Set-Cookie line our app sends when a session is first saved."""
    with TestClient(session_app(**options)) as client:
        cookies = set_cookies(client.post("/set", json=DATA))
    name = options.get("session_cookie", "session")
    return cookies[name]


def _delete_line(**options: Any) -> SetCookie:
    """The Set-Cookie line our app sends when a saved session is cleared."""
    name = options.get("session_cookie", "session")
    token = _set_line(**options).value
    with TestClient(session_app(**options)) as client:
        cookies = set_cookies(client.post("/clear", headers={"cookie": f"{name}={token}"}))
    return cookies[name]


# -- defaults and each option ---------------------------------------------------------


def test_default_cookie_line() -> None:
    line = _set_line()
    assert line.line == f"session={line.value}; path=/; Max-Age=1209600; httponly; samesite=lax"


def test_http_only_is_on_by_default() -> None:
    assert "httponly" in _set_line().attributes


def test_http_only_false_drops_httponly() -> None:
    line = _set_line(http_only=False)
    assert "httponly" not in line.attributes
    assert line.attributes == ("path=/", "Max-Age=1209600", "samesite=lax")


def test_https_only_adds_secure() -> None:
    assert "secure" not in _set_line().attributes
    assert "secure" in _set_line(https_only=True).attributes


@pytest.mark.parametrize("same_site", ["lax", "strict", "none"])
def test_same_site(same_site: str) -> None:
    assert _set_line(same_site=same_site).attribute("samesite") == same_site


def test_invalid_same_site_is_refused_at_construction() -> None:
    with pytest.raises(ImproperlyConfigured, match="same_site"):
        SessionMiddleware(echo_session, secret_key=SECRET, same_site="sometimes")  # type: ignore[arg-type]


def test_domain() -> None:
    assert _set_line().attribute("domain") is None
    assert _set_line(domain="example.com").attribute("domain") == "example.com"


def test_path() -> None:
    assert _set_line(path="/app").attribute("path") == "/app"


def test_partitioned() -> None:
    assert "partitioned" not in _set_line().attributes
    assert "partitioned" in _set_line(partitioned=True, https_only=True).attributes


def test_max_age_none_makes_a_browser_session_cookie() -> None:
    line = _set_line(max_age=None)
    assert line.attribute("Max-Age") is None
    assert line.attribute("expires") is None


def test_session_cookie_name() -> None:
    assert _set_line(session_cookie="sid").name == "sid"


# -- exactly Starlette's spelling -------------------------------------------------------

OPTION_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "https": {"https_only": True},
    "strict": {"same_site": "strict"},
    "none": {"same_site": "none", "https_only": True},
    "domain": {"domain": "example.com"},
    "partitioned": {"partitioned": True, "https_only": True},
    "path": {"path": "/app"},
    "browser-session": {"max_age": None},
    "everything": {
        "session_cookie": "sid",
        "max_age": 60,
        "path": "/p",
        "same_site": "strict",
        "https_only": True,
        "domain": "a.example.org",
        "partitioned": True,
    },
}


def _starlette_lines(**options: Any) -> tuple[SetCookie, SetCookie]:
    """(set line, delete line) from Starlette's own SessionMiddleware."""
    name = options.get("session_cookie", "session")
    app = Starlette(
        routes=session_routes(),
        middleware=[Middleware(StarletteSessionMiddleware, secret_key=SECRET, **options)],
    )
    with TestClient(app) as client:
        set_line = set_cookies(client.post("/set", json=DATA))[name]
        cookie = {"cookie": f"{name}={set_line.value}"}
        delete_line = set_cookies(client.post("/clear", headers=cookie))[name]
    return set_line, delete_line


@pytest.mark.parametrize("options", OPTION_SETS.values(), ids=OPTION_SETS.keys())
def test_set_cookie_attributes_are_spelled_as_starlette_spells_them(
    options: dict[str, Any],
) -> None:
    theirs, _ = _starlette_lines(**options)
    ours = _set_line(**options)
    assert ours.name == theirs.name
    assert ours.attributes == theirs.attributes


@pytest.mark.parametrize("options", OPTION_SETS.values(), ids=OPTION_SETS.keys())
def test_delete_cookie_is_spelled_as_starlette_spells_it(options: dict[str, Any]) -> None:
    _, theirs = _starlette_lines(**options)
    assert _delete_line(**options).line == theirs.line


# -- deleting reuses path and domain ----------------------------------------------------


def test_deleting_the_cookie_reuses_its_path_domain_and_flags() -> None:
    options = {"path": "/app", "domain": "example.com", "https_only": True, "same_site": "strict"}
    made, deleted = _set_line(**options), _delete_line(**options)
    assert deleted.deletes
    assert deleted.value == "null"
    for attribute in ("path", "domain", "samesite"):
        assert deleted.attribute(attribute) == made.attribute(attribute)
    assert {"secure", "httponly"} <= set(deleted.attributes)
    assert deleted.attribute("Max-Age") is None


def _mounted_app() -> Starlette:
    async def outside(request: Request) -> Response:
        return JSONResponse({"cookies": sorted(request.cookies)})

    inner = Starlette(
        routes=session_routes(),
        middleware=[Middleware(SessionMiddleware, secret_key=SECRET, path="/sub")],
    )
    return Starlette(routes=[Mount("/sub", app=inner), Route("/outside", outside)])


def test_path_under_a_mount_scopes_the_cookie_to_the_mount() -> None:
    with TestClient(_mounted_app()) as client:
        made = set_cookies(client.post("/sub/set", json=DATA))["session"]
        assert made.attribute("path") == "/sub"
        assert client.get("/sub/").json() == DATA  # the browser sends it under /sub
        assert client.get("/outside").json() == {"cookies": []}  # and nowhere else


def test_deleting_under_a_mount_uses_the_mount_path() -> None:
    with TestClient(_mounted_app()) as client:
        client.post("/sub/set", json=DATA)
        deleted = set_cookies(client.post("/sub/clear"))["session"]
        assert deleted.deletes
        assert deleted.attribute("path") == "/sub"
        assert not client.cookies.keys()


# -- names checked at construction --------------------------------------------------------


def _build(**options: Any) -> SessionMiddleware:
    return SessionMiddleware(echo_session, secret_key=SECRET, **options)


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ({"session_cookie": "__Host-sid"}, "https_only=True"),
        ({"session_cookie": "__Host-sid", "https_only": True, "path": "/app"}, "path='/'"),
        (
            {"session_cookie": "__Host-sid", "https_only": True, "domain": "example.com"},
            "no domain",
        ),
        ({"session_cookie": "__Secure-sid"}, "https_only=True"),
        ({"session_cookie": "__Secure-sid", "domain": "example.com"}, "https_only=True"),
    ],
    ids=["host-insecure", "host-path", "host-domain", "secure-insecure", "secure-domain-insecure"],
)
def test_prefixed_names_that_browsers_would_drop_are_refused(
    options: dict[str, Any], reason: str
) -> None:
    with pytest.raises(ImproperlyConfigured) as caught:
        _build(**options)
    assert reason in str(caught.value)


@pytest.mark.parametrize("name", ["__host-sid", "__HOST-sid", "__secure-sid", "__SeCuRe-sid"])
def test_prefixes_are_recognised_whatever_their_case(name: str) -> None:
    """Browsers match the prefixes case-insensitively (RFC 6265bis §4.1.3)."""
    with pytest.raises(ImproperlyConfigured, match="https_only=True"):
        _build(session_cookie=name)


def test_a_valid_host_cookie() -> None:
    line = _set_line(session_cookie="__Host-sid", https_only=True)
    assert line.name == "__Host-sid"
    assert line.attribute("path") == "/"
    assert line.attribute("domain") is None
    assert "secure" in line.attributes


def test_a_valid_secure_cookie_may_have_a_domain_and_path() -> None:
    line = _set_line(
        session_cookie="__Secure-sid", https_only=True, domain="example.com", path="/app"
    )
    assert "secure" in line.attributes
    assert line.attribute("domain") == "example.com"


@pytest.mark.parametrize(
    "name", ["", "a b", "a;b", "a=b", "a,b", 'a"b', "a\tb", "a(b)", "a/b", "a:b", "sé", "a\nb"]
)
def test_invalid_cookie_names_are_refused_at_construction(name: str) -> None:
    with pytest.raises(ImproperlyConfigured, match="not a valid cookie name"):
        _build(session_cookie=name)


@pytest.mark.parametrize("name", ["session", "sid", "my.session", "a-b_c", "S3ss!on#$%&'*+^`|~"])
def test_valid_cookie_names_are_accepted(name: str) -> None:
    assert _set_line(session_cookie=name).name == name


# -- Vary ------------------------------------------------------------------------------------


def test_untouched_session_adds_no_vary() -> None:
    with TestClient(session_app()) as client:
        client.post("/set", json=DATA)
        response = client.get("/untouched")
    assert "vary" not in response.headers
    assert "set-cookie" not in response.headers


def test_accessed_session_adds_vary_cookie() -> None:
    with TestClient(session_app()) as client:
        assert client.get("/").headers["vary"] == "Cookie"  # read, even with no cookie
        client.post("/set", json=DATA)
        assert client.get("/").headers["vary"] == "Cookie"


def test_vary_cookie_is_merged_into_an_existing_vary() -> None:
    with TestClient(session_app()) as client:
        response = client.get("/vary", params={"vary": "Accept-Encoding"})
    assert response.headers.get_list("vary") == ["Accept-Encoding, Cookie"]


def test_vary_that_already_names_cookie_is_left_alone() -> None:
    with TestClient(session_app()) as client:
        response = client.get("/vary", params={"vary": "Accept, cookie"})
    assert response.headers.get_list("vary") == ["Accept, cookie"]


# -- a change after the headers were sent -------------------------------------------------------

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


def _late_writer(change: Callable[[Session], Any], outcome: dict[str, Any]) -> Any:
    """A raw ASGI app that reads the session, starts the response, then changes it."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        session = scope["session"]
        outcome["before"] = session.copy()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            change(session)
        except SessionError as exc:
            outcome["error"] = exc
        outcome["after"] = session.copy()
        await send({"type": "http.response.body", "body": b"done"})

    return app


def _valid_cookie() -> bytes:
    return f"session={_set_line().value}".encode()


@pytest.mark.parametrize("change", LATE_CHANGES.values(), ids=LATE_CHANGES.keys())
def test_change_after_headers_were_sent_raises_and_sends_no_cookie(
    change: Callable[[Session], Any],
) -> None:
    outcome: dict[str, Any] = {}
    app = SessionMiddleware(_late_writer(change, outcome), secret_key=SECRET)
    reply = asyncio.run(call(app, [(b"cookie", _valid_cookie())]))
    assert isinstance(outcome.get("error"), SessionError)
    assert "headers were sent" in str(outcome["error"])
    assert outcome["before"] == outcome["after"] == DATA  # the session was not changed
    assert reply.get_all(b"set-cookie") == []  # nor the cookie
    assert reply.body == b"done"


def test_change_after_headers_were_sent_reaches_the_server_as_session_error() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        scope["session"]["x"] = 1
        await send({"type": "http.response.body", "body": b""})

    client = TestClient(SessionMiddleware(app, secret_key=SECRET))  # no lifespan: a bare app
    with pytest.raises(SessionError, match="headers were sent"):
        client.get("/")


def test_reading_after_headers_were_sent_is_fine() -> None:
    outcome: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        outcome["late read"] = scope["session"].copy()
        await send({"type": "http.response.body", "body": b""})

    asyncio.run(call(SessionMiddleware(app, secret_key=SECRET), [(b"cookie", _valid_cookie())]))
    assert outcome["late read"] == DATA
