"""login() and logout(): fixation-safe login, complete logout, on cookie and server stores."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from asgi_sessions import SessionMiddleware, session_of
from asgi_sessions.auth import AUTH_TIME_KEY, USER_KEY, login, logout, user_of
from asgi_sessions.stores import MemoryStore

SECRET = "auth-test-secret-0123456789abcdef0123"


def make_app(**options: Any) -> Starlette:
    async def do_login(request: Request) -> Response:
        await login(request.session, request.path_params["user"], role="member")
        return JSONResponse({})

    async def do_logout(request: Request) -> Response:
        await logout(request.session)
        return JSONResponse({})

    async def cart(request: Request) -> Response:
        await session_of(request).aset("cart", [1, 2])
        return JSONResponse({})

    async def me(request: Request) -> Response:
        return JSONResponse({"user": await user_of(request.session), **dict(request.session)})

    return Starlette(
        routes=[
            Route("/login/{user}", do_login),
            Route("/logout", do_logout),
            Route("/cart", cart),
            Route("/me", me),
        ],
        middleware=[Middleware(SessionMiddleware, **options)],
    )


@pytest.fixture(params=["cookie", "memory"])
def options(request: pytest.FixtureRequest) -> dict[str, Any]:
    if request.param == "cookie":
        return {"secret_key": SECRET}
    return {"store": MemoryStore(), "autoload": False}


def test_login_cycles_the_session_and_keeps_the_cart(options: dict[str, Any]) -> None:
    with TestClient(make_app(**options)) as client:
        client.get("/cart")
        before = client.cookies["session"]
        client.get("/login/alice")
        after = client.cookies["session"]
        assert after != before
        me = client.get("/me").json()
        assert me["user"] == "alice"
        assert me["cart"] == [1, 2]
        assert me["role"] == "member"
        assert isinstance(me[AUTH_TIME_KEY], int)
        if "store" in options:  # the pre-login id is worthless now
            client.cookies.clear()  # one session cookie, as a browser would hold
            client.cookies.set("session", before)
            assert client.get("/me").json() == {"user": None}


def test_login_as_someone_else_starts_empty(options: dict[str, Any]) -> None:
    with TestClient(make_app(**options)) as client:
        client.get("/login/alice")
        client.get("/cart")
        client.get("/login/bob")
        me = client.get("/me").json()
        assert me["user"] == "bob"
        assert "cart" not in me


def test_logout_removes_everything(options: dict[str, Any]) -> None:
    with TestClient(make_app(**options)) as client:
        client.get("/login/alice")
        copied = client.cookies["session"]
        response = client.get("/logout")
        assert "expires=Thu, 01 Jan 1970" in response.headers["set-cookie"]
        assert client.get("/me").json() == {"user": None}
        if "store" in options:  # a copied cookie does not bring the session back
            client.cookies.clear()
            client.cookies.set("session", copied)
            assert client.get("/me").json() == {"user": None}
            assert len(options["store"]) == 0
        assert USER_KEY not in client.get("/me").json()


def test_behind_starlettes_middleware_the_helpers_say_what_is_missing() -> None:
    """A plain dict session (Starlette's middleware) is refused with the reason, not an
    AttributeError from deep inside, and nothing is half done."""
    from starlette.middleware.sessions import SessionMiddleware as StarletteSessions

    from asgi_sessions.auth import logout_everywhere
    from asgi_sessions.errors import ImproperlyConfigured

    async def view(request: Request) -> Response:
        request.session["kept"] = True
        for call in (
            login(request.session, "alice"),
            logout(request.session),
            logout_everywhere(request.session),
            user_of(request.session),
        ):
            with pytest.raises(ImproperlyConfigured, match="SessionMiddleware"):
                await call
        return JSONResponse(dict(request.session))

    app = Starlette(
        routes=[Route("/", view)],
        middleware=[Middleware(StarletteSessions, secret_key=SECRET)],
    )
    with TestClient(app) as client:
        assert client.get("/").json() == {"kept": True}


def test_a_request_with_the_id_from_before_a_login_as_someone_else_is_refused() -> None:
    # A request the browser sent with alice's id before the response of
    # bob's login arrived. Before, it found no record and started a fresh
    # session, whose cookie replaced bob's login in the browser; now the old
    # id's forward record turns it away with a 400, as after a same-user login.
    with TestClient(make_app(store=MemoryStore())) as client:
        client.get("/login/alice")
        alice = client.cookies["session"]
        client.get("/login/bob")
        bob = client.cookies["session"]
        client.cookies.clear()
        late = client.get("/cart", headers={"cookie": f"session={alice}"})
        assert late.status_code == 400
        assert "set-cookie" not in late.headers
        client.cookies.clear()
        client.cookies.set("session", bob)
        assert client.get("/me").json()["user"] == "bob"
