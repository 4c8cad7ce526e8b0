"""Keys and the cryptography applied to cookies and session ids.

Owns: turning the configured secrets into per-purpose keys (HKDF-SHA256, one
derivation per secret at construction, never per request), sealing and
opening cookie payloads with AES-256-GCM-SIV, HMAC signing for the readable
:class:`~asgi_sessions.stores.SignedCookieStore`, minting session ids and
hashing them into store keys.

Never knows: what is inside a payload, cookies as HTTP headers, or stores.

Token layout (before base64url)::

    version (1 byte) | key id (4 bytes) | nonce (12 bytes) | ciphertext + tag (16 bytes)

The key id lets a reader pick the right key of a rotated ring with one
decryption attempt instead of one per key. GCM-SIV is nonce-misuse
resistant, so random 96-bit nonces stay safe far past 2**32 cookies per key.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Sequence
from typing import Final, TypeAlias

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCMSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .errors import ImproperlyConfigured

__all__ = [
    "FORMAT_VERSION",
    "KeyRing",
    "SecretKey",
    "b64decode",
    "b64encode",
    "is_session_id",
    "new_session_id",
    "store_key",
]

SecretKey: TypeAlias = "str | bytes"
"""A secret as configured: text (UTF-8 encoded) or raw bytes. Objects with a
``__str__`` such as Starlette's ``Secret`` are accepted too."""

FORMAT_VERSION: Final = 1
MIN_SECRET_BYTES: Final = 32

_SALT: Final = b"asgi_sessions/hkdf/v1"
# Distinct HKDF info labels: encryption, signing and key ids never share a key.
_INFO_ENCRYPT: Final = b"asgi_sessions/aes-256-gcm-siv"
_INFO_SIGN: Final = b"asgi_sessions/hmac-sha256"
_INFO_KEY_ID: Final = b"asgi_sessions/key-id"

_TO_URLSAFE: Final = bytes.maketrans(b"+/", b"-_")
_TO_STANDARD: Final = bytes.maketrans(b"-_+/=", b"+/!!!")
_PADDING: Final = (b"", b"", b"==", b"=")
# With 2 or 3 characters in the last quantum, the last one carries 4 or 2
# unused bits that must be zero in the canonical spelling.
_CANONICAL_LAST: Final = (
    "",
    "",
    frozenset("AQgw"),
    frozenset("AEIMQUYcgkosw048"),
)

_VERSION_BYTE: Final = bytes([FORMAT_VERSION])
_HEADER_LEN: Final = 1 + 4 + 12
_TAG_LEN: Final = 16
SIGNATURE_LEN: Final = 32

_SESSION_ID_BYTES: Final = 32
_SESSION_ID_LEN: Final = 43  # base64url of 32 bytes, unpadded
_B64URL_ALPHABET: Final = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
)
# The last character of 32 bytes in base64 carries 4 data bits and 2 zero bits.
_ID_LAST_CHARS: Final = frozenset("AEIMQUYcgkosw048")


def b64encode(data: bytes) -> str:
    """base64url without padding, as used in every token."""
    return (
        binascii.b2a_base64(data, newline=False).translate(_TO_URLSAFE).decode("ascii").rstrip("=")
    )


def b64decode(text: str) -> bytes | None:
    """Strict inverse of :func:`b64encode`; ``None`` for anything else.

    Refuses characters outside the base64url alphabet, padding, and
    non-canonical spellings (unused low bits set in the last character), so
    exactly one string decodes to any given bytes: a token that differs from
    the one we issued by a single character is always refused.
    """
    size = len(text)
    tail = size % 4
    if tail == 1 or not text.isascii():
        return None
    if tail and text[-1] not in _CANONICAL_LAST[tail]:
        return None
    # Map the URL-safe alphabet onto the standard one and the standard
    # one's own "+" and "/" onto an invalid byte, then let strict mode
    # refuse anything outside the alphabet.
    data = text.encode("ascii").translate(_TO_STANDARD)
    try:
        return binascii.a2b_base64(data + _PADDING[tail], strict_mode=True)
    except binascii.Error:
        return None


def secret_list(secret_key: object) -> list[object]:
    """The secrets in a ``secret_key`` setting, newest first.

    One secret (``str``, ``bytes``, ``bytearray``, ``memoryview``, or an
    object such as Starlette's ``Secret`` whose ``str()`` is the secret) or
    a sequence of them. A ``bytearray`` is one secret, not a sequence of
    one-byte secrets.
    """
    if isinstance(secret_key, (str, bytes, bytearray, memoryview)) or not isinstance(
        secret_key, Sequence
    ):
        return [secret_key]
    return list(secret_key)


def _to_bytes(secret: object) -> bytes:
    if isinstance(secret, bytes):
        return secret
    if isinstance(secret, str):
        return secret.encode("utf-8")
    if isinstance(secret, (bytearray, memoryview)):
        return bytes(secret)
    if isinstance(secret, (int, float)) or type(secret).__str__ is object.__str__:
        # A number, or an object with no text of its own (its repr would be
        # the secret): a mistake, never a secret.
        raise ImproperlyConfigured(
            f"secret_key items must be str or bytes, not {type(secret).__name__}"
        )
    text = str(secret)  # starlette.datastructures.Secret and friends
    return text.encode("utf-8")


def _derive(secret: bytes, info: bytes, length: int = 32) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=_SALT, info=info).derive(secret)


