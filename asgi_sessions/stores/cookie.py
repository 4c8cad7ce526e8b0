"""Client-side stores: the cookie itself holds the session.

Owns: turning a record's serialised bytes into a cookie-safe token and back,
which keys are used, and reading Starlette's old signed cookies during a
migration.

Never knows: headers, requests, or what is inside the bytes. The cookie name
it receives is only a label bound into the token, so a token issued for one
cookie is refused under another.

:class:`EncryptedCookieStore` (the default) encrypts: nobody who holds the
cookie can read the session. :class:`SignedCookieStore` only signs, like
Starlette's and Django's cookie sessions: the user, a browser extension, a
proxy log or anyone who sees the cookie can read every value in it. It exists
for parity and migration; prefer the encrypted store.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import warnings
from collections.abc import Sequence
from typing import Any, TypeAlias

from ..crypto import MIN_SECRET_BYTES, KeyRing, SecretKey, b64decode, b64encode, secret_list
from ..errors import ImproperlyConfigured

__all__ = [
    "CookieRefused",
    "CookieStore",
    "EncryptedCookieStore",
    "OpenedCookie",
    "SignedCookieStore",
]

logger = logging.getLogger("asgi_sessions")

# A sealed token can never legitimately be longer than this many cookies'
# worth of text; anything longer is refused before it is decoded.
MAX_TOKEN_CHARS = 16 * 4096


OpenedCookie: TypeAlias = "tuple[bytes, bool, dict[str, Any] | None]"
"""A verified cookie: ``(payload, reissue, legacy_data)``.

``payload`` is the session's serialised plaintext, ``reissue`` says it was
read with an old key (or is a legacy cookie) and should be written again,
and ``legacy_data`` holds the data of a migrated Starlette cookie (then
``payload`` is empty). A plain tuple: this is made on every session read.
"""


class CookieRefused(Exception):
    """Raised by :meth:`CookieStore.open` for a cookie it refuses, saying why.

    Not an error: the session simply starts empty, and the reason goes into
    the ``rejected`` event (see :mod:`asgi_sessions.events`). Returning
    ``None`` from ``open`` is also accepted (reason ``"it does not verify"``).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CookieStore:
    """Base class of client-side stores.

    Subclasses implement :meth:`seal` and :meth:`open`. Both are synchronous
    and cheap: a cookie session decrypts lazily on first access, inside a
    plain ``request.session["key"]``.
    """

    chunked: bool = False
    """Whether a value too large for one cookie is split across several."""

    def seal(self, payload: bytes, name: str) -> str:
        """Turn ``payload`` into a cookie value for the cookie ``name``."""
        raise NotImplementedError

    def open(self, token: str, name: str, max_age: int | None) -> OpenedCookie | None:
        """Verify a cookie value; raise :class:`CookieRefused` (or return ``None``) if it fails.

        ``max_age`` is only for legacy formats that carry their own timestamp.
        """
        raise NotImplementedError


def _weak_secret_warning(ring: KeyRing, owner: str) -> None:
    if ring.weak:
        warnings.warn(
            f"{owner}: a secret_key shorter than {MIN_SECRET_BYTES} bytes is easy to guess. "
            "Generate one with `python -m asgi_sessions keygen`.",
            UserWarning,
            stacklevel=3,
        )


