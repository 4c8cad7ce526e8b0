"""Encrypted (and signed) cookie sessions through a real Starlette app.

Expiry sealed inside the cookie and enforced on the server (``max_age``,
``idle_timeout``, ``absolute_timeout``), key rotation, the 4096-byte limit
measured on the whole Set-Cookie line, opt-in chunking, opt-in migration from
Starlette's own signed cookies, the weak-secret warning, and the readable
:class:`SignedCookieStore`.

Forged cookies are made with the real cipher and the real record format, so
"the server refuses it" never depends on the browser dropping a cookie.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
import warnings
from collections.abc import Iterator
from typing import Any

import itsdangerous
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware as StarletteSessionMiddleware
from starlette.testclient import TestClient

from asgi_sessions import SessionMiddleware
from asgi_sessions._record import COOKIE_HEAD, pack_cookie
from asgi_sessions.crypto import b64decode, b64encode
from asgi_sessions.errors import SessionTooLarge
from asgi_sessions.stores import CookieStore, EncryptedCookieStore, SignedCookieStore
from tests.apps import (
    OTHER_SECRET,
    SECRET,
    call,
    echo_session,
    open_token,
    session_app,
    session_routes,
    set_cookies,
)
from tests.test_serializer_robustness import too_deep_for_json

DATA = {"user": "alice", "role": "admin"}


def _cookie(token: str, name: str = "session") -> dict[str, str]:
    return {"cookie": f"{name}={token}"}


def _issue(store: CookieStore, data: Any = DATA, **options: Any) -> str:
    """A cookie value issued by a real app using ``store``."""
    with TestClient(session_app(store=store, **options)) as client:
        return set_cookies(client.post("/set", json=data))["session"].value


def _forge(
    store: CookieStore,
    data: Any = DATA,
    *,
    created: int,
    issued: int,
    expires: int | None,
) -> str:
    """A cookie sealed with ``store``'s real keys, carrying the given times."""
    payload = pack_cookie(
        json.dumps(data).encode(), created=created, issued=issued, expires=expires, expiry=None
    )
    return store.seal(payload, "session")


def _show(token: str, **options: Any) -> tuple[Any, dict[str, Any]]:
    """(session seen by the app, Set-Cookie lines) for one request carrying ``token``."""
    with TestClient(session_app(**options)) as client:
        response = client.get("/", headers=_cookie(token))
    return response.json(), set_cookies(response)


def _sleep_past_second(second: int) -> None:
    """Sleep until the clock reads ``second`` plus a few milliseconds."""
    time.sleep(max(0.0, second + 0.05 - time.time()))


# -- expiry sealed inside the cookie -------------------------------------------------


def test_cookie_carries_issued_at_and_expiry_inside_the_ciphertext() -> None:
    store = EncryptedCookieStore(SECRET)
    before = int(time.time())
    head = open_token(store, _issue(store, max_age=600))
    after = int(time.time())
    assert head is not None
    assert before <= head.created == head.issued <= after
    assert head.expires == head.issued + 600
    assert head.data == DATA


def test_cookie_replayed_after_max_age_is_refused() -> None:
    store = EncryptedCookieStore(SECRET)
    _sleep_past_second(int(time.time()) + 1)  # so the first read falls in the same second
    token = _issue(store, max_age=1)
    head = open_token(store, token)
    assert head is not None
    assert _show(token, store=store, max_age=1)[0] == DATA
    _sleep_past_second(head.expires)  # the browser would drop it now; an attacker keeps it
    assert _show(token, store=store, max_age=1)[0] == {}


def test_forged_cookie_past_its_sealed_expiry_is_refused() -> None:
    store = EncryptedCookieStore(SECRET)
    now = int(time.time())
    expired = _forge(store, created=now - 100, issued=now - 100, expires=now - 1)
    valid = _forge(store, created=now - 100, issued=now - 100, expires=now + 100)
    assert _show(expired, store=store)[0] == {}
    assert _show(valid, store=store)[0] == DATA


