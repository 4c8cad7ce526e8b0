"""The migration example: a real Starlette-signed cookie, carried across the switch.

Starlette's own middleware signs a session; the migrated app reads it, answers
with an encrypted cookie in its place, and from then on Starlette's
middleware cannot read the session any more (nor can anyone else).
"""

from __future__ import annotations

import base64
import json
import time

from itsdangerous import TimestampSigner
from starlette.applications import Starlette
from starlette.middleware.sessions import SessionMiddleware as StarletteSessionMiddleware
from starlette.testclient import TestClient

from examples.migrate_from_starlette.app import (
    MAX_AGE,
    ROUTES,
    SECRET_KEY,
    create_app,
    profile,
    starlette_app,
)


def b64_bytes(value: str) -> bytes:
    """The bytes of a base64 / base64url token (either alphabet, padded or not)."""
    value = value.replace("-", "+").replace("_", "/")
    return base64.b64decode(value + "=" * (-len(value) % 4))


def starlette_cookie() -> str:
    """Alice's session as Starlette's own SessionMiddleware writes it."""
    with TestClient(starlette_app) as before:
        before.post("/login", data={"username": "alice"})
        before.post("/theme", data={"theme": "dark"})
        cookie = before.cookies["session"]
    # Signed, not encrypted: everything is readable in the first part.
    assert json.loads(b64_bytes(cookie.split(".")[0])) == {"user": "alice", "theme": "dark"}
    return cookie


def carrying(cookie: str) -> dict[str, str]:
    """Headers of a browser that arrives with ``cookie``; later requests use the client's jar."""
    return {"cookie": f"session={cookie}"}


def test_an_old_cookie_is_read_and_reissued_encrypted() -> None:
    old = starlette_cookie()
    with TestClient(create_app()) as after:
        response = after.get("/", headers=carrying(old))
        assert response.json() == {"user": "alice", "theme": "dark"}  # nobody logged out

        # The same response replaces the cookie with an encrypted one.
        assert "set-cookie" in response.headers
        assert "Max-Age=1209600" in response.headers["set-cookie"]
        new = after.cookies["session"]
        assert new != old
        for plaintext in (b"alice", b"dark", b"user", b"theme"):
            assert plaintext not in b64_bytes(new)
        assert "alice" not in new

        # It goes on working with the new cookie (and is not re-issued again).
        response = after.get("/")
        assert response.json() == {"user": "alice", "theme": "dark"}
        assert "set-cookie" not in response.headers

    # Starlette's middleware, with the same secret, cannot read the new one.
    with TestClient(starlette_app) as before:
        assert before.get("/", headers=carrying(new)).json() == {"user": None, "theme": "light"}


def test_the_old_cookie_is_replaced_by_any_request_that_uses_the_session() -> None:
    with TestClient(create_app()) as after:
        response = after.post(
            "/theme", data={"theme": "blue"}, headers=carrying(starlette_cookie())
        )
        assert response.json() == {"theme": "blue"}
        assert after.get("/").json() == {"user": "alice", "theme": "blue"}
        assert after.post("/logout").json() == {"user": None}
        assert "session" not in after.cookies


def test_without_the_option_old_cookies_are_logged_out() -> None:
    # Step 2 of the rollout, or forgetting step 1: an old cookie is just
    # refused (an empty session, never an error).
    with TestClient(create_app(accept_starlette_cookies=False)) as after:
        response = after.get("/", headers=carrying(starlette_cookie()))
        assert response.json() == {"user": None, "theme": "light"}


def test_only_genuine_old_cookies_are_accepted() -> None:
    old = starlette_cookie()
    payload, _, signature = old.partition(".")

    # Forged: the payload changed, the signature did not.
    mallory = base64.b64encode(json.dumps({"user": "mallory"}).encode()).decode()
    forged = f"{mallory}.{signature}"
    # Signed with another secret, by another Starlette app.
    other = Starlette(routes=ROUTES)
    other.add_middleware(StarletteSessionMiddleware, secret_key="another-secret-" * 3)
    with TestClient(other) as stranger:
        stranger.post("/login", data={"username": "alice"})
        foreign = stranger.cookies["session"]

    for cookie in (forged, foreign, payload):
        with TestClient(create_app()) as after:
            assert after.get("/", headers=carrying(cookie)).json()["user"] is None, cookie


def test_the_views_are_unchanged() -> None:
    # The migration touched one middleware line: the view functions are the same objects.
    assert starlette_app.routes[0].endpoint is profile  # type: ignore[attr-defined]
    assert create_app().routes[0].endpoint is profile  # type: ignore[attr-defined]


def test_an_old_cookie_past_max_age_is_refused() -> None:
    # Starlette's format, signed MAX_AGE + 1 minute ago (itsdangerous's own signer).
    class SignedLongAgo(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - MAX_AGE - 60

    data = base64.b64encode(json.dumps({"user": "alice"}).encode())
    stale = SignedLongAgo(SECRET_KEY).sign(data).decode()
    fresh = TimestampSigner(SECRET_KEY).sign(data).decode()
    with TestClient(create_app()) as after:
        assert after.get("/", headers=carrying(fresh)).json()["user"] == "alice"
    with TestClient(create_app()) as after:
        assert after.get("/", headers=carrying(stale)).json()["user"] is None