class EncryptedCookieStore(CookieStore):
    """Sessions kept in the cookie, encrypted with AES-256-GCM-SIV.

    ``secret_key`` is a secret or a sequence of secrets, newest first: the
    newest encrypts, all decrypt, and a cookie read with an older secret is
    re-issued under the newest. ``chunked=True`` splits sessions larger than
    one cookie across ``name``, ``name.1``, ...; otherwise such a session
    raises :class:`~asgi_sessions.errors.SessionTooLarge`.

    ``accept_starlette_cookies=True`` (needs ``itsdangerous``) also reads
    cookies written by Starlette's ``SessionMiddleware`` with one of the same
    secrets, so switching middleware logs nobody out; the next response
    re-issues them encrypted.
    """

    def __init__(
        self,
        secret_key: SecretKey | Sequence[SecretKey],
        *,
        chunked: bool = False,
        accept_starlette_cookies: bool = False,
    ) -> None:
        self.keys = KeyRing(secret_key)
        _weak_secret_warning(self.keys, type(self).__name__)
        self.chunked = chunked
        self._legacy: list[Any] | None = None
        if accept_starlette_cookies:
            try:
                import itsdangerous
            except ImportError as exc:  # pragma: no cover - depends on extras
                raise ImproperlyConfigured(
                    "accept_starlette_cookies needs itsdangerous: "
                    "pip install 'asgi-sealed-sessions[migrate]'"
                ) from exc
            self._legacy = [
                itsdangerous.TimestampSigner(
                    bytes(s).decode("utf-8")
                    if isinstance(s, (bytes, bytearray, memoryview))
                    else str(s)
                )
                for s in secret_list(secret_key)
            ]

    def seal(self, payload: bytes, name: str) -> str:
        """Encrypt ``payload`` bound to the cookie ``name``."""
        return b64encode(self.keys.seal(payload, name.encode("utf-8")))

    def open(self, token: str, name: str, max_age: int | None) -> OpenedCookie | None:
        """Decrypt a token made by :meth:`seal` (or a legacy Starlette cookie)."""
        if len(token) > MAX_TOKEN_CHARS:
            raise CookieRefused("longer than any cookie we issue")
        raw = b64decode(token)
        if raw is not None:
            opened = self.keys.open(raw, name.encode("utf-8"))
            if opened is not None:
                return (*opened, None)
        if self._legacy is not None and "." in token:
            return self._open_legacy(token, max_age)
        raise CookieRefused("it does not verify")

    def _open_legacy(self, token: str, max_age: int | None) -> OpenedCookie | None:
        from itsdangerous import BadSignature

        assert self._legacy is not None
        data = token.encode("utf-8", "replace")
        for signer in self._legacy:
            try:
                unsigned = signer.unsign(data, max_age=max_age)
            except BadSignature:
                continue
            try:
                value = json.loads(base64.b64decode(unsigned, validate=True))
            except (binascii.Error, ValueError, RecursionError):
                break
            if not isinstance(value, dict):
                break
            logger.debug("legacy Starlette session cookie accepted; it will be re-issued")
            return (b"", True, value)
        raise CookieRefused("it does not verify")


class SignedCookieStore(CookieStore):
    """Sessions kept in the cookie, signed with HMAC-SHA256 but **readable**.

    Anyone holding the cookie can read every value in it (base64 is not
    encryption); they only cannot change it. Use it when something else must
    read the cookie, or to match another framework's behaviour; otherwise use
    :class:`EncryptedCookieStore`. Key rotation works as there.
    """

    def __init__(
        self, secret_key: SecretKey | Sequence[SecretKey], *, chunked: bool = False
    ) -> None:
        self.keys = KeyRing(secret_key)
        _weak_secret_warning(self.keys, type(self).__name__)
        self.chunked = chunked

    def seal(self, payload: bytes, name: str) -> str:
        """``base64url(payload) . base64url(key id + HMAC(name, payload))``."""
        body = b64encode(payload)
        signature = self.keys.sign(name.encode("utf-8") + b"\x00" + body.encode("ascii"))
        return body + "." + b64encode(signature)

    def open(self, token: str, name: str, max_age: int | None) -> OpenedCookie | None:
        """Verify the signature and return the payload."""
        body, dot, sig = token.partition(".")
        if not dot or len(token) > MAX_TOKEN_CHARS:
            raise CookieRefused("malformed")
        signature = b64decode(sig)
        payload = b64decode(body)
        if signature is None or payload is None:
            raise CookieRefused("malformed")
        stale = self.keys.verify(name.encode("utf-8") + b"\x00" + body.encode("ascii"), signature)
        if stale is None:
            raise CookieRefused("bad signature")
        return (payload, stale, None)
