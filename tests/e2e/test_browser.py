"""A real browser against the FastAPI login example, served by uvicorn.

Debian's Chromium (/usr/bin/chromium), driven by Playwright, logs in through
the form, fills a cart across page loads and logs out, and checks what only a
browser can show: the session cookie is HttpOnly and SameSite=Lax for real,
its bytes hold none of the session's data, the back button after logout
re-fetches the page (no-store) and shows nothing private, and a cookie copied
before logout and planted in a fresh browser afterwards is worthless because
the server-side record is gone. Runs on SQLite and on Redis.

Without Chromium or the playwright package the test skips with the reason;
under CI=true it fails. Playwright's own browser downloads are never used.
"""

from __future__ import annotations

import base64
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import uvicorn
from starlette.types import Receive, Scope, Send

from examples.fastapi_login.app import create_app
from examples.fastapi_login.testsupport import Backend, backend_for
from tests.backends import unavailable

if TYPE_CHECKING:
    from playwright.sync_api import Browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PRIVATE = ("Alice Liddell", "alice@example.org", "Rabbit Hole")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        unavailable(f"{CHROMIUM} not found (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        unavailable(f"the playwright package is not installed: {exc}")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
            # Playwright turns the back/forward cache off; users have it on, and
            # it is what would show a private page again after logout.
            ignore_default_args=["--disable-back-forward-cache"],
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(params=["sqlite", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    with backend_for(str(request.param), tmp_path, "e2e") as made:
        yield made


@dataclass
class Server:
    url: str
    hits: list[str]  # "GET /path" for every request that reached the server


@pytest.fixture
def server(backend: Backend) -> Iterator[Server]:
    """The example app served by uvicorn on a free loopback port, in a thread."""
    app = create_app(backend.store, secret_key=secrets.token_urlsafe(32))
    hits: list[str] = []

    async def logged(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            hits.append(f"{scope['method']} {scope['path']}")
        await app(scope, receive, send)

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(logged, lifespan="on", ws="none", log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert thread.is_alive(), "uvicorn exited during start-up"
            assert time.monotonic() < deadline, "uvicorn did not start within 10 s"
            time.sleep(0.02)
        yield Server(f"http://127.0.0.1:{port}", hits)
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
    assert not thread.is_alive(), "uvicorn did not stop within 10 s"


def test_a_browser_session_from_login_to_logout(
    browser: Browser, server: Server, backend: Backend
) -> None:
    from playwright.sync_api import expect

    base_url = server.url
    context = browser.new_context(base_url=base_url)
    context.set_default_timeout(10_000)
    page = context.new_page()

    # Private page while logged out: to the login form, which logs in.
    page.goto("/profile")
    assert page.url == base_url + "/login?next=%2Fprofile"
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", "wonderland")
    page.click("form[action='/login'] button")
    page.wait_for_url(base_url + "/profile")
    assert page.inner_text("h1") == "Hello, Alice Liddell"

    # The cart fills across several page loads and shows on every page.
    x = "\N{MULTIPLICATION SIGN}"
    expected = [
        ("Earl Grey tea", f"Cart (1): 1 {x} Earl Grey tea"),
        ("Scones", f"Cart (2): 1 {x} Earl Grey tea, 1 {x} Scones"),
        ("Earl Grey tea", f"Cart (3): 2 {x} Earl Grey tea, 1 {x} Scones"),
    ]
    for name, summary in expected:
        page.goto("/")
        page.click(f"button:text-is('Add {name}')")
        expect(page.locator("#cart-summary")).to_have_text(summary)
    page.reload()
    for path in ("/cart", "/profile"):
        response = page.goto(path)
        assert response is not None
        assert response.headers["cache-control"] == "no-store"
        assert page.inner_text("#cart-summary") == expected[-1][1], path
    assert "alice@example.org" in page.content()

    # The cookie: out of reach of page scripts, SameSite=Lax, and opaque.
    assert "session" not in page.evaluate("document.cookie")
    (cookie,) = (c for c in context.cookies() if c["name"] == "session")
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Lax"
    assert cookie["path"] == "/"
    assert cookie["expires"] > time.time() + 60 * 60  # max_age: 12 hours
    raw = base64.urlsafe_b64decode(cookie["value"] + "=" * (-len(cookie["value"]) % 4))
    assert len(raw) == 32  # a 256-bit random id, nothing else
    for value in ("alice", "Alice", "Earl Grey", "Scones", "wonderland", *PRIVATE):
        assert value not in cookie["value"]
        assert value.encode() not in raw
    assert backend.records() == 1  # the data is on the server

    # Logout (from the profile page) ends the session, on the server too.
    page.click("form[action='/logout'] button")
    page.wait_for_url(base_url + "/login")
    assert not [c for c in context.cookies() if c["name"] == "session"]
    assert backend.records() == 0
    assert "Cart (" not in page.inner_text("#cart-summary")

    # The back button: the profile page is fetched again (no-store: neither
    # the HTTP cache nor the back/forward cache may keep it), and the server
    # sends a logged-out browser to the login form.
    del server.hits[:]
    page.go_back(wait_until="commit")  # a page restored from a cache fires no load
    expect(page).to_have_url(base_url + "/login?next=%2Fprofile")  # not a kept /profile
    assert [hit for hit in server.hits if "favicon" not in hit] == ["GET /profile", "GET /login"]
    text = page.inner_text("body")
    for value in PRIVATE:
        assert value not in text
    assert page.inner_text("#cart-summary") == "Your cart is empty."
    context.close()

    # A cookie copied before logout, planted in a fresh browser: refused.
    thief = browser.new_context(base_url=base_url)
    thief.set_default_timeout(10_000)
    stolen: Any = {"name": "session", "value": cookie["value"], "url": base_url}
    thief.add_cookies([stolen])
    page = thief.new_page()
    page.goto("/profile")
    assert page.url == base_url + "/login?next=%2Fprofile"
    text = page.inner_text("body")
    for value in PRIVATE:
        assert value not in text
    assert backend.records() == 0  # and it was not resurrected
    thief.close()
