"""Bad cookies never hurt: over ten thousand hostile Cookie headers through a real app.

A Starlette app behind our middleware answers ``GET /`` with the session as
JSON. It is driven directly over ASGI with hand-built scopes and raw header
bytes (:func:`tests.apps.call`; no test client, so any exception reaches the
test). For every bad cookie:

* the response is a 200 with an empty session and no Set-Cookie;
* nothing is raised to the server;
* a debug line on the ``asgi_sessions`` logger says why the cookie was refused;
* no log record contains the secret or eight consecutive characters of the
  cookie value.

The deterministic part is exhaustive for two valid tokens (one per length
class whose last character carries unused bits): every single-character
substitution (the whole base64url alphabet, hostile characters and the
non-canonical spellings of the same bytes), every deletion, every prefix and
suffix truncation. Then: the valid cookie under another name or sealed for
another name, another secret, expired, malformed plaintexts, empty, 100 KB,
and duplicate session cookies (the first one wins, as browsers send the most
specific path first). The hypothesis part adds random bytes, non-ASCII text,
base64-looking noise, huge values, random multi-character mutations and
random duplicate layouts.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from asgi_sessions import SessionMiddleware
from asgi_sessions._record import pack_cookie
from asgi_sessions.cookies import CookieSpec
from asgi_sessions.crypto import b64decode
from asgi_sessions.stores import EncryptedCookieStore
from tests.apps import OTHER_SECRET, SECRET, Reply, call, set_cookies

LOGGER = "asgi_sessions"
REFUSED = "session cookie refused: "
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
# Substitutes for one character, as raw header bytes: the whole base64url
# alphabet, the standard alphabet's "+" and "/", padding, separators,
# whitespace, quotes, control bytes, latin-1 and UTF-8 non-ASCII.
HOSTILE = [
    b"+", b"/", b"=", b".", b" ", b"\t", b";", b",", b'"', b"\\", b"%", b"!", b"~",
    b"*", b":", b"\x00", b"\x7f", b"\x80", b"\xe9", b"\xff", "é".encode(), "€".encode(),
]  # fmt: skip
REPLACEMENTS = [char.encode("ascii") for char in ALPHABET] + HOSTILE
MIN_CASES = 10_000


# -- the app -------------------------------------------------------------------------


async def _show(request: Request) -> JSONResponse:
    return JSONResponse(request.session.copy())


async def _set(request: Request) -> JSONResponse:
    request.session.update(json.loads(request.query_params["data"]))
    return JSONResponse(request.session.copy())


APP = Starlette(
    routes=[Route("/", _show), Route("/set", _set)],
    middleware=[Middleware(SessionMiddleware, secret_key=SECRET)],
)


def _issue(data: dict[str, Any]) -> str:
    """A cookie the app itself issued for ``data``."""

    async def run() -> Reply:
        path = "/set"
        scope_query = json.dumps(data).encode()
        app: Any = APP

        async def with_query(scope: Any, receive: Any, send: Any) -> None:
            scope["query_string"] = b"data=" + scope_query
            await app(scope, receive, send)

        return await call(with_query, path=path)

    return set_cookies(asyncio.run(run()))["session"].value


def _token_with_tail(tail: int) -> tuple[str, dict[str, Any]]:
    """A valid token whose length is ``tail`` modulo 4 (its last character then
    carries 4 or 2 unused bits, so non-canonical spellings exist)."""
    for size in range(40):
        data = {"user": "alice", "role": "admin", "pad": "p" * size}
        token = _issue(data)
        if len(token) % 4 == tail:
            return token, data
    raise AssertionError("no token of that length class")


TOKENS = {tail: _token_with_tail(tail) for tail in (2, 3)}


# -- the checks ----------------------------------------------------------------------


class Prober:
    """Sends one Cookie header through the app and checks the outcome and the log."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.DEBUG, logger=LOGGER)
        self.caplog = caplog
        self.cases = 0

    async def send(self, *headers: bytes) -> Reply:
        self.caplog.clear()
        reply = await call(APP, [(b"cookie", header) for header in headers])
        self.cases += 1
        self._no_secrets_in_log(headers)
        return reply

    def _no_secrets_in_log(self, headers: tuple[bytes, ...]) -> None:
        values = [header.decode("latin-1") for header in headers]
        for record in self.caplog.records:
            assert record.name.startswith(LOGGER)
            message = record.getMessage()
            assert SECRET not in message
            assert not record.exc_info
            for start in range(len(message) - 7):
                window = message[start : start + 8]
                assert not any(window in value for value in values), (message, values)

    async def refused(self, *headers: bytes, reason: str | None = None) -> None:
        """Our cookie is there but must be refused: empty session, logged why."""
        reply = await self.send(*headers)
        assert reply.status == 200, headers
        assert reply.json() == {}, headers
        assert reply.get_all(b"set-cookie") == []
        reasons = [
            record.getMessage()[len(REFUSED) :]
            for record in self.caplog.records
            if record.levelno == logging.DEBUG and record.getMessage().startswith(REFUSED)
        ]
        assert reasons, f"no debug line says why {headers!r} was refused"
        assert all(reasons), "a refusal without a reason"
        if reason is not None:
            assert any(reason in text for text in reasons), reasons

    async def absent(self, *headers: bytes) -> None:
        """Nothing in the header is our cookie: an empty session, nothing refused."""
        reply = await self.send(*headers)
        assert reply.status == 200
        assert reply.json() == {}
        assert reply.get_all(b"set-cookie") == []

    async def accepted(self, data: dict[str, Any], *headers: bytes) -> None:
        reply = await self.send(*headers)
        assert reply.status == 200
        assert reply.json() == data, headers
        assert not any(r.getMessage().startswith(REFUSED) for r in self.caplog.records)


