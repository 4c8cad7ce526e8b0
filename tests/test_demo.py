"""The `make demo` app: every page a tutorial teaches works, in a browser-like client."""

from __future__ import annotations

import base64

from starlette.testclient import TestClient

from examples.demo.app import app


def test_demo_walkthrough() -> None:
    with TestClient(app) as client:
        assert "Not logged in" in client.get("/").text

        assert "First visit" in client.get("/visits").text
        assert "2 times" in client.get("/visits").text

        page = client.post("/set", data={"key": "color", "value": "blue"})
        assert "&quot;color&quot;: &quot;blue&quot;" in page.text
        client.post("/delete", data={"key": "color"})
        assert "blue" not in client.get("/").text

        client.get("/test-cookie")
        assert "accepts cookies" in client.get("/test-cookie?check=1").text

        anonymous = client.cookies["session"]
        assert "alice" in client.post("/login", data={"username": "alice"}).text
        assert client.cookies["session"] != anonymous  # cycled on login

        cookie = client.cookies["session"]
        padded = cookie.replace("-", "+").replace("_", "/") + "=" * (-len(cookie) % 4)
        assert b"alice" not in base64.b64decode(padded)  # encrypted, not just signed

        response = client.get("/logout", follow_redirects=False)
        assert "expires=Thu, 01 Jan 1970" in response.headers["set-cookie"]
        assert "Not logged in" in client.get("/").text


def test_demo_refuses_a_login_without_a_name() -> None:
    with TestClient(app) as client:
        assert client.post("/login", data={"username": " "}).status_code == 400
