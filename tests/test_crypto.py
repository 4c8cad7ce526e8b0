"""The encrypted cookie token, as DESIGN §4 decides it.

Checked on cookies issued by a real app: base64url without padding of
``version (1) | key id (4) | nonce (12) | AES-256-GCM-SIV ciphertext + tag``,
the key id shared by every cookie of one secret and different for another,
fresh random nonces, nothing of the session readable in the cookie, AAD that
binds the version, key id and cookie name, and HKDF-SHA256 keys that are
distinct per purpose. The last two are checked by re-opening a real cookie
with keys derived here from the secret, independently of the store.
"""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCMSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from starlette.testclient import TestClient

from asgi_sessions import crypto
from asgi_sessions._record import COOKIE_HEAD
from asgi_sessions.crypto import KeyRing, b64decode, b64encode
from asgi_sessions.stores import EncryptedCookieStore, SignedCookieStore
from asgi_sessions.stores.cookie import CookieRefused
from tests.apps import OTHER_SECRET, SECRET, session_app, set_cookies

SESSION = {"user": "alice-the-admin", "cart": ["sku-98765", "sku-43210"], "visits": 42}


def _issue(data: object = SESSION, **options: object) -> str:
    """The cookie value a real app sets for a session holding ``data``."""
    with TestClient(session_app(**options)) as client:
        response = client.post("/set", json=data)
    cookie = set_cookies(response)[str(options.get("session_cookie", "session"))]
    return cookie.value


def _hkdf(secret: str, info: bytes, length: int = 32) -> bytes:
    """HKDF-SHA256 as DESIGN §4 specifies it, computed here rather than by the library."""
    return HKDF(
        algorithm=hashes.SHA256(), length=length, salt=b"asgi_sessions/hkdf/v1", info=info
    ).derive(secret.encode("utf-8"))


ENCRYPTION_KEY = _hkdf(SECRET, b"asgi_sessions/aes-256-gcm-siv")
SIGNING_KEY = _hkdf(SECRET, b"asgi_sessions/hmac-sha256")
KEY_ID = _hkdf(SECRET, b"asgi_sessions/key-id", 4)


# -- layout --------------------------------------------------------------------------


def test_cookie_is_unpadded_base64url() -> None:
    token = _issue()
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert b64decode(token) is not None
    assert b64encode(b64decode(token) or b"") == token


def test_token_starts_with_format_version_1() -> None:
    raw = b64decode(_issue())
    assert raw is not None
    assert raw[0] == crypto.FORMAT_VERSION == 1


def test_token_length_is_header_plus_plaintext_plus_tag() -> None:
    raw = b64decode(_issue())
    assert raw is not None
    plaintext = AESGCMSIV(ENCRYPTION_KEY).decrypt(raw[5:17], raw[17:], raw[:5] + b"session")
    assert len(raw) == 1 + 4 + 12 + len(plaintext) + 16


def test_same_secret_gives_same_key_id() -> None:
    first, second = b64decode(_issue({"a": 1})), b64decode(_issue({"b": 2}))
    assert first is not None
    assert second is not None
    assert first[1:5] == second[1:5] == KEY_ID


def test_another_secret_gives_another_key_id() -> None:
    ours, theirs = b64decode(_issue()), b64decode(_issue(secret_key=OTHER_SECRET))
    assert ours is not None
    assert theirs is not None
    assert ours[1:5] != theirs[1:5]


def test_every_cookie_gets_a_fresh_random_nonce() -> None:
    store = EncryptedCookieStore(SECRET)
    app = session_app(store=store)
    nonces = set()
    with TestClient(app) as client:
        for _ in range(40):
            client.cookies.clear()
            response = client.post("/set", json=SESSION)  # the same session every time
            raw = b64decode(set_cookies(response)["session"].value)
            assert raw is not None
            nonces.add(raw[5:17])
    assert len(nonces) == 40
    assert all(len(nonce) == 12 for nonce in nonces)


