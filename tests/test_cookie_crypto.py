"""The encrypted session cookie exactly as DESIGN §4 decides it, seen from outside.

Almost every cookie here is issued by a real app (our middleware over a bare
ASGI app, driven with raw headers by :func:`tests.apps.call`, so any exception
reaches the test) and taken apart as a browser or an attacker would. Covered:
the token layout (unpadded base64url of version byte, key id, nonce,
ciphertext and tag, with its exact length), the strict base64url codec that
accepts only the canonical spelling, the key id, a fresh nonce per cookie,
nothing of the session readable, and per-purpose HKDF keys. The keys are
derived in this file from the secret and the labels DESIGN §4 names, then used
to open real cookies, so the checks do not rely on the library's own
derivation. Also covered: an AAD that binds the version byte, key id and
cookie name, expiry enforced on the server (forged cookies and real time), key
rotation on a read-only request, the 4096-byte Set-Cookie limit found by
search, chunking, migration from Starlette's own cookies, the weak-secret
warning, the readable :class:`SignedCookieStore` (signed with the HKDF signing
key) and ``python -m asgi_sessions inspect``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import importlib
import json
import logging
import secrets
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCMSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware as StarletteSessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient
from starlette.types import Receive, Scope, Send

from asgi_sessions import SessionMiddleware, crypto
from asgi_sessions.__main__ import main
from asgi_sessions._record import COOKIE_HEAD, pack_cookie
from asgi_sessions.crypto import KeyRing, b64decode, b64encode
from asgi_sessions.errors import ImproperlyConfigured, SessionTooLarge
from asgi_sessions.stores import EncryptedCookieStore, SignedCookieStore
from asgi_sessions.stores.cookie import CookieRefused
from tests.apps import OTHER_SECRET, SECRET, Reply, SetCookie, call, set_cookies

DATA = {"user": "alice-the-admin", "cart": ["sku-98765", "sku-43210"], "visits": 42}
EXPIRED = "expires=Thu, 01 Jan 1970 00:00:00 GMT"

Action = Callable[[Any], object]


# -- helpers -------------------------------------------------------------------------


def _app(action: Action | None = None, **options: Any) -> SessionMiddleware:
    """Our middleware over a bare ASGI app that applies ``action`` to the session
    (``None``: only reads it) and answers 200 with the session as JSON."""
    options.setdefault("secret_key", SECRET)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        session = scope["session"]
        if action is not None:
            action(session)
        body = json.dumps(session.copy()).encode("utf-8")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    return SessionMiddleware(app, **options)


def _update(data: dict[str, Any]) -> Action:
    return lambda session: session.update(data)


def _replace(data: dict[str, Any]) -> Action:
    def action(session: Any) -> None:
        session.clear()
        session.update(data)

    return action


def _request(app: Any, cookie: str | None = None) -> Reply:
    headers = [] if cookie is None else [(b"cookie", cookie.encode("latin-1"))]
    return asyncio.run(call(app, headers))


def _issue(data: dict[str, Any] = DATA, name: str = "session", **options: Any) -> str:
    """The cookie value a real app sets for a new session holding ``data``."""
    reply = _request(_app(_update(data), session_cookie=name, **options))
    return set_cookies(reply)[name].value


def _read(token: str, name: str = "session", **options: Any) -> tuple[Any, dict[str, SetCookie]]:
    """(session the app saw, Set-Cookie lines) for a read-only request carrying ``token``."""
    reply = _request(_app(session_cookie=name, **options), f"{name}={token}")
    assert reply.status == 200
    return reply.json(), set_cookies(reply)


def _jar(cookies: dict[str, SetCookie]) -> str:
    """A Cookie header carrying every cookie that was set (not deleted)."""
    return "; ".join(f"{c.name}={c.value}" for c in cookies.values() if not c.deletes)


def _raw(token: str) -> bytes:
    raw = b64decode(token)
    assert raw is not None, "not canonical unpadded base64url"
    return raw


def _hkdf(secret: str, info: bytes, length: int = 32) -> bytes:
    """HKDF-SHA256 as DESIGN §4 specifies it, computed here rather than by the library."""
    return HKDF(
        algorithm=hashes.SHA256(), length=length, salt=b"asgi_sessions/hkdf/v1", info=info
    ).derive(secret.encode("utf-8"))


ENCRYPT_INFO = b"asgi_sessions/aes-256-gcm-siv"
ENCRYPTION_KEY = _hkdf(SECRET, ENCRYPT_INFO)
SIGNING_KEY = _hkdf(SECRET, b"asgi_sessions/hmac-sha256")
KEY_ID = _hkdf(SECRET, b"asgi_sessions/key-id", 4)


# -- token layout --------------------------------------------------------------------


def test_token_is_version_keyid_nonce_ciphertext_in_unpadded_base64url() -> None:
    token = _issue()
    assert "=" not in token
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    raw = _raw(token)
    assert raw == base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    assert b64encode(raw) == token
    assert raw[0] == crypto.FORMAT_VERSION == 1
    plaintext = KeyRing(SECRET).open(raw, b"session")
    assert plaintext is not None
    # version (1) + key id (4) + nonce (12) + ciphertext (same length as plaintext) + tag (16)
    assert len(raw) == 1 + 4 + 12 + len(plaintext[0]) + 16


def test_key_id_is_shared_by_one_secret_and_differs_for_another() -> None:
    first, second = _raw(_issue({"a": 1})), _raw(_issue({"b": 2}))
    other = _raw(_issue({"a": 1}, secret_key=OTHER_SECRET))
    assert first[1:5] == second[1:5]
    assert other[1:5] != first[1:5]
    assert first[1:5] == KEY_ID


def test_every_cookie_gets_its_own_nonce() -> None:
    """The same session, from 20 fresh apps and then 20 times from one app."""
    nonces = [_raw(_issue())[5:17] for _ in range(20)]
    app = _app(_update(DATA))
    nonces += [_raw(set_cookies(_request(app))["session"].value)[5:17] for _ in range(20)]
    assert len(set(nonces)) == 40
    assert all(len(nonce) == 12 for nonce in nonces)


def test_no_session_value_is_visible_in_the_cookie_text_or_its_bytes() -> None:
    token = _issue()
    raw = _raw(token)
    for needle in ("alice-the-admin", "alice", "sku-98765", "sku-43210", "user", "cart", "visits"):
        assert needle not in token
        assert needle.encode() not in raw
        assert base64.b64encode(needle.encode()).decode()[:6] not in token
    assert b"42" not in raw[17:]  # hardly meaningful, but the JSON is not there verbatim
    assert b'"visits"' not in raw
    # Not even eight consecutive bytes of the serialised session survive.
    plain = json.dumps(DATA, separators=(",", ":")).encode("utf-8")
    assert not any(plain[i : i + 8] in raw for i in range(len(plain) - 7))


# -- the base64url spelling ----------------------------------------------------------


@pytest.mark.parametrize("size", range(0, 9))
def test_b64_round_trips_without_padding(size: int) -> None:
    data = bytes(range(250, 250 - size, -1))
    text = b64encode(data)
    assert "=" not in text
    assert b64decode(text) == data


@pytest.mark.parametrize(
    "text",
    ["QQ==", "QR", "QUF", "QUJ", "Q", "Q+E", "Q/E", "QU E", "QUé", "QU\n"],
    ids=[
        "padded",
        "noncanonical-2",
        "noncanonical-3a",
        "noncanonical-3b",
        "one-char",
        "plus",
        "slash",
        "space",
        "non-ascii",
        "newline",
    ],
)
def test_b64_refuses_all_but_the_canonical_spelling(text: str) -> None:
    assert b64decode(text) is None


# -- per-purpose keys ----------------------------------------------------------------


def test_encryption_signing_and_key_id_use_distinct_hkdf_infos_and_keys() -> None:
    infos = {crypto._INFO_ENCRYPT, crypto._INFO_SIGN, crypto._INFO_KEY_ID}
    assert len(infos) == 3
    key = KeyRing(SECRET)._keys[0]
    assert key.mac_key == SIGNING_KEY
    assert key.key_id == KEY_ID
    keys = {ENCRYPTION_KEY, SIGNING_KEY, KEY_ID, SECRET.encode()[:32]}
    assert len(keys) == 4  # no two purposes share key material, and none is the secret
    assert KEY_ID not in (ENCRYPTION_KEY[:4], SIGNING_KEY[:4])


def test_str_and_bytes_secrets_derive_the_same_keys() -> None:
    text, raw = KeyRing(SECRET)._keys[0], KeyRing(SECRET.encode())._keys[0]
    assert text.key_id == raw.key_id == KEY_ID
    assert text.mac_key == raw.mac_key == SIGNING_KEY
    sealed = KeyRing(SECRET).seal(b"payload", b"session")
    assert KeyRing(SECRET.encode()).open(sealed, b"session") == (b"payload", False)


@pytest.mark.parametrize("kind", [bytearray, memoryview])
def test_a_bytearray_or_memoryview_secret_is_one_secret(kind: Callable[[bytes], Any]) -> None:
    # They are sequences, but not of secrets: each byte used to become a
    # one-byte "secret" of its own, and the first of them sealed every cookie.
    ring = KeyRing(kind(SECRET.encode()))
    assert len(ring) == 1
    assert not ring.weak
    sealed = ring.seal(b"payload", b"session")
    assert KeyRing(SECRET).open(sealed, b"session") == (b"payload", False)
    assert len(KeyRing([kind(SECRET.encode()), OTHER_SECRET])) == 2


@pytest.mark.parametrize("bad", [[1, 2, 3], [SECRET, None], [SECRET, 4.5], object()])
def test_secrets_that_are_not_text_or_bytes_are_refused(bad: Any) -> None:
    with pytest.raises(ImproperlyConfigured, match="must be str or bytes"):
        KeyRing(bad)


def test_objects_whose_str_is_the_secret_are_accepted() -> None:
    from starlette.datastructures import Secret

    sealed = KeyRing(Secret(SECRET)).seal(b"payload", b"session")
    assert KeyRing(SECRET).open(sealed, b"session") == (b"payload", False)


def test_cookie_decrypts_with_the_hkdf_encryption_key_and_nothing_else() -> None:
    raw = _raw(_issue())
    nonce, body, aad = raw[5:17], raw[17:], raw[:5] + b"session"
    plaintext = AESGCMSIV(ENCRYPTION_KEY).decrypt(nonce, body, aad)
    assert json.loads(plaintext[COOKIE_HEAD.size :]) == DATA
    # version (1) + key id (4) + nonce (12) + ciphertext (same length as plaintext) + tag (16)
    assert len(raw) == 1 + 4 + 12 + len(plaintext) + 16
    for wrong_key in (
        SIGNING_KEY,
        _hkdf(SECRET, b"asgi_sessions/other"),
        _hkdf(OTHER_SECRET, ENCRYPT_INFO),
        SECRET.encode()[:32],  # the raw secret is never the key
    ):
        with pytest.raises(InvalidTag):
            AESGCMSIV(wrong_key).decrypt(nonce, body, aad)


# -- the AAD binds the version byte, key id and cookie name ---------------------------


@pytest.mark.parametrize(
    "aad",
    [b"session", b"\x01" + KEY_ID, b"\x02" + KEY_ID + b"session", b"\x01" + KEY_ID + b"other"],
    ids=["without-header", "without-name", "other-version", "other-name"],
)
def test_aad_binds_version_key_id_and_cookie_name(aad: bytes) -> None:
    raw = _raw(_issue())
    assert AESGCMSIV(ENCRYPTION_KEY).decrypt(raw[5:17], raw[17:], raw[:5] + b"session")
    with pytest.raises(InvalidTag):
        AESGCMSIV(ENCRYPTION_KEY).decrypt(raw[5:17], raw[17:], aad)


def test_version_byte_is_checked() -> None:
    forged = b64encode(b"\x02" + _raw(_issue())[1:])
    with pytest.raises(CookieRefused, match="does not verify"):
        EncryptedCookieStore(SECRET).open(forged, "session", None)


def test_token_issued_under_one_name_is_refused_under_another(
    caplog: pytest.LogCaptureFixture,
) -> None:
    token = _issue(name="a")
    assert _read(token, name="a")[0] == DATA
    caplog.set_level(logging.DEBUG, logger="asgi_sessions")
    data, cookies = _read(token, name="b")
    assert data == {}
    assert cookies == {}
    assert any("refused" in record.getMessage() for record in caplog.records)


# -- expiry enforced on the server ----------------------------------------------------


def _forge(
    data: dict[str, Any], *, created: int, issued: int, expires: int, secret: str = SECRET
) -> str:
    payload = pack_cookie(
        json.dumps(data).encode(), created=created, issued=issued, expires=expires, expiry=None
    )
    return EncryptedCookieStore(secret).seal(payload, "session")


def test_cookie_replayed_after_its_sealed_expiry_is_refused() -> None:
    now = int(time.time())
    assert _read(_forge(DATA, created=now - 100, issued=now - 50, expires=now + 60))[0] == DATA
    assert _read(_forge(DATA, created=now - 100, issued=now - 50, expires=now - 1))[0] == {}
    assert _read(_forge(DATA, created=now - 100, issued=now - 50, expires=now))[0] == {}


def test_forged_cookie_with_another_secret_is_refused() -> None:
    now = int(time.time())
    token = _forge(DATA, created=now, issued=now, expires=now + 60, secret=OTHER_SECRET)
    assert _read(token)[0] == {}


def _sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.time()))


def test_idle_and_absolute_timeouts_in_real_time() -> None:
    """idle_timeout=1, absolute_timeout=3: times inside cookies are whole seconds,
    so each request is made just after a second boundary (about 4 s of sleep)."""
    options: dict[str, Any] = {"idle_timeout": 1, "absolute_timeout": 3}
    store = EncryptedCookieStore(SECRET)
    start = int(time.time()) + 1
    _sleep_until(start + 0.05)
    first = _issue(store=store, **options)
    assert _read(first, store=store, **options)[0] == DATA  # same second: alive, not re-issued

    # 1 s later, within the idle window: alive, and refreshed on a read-only request.
    _sleep_until(start + 1.05)
    data, cookies = _read(first, store=store, **options)
    assert data == DATA
    second = cookies["session"].value
    # 2 s later: the cookie that was never refreshed has been idle too long ...
    _sleep_until(start + 2.05)
    assert _read(first, store=store, **options)[0] == {}
    # ... while the refreshed one lives on.
    data, cookies = _read(second, store=store, **options)
    assert data == DATA
    third = cookies["session"].value
    # 3 s after creation: over, however active it was.
    _sleep_until(start + 3.05)
    assert _read(third, store=store, **options) == ({}, {})


# -- rotation ------------------------------------------------------------------------

OLD = "old-secret-for-rotation-0123456789abcdefghijkl"
NEW = "new-secret-for-rotation-0123456789abcdefghijkl"


def test_rotation_reads_an_old_cookie_and_reissues_it_under_the_new_key() -> None:
    old_token = _issue(secret_key=OLD)
    new_key_id = _raw(_issue(secret_key=NEW))[1:5]
    assert _raw(old_token)[1:5] != new_key_id
    data, cookies = _read(old_token, secret_key=[NEW, OLD])  # a read-only request
    assert data == DATA
    reissued = cookies["session"].value
    assert _raw(reissued)[1:5] == new_key_id
    assert _read(reissued, secret_key=[NEW])[0] == DATA
    # A current cookie is not re-issued on a read-only request.
    assert _read(reissued, secret_key=[NEW, OLD]) == (DATA, {})


def test_an_app_without_the_old_secret_refuses_an_old_cookie() -> None:
    assert _read(_issue(secret_key=OLD), secret_key=[NEW]) == ({}, {})


# -- the 4096-byte Set-Cookie line -----------------------------------------------------


def _set_cookie_line(size: int, **options: Any) -> str:
    """The Set-Cookie line for a session holding a ``size``-character string."""
    reply = _request(_app(_update({"blob": "x" * size}), **options))
    [line] = reply.get_all(b"set-cookie")
    return line.decode("latin-1")


@pytest.mark.parametrize(
    "options",
    [{}, {"session_cookie": "sid", "https_only": True, "domain": "example.com", "max_age": None}],
    ids=["defaults", "other-attributes"],
)
def test_session_too_large_is_found_at_the_4096_byte_line(options: dict[str, Any]) -> None:
    low, high = 0, 6000  # fits, does not fit
    with pytest.raises(SessionTooLarge):
        _set_cookie_line(high, **options)
    while high - low > 1:
        middle = (low + high) // 2
        try:
            _set_cookie_line(middle, **options)
        except SessionTooLarge:
            high = middle
        else:
            low = middle
    line = _set_cookie_line(low, **options)
    # The limit counts the whole header line: name, value and attributes.
    assert 4093 <= len(line.encode("latin-1")) <= 4096
    with pytest.raises(SessionTooLarge) as caught:
        _set_cookie_line(high, **options)
    assert caught.value.size > 4096
    assert caught.value.size <= len(line) + 4  # one more base64 quantum at most
    assert caught.value.limit == 4096
    assert str(caught.value.size) in str(caught.value)


def test_session_too_large_reaches_the_server_through_a_test_client() -> None:
    async def grow(request: Request) -> JSONResponse:
        request.session["blob"] = "x" * 5000
        return JSONResponse({})

    app = Starlette(
        routes=[Route("/", grow)], middleware=[Middleware(SessionMiddleware, secret_key=SECRET)]
    )
    with TestClient(app, raise_server_exceptions=True) as client, pytest.raises(SessionTooLarge):
        client.get("/")


# -- chunking ------------------------------------------------------------------------


def test_chunked_10kb_session_round_trips_and_shrinks() -> None:
    store = EncryptedCookieStore(SECRET, chunked=True)
    big = {"blob": "".join(f"{i:05d}" for i in range(2000))}  # 10 KB
    cookies = set_cookies(_request(_app(_update(big), store=store)))
    names = sorted(cookies)
    assert names[0] == "session"
    assert names[1:] == [f"session.{i}" for i in range(1, len(names))]
    assert len(names) >= 3
    assert all(len(cookie.line.encode("latin-1")) <= 4096 for cookie in cookies.values())
    assert not any(cookie.deletes for cookie in cookies.values())
    jar = _jar(cookies)

    reply = _request(_app(store=store), jar)
    assert reply.json() == big
    assert set_cookies(reply) == {}  # nothing changed, nothing re-sent

    # A missing chunk: the value no longer verifies, so the session is empty.
    for missing in names[1:]:
        partial = "; ".join(f"{c.name}={c.value}" for c in cookies.values() if c.name != missing)
        assert _request(_app(store=store), partial).json() == {}

    # Shrinking back to one cookie deletes every stale chunk with the same attributes.
    shrunk = set_cookies(_request(_app(_replace({"small": 1}), store=store), jar))
    assert set(shrunk) == set(names)
    assert not shrunk["session"].deletes
    for name in names[1:]:
        assert shrunk[name].deletes
        assert shrunk[name].line.startswith(f"{name}=null; path=/; {EXPIRED}; httponly")
    assert _request(_app(store=store), _jar(shrunk)).json() == {"small": 1}


# -- migration from Starlette's SessionMiddleware -------------------------------------


def _starlette_cookie(data: dict[str, Any]) -> str:
    async def set_data(request: Request) -> JSONResponse:
        request.session.update(data)
        return JSONResponse({})

    app = Starlette(
        routes=[Route("/", set_data)],
        middleware=[Middleware(StarletteSessionMiddleware, secret_key=SECRET)],
    )
    with TestClient(app) as client:
        return set_cookies(client.get("/"))["session"].value


def test_starlette_cookie_is_read_and_reissued_encrypted_with_the_opt_in() -> None:
    legacy = _starlette_cookie(DATA)
    store = EncryptedCookieStore(SECRET, accept_starlette_cookies=True)
    data, cookies = _read(legacy, store=store)
    assert data == DATA
    reissued = cookies["session"].value
    assert reissued != legacy
    assert _raw(reissued)[0] == 1
    assert "alice" not in reissued
    assert _read(reissued, store=EncryptedCookieStore(SECRET)) == (DATA, {})


def test_starlette_cookie_is_an_empty_session_without_the_opt_in() -> None:
    assert _read(_starlette_cookie(DATA)) == ({}, {})
    assert _read(_starlette_cookie(DATA), store=EncryptedCookieStore(SECRET)) == ({}, {})


# -- weak secrets --------------------------------------------------------------------


def test_weak_secret_warns_once_at_construction_not_per_request() -> None:
    with pytest.warns(UserWarning, match="32 bytes") as caught:
        app = _app(_update({"a": 1}), secret_key="short-secret")
    assert len([w for w in caught if issubclass(w.category, UserWarning)]) == 1
    with warnings.catch_warnings(record=True) as later:
        warnings.simplefilter("always")
        cookie = set_cookies(_request(app))["session"].value
        for _ in range(3):
            _request(app, f"session={cookie}")
    assert later == []


def test_strong_secret_does_not_warn() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _app(secret_key="x" * 32)
        EncryptedCookieStore(SECRET)
    assert caught == []


# -- the readable signed store -------------------------------------------------------


def test_signed_cookie_is_readable_by_base64_decoding() -> None:
    assert "readable" in (SignedCookieStore.__doc__ or "").lower()
    token = _issue(store=SignedCookieStore(SECRET))
    body, _, _ = token.partition(".")
    payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    assert json.loads(payload[COOKIE_HEAD.size :]) == DATA
    assert _read(token, store=SignedCookieStore(SECRET)) == (DATA, {})


def test_signed_cookie_is_signed_with_the_hkdf_signing_key() -> None:
    token = _issue(store=SignedCookieStore(SECRET))
    body, _, signature = token.partition(".")
    expected = hmac.new(SIGNING_KEY, b"session\x00" + body.encode(), hashlib.sha256).digest()
    assert _raw(signature) == KEY_ID + expected


def test_tampered_signed_cookie_is_refused() -> None:
    store = SignedCookieStore(SECRET)
    token = _issue(store=store)
    body, _, signature = token.partition(".")
    payload = bytearray(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    forged_payload = bytes(payload).replace(b"alice-the-admin", b"mallory-the-adm")
    forged = base64.urlsafe_b64encode(forged_payload).decode().rstrip("=") + "." + signature
    assert _read(forged, store=store) == ({}, {})
    flipped_sig = signature[:10] + ("A" if signature[10] != "A" else "B") + signature[11:]
    assert _read(f"{body}.{flipped_sig}", store=store) == ({}, {})
    assert _read(body, store=store) == ({}, {})
    assert _read(token, name="other", store=store) == ({}, {})


def test_signed_cookie_rotation() -> None:
    old_token = _issue(store=SignedCookieStore(OLD))
    new_key_id = _raw(_issue(store=SignedCookieStore(NEW)).partition(".")[2])[:4]
    data, cookies = _read(old_token, store=SignedCookieStore([NEW, OLD]))
    assert data == DATA
    reissued = cookies["session"].value
    assert _raw(reissued.partition(".")[2])[:4] == new_key_id
    assert _read(reissued, store=SignedCookieStore([NEW])) == (DATA, {})
    assert _read(old_token, store=SignedCookieStore([NEW])) == ({}, {})


# -- python -m asgi_sessions inspect --------------------------------------------------


def test_inspect_prints_the_data(capsys: pytest.CaptureFixture[str]) -> None:
    token = _issue(max_age=600)
    assert main(["inspect", token, "--secret", SECRET]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["data"] == DATA
    assert report["read_with_old_secret"] is False
    assert report["expires"] is not None


def test_inspect_with_the_wrong_secret_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    token = _issue()
    assert main(["inspect", token, "--secret", OTHER_SECRET]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "does not verify" in captured.err
    assert "alice" not in captured.err


@pytest.mark.parametrize(
    "text",
    [
        "theme=dark; session={token}",
        "session={token}; theme=dark",
        "Cookie: theme=dark; session={token}",
        "  {token}  ",
    ],
)
def test_inspect_finds_the_session_anywhere_in_a_cookie_header(
    capsys: pytest.CaptureFixture[str], text: str
) -> None:
    # Before, only a header that started with the session cookie was read as
    # a header; any other was taken for one (refused) cookie value.
    token = _issue()
    assert main(["inspect", text.format(token=token), "--secret", SECRET]) == 0
    assert json.loads(capsys.readouterr().out)["data"] == DATA


def test_inspect_a_header_without_the_session_exits_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["inspect", "theme=dark; lang=en", "--secret", SECRET]) == 1
    assert "no cookie named 'session'" in capsys.readouterr().err


def test_inspect_a_chunked_session_from_its_cookie_header(
    capsys: pytest.CaptureFixture[str],
) -> None:
    store = EncryptedCookieStore(SECRET, chunked=True)
    big = {"blob": "".join(f"{i:05d}" for i in range(2000))}
    header = _jar(set_cookies(_request(_app(_update(big), store=store))))
    assert "session.1=" in header
    assert main(["inspect", header, "--secret", SECRET]) == 0
    assert json.loads(capsys.readouterr().out)["data"] == big
    # A missing chunk: refused, with the reason, and nothing printed.
    broken = "; ".join(part for part in header.split("; ") if not part.startswith("session.1="))
    assert main(["inspect", broken, "--secret", SECRET]) == 1
    assert capsys.readouterr().out == ""


def test_inspect_a_signed_cookie_and_a_rotated_ring(capsys: pytest.CaptureFixture[str]) -> None:
    token = _issue(store=SignedCookieStore(OLD))
    assert main(["inspect", token, "--signed", "--secret", NEW, "--secret", OLD]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["data"] == DATA
    assert report["read_with_old_secret"] is True


def test_a_token_with_an_empty_ciphertext_is_refused_before_decrypting() -> None:
    """Header, nonce and a tag but no ciphertext never reach the cipher.

    We never seal an empty plaintext, and cryptography before 46 accepted
    any tag on an empty AES-GCM-SIV ciphertext, so such a token is refused
    on its length: with a forged tag, and with a real one.
    """
    ring = KeyRing(SECRET)
    real = ring.seal(b"x", b"session")
    header_and_nonce = real[: crypto._HEADER_LEN]
    assert ring.open(header_and_nonce + b"\0" * 16, b"session") is None
    assert ring.open(real, b"session") == (b"x", False)
    key = ring._keys[0]
    authentic_empty = key.aead.encrypt(header_and_nonce[5:], b"", key.header + b"session")
    assert ring.open(header_and_nonce + authentic_empty, b"session") is None


_REVERSED_MODULE = '''
import json


class Reversed:
    """JSON, bytes reversed: not JSON as far as the default serializer can tell."""

    def dumps(self, value):
        return json.dumps(value).encode()[::-1]

    def loads(self, data):
        return json.loads(bytes(data)[::-1])


serializer = Reversed()
'''


def test_inspect_a_cookie_of_an_app_with_its_own_serializer(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = f"t_serializer_{secrets.token_hex(4)}"
    (tmp_path / f"{module}.py").write_text(_REVERSED_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    serializer = importlib.import_module(module).serializer
    token = _issue(serializer=serializer)
    # The default serializer cannot read it: one line saying what to do.
    assert main(["inspect", token, "--secret", SECRET]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "--serializer MODULE:NAME" in captured.err
    assert "alice" not in captured.err
    for spec in (f"{module}:serializer", f"{module}:Reversed"):  # an object, or its class
        assert main(["inspect", token, "--secret", SECRET, "--serializer", spec]) == 0
        assert json.loads(capsys.readouterr().out)["data"] == DATA


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("json", "takes MODULE:NAME"),
        ("no_such_module_xyz:s", "cannot import"),
        ("json:nothing_here", "has no nothing_here"),
        ("pickle:loads", "must have dumps"),
        ("json:JSONDecoder", "must have dumps"),
    ],
)
def test_inspect_with_a_serializer_that_cannot_work_exits_2(
    capsys: pytest.CaptureFixture[str], spec: str, message: str
) -> None:
    token = _issue()
    assert main(["inspect", token, "--secret", SECRET, "--serializer", spec]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert message in captured.err