def test_idle_timeout_refuses_a_cookie_not_refreshed_in_time() -> None:
    store = EncryptedCookieStore(SECRET)
    now = int(time.time())
    idle = _forge(store, created=now - 30, issued=now - 30, expires=now + 1000)
    assert _show(idle, store=store, idle_timeout=20)[0] == {}
    assert _show(idle, store=store, idle_timeout=40)[0] == DATA


def test_absolute_timeout_refuses_an_old_session_however_fresh_its_cookie() -> None:
    store = EncryptedCookieStore(SECRET)
    now = int(time.time())
    old = _forge(store, created=now - 3600, issued=now, expires=now + 1000)
    assert _show(old, store=store, absolute_timeout=1800)[0] == {}
    assert _show(old, store=store, absolute_timeout=7200)[0] == DATA


def test_idle_timeout_reissues_the_cookie_on_a_read_only_request() -> None:
    store = EncryptedCookieStore(SECRET)
    now = int(time.time())
    token = _forge(store, created=now - 5, issued=now - 5, expires=now + 1000)
    data, cookies = _show(token, store=store, idle_timeout=60)
    assert data == DATA
    head = open_token(store, cookies["session"].value)
    assert head is not None
    assert head.issued >= now
    assert head.created == now - 5


def test_refresh_keeps_an_idle_session_alive_until_the_absolute_timeout() -> None:
    """Real time: idle 2 s, absolute 4 s, a read-only request every second.

    Times inside cookies are whole seconds, so each step waits until just
    past the next second: the session outlives its idle timeout because every
    request refreshes it, the cookie it started with would have been refused,
    and the absolute timeout ends it anyway.
    """
    store = EncryptedCookieStore(SECRET)
    app = session_app(store=store, idle_timeout=2, absolute_timeout=4)
    with TestClient(app) as client:
        first = set_cookies(client.post("/set", json=DATA))["session"].value
        head = open_token(store, first)
        assert head is not None
        created = head.created
        for step in (1, 2, 3):
            _sleep_past_second(created + step)
            assert client.get("/").json() == DATA, f"lost after {step} s"
        assert client.get("/", headers=_cookie(first)).json() == {}  # idle for 3 s > 2 s
        _sleep_past_second(created + 4)
        assert client.get("/").json() == {}  # active all along, but 4 s old


# -- rotation ------------------------------------------------------------------------


def _key_id(token: str) -> bytes:
    raw = b64decode(token)
    assert raw is not None
    return raw[1:5]


def test_rotation_reads_a_cookie_sealed_with_the_old_secret() -> None:
    old = _issue(EncryptedCookieStore(OTHER_SECRET))
    assert _show(old, secret_key=[SECRET, OTHER_SECRET])[0] == DATA


def test_rotation_reissues_an_old_cookie_under_the_new_key_on_a_read_only_request() -> None:
    old = _issue(EncryptedCookieStore(OTHER_SECRET))
    new = _issue(EncryptedCookieStore(SECRET))
    data, cookies = _show(old, secret_key=[SECRET, OTHER_SECRET])
    assert data == DATA
    reissued = cookies["session"].value
    assert _key_id(reissued) == _key_id(new) != _key_id(old)
    assert _show(reissued, secret_key=SECRET)[0] == DATA  # readable without the old secret


def test_rotation_leaves_a_current_cookie_alone_on_a_read_only_request() -> None:
    new = _issue(EncryptedCookieStore(SECRET))
    data, cookies = _show(new, secret_key=[SECRET, OTHER_SECRET])
    assert data == DATA
    assert cookies == {}


def test_without_the_old_secret_an_old_cookie_is_refused() -> None:
    old = _issue(EncryptedCookieStore(OTHER_SECRET))
    assert _show(old, secret_key=[SECRET])[0] == {}


# -- the 4096-byte limit, measured on the whole Set-Cookie line -------------------------


