"""The I/O promise (DESIGN §3): what each kind of request costs, counted.

Every row of the table is a test that counts decryptions and encryptions
through :class:`CountingCookieStore` and store calls through
:class:`CountingStore` wrapped around a real ``MemoryStore``: counts, not
timings. Server stores use ``autoload=False`` unless the row is about
autoload.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.testclient import TestClient

from asgi_sessions import session_of
from asgi_sessions.crypto import store_key
from tests.instrumented import (
    Backend,
    ClientFactory,
    Handler,
    cookie_line,
    in_loop,
    session_app,
)


async def untouched(request: Request) -> Response:
    return PlainTextResponse("ok")


async def read(request: Request) -> dict[str, Any]:
    session = session_of(request)
    await session.load()
    await session.load()  # idempotent
    return {"a": session.get("a"), "b": session.get("b"), "keys": sorted(session)}


async def write(request: Request) -> dict[str, Any]:
    session = session_of(request)
    await session.load()
    session["a"] = session.get("a", 0) + 1
    return {}


async def flush(request: Request) -> dict[str, Any]:
    session = session_of(request)
    session.flush()
    return {}


async def fail(request: Request) -> Response:
    session = session_of(request)
    await session.aset("a", "half a change")
    return PlainTextResponse("boom", status_code=int(request.query_params["status"]))


async def crash(request: Request) -> Response:
    session = session_of(request)
    await session.aset("a", "half a change")
    raise RuntimeError("the app failed")


async def vary_accept(request: Request) -> Response:
    request.session.get("a")
    return PlainTextResponse("ok", headers={"vary": "Accept-Encoding"})


async def raw_get(request: Request) -> dict[str, Any]:
    # As a pure-ASGI app sees it: the scope's session, with no ``mark_accessed()``
    # from Starlette's ``request.session`` (which Starlette before 1.0 never called).
    return {"a": session_of(request.scope).get("a")}


async def logged(request: Request) -> Response:
    # A middleware or handler that logs the scope reprs the session in it.
    assert "not loaded" in repr(request.scope["session"])
    return PlainTextResponse(repr(request.scope))


async def raw_aget(request: Request) -> dict[str, Any]:
    return {"a": await session_of(request.scope).aget("a")}


ROUTES: dict[str, Handler] = {
    "/untouched": untouched,
    "/read": read,
    "/write": write,
    "/flush": flush,
    "/fail": fail,
    "/crash": crash,
    "/vary": vary_accept,
    "/raw-get": raw_get,
    "/raw-aget": raw_aget,
    "/logged": logged,
}


@pytest.fixture
def make_client(backend: Backend) -> Iterator[ClientFactory]:
    """This module's clients: its own routes, no autoload, server errors as 500s."""
    with ExitStack() as stack:

        def make(**middleware: Any) -> TestClient:
            middleware.setdefault("autoload", False)
            app = session_app(ROUTES, store=backend.store, **middleware)
            return stack.enter_context(TestClient(app, raise_server_exceptions=False))

        yield make


def _seeded(make_client: ClientFactory, backend: Backend, **middleware: Any) -> TestClient:
    """A client holding a session cookie, with every counter back at zero."""
    client = make_client(**middleware)
    assert client.get("/write").status_code == 200
    assert client.cookies.get("session")
    backend.store.reset()
    return client


def _work(backend: Backend) -> dict[str, int]:
    """What reached the cipher or the store since the last reset."""
    if backend.server:
        return {name: count for name, count in backend.counting.calls.items() if count}
    cookies = backend.cookies
    counts = {"open": cookies.opens, "seal": cookies.seals}
    return {name: count for name, count in counts.items() if count}


def _set_cookie(response: Any) -> str | None:
    return cookie_line(response.headers.get_list("set-cookie"))


# -- the rows of the table -------------------------------------------------------------


def test_no_cookie_untouched_costs_nothing(make_client: ClientFactory, backend: Backend) -> None:
    client = make_client()
    response = client.get("/untouched")
    assert _work(backend) == {}
    assert _set_cookie(response) is None
    assert "vary" not in response.headers


def test_cookie_present_untouched_costs_nothing(
    make_client: ClientFactory, backend: Backend
) -> None:
    client = _seeded(make_client, backend)
    response = client.get("/untouched")
    assert _work(backend) == {}
    assert _set_cookie(response) is None
    assert "vary" not in response.headers


