"""The `make demo` app: every page a tutorial teaches works, in a browser-like client."""

from __future__ import annotations

import base64

import pytest
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


def test_the_visit_counter_survives_a_non_number_under_its_key() -> None:
    with TestClient(app) as client:
        client.post("/set", data={"key": "visits", "value": "abc"})
        response = client.get("/visits")
        assert response.status_code == 200
        assert "First visit" in response.text  # a non-number restarts the count
        assert "2 times" in client.get("/visits").text


CROSS_SITE = [
    {"origin": "https://evil.example"},
    {"sec-fetch-site": "cross-site"},
    {"origin": "null"},  # a sandboxed frame, or a redirect from another site
]


@pytest.mark.parametrize("headers", CROSS_SITE)
@pytest.mark.parametrize(
    ("path", "data"),
    [("/login", {"username": "mallory"}), ("/set", {"key": "user", "value": "mallory"})],
)
def test_cross_site_posts_are_refused(
    headers: dict[str, str], path: str, data: dict[str, str]
) -> None:
    with TestClient(app) as client:
        response = client.post(path, data=data, headers=headers, follow_redirects=False)
        assert response.status_code == 403
        assert "set-cookie" not in response.headers
        assert "session" not in client.cookies


def test_a_cross_site_logout_is_refused() -> None:
    with TestClient(app) as client:
        client.post("/login", data={"username": "alice"})
        for method in ("GET", "POST"):
            response = client.request(method, "/logout", headers={"sec-fetch-site": "cross-site"})
            assert response.status_code == 403
            assert "set-cookie" not in response.headers
        assert "alice" in client.get("/").text


def test_same_origin_posts_and_plain_clients_are_accepted() -> None:
    browser = {"origin": "http://testserver", "sec-fetch-site": "same-origin"}
    with TestClient(app) as client:
        assert "alice" in client.post("/login", data={"username": "alice"}, headers=browser).text
        page = client.post("/set", data={"key": "color", "value": "red"}, headers=browser)
        assert "&quot;color&quot;: &quot;red&quot;" in page.text
        # No Origin and no Sec-Fetch-Site (curl, scripts): not a browser tricked
        # by another site, so accepted.
        assert "&quot;theme&quot;" in client.post("/set", data={"key": "theme"}).text
        response = client.post("/logout", headers=browser, follow_redirects=False)
        assert "expires=Thu, 01 Jan 1970" in response.headers["set-cookie"]