def _line_length(store: CookieStore, data: Any, attributes: str) -> int:
    """The Set-Cookie line a session would need (the cipher's output has a fixed length)."""
    payload = b"\0" * (COOKIE_HEAD.size + len(json.dumps(data, separators=(",", ":"))))
    return len(f"session={store.seal(payload, 'session')}; {attributes}")


@pytest.fixture(scope="module")
def at_limit() -> tuple[dict[str, Any], dict[str, Any]]:
    """A session and middleware options whose Set-Cookie line is exactly 4096 bytes,
    and for which one more character makes it 4097."""
    store = EncryptedCookieStore(SECRET)
    for max_age in (1_209_600, 86_400, 3_600):
        attributes = f"path=/; Max-Age={max_age}; httponly; samesite=lax"
        for n in range(2800, 3200):
            data = {"v": "x" * n}
            if _line_length(store, data, attributes) == 4096 and (
                _line_length(store, {"v": "x" * (n + 1)}, attributes) == 4097
            ):
                return data, {"max_age": max_age}
    raise AssertionError("no session fills the line to exactly 4096 bytes")


def test_session_filling_the_set_cookie_line_to_4096_bytes_is_sent(
    at_limit: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    data, options = at_limit
    with TestClient(session_app(**options)) as client:
        response = client.post("/set", json=data)
        lines = response.headers.get_list("set-cookie")
        assert len(lines) == 1
        assert len(lines[0].encode("latin-1")) == 4096
        assert client.get("/").json() == data


def test_one_byte_over_raises_session_too_large_with_the_size(
    at_limit: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    data, options = at_limit
    with (
        TestClient(session_app(**options)) as client,
        pytest.raises(SessionTooLarge) as caught,
    ):
        client.post("/set", json={"v": data["v"] + "x"})
    assert caught.value.size == 4097
    assert caught.value.limit == 4096
    assert "4097" in str(caught.value)
    assert not caught.value.chunked
    assert "enable chunking" in str(caught.value)


def test_limit_counts_the_cookie_attributes(
    at_limit: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    data, options = at_limit
    domain = "www.example.com"
    with (
        TestClient(session_app(domain=domain, **options)) as client,
        pytest.raises(SessionTooLarge) as caught,
    ):
        client.post("/set", json=data)  # fits with no domain, not with one
    assert caught.value.size == 4096 + len(f"; domain={domain}")


def test_too_large_session_raises_before_anything_is_sent(
    at_limit: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    data, options = at_limit
    too_big = data["v"] + "x"

    async def app(scope: Any, receive: Any, send: Any) -> None:
        scope["session"]["v"] = too_big
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"never sent"})

    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> Any:
        return {"type": "http.request", "body": b""}

    scope = {"type": "http", "path": "/", "headers": []}
    middleware = SessionMiddleware(app, secret_key=SECRET, **options)
    with pytest.raises(SessionTooLarge):
        _run(middleware(scope, receive, send))
    assert sent == []  # the server answers 500 itself; no half-made response went out


def _run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


# -- chunking -------------------------------------------------------------------------

BIG = {"blob": "q" * 10_000, "user": "alice"}


@pytest.fixture
def chunked_client() -> Iterator[TestClient]:
    with TestClient(session_app(store=EncryptedCookieStore(SECRET, chunked=True))) as client:
        yield client


def test_without_chunking_a_10kb_session_is_too_large() -> None:
    with TestClient(session_app()) as client, pytest.raises(SessionTooLarge):
        client.post("/set", json=BIG)


def test_chunked_10kb_session_round_trips_across_numbered_cookies(
    chunked_client: TestClient,
) -> None:
    cookies = set_cookies(chunked_client.post("/set", json=BIG))
    names = sorted(cookies)
    assert names[0] == "session"
    assert names[1:] == [f"session.{i}" for i in range(1, len(names))]
    assert len(names) >= 3
    assert all(len(cookie.line.encode()) <= 4096 for cookie in cookies.values())
    assert all(cookie.attribute("path") == "/" for cookie in cookies.values())
    assert chunked_client.get("/").json() == BIG


def test_shrinking_a_chunked_session_deletes_the_stale_chunks(
    chunked_client: TestClient,
) -> None:
    grown = set_cookies(chunked_client.post("/set", json=BIG))
    shrunk = set_cookies(chunked_client.post("/replace", json={"user": "alice"}))
    stale = sorted(name for name in grown if name != "session")
    assert not shrunk["session"].deletes
    for name in stale:
        assert shrunk[name].deletes
        assert shrunk[name].value == "null"
        assert shrunk[name].attribute("path") == "/"
    assert set(shrunk) == {"session", *stale}
    assert set(chunked_client.cookies.keys()) == {"session"}
    assert chunked_client.get("/").json() == {"user": "alice"}


def test_shrinking_from_more_chunks_to_fewer_deletes_only_the_extra_ones(
    chunked_client: TestClient,
) -> None:
    many = set_cookies(chunked_client.post("/set", json={"blob": "q" * 14_000}))
    few = set_cookies(chunked_client.post("/replace", json={"blob": "q" * 5_000}))
    kept = {name for name, cookie in few.items() if not cookie.deletes}
    deleted = {name for name, cookie in few.items() if cookie.deletes}
    assert kept == {"session", "session.1"}
    assert deleted == set(many) - kept
    assert chunked_client.get("/").json() == {"blob": "q" * 5_000}


def test_clearing_a_chunked_session_deletes_every_chunk(chunked_client: TestClient) -> None:
    grown = set_cookies(chunked_client.post("/set", json=BIG))
    cleared = set_cookies(chunked_client.post("/clear"))
    assert set(cleared) == set(grown)
    assert all(cookie.deletes for cookie in cleared.values())
    assert not chunked_client.cookies.keys()


def test_a_session_too_large_even_for_16_chunks_raises(chunked_client: TestClient) -> None:
    with pytest.raises(SessionTooLarge) as caught:
        chunked_client.post("/set", json={"blob": "q" * 60_000})
    assert caught.value.limit == 16 * 4096
    assert caught.value.size > caught.value.limit
    assert str(caught.value.size) in str(caught.value)
    # Chunking is on: the advice is not to turn it on.
    assert caught.value.chunked
    assert "enable chunking" not in str(caught.value)
    assert "browser limit" not in str(caught.value)


def test_a_missing_chunk_gives_an_empty_session(chunked_client: TestClient) -> None:
    cookies = set_cookies(chunked_client.post("/set", json=BIG))
    header = "; ".join(f"{c.name}={c.value}" for c in cookies.values() if c.name != "session.1")
    chunked_client.cookies.clear()
    assert chunked_client.get("/", headers={"cookie": header}).json() == {}


def test_a_chunk_from_another_session_gives_an_empty_session(
    chunked_client: TestClient,
) -> None:
    first = set_cookies(chunked_client.post("/set", json=BIG))
    chunked_client.cookies.clear()
    second = set_cookies(chunked_client.post("/set", json={**BIG, "user": "mallory"}))
    mixed = {**{n: c.value for n, c in first.items()}, "session.1": second["session.1"].value}
    chunked_client.cookies.clear()
    header = "; ".join(f"{name}={value}" for name, value in mixed.items())
    assert chunked_client.get("/", headers={"cookie": header}).json() == {}


# -- migration from Starlette's SessionMiddleware ----------------------------------------


def _starlette_cookie(data: Any = DATA, secret: str = SECRET) -> str:
    """A cookie made by Starlette's real SessionMiddleware."""
    app = Starlette(
        routes=session_routes(),
        middleware=[Middleware(StarletteSessionMiddleware, secret_key=secret)],
    )
    with TestClient(app) as client:
        client.post("/set", json=data)
        return str(client.cookies["session"])


def _migrating(**options: Any) -> EncryptedCookieStore:
    return EncryptedCookieStore(SECRET, accept_starlette_cookies=True, **options)


def test_starlette_cookie_is_read_with_the_opt_in() -> None:
    assert _show(_starlette_cookie(), store=_migrating())[0] == DATA


def test_starlette_cookie_is_reissued_encrypted_on_that_response() -> None:
    data, cookies = _show(_starlette_cookie(), store=_migrating())
    assert data == DATA
    reissued = cookies["session"].value
    assert "." not in reissued
    raw = b64decode(reissued)
    assert raw is not None
    assert raw[0] == 1
    assert "alice" not in reissued
    assert _show(reissued, store=EncryptedCookieStore(SECRET))[0] == DATA


def test_starlette_cookie_is_an_empty_session_without_the_opt_in() -> None:
    data, cookies = _show(_starlette_cookie(), store=EncryptedCookieStore(SECRET))
    assert data == {}
    assert cookies == {}


def test_starlette_cookie_signed_with_another_secret_is_refused() -> None:
    assert _show(_starlette_cookie(secret=OTHER_SECRET), store=_migrating())[0] == {}


def test_starlette_cookie_older_than_max_age_is_refused() -> None:
    class OldSigner(itsdangerous.TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - 7200

    payload = base64.b64encode(json.dumps(DATA).encode())
    old = OldSigner(SECRET).sign(payload).decode()
    assert _show(old, store=_migrating(), max_age=3600)[0] == {}
    assert _show(old, store=_migrating(), max_age=10_800)[0] == DATA


def test_tampered_starlette_cookie_is_refused() -> None:
    genuine = _starlette_cookie()
    body, rest = genuine.split(".", 1)
    forged_body = base64.b64encode(json.dumps({**DATA, "role": "root"}).encode()).decode()
    assert forged_body != body
    assert _show(f"{forged_body}.{rest}", store=_migrating())[0] == {}


# -- weak secrets ----------------------------------------------------------------------


def test_weak_secret_warns_once_at_construction_not_per_request() -> None:
    with pytest.warns(UserWarning, match="shorter than 32 bytes") as record:
        app = SessionMiddleware(echo_session, secret_key="too-short")
    assert len(record) == 1
    with warnings.catch_warnings(record=True) as later:
        warnings.simplefilter("always")
        for _ in range(3):
            assert _run(call(app, [(b"cookie", b"session=garbage")])).status == 200
    assert later == []


def test_weak_secret_warning_points_at_the_middleware_construction() -> None:
    with pytest.warns(UserWarning, match="shorter than 32 bytes") as record:
        SessionMiddleware(echo_session, secret_key="too-short")
    assert record[0].filename == __file__


@pytest.mark.parametrize("store_class", [EncryptedCookieStore, SignedCookieStore])
def test_weak_old_secret_in_a_ring_warns(store_class: type[CookieStore]) -> None:
    with pytest.warns(UserWarning, match="shorter than 32 bytes"):
        store_class([SECRET, "old-and-short"])  # type: ignore[call-arg]


def test_a_32_byte_secret_does_not_warn() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SessionMiddleware(echo_session, secret_key="s" * 32)
        EncryptedCookieStore(b"\x00" * 32)


# -- the readable signed store -------------------------------------------------------------


def _signed(secret: Any = SECRET) -> SignedCookieStore:
    return SignedCookieStore(secret)


def test_signed_store_is_documented_as_readable() -> None:
    assert SignedCookieStore.__doc__ is not None
    assert "readable" in SignedCookieStore.__doc__


def test_signed_cookie_is_readable_by_base64_decoding() -> None:
    token = _issue(_signed())
    body = token.split(".")[0]
    plain = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    assert json.loads(plain[COOKIE_HEAD.size :]) == DATA


def test_signed_cookie_round_trips() -> None:
    assert _show(_issue(_signed()), store=_signed())[0] == DATA


def test_tampered_signed_cookie_is_refused() -> None:
    token = _issue(_signed())
    body, signature = token.split(".")
    plain = b64decode(body)
    assert plain is not None
    forged = plain.replace(b'"admin"', b'"owner"')
    assert forged != plain
    assert _show(f"{b64encode(forged)}.{signature}", store=_signed())[0] == {}


def test_signed_cookie_with_a_broken_signature_is_refused() -> None:
    body, signature = _issue(_signed()).split(".")
    raw = b64decode(signature)
    assert raw is not None
    broken = b64encode(raw[:-1] + bytes([raw[-1] ^ 1]))
    assert _show(f"{body}.{broken}", store=_signed())[0] == {}


def test_signed_cookie_is_refused_under_another_name() -> None:
    token = _issue(_signed())
    with TestClient(session_app(store=_signed(), session_cookie="other")) as client:
        assert client.get("/", headers=_cookie(token, "other")).json() == {}


def test_signed_cookie_rotation_reads_old_and_reissues_under_the_new_key() -> None:
    old = _issue(_signed(OTHER_SECRET))
    new = _issue(_signed(SECRET))
    data, cookies = _show(old, store=_signed([SECRET, OTHER_SECRET]))
    assert data == DATA
    reissued = cookies["session"].value

    def key_id(token: str) -> bytes:
        raw = b64decode(token.split(".")[1])
        assert raw is not None
        return raw[:4]

    assert key_id(reissued) == key_id(new) != key_id(old)
    assert _show(old, store=_signed(SECRET))[0] == {}


def test_browser_session_cookies_still_end_on_the_server() -> None:
    """max_age=None: no Max-Age for the browser, but a sealed expiry caps replay (14 days)."""
    from asgi_sessions.session import DEFAULT_SERVER_AGE

    store = EncryptedCookieStore(SECRET)
    now = int(time.time())

    def sealed(issued: int, expires: int | None) -> str:
        payload = pack_cookie(
            b'{"user":"alice"}', created=issued, issued=issued, expires=expires, expiry=None
        )
        return store.seal(payload, "session")

    # Written 15 days ago with no expiry at all: refused, though it has no Max-Age.
    assert _show(sealed(now - 15 * 86400, None), store=store, max_age=None)[0] == {}
    # What the middleware writes carries the cap, and is accepted until then.
    assert _show(sealed(now, now + DEFAULT_SERVER_AGE), store=store, max_age=None)[0] == {
        "user": "alice"
    }


def test_starlette_cookie_nested_too_deeply_to_decode_is_refused() -> None:
    depth = too_deep_for_json()  # about 1,000 levels on 3.11, several thousand on 3.12+
    deep = b'{"tree":' + b"[" * depth + b"]" * depth + b"}"
    token = itsdangerous.TimestampSigner(SECRET).sign(base64.b64encode(deep)).decode()
    assert _show(token, store=_migrating())[0] == {}


def test_a_starlette_cookie_too_large_to_reissue_encrypted_is_still_read(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Encrypted, the same data takes some 35 bytes more than Starlette's
    # signed cookie: a Starlette session just under the browser's limit
    # cannot be re-issued. It is read all the same, and stays as it is.
    signer = itsdangerous.TimestampSigner(SECRET)

    def starlette_size(data: dict[str, str]) -> int:  # as Starlette signs it
        return len(signer.sign(base64.b64encode(json.dumps(data).encode())))

    size = 2_900
    while starlette_size({"blob": "x" * (size + 1)}) < 4_020:
        size += 1
    data = {"blob": "x" * size}
    token = _starlette_cookie(data)
    assert len("session=" + token) < 4_096 - 60  # it fits, with its attributes
    with caplog.at_level(logging.WARNING, logger="asgi_sessions"):
        seen, cookies = _show(token, store=_migrating())
    assert seen == data
    assert "session" not in cookies  # not re-issued, not deleted
    assert "too large to re-issue" in caplog.text
    assert token not in caplog.text