@pytest.mark.parametrize("idle_timeout", [None, 600])
def test_a_repr_of_the_session_costs_nothing(
    make_client: ClientFactory, backend: Backend, idle_timeout: int | None
) -> None:
    # Before, repr() decrypted a cookie session and marked it accessed: a
    # log line of the scope added Vary: Cookie (and, with idle_timeout, a
    # fresh Set-Cookie) to a route that never used the session.
    client = _seeded(make_client, backend, idle_timeout=idle_timeout)
    response = client.get("/logged")
    assert response.status_code == 200
    assert _work(backend) == {}
    assert _set_cookie(response) is None
    assert "vary" not in response.headers


def test_session_read_costs_one_decrypt_or_one_read(
    make_client: ClientFactory, backend: Backend
) -> None:
    client = _seeded(make_client, backend)
    response = client.get("/read")
    assert response.json() == {"a": 1, "b": None, "keys": ["a"]}
    assert _work(backend) == ({"read": 1} if backend.server else {"open": 1})
    # Nothing changed: no write, no Set-Cookie; the response varies by Cookie.
    assert _set_cookie(response) is None
    assert response.headers["vary"] == "Cookie"


def test_read_without_cookie_costs_nothing(make_client: ClientFactory, backend: Backend) -> None:
    client = make_client()
    response = client.get("/read")
    assert response.json() == {"a": None, "b": None, "keys": []}
    assert _work(backend) == {}
    assert _set_cookie(response) is None
    assert response.headers["vary"] == "Cookie"


def test_modified_costs_one_read_and_one_write(
    make_client: ClientFactory, backend: Backend
) -> None:
    client = _seeded(make_client, backend)
    response = client.get("/write")
    assert _work(backend) == (
        {"read": 1, "append": 1} if backend.server else {"open": 1, "seal": 1}
    )
    assert _set_cookie(response) is not None
    assert response.headers["vary"] == "Cookie"
    backend.store.reset()
    assert client.get("/read").json()["a"] == 2


def test_new_session_costs_one_write(make_client: ClientFactory, backend: Backend) -> None:
    client = make_client()
    response = client.get("/write")
    assert _work(backend) == ({"create": 1} if backend.server else {"seal": 1})
    assert _set_cookie(response) is not None


@pytest.mark.parametrize("backend", ["memory"], indirect=True)
def test_flush_on_a_server_store_is_one_take(make_client: ClientFactory, backend: Backend) -> None:
    client = _seeded(make_client, backend)
    session_id = client.cookies.get("session")
    assert session_id
    response = client.get("/flush")
    assert _work(backend) == {"take": 1}  # a delete that says what it ended (see _end)
    assert backend.counting.keys == [store_key(session_id)]
    line = _set_cookie(response)
    assert line is not None
    assert "expires=Thu, 01 Jan 1970 00:00:00 GMT" in line
    assert in_loop(client, backend.counting.inner.read, store_key(session_id)) is None


@pytest.mark.parametrize("backend", ["cookie"], indirect=True)
def test_flush_on_a_cookie_store_deletes_the_cookie_without_encrypting(
    make_client: ClientFactory, backend: Backend
) -> None:
    client = _seeded(make_client, backend)
    response = client.get("/flush")
    # request.session decrypts (Starlette's mark_accessed); nothing is sealed.
    assert backend.cookies.seals == 0
    line = _set_cookie(response)
    assert line is not None
    assert "expires=Thu, 01 Jan 1970 00:00:00 GMT" in line


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_error_response_writes_nothing(
    make_client: ClientFactory, backend: Backend, status: int
) -> None:
    client = _seeded(make_client, backend)
    response = client.get(f"/fail?status={status}")
    assert response.status_code == status
    assert _work(backend) == ({"read": 1} if backend.server else {"open": 1})
    assert _set_cookie(response) is None
    backend.store.reset()
    assert client.get("/read").json()["a"] == 1  # the half change was not persisted


def test_unhandled_exception_writes_nothing(make_client: ClientFactory, backend: Backend) -> None:
    client = _seeded(make_client, backend)
    response = client.get("/crash")
    assert response.status_code == 500
    assert _work(backend) == ({"read": 1} if backend.server else {"open": 1})
    assert _set_cookie(response) is None
    assert client.get("/read").json()["a"] == 1