@pytest.fixture
def prober(caplog: pytest.LogCaptureFixture) -> Prober:
    return Prober(caplog)


def _cookie(value: str | bytes, name: str = "session") -> bytes:
    raw = value if isinstance(value, bytes) else value.encode("latin-1")
    return name.encode("latin-1") + b"=" + raw


def _same_bytes_spellings(token: str) -> list[str]:
    """Every other last character that a lenient decoder maps to the same bytes."""
    raw = b64decode(token)
    assert raw is not None
    index = ALPHABET.index(token[-1])
    unused = 4 if len(token) % 4 == 2 else 2
    spellings = [token[:-1] + ALPHABET[index | low] for low in range(1, 2**unused)]
    for spelling in spellings:
        assert base64.urlsafe_b64decode(spelling + "=" * (-len(spelling) % 4)) == raw
    return spellings


def _single_changes(token: str) -> Iterator[bytes]:
    """Every one-character substitution and deletion, every prefix and suffix truncation."""
    raw = token.encode("ascii")
    for position in range(len(raw)):
        for replacement in REPLACEMENTS:
            if replacement != raw[position : position + 1]:
                yield raw[:position] + replacement + raw[position + 1 :]
        yield raw[:position] + raw[position + 1 :]
    for size in range(len(raw)):
        yield raw[:size]
        if size:
            yield raw[size:]


def _as_read(value: bytes) -> bytes:
    """The cookie value a server reads from ``session=<value>`` (RFC 6265: up to
    the next ";", surrounding whitespace and one pair of quotes removed), to tell
    a real change from one that only appended "; ..." or whitespace."""
    value = value.split(b";", 1)[0].strip()
    if len(value) >= 2 and value[:1] == b'"' == value[-1:]:
        value = value[1:-1]
    return value


# -- the exhaustive, deterministic part ---------------------------------------------------


