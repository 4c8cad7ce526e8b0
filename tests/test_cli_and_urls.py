"""``python -m asgi_sessions`` and building stores from URLs (plugins included)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import anyio
import pytest

from asgi_sessions import SessionMiddleware, session_of
from asgi_sessions.__main__ import main
from asgi_sessions.errors import ImproperlyConfigured
from asgi_sessions.stores import FileStore, MemoryStore, SessionStore, store_from_url
from asgi_sessions.testing import new_key


def test_keygen_prints_a_strong_secret(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keygen"]) == 0
    first = capsys.readouterr().out.strip()
    assert main(["keygen"]) == 0
    second = capsys.readouterr().out.strip()
    assert len(first) >= 43
    assert first != second


def test_clear_expired_reports_the_count(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async def seed() -> None:
        store = FileStore(tmp_path / "s")
        for _ in range(3):
            await store.create(new_key(), b"x", 1)
        await store.create(new_key(), b"live", 600)

    anyio.run(seed)
    time.sleep(1.1)
    assert main(["clear-expired", "--store", f"file://{tmp_path / 's'}"]) == 0
    assert capsys.readouterr().out.strip() == "removed 3 expired session(s)"


def test_module_runs_as_a_program() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "asgi_sessions", "keygen"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert len(result.stdout.strip()) >= 43


@pytest.mark.parametrize(
    ("url", "kind"),
    [("memory://", MemoryStore), ("file:///tmp/asgi-sessions-url-test", FileStore)],
)
def test_store_from_url(url: str, kind: type) -> None:
    assert isinstance(store_from_url(url), kind)


@pytest.mark.parametrize(
    "url",
    ["nope://x", "no-scheme", "postgresql://missing-driver/db", "file://host/dir"],
)
def test_bad_store_urls_are_refused_at_construction(url: str) -> None:
    with pytest.raises(ImproperlyConfigured):
        store_from_url(url)


def test_middleware_accepts_a_url() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:  # pragma: no cover
        pass

    middleware = SessionMiddleware(app, store="memory://")
    assert isinstance(middleware.store, MemoryStore)


class PluginStore(MemoryStore):
    """Stands for a third-party store registered through the entry-point group."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url


def test_plugins_register_url_schemes(monkeypatch: pytest.MonkeyPatch) -> None:
    entry = EntryPoint(name="acme", value=f"{__name__}:PluginStore", group="asgi_sessions.stores")
    import asgi_sessions.stores as stores

    def fake_entry_points(*, group: str) -> list[EntryPoint]:
        return [entry] if group == "asgi_sessions.stores" else []

    monkeypatch.setattr(stores, "entry_points", fake_entry_points)
    store = store_from_url("acme://bucket/sessions")
    assert isinstance(store, PluginStore)
    assert isinstance(store, SessionStore)
    assert store.url == "acme://bucket/sessions"


def test_an_installed_plugin_gets_its_url_scheme(tmp_path: Path) -> None:
    """The example plugin in examples/custom_store, installed by `make`, registers shelf://."""
    try:
        from acme_sessions import ShelfStore
    except ImportError:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip("examples/custom_store is not installed (make installs it)")
    store = store_from_url(f"shelf://{tmp_path}/sessions.db")
    assert isinstance(store, ShelfStore)


# -- a store built from a URL is closed at lifespan shutdown ----------------------------


def test_a_store_built_from_a_url_is_closed_at_shutdown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse, Response
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from asgi_sessions.stores import SQLStore

    closed: list[str] = []
    real_close = SQLStore.close

    async def watched_close(self: SQLStore) -> None:
        closed.append(self.table_name)
        await real_close(self)

    monkeypatch.setattr(SQLStore, "close", watched_close)

    async def view(request: Request) -> Response:
        await session_of(request).aset("a", 1)
        return PlainTextResponse("ok")

    def app_for(store: Any) -> Starlette:
        return Starlette(
            routes=[Route("/", view)], middleware=[Middleware(SessionMiddleware, store=store)]
        )

    url = f"sqlite+aiosqlite:///{tmp_path}/s.db"
    with TestClient(app_for(url)) as client:
        assert client.get("/").status_code == 200
        assert closed == []
    assert closed == ["asgi_sessions"], "a store built from a URL was not closed at shutdown"

    closed.clear()
    mine = SQLStore(url, table_name="mine")
    with TestClient(app_for(mine)) as client:
        client.get("/")
    assert closed == [], "a store passed in belongs to the caller"
    anyio.run(mine.close)