def test_client_error_response_still_saves(make_client: ClientFactory, backend: Backend) -> None:
    # Only 5xx is a failed request; a 4xx page that changed the session saves it.
    client = _seeded(make_client, backend)
    response = client.get("/fail?status=404")
    assert _set_cookie(response) is not None
    assert client.get("/read").json()["a"] == "half a change"


@pytest.mark.parametrize("backend", ["memory"], indirect=True)
def test_autoload_with_cookie_is_one_read_even_if_untouched(
    make_client: ClientFactory, backend: Backend
) -> None:
    client = _seeded(make_client, backend, autoload=True)
    response = client.get("/untouched")
    assert _work(backend) == {"read": 1}
    assert _set_cookie(response) is None
    assert "vary" not in response.headers  # loaded, but never accessed by the app
    backend.store.reset()
    client.get("/read")
    assert _work(backend) == {"read": 1}  # the app's own load finds it loaded


def test_autoload_without_cookie_costs_nothing(
    make_client: ClientFactory, backend: Backend
) -> None:
    client = make_client(autoload=True)
    response = client.get("/untouched")
    assert _work(backend) == {}
    assert _set_cookie(response) is None


@pytest.mark.parametrize("backend", ["memory"], indirect=True)
def test_autoload_prefixes_limit_the_read(make_client: ClientFactory, backend: Backend) -> None:
    client = _seeded(make_client, backend, autoload=["/read", "/write"])
    client.get("/untouched")
    assert _work(backend) == {}
    client.get("/read")
    assert _work(backend) == {"read": 1}


@pytest.mark.parametrize("backend", ["memory"], indirect=True)
def test_idle_timeout_unchanged_session_is_one_touch(
    make_client: ClientFactory, backend: Backend
) -> None:
    client = _seeded(make_client, backend, idle_timeout=600)
    response = client.get("/read")
    assert _work(backend) == {"read": 1, "touch": 1}
    assert backend.counting.writes == 0
    assert _set_cookie(response) is None
    backend.store.reset()
    # A session that is not loaded is not touched (that is what lets it expire).
    client.get("/untouched")
    assert _work(backend) == {}


def test_save_every_request_writes_when_unchanged(
    make_client: ClientFactory, backend: Backend
) -> None:
    client = _seeded(make_client, backend, save_every_request=True)
    response = client.get("/untouched")
    assert _set_cookie(response) is not None
    assert _work(backend) == (
        {"read": 1, "append": 1} if backend.server else {"open": 1, "seal": 1}
    )


@pytest.mark.parametrize(
    ("path", "accessed"),
    [("/untouched", False), ("/read", True), ("/write", True), ("/flush", True)],
)
def test_vary_cookie_iff_accessed(
    make_client: ClientFactory, backend: Backend, path: str, accessed: bool
) -> None:
    client = _seeded(make_client, backend)
    response = client.get(path)
    assert ("vary" in response.headers) is accessed
    if accessed:
        assert response.headers["vary"] == "Cookie"


@pytest.mark.parametrize("autoload", [False, True])
@pytest.mark.parametrize("path", ["/raw-get", "/raw-aget"])
def test_reading_a_new_session_varies_on_cookie(
    make_client: ClientFactory, backend: Backend, path: str, autoload: bool
) -> None:
    # The answer depends on the Cookie header even when there was none: a
    # cache must not hand this anonymous reply to a client that has a session.
    client = make_client(autoload=autoload)
    response = client.get(path)
    assert response.json() == {"a": None}
    assert response.headers.get_list("vary") == ["Cookie"]


@pytest.mark.parametrize(("path", "accessed"), [("/untouched", False), ("/raw-get", True)])
def test_an_autoloaded_session_varies_only_once_the_app_reads_it(
    make_client: ClientFactory, backend: Backend, path: str, accessed: bool
) -> None:
    client = _seeded(make_client, backend, autoload=True)
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers.get_list("vary") == (["Cookie"] if accessed else [])
    if accessed:
        assert response.json() == {"a": 1}


def test_vary_cookie_is_added_to_an_existing_vary(
    make_client: ClientFactory, backend: Backend
) -> None:
    client = make_client()
    response = client.get("/vary")
    assert response.headers.get_list("vary") == ["Accept-Encoding, Cookie"]
