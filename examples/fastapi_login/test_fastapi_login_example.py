"""The FastAPI login example: every flow, on SQLite and on Redis, in a browser-like client."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterator
from http.cookiejar import Cookie
from pathlib import Path

import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from asgi_sessions.stores import RedisStore
from examples.fastapi_login.app import USERS, check_password, create_app, hash_password
from examples.fastapi_login.testsupport import Backend, backend_for


@pytest.fixture(params=["sqlite", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    with backend_for(str(request.param), tmp_path, "example-login") as made:
        yield made


@pytest.fixture
def app(backend: Backend) -> FastAPI:
    return create_app(backend.store, secret_key="test-" + "k" * 40)


def log_in(client: TestClient, username: str, password: str) -> str:
    response = client.post("/login", data={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return response.text


def test_shop_login_profile_cart_logout(app: FastAPI, backend: Backend) -> None:
    with TestClient(app) as client:
        home = client.get("/")
        assert "Your cart is empty." in home.text
        assert "Log in" in home.text
        assert "set-cookie" not in home.headers  # looking costs no session
        assert backend.records() == 0

        # The cart fills across page loads, logged out, and shows on every page.
        for item in ("tea", "scones", "tea"):
            client.post("/cart/add", data={"item": item, "next": "/"})
        summary = "Cart (3): 2 &times; Earl Grey tea, 1 &times; Scones"
        for path in ("/", "/cart", "/login"):
            assert summary in client.get(path).text, path
        anonymous = client.cookies["session"]
        assert backend.records() == 1

        # Private pages need a login.
        response = client.get("/profile", follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"] == "/login?next=%2Fprofile"

        profile = log_in(client, "alice", "wonderland")
        assert "Hello, Alice Liddell" in profile
        assert "1 Rabbit Hole, Oxford" in profile
        assert summary in profile  # the anonymous cart survived the login
        logged_in = client.cookies["session"]
        assert logged_in != anonymous  # a new id at login: no session fixation
        assert backend.records() == 1  # and the anonymous record is gone

        # The cookie is an opaque 256-bit id: the data is on the server.
        raw = base64.urlsafe_b64decode(logged_in + "=")
        assert len(raw) == 32
        for value in ("alice", "Alice Liddell", "Earl Grey", "scones", "Rabbit"):
            assert value not in logged_in
            assert value.encode() not in raw

        client.post("/cart/add", data={"item": "jam", "next": "/profile"})
        assert "1 &times; Strawberry jam" in client.get("/profile").text

        response = client.post("/logout", follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"] == "/login"
        assert response.headers["set-cookie"].startswith("session=null; path=/; expires=Thu")
        assert "session" not in client.cookies
        assert backend.records() == 0  # deleted on the server, not just forgotten

        after = client.get("/profile")
        assert after.url.path == "/login"
        assert "Alice" not in after.text
        assert "Your cart is empty." in after.text

    # A copy of the cookie taken before logout is worth nothing afterwards.
    with TestClient(app, cookies={"session": logged_in}) as thief:
        response = thief.get("/profile", follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"] == "/login?next=%2Fprofile"


def test_every_page_is_no_store(app: FastAPI) -> None:
    with TestClient(app) as client:
        for path in ("/", "/cart", "/login"):
            assert client.get(path).headers["cache-control"] == "no-store", path
        log_in(client, "bob", "builder")
        response = client.get("/profile")
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["vary"] == "Cookie"
        redirect = client.post("/logout", follow_redirects=False)
        assert redirect.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    ("username", "password"),
    [("alice", "builder"), ("alice", ""), ("mallory", "wonderland"), ("ALICE", "nope")],
)
def test_a_wrong_password_or_user_is_refused(app: FastAPI, username: str, password: str) -> None:
    with TestClient(app) as client:
        response = client.post("/login", data={"username": username, "password": password})
        assert response.status_code == 401
        assert "Wrong username or password." in response.text
        assert "Signed in" not in response.text
        assert client.get("/profile").url.path == "/login"


def test_usernames_are_case_insensitive(app: FastAPI) -> None:
    with TestClient(app) as client:
        assert "Hello, Alice Liddell" in log_in(client, " Alice ", "wonderland")


def test_switching_users_starts_from_an_empty_session(app: FastAPI) -> None:
    with TestClient(app) as client:
        log_in(client, "alice", "wonderland")
        client.post("/cart/add", data={"item": "cream"})
        assert "Clotted cream" in client.get("/cart").text
        page = log_in(client, "bob", "builder")
        assert "Hello, Bob Builder" in page
        assert "Your cart is empty." in page  # alice's cart does not leak to bob


def test_the_cart_can_be_emptied_and_refuses_unknown_items(app: FastAPI) -> None:
    with TestClient(app) as client:
        client.post("/cart/add", data={"item": "scones"})
        assert client.post("/cart/add", data={"item": "caviar"}).status_code == 400
        assert "Cart (1): 1 &times; Scones" in client.get("/cart").text
        assert "Your cart is empty." in client.post("/cart/clear").text


def test_after_login_only_local_targets_are_followed(app: FastAPI) -> None:
    with TestClient(app) as client:
        for target, expected in [
            ("/cart", "/cart"),
            ("//evil.example/", "/profile"),
            ("/\\evil.example", "/profile"),
            ("/\t/evil.example", "/profile"),
            ("https://evil.example/", "/profile"),
        ]:
            response = client.post(
                "/login",
                data={"username": "alice", "password": "wonderland", "next": target},
                follow_redirects=False,
            )
            assert response.headers["location"] == expected, target


def test_cross_site_form_posts_are_refused(app: FastAPI) -> None:
    with TestClient(app) as client:
        attacks = [{"origin": "http://evil.example"}, {"sec-fetch-site": "cross-site"}]
        for headers in attacks:
            response = client.post(
                "/login", data={"username": "alice", "password": "wonderland"}, headers=headers
            )
            assert response.status_code == 403
        assert "session" not in client.cookies
        same_site = {"origin": "http://testserver", "sec-fetch-site": "same-origin"}
        response = client.post(
            "/login", data={"username": "alice", "password": "wonderland"}, headers=same_site
        )
        assert "Hello, Alice Liddell" in response.text


def test_the_store_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SESSION_STORE_URL", f"sqlite+aiosqlite:///{tmp_path}/env.db")
    monkeypatch.setenv("SESSION_SECRET_KEY", "x" * 43)
    with TestClient(create_app()) as client:
        assert "Hello, Bob Builder" in log_in(client, "bob", "builder")
    assert (tmp_path / "env.db").exists()


def test_the_encrypted_cookie_store_works_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SESSION_STORE_URL", "cookie")
    monkeypatch.setenv("SESSION_SECRET_KEY", "y" * 43)
    with TestClient(create_app()) as client:
        assert "Hello, Bob Builder" in log_in(client, "bob", "builder")
        assert "Bob" not in client.cookies["session"]


def test_a_store_that_is_down_is_a_503_page() -> None:
    app = create_app(RedisStore("redis://127.0.0.1:1/0", timeout=0.5), secret_key="z" * 40)
    with TestClient(app, cookies={"session": secrets.token_urlsafe(32)}) as client:
        response = client.get("/")
        assert response.status_code == 503
        assert response.headers["retry-after"] == "5"


def test_passwords_are_kept_as_scrypt_hashes() -> None:
    for user in USERS.values():
        assert user.password_hash.startswith("scrypt$16384$8$1$")
    assert check_password("wonderland", USERS["alice"].password_hash)
    assert not check_password("wonderland", USERS["bob"].password_hash)
    salt = bytes(16)
    assert check_password("pw", hash_password("pw", salt))
    assert hash_password("pw", salt) != hash_password("pw", b"\x01" * 16)


def test_sign_out_all_other_devices(app: FastAPI, backend: Backend) -> None:
    # One client (one event loop for the store's connections), three devices'
    # cookie jars, swapped in turn.
    with TestClient(app) as client:
        devices: dict[str, list[Cookie]] = {}
        for device, (user, password) in {
            "laptop": ("alice", "wonderland"),
            "phone": ("alice", "wonderland"),
            "other": ("bob", "builder"),
        }.items():
            client.cookies.clear()
            log_in(client, user, password)
            devices[device] = list(client.cookies.jar)

        def use(device: str) -> None:
            client.cookies.clear()
            for cookie in devices[device]:
                client.cookies.jar.set_cookie(cookie)

        use("laptop")
        page = client.post("/logout-others")
        assert "Signed out 1 other session(s)." in page.text
        assert client.cookies["session"] != devices["laptop"][0].value, "the id must change"
        assert "Alice Liddell" in client.get("/profile").text
        use("phone")
        assert client.get("/profile", follow_redirects=False).status_code == 303
        use("other")
        assert "Bob Builder" in client.get("/profile").text
        assert backend.records() == 2


def test_sign_out_others_with_cookie_sessions_says_it_cannot(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SESSION_STORE_URL", "cookie")
    monkeypatch.setenv("SESSION_SECRET_KEY", "y" * 43)
    with TestClient(create_app()) as client:
        log_in(client, "bob", "builder")
        page = client.post("/logout-others")
        assert "Cookie sessions cannot be ended from the server." in page.text
