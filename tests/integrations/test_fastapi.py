"""The FastAPI dependency, with a cookie store and every server store, loaded on demand."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from fastapi import Depends, FastAPI
from starlette.testclient import TestClient

from asgi_sessions import Session, SessionMiddleware
from asgi_sessions.integrations.fastapi import SessionDep, get_session, session_dependency
from asgi_sessions.stores import MemoryStore
from tests.backends import STORES, store_factory

SECRET = "fastapi-test-secret-0123456789abcdef"


def make_app(**options: Any) -> FastAPI:
    app = FastAPI()
    app.add_middleware(SessionMiddleware, **options)

    @app.post("/cart/{item}")
    async def add(item: int, session: SessionDep) -> dict[str, Any]:
        # Synchronous access: the dependency loaded the session.
        session["cart"] = [*session.get("cart", []), item]
        return {"cart": session["cart"]}

    @app.get("/cart")
    async def cart(session: Session = Depends(get_session)) -> dict[str, Any]:  # noqa: B008
        return {"cart": await session.aget("cart", [])}

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


@pytest.mark.parametrize(
    "options",
    [
        {"secret_key": SECRET},
        {"store": MemoryStore(), "autoload": False},
        {"store": MemoryStore(), "autoload": True},
    ],
    ids=["cookie", "memory-autoload-off", "memory-autoload-on"],
)
def test_the_dependency_hands_over_a_loaded_session(options: dict[str, Any]) -> None:
    with TestClient(make_app(**options)) as client:
        assert client.post("/cart/1").json() == {"cart": [1]}
        assert client.post("/cart/2").json() == {"cart": [1, 2]}
        assert client.get("/cart").json() == {"cart": [1, 2]}
        response = client.get("/health")
        assert "set-cookie" not in response.headers
        assert "vary" not in response.headers


@pytest.mark.parametrize("autoload", [False, True], ids=["autoload-off", "autoload-on"])
@pytest.mark.parametrize("name", STORES)
def test_the_dependency_works_with_every_server_store(
    name: str, autoload: bool, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with store_factory(name, tmp_path) as store:
            app = make_app(store=store, autoload=autoload)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                assert (await client.post("/cart/1")).json() == {"cart": [1]}
                assert (await client.post("/cart/2")).json() == {"cart": [1, 2]}
                assert (await client.get("/cart")).json() == {"cart": [1, 2]}
                assert "set-cookie" not in (await client.get("/health")).headers

    anyio.run(scenario)


def test_openapi_documents_the_cookie_as_a_security_scheme() -> None:
    schema = make_app(secret_key=SECRET).openapi()
    schemes = schema["components"]["securitySchemes"]
    assert schemes["session"] == {
        "type": "apiKey",
        "in": "cookie",
        "name": "session",
        "description": "The session cookie set by asgi_sessions (HttpOnly; sent by the browser).",
    }
    add = schema["paths"]["/cart/{item}"]["post"]
    assert add["security"] == [{"session": []}]
    assert [p["name"] for p in add.get("parameters", [])] == ["item"]  # no bogus parameters
    assert "security" not in schema["paths"]["/health"]["get"]


def test_a_custom_cookie_name_is_documented() -> None:
    app = FastAPI()
    app.add_middleware(SessionMiddleware, secret_key=SECRET, session_cookie="sid")
    dependency = session_dependency("sid")

    @app.get("/")
    async def view(session: Session = Depends(dependency)) -> dict[str, Any]:  # noqa: B008
        session["seen"] = True
        return {}

    assert app.openapi()["components"]["securitySchemes"]["session-sid"]["name"] == "sid"
    with TestClient(app) as client:
        client.get("/")
        assert "sid" in client.cookies


def test_two_cookie_names_in_one_app_are_two_security_schemes() -> None:
    # FastAPI keys schemes by name: one shared name let the last cookie
    # registered overwrite the other, so /user claimed to send "admin_sid".
    app = FastAPI()
    admin_session = session_dependency("admin_sid")
    host_session = session_dependency("__Host-sid")

    @app.get("/user")
    async def user(session: SessionDep) -> dict[str, Any]:
        return {}

    @app.get("/admin")
    async def admin(session: Session = Depends(admin_session)) -> dict[str, Any]:  # noqa: B008
        return {}

    @app.get("/host")
    async def host(session: Session = Depends(host_session)) -> dict[str, Any]:  # noqa: B008
        return {}

    schema = app.openapi()
    schemes = schema["components"]["securitySchemes"]
    assert {name: scheme["name"] for name, scheme in schemes.items()} == {
        "session": "session",  # the default cookie keeps its scheme's name
        "session-admin_sid": "admin_sid",
        "session-__Host-sid": "__Host-sid",
    }
    paths = schema["paths"]
    assert paths["/user"]["get"]["security"] == [{"session": []}]
    assert paths["/admin"]["get"]["security"] == [{"session-admin_sid": []}]
    assert paths["/host"]["get"]["security"] == [{"session-__Host-sid": []}]


def test_a_scheme_name_holds_only_what_openapi_allows() -> None:
    # Components are named by ^[a-zA-Z0-9.\-_]+$; a cookie name may hold more.
    app = FastAPI()
    dependency = session_dependency("my$sid")

    @app.get("/")
    async def view(session: Session = Depends(dependency)) -> dict[str, Any]:  # noqa: B008
        return {}

    schemes = app.openapi()["components"]["securitySchemes"]
    assert list(schemes) == ["session-my_sid"]
    assert schemes["session-my_sid"]["name"] == "my$sid"


def test_without_the_middleware_the_error_says_so() -> None:
    app = FastAPI()

    @app.get("/")
    async def view(session: SessionDep) -> dict[str, Any]:
        return {}

    with TestClient(app) as client, pytest.raises(RuntimeError, match="not installed"):
        client.get("/")