def test_session_is_not_readable_in_the_cookie() -> None:
    token = _issue()
    raw = b64decode(token)
    assert raw is not None
    plain = json.dumps(SESSION, separators=(",", ":")).encode("utf-8")
    for word in ("alice-the-admin", "sku-98765", "sku-43210"):
        assert word not in token
    for word in ("alice-the-admin", "sku-98765", "sku-43210", "user", "cart", "visits"):
        assert word.encode() not in raw
    # Not even eight consecutive bytes of the serialised session survive.
    assert not any(plain[i : i + 8] in raw for i in range(len(plain) - 7))


# -- keys ----------------------------------------------------------------------------


def test_hkdf_gives_each_purpose_its_own_key() -> None:
    key = KeyRing(SECRET)._keys[0]
    assert key.key_id == KEY_ID
    assert key.mac_key == SIGNING_KEY
    keys = {ENCRYPTION_KEY, SIGNING_KEY, KEY_ID, SECRET.encode()[:32]}
    assert len(keys) == 4  # no two purposes share key material, and none is the secret
    assert KEY_ID not in (ENCRYPTION_KEY[:4], SIGNING_KEY[:4])


def test_cookie_opens_with_the_hkdf_encryption_key_and_nothing_else() -> None:
    raw = b64decode(_issue())
    assert raw is not None
    header, nonce, body = raw[:5], raw[5:17], raw[17:]
    plaintext = AESGCMSIV(ENCRYPTION_KEY).decrypt(nonce, body, header + b"session")
    assert json.loads(plaintext[COOKIE_HEAD.size :]) == SESSION
    for wrong_key in (
        SIGNING_KEY,
        SECRET.encode()[:32],
        _hkdf(OTHER_SECRET, b"asgi_sessions/aes-256-gcm-siv"),
    ):
        with pytest.raises(InvalidTag):
            AESGCMSIV(wrong_key).decrypt(nonce, body, header + b"session")


@pytest.mark.parametrize(
    "aad",
    [b"session", b"\x01" + KEY_ID, b"\x02" + KEY_ID + b"session", b"\x01" + KEY_ID + b"other"],
    ids=["without-header", "without-name", "other-version", "other-name"],
)
def test_aad_binds_version_key_id_and_cookie_name(aad: bytes) -> None:
    raw = b64decode(_issue())
    assert raw is not None
    with pytest.raises(InvalidTag):
        AESGCMSIV(ENCRYPTION_KEY).decrypt(raw[5:17], raw[17:], aad)


def test_str_and_bytes_secrets_derive_the_same_keys() -> None:
    assert KeyRing(SECRET)._keys[0].key_id == KeyRing(SECRET.encode())._keys[0].key_id


def test_signed_cookie_is_signed_with_the_hkdf_signing_key() -> None:
    store = SignedCookieStore(SECRET)
    token = store.seal(b"payload", "session")
    body, _, signature = token.partition(".")
    raw_signature = b64decode(signature)
    assert raw_signature is not None
    expected = hmac.new(SIGNING_KEY, b"session\x00" + body.encode(), hashlib.sha256).digest()
    assert raw_signature == KEY_ID + expected


# -- the cookie name -----------------------------------------------------------------


def test_cookie_issued_for_one_name_is_refused_under_another() -> None:
    token = _issue(session_cookie="a")
    with TestClient(session_app(session_cookie="b")) as client:
        assert client.get("/", headers={"cookie": f"b={token}"}).json() == {}


def test_cookie_issued_for_a_name_is_read_under_that_name() -> None:
    token = _issue(session_cookie="a")
    with TestClient(session_app(session_cookie="a")) as client:
        assert client.get("/", headers={"cookie": f"a={token}"}).json() == SESSION


def test_version_byte_is_checked() -> None:
    raw = b64decode(_issue())
    assert raw is not None
    forged = b64encode(b"\x02" + raw[1:])
    with pytest.raises(CookieRefused, match="does not verify"):
        EncryptedCookieStore(SECRET).open(forged, "session", None)


# -- base64url -----------------------------------------------------------------------


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