def test_every_single_character_change_and_truncation_is_refused(prober: Prober) -> None:
    async def run() -> None:
        for token, data in TOKENS.values():
            await prober.accepted(data, _cookie(token))
            await prober.accepted(data, b"a=1; " + _cookie(token) + b"; b=2")
            spellings = _same_bytes_spellings(token)
            assert len(spellings) in (3, 15)
            for spelling in spellings:
                await prober.refused(_cookie(spelling))
            for changed in _single_changes(token):
                assert changed != token.encode()
                await prober.refused(_cookie(changed))

    asyncio.run(run())
    assert prober.cases >= MIN_CASES, prober.cases


def _forge(
    payload: bytes, *, name: str = "session", secret: str = SECRET, expires: int | None = None
) -> str:
    return EncryptedCookieStore(secret).seal(payload, name)


def _plaintext(data: Any, *, issued: int, expires: int) -> bytes:
    body = data if isinstance(data, bytes) else json.dumps(data).encode()
    return pack_cookie(body, created=issued, issued=issued, expires=expires, expiry=None)


def test_valid_cookie_under_another_name_is_not_the_session(prober: Prober) -> None:
    token, _ = TOKENS[2]

    async def run() -> None:
        for name in ("Session", "SESSION", "sessionx", "xsession", "session.1", "session_", "s"):
            await prober.absent(_cookie(token, name))
        await prober.absent(b"")
        await prober.absent(b"; ; ;")

    asyncio.run(run())


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (b"session=REAL", "REAL"),
        (b"  session=REAL", "REAL"),
        (b"a=1;session=REAL", "REAL"),
        (b"a=1; \t session=REAL", "REAL"),
        # " session=" inside another cookie's value is that cookie's value
        # (browsers send values with spaces as they are): it must not shadow
        # the real cookie, which would plant an id of the sender's choosing.
        (b"pref=dark session=EVIL; session=REAL", "REAL"),
        (b"pref=dark\tsession=EVIL; session=REAL", "REAL"),
        (b"pref=a=session=EVIL; session=REAL", "REAL"),
        (b"pref=dark session=EVIL", None),
    ],
)
def test_only_a_whole_cookie_is_ours(header: bytes, expected: str | None) -> None:
    assert CookieSpec("session").read([(b"cookie", header)]) == expected


def test_a_session_cookie_inside_another_cookies_value_is_ignored(prober: Prober) -> None:
    token, data = TOKENS[2]

    async def run() -> None:
        await prober.absent(b"note=see session=" + token.encode())
        await prober.accepted(data, b"note=x session=junk; " + _cookie(token))

    asyncio.run(run())


def test_cookies_that_verify_with_nothing_are_refused(prober: Prober) -> None:
    now = int(time.time())
    token, data = TOKENS[3]
    good = _plaintext(data, issued=now, expires=now + 600)

    async def run() -> None:
        # Sealed for another cookie name, or with another secret.
        await prober.refused(_cookie(_forge(good, name="other")), reason="does not verify")
        await prober.refused(_cookie(_forge(good, secret=OTHER_SECRET)), reason="does not verify")
        # Expired on the server, whatever the browser did.
        expired = _plaintext(data, issued=now - 100, expires=now - 1)
        await prober.refused(_cookie(_forge(expired)), reason="expired")
        # Verifies, but holds something that is not a session.
        for body in (b"", b"not json", b"[1, 2]", b"null", b"\xff\xfe", b'"text"'):
            forged = _forge(_plaintext(body, issued=now, expires=now + 600))
            await prober.refused(_cookie(forged), reason="malformed")
        await prober.refused(_cookie(_forge(b"short")), reason="malformed")
        # Empty, quoted, absurdly long, non-ASCII, not base64 at all.
        await prober.refused(_cookie(""))
        await prober.refused(_cookie('""'))
        await prober.refused(_cookie(f'"{token}'))
        await prober.refused(_cookie("A" * 100_000), reason="longer than")
        await prober.refused(_cookie(token * 1000), reason="longer than")
        await prober.refused(_cookie("é" * 50_000))
        await prober.refused(_cookie("ßéssion-ünicode".encode()))
        await prober.refused(_cookie(token + "=="))
        await prober.refused(_cookie(token.replace("-", "+").replace("_", "/") + "+"))
        await prober.refused(_cookie(token + "." + token))
        await prober.refused(_cookie("null"))

    asyncio.run(run())


