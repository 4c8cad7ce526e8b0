"""The basic example: every tutorial view, through a cookie-keeping test client."""

from __future__ import annotations

import base64

from starlette.applications import Starlette
from starlette.middleware.sessions import SessionMiddleware as StarletteSessionMiddleware
from starlette.routing import Route
from starlette.testclient import TestClient

from examples.basic.app import SECRET_KEY, app, get_color


def test_set_a_value_and_read_it_back() -> None:
    with TestClient(app) as client:
        assert client.get("/color").json() == {"fav_color": None}
        assert client.post("/color", data={"color": "blue"}).json() == {"fav_color": "blue"}
        assert client.get("/color").json() == {"fav_color": "blue"}
        assert client.post("/color", data={"color": " "}).status_code == 400


def test_the_test_cookie_check() -> None:
    with TestClient(app) as client:
        client.get("/test-cookie")
        assert client.post("/test-cookie").json() == {"cookies": "enabled"}
        assert client.get("/").json() == {"session": {}}  # the test value was deleted

    # A browser that drops cookies: the POST arrives without the test value.
    with TestClient(app) as client:
        client.get("/test-cookie")
        client.cookies.clear()
        response = client.post("/test-cookie")
        assert response.status_code == 400
        assert response.json()["cookies"] == "disabled"


def test_create_access_and_delete_a_key() -> None:
    with TestClient(app) as client:
        assert client.get("/items/theme").status_code == 404
        assert client.put("/items/theme", data={"value": "dark"}).status_code == 201
        assert client.get("/items/theme").json() == {"theme": "dark"}
        assert client.delete("/items/theme").json() == {"deleted": "theme"}
        assert client.get("/items/theme").status_code == 404
        assert client.delete("/items/theme").status_code == 404


def test_visit_counter_and_flush() -> None:
    with TestClient(app) as client:
        assert [client.get("/visits").json()["visits"] for _ in range(3)] == [1, 2, 3]
        response = client.post("/flush")
        assert "expires=Thu, 01 Jan 1970" in response.headers["set-cookie"]  # cookie deleted
        assert "session" not in client.cookies
        assert client.get("/visits").json() == {"visits": 1}  # a fresh session


def test_the_cookie_is_encrypted_and_only_sent_when_needed() -> None:
    with TestClient(app) as client:
        client.post("/color", data={"color": "chartreuse"})
        cookie = client.cookies["session"]
        padded = cookie.replace("-", "+").replace("_", "/") + "=" * (-len(cookie) % 4)
        assert b"chartreuse" not in base64.b64decode(padded)

        # Reading changes nothing, so no Set-Cookie; but the answer depends
        # on the cookie, so caches are told (Vary: Cookie).
        response = client.get("/color")
        assert "set-cookie" not in response.headers
        assert response.headers["vary"] == "Cookie"

        # Starlette's own middleware with the same secret cannot read it.
        signed_only = Starlette(routes=[Route("/color", get_color)])
        signed_only.add_middleware(StarletteSessionMiddleware, secret_key=SECRET_KEY)
        with TestClient(signed_only, cookies={"session": cookie}) as other:
            assert other.get("/color").json() == {"fav_color": None}


def test_a_tampered_cookie_is_a_fresh_session_not_an_error() -> None:
    with TestClient(app) as client:
        client.post("/color", data={"color": "blue"})
        cookie = client.cookies["session"]
        # Clear first: a hand-set cookie would sit beside the server's, not replace it.
        client.cookies.clear()
        client.cookies["session"] = cookie[:-4] + ("AAAA" if cookie[-4:] != "AAAA" else "BBBB")
        assert client.get("/color").json() == {"fav_color": None}


def test_the_visit_counter_survives_a_non_number_under_its_key() -> None:
    with TestClient(app) as client:
        assert client.put("/items/visits", data={"value": "lots"}).status_code == 201
        response = client.get("/visits")
        assert response.status_code == 200
        assert response.json() == {"visits": 1}  # a non-number restarts the count
        assert client.get("/visits").json() == {"visits": 2}