class _Key:
    __slots__ = ("aead", "header", "key_id", "mac_key")

    def __init__(self, secret: bytes) -> None:
        self.key_id = _derive(secret, _INFO_KEY_ID, 4)
        self.header = _VERSION_BYTE + self.key_id
        self.aead = AESGCMSIV(_derive(secret, _INFO_ENCRYPT))
        self.mac_key = _derive(secret, _INFO_SIGN)


class KeyRing:
    """The configured secrets, newest first, as ready-to-use keys.

    The first secret seals and signs; every secret opens and verifies, which
    is how a secret is rotated without logging anybody out.
    """

    __slots__ = ("_by_header", "_by_id", "_keys", "weak")

    def __init__(self, secrets_: object) -> None:
        if secrets_ is None:
            raise ImproperlyConfigured("a secret_key is required for cookie sessions")
        raw = [_to_bytes(item) for item in secret_list(secrets_)]
        if not raw or any(not item for item in raw):
            raise ImproperlyConfigured("secret_key must be one or more non-empty secrets")
        self.weak = any(len(item) < MIN_SECRET_BYTES for item in raw)
        self._keys = [_Key(item) for item in raw]
        self._by_id: dict[bytes, list[_Key]] = {}
        self._by_header: dict[bytes, list[_Key]] = {}
        for key in self._keys:
            self._by_id.setdefault(key.key_id, []).append(key)
            self._by_header.setdefault(key.header, []).append(key)

    def __len__(self) -> int:
        return len(self._keys)

    # -- AEAD ------------------------------------------------------------------

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        """Encrypt and authenticate ``plaintext`` under the newest key.

        ``aad`` is authenticated but not stored: the reader must supply the
        same value (the cookie name), so a token is useless under another name.
        """
        key = self._keys[0]
        nonce = os.urandom(12)
        return key.header + nonce + key.aead.encrypt(nonce, plaintext, key.header + aad)

    def open(self, token: bytes, aad: bytes) -> tuple[bytes, bool] | None:
        """Verify and decrypt a sealed token; ``None`` if it does not verify.

        Returns the plaintext and whether it was sealed with an older key
        (so the cookie should be re-issued under the newest).
        """
        # <=: we never seal an empty plaintext, and cryptography before 46
        # accepted any tag on an empty AES-GCM-SIV ciphertext.
        if len(token) <= _HEADER_LEN + _TAG_LEN:
            return None
        head = token[:5]  # version byte + key id
        candidates = self._by_header.get(head)
        if candidates is None:
            return None
        nonce = token[5:_HEADER_LEN]
        body = token[_HEADER_LEN:]
        aad = head + aad
        for key in candidates:  # more than one only on a 1-in-2**32 key id collision
            try:
                plaintext = key.aead.decrypt(nonce, body, aad)
            except InvalidTag:
                continue
            return plaintext, key is not self._keys[0]
        return None

    # -- signing (readable cookies) ------------------------------------------

    def sign(self, message: bytes) -> bytes:
        """HMAC-SHA256 of ``message`` under the newest key, prefixed by its key id."""
        key = self._keys[0]
        return key.key_id + hmac.new(key.mac_key, message, hashlib.sha256).digest()

    def verify(self, message: bytes, signature: bytes) -> bool | None:
        """Check a signature made by :meth:`sign`.

        Returns ``None`` if it does not verify, ``False`` if it verifies with
        the newest key and ``True`` if with an older one (re-issue it).
        """
        if len(signature) != 4 + SIGNATURE_LEN:
            return None
        for key in self._by_id.get(signature[:4], ()):
            expected = hmac.new(key.mac_key, message, hashlib.sha256).digest()
            if hmac.compare_digest(expected, signature[4:]):
                return key is not self._keys[0]
        return None


# -- session ids ---------------------------------------------------------------


def new_session_id() -> str:
    """A fresh session id: 256 random bits from :mod:`secrets`, base64url (43 chars)."""
    return secrets.token_urlsafe(_SESSION_ID_BYTES)


def is_session_id(value: str) -> bool:
    """Whether ``value`` is exactly the canonical form of an id we could have minted.

    Checked before any store I/O, so garbage cookies cost nothing.
    """
    return (
        len(value) == _SESSION_ID_LEN
        and value[-1] in _ID_LAST_CHARS
        and _B64URL_ALPHABET.issuperset(value)
    )


def store_key(session_id: str) -> str:
    """The key a store sees for ``session_id``: its SHA-256, hex.

    A store (or a dump of it) therefore holds no usable session token. With
    256-bit random ids no secret is needed, so the mapping survives rotation.
    """
    return hashlib.sha256(session_id.encode("ascii")).hexdigest()


_STORE_KEY = re.compile(r"[0-9a-f]{64}\Z")


def is_store_key(value: str) -> bool:
    """Whether ``value`` has the form of a store key: 64 lowercase hex digits."""
    return _STORE_KEY.match(value) is not None


def forward_key(key: str) -> str:
    """Where a cycled session's old store ``key`` records the key it moved to.

    Derived from the store key (not the id), so the session layer can follow
    a chain of cycles, and domain-separated, so no session id hashes to it.
    """
    return hashlib.sha256(b"asgi_sessions.forward\0" + key.encode("ascii")).hexdigest()


def user_key(user_id: object) -> str:
    """The key a store's user index sees for ``user_id``: SHA-256 of its text, hex.

    Ids are compared as text (``5`` and ``"5"`` are one user), and a store
    never holds a user's id verbatim next to their sessions.
    """
    return hashlib.sha256(str(user_id).encode("utf-8")).hexdigest()