def test_duplicate_session_cookies_the_first_one_wins(prober: Prober) -> None:
    token, data = TOKENS[2]
    valid = _cookie(token)
    garbage = [_cookie("garbage"), _cookie(""), _cookie(token[:-1]), _cookie(TOKENS[3][0][1:])]

    async def run() -> None:
        for bad in garbage:
            # In one header.
            await prober.refused(bad + b"; " + valid)
            await prober.accepted(data, valid + b"; " + bad)
            # In two headers, in the order they arrived.
            await prober.refused(bad, valid)
            await prober.accepted(data, valid, bad)
        # Two valid session cookies: the first.
        other_token, other_data = TOKENS[3]
        await prober.accepted(other_data, _cookie(other_token) + b"; " + valid)
        await prober.accepted(data, valid + b"; " + _cookie(other_token))

    asyncio.run(run())


# -- the property-based part ----------------------------------------------------------

HYPOTHESIS = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@HYPOTHESIS
@given(value=st.binary(max_size=400))
def test_random_bytes(prober: Prober, value: bytes) -> None:
    asyncio.run(prober.refused(_cookie(value)))


@HYPOTHESIS
@given(value=st.text(min_size=1, max_size=200).filter(lambda text: not text.isascii()))
def test_non_ascii_text(prober: Prober, value: str) -> None:
    asyncio.run(prober.refused(_cookie(value.encode("utf-8"))))


@HYPOTHESIS
@given(value=st.text(alphabet=ALPHABET + "+/=.", min_size=0, max_size=300))
def test_base64_looking_noise(prober: Prober, value: str) -> None:
    asyncio.run(prober.refused(_cookie(value)))


@settings(HYPOTHESIS, max_examples=25)
@given(
    size=st.integers(min_value=60_000, max_value=120_000),
    unit=st.sampled_from(["A", "é", "-_", TOKENS[2][0]]),
)
def test_huge_values(prober: Prober, size: int, unit: str) -> None:
    value = (unit * (size // len(unit) + 1))[:size]
    asyncio.run(prober.refused(_cookie(value.encode("utf-8"))))


@HYPOTHESIS
@given(
    tail=st.sampled_from([2, 3]),
    edits=st.lists(
        st.tuples(st.integers(min_value=0, max_value=400), st.sampled_from(REPLACEMENTS)),
        min_size=1,
        max_size=6,
    ),
)
def test_random_mutations_of_a_valid_token(
    prober: Prober, tail: int, edits: list[tuple[int, bytes]]
) -> None:
    original = TOKENS[tail][0].encode("ascii")
    mutated = original
    for position, replacement in edits:
        position %= len(mutated) + 1
        mutated = mutated[:position] + replacement + mutated[position + 1 :]
    assume(_as_read(mutated) != original)
    asyncio.run(prober.refused(_cookie(mutated)))


@HYPOTHESIS
@given(
    garbage=st.lists(st.binary(max_size=60).filter(lambda b: b";" not in b), min_size=1),
    separate=st.booleans(),
    position=st.integers(min_value=1, max_value=10),
)
def test_random_duplicates_behind_a_bad_first_cookie(
    prober: Prober, garbage: list[bytes], separate: bool, position: int
) -> None:
    cookies = [_cookie(value) for value in garbage]
    cookies.insert(min(position, len(cookies)), _cookie(TOKENS[2][0]))
    headers = cookies if separate else [b"; ".join(cookies)]
    asyncio.run(prober.refused(*headers))
