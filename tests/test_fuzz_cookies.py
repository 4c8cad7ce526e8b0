"""Bad cookies never hurt: tens of thousands of hostile Cookie headers through a real app.

The app is our middleware over a bare ASGI app that answers with the session
as JSON, driven directly with raw header bytes (no test client in between,
so any exception reaches the test). Each bad cookie must give a 200 with an
empty session, a debug line in the ``asgi_sessions`` log saying why, and no
log record may contain the secret or eight consecutive characters of the
cookie.

Two parts:

* exhaustive and deterministic: every single-character substitution
  (every base64url character and a set of hostile ones, which includes the
  non-canonical spellings of the same bytes in the last character), deletion
  and insertion, and every truncation, of two valid tokens (one per length
  class that has unused bits in its last character); the valid token under
  another cookie name, sealed for another name, with another secret,
  expired, or carrying a malformed plaintext; duplicate session cookies;
* property-based (hypothesis): random bytes, non-ASCII text, base64-looking
  noise, 100 KB values, random multi-character mutations of a valid token,
  and duplicate session cookies in one header or several.

With duplicates the first ``session`` cookie wins, as documented in
:meth:`asgi_sessions.cookies.CookieSpec.read` (browsers send the cookie with
the most specific path first): a bad first one gives an empty session even
when a valid one follows.
"""

from __future__ import annotations

import ast
import asyncio
import base64
import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import asgi_sessions
from asgi_sessions import SessionMiddleware
from asgi_sessions._record import pack_cookie
from asgi_sessions.crypto import b64decode, b64encode
from asgi_sessions.stores import EncryptedCookieStore
from tests.apps import OTHER_SECRET, SECRET, call, echo_session, set_cookies

LOGGER = "asgi_sessions"
REFUSED = "session cookie refused"
B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
HOSTILE = [
    b"=", b"+", b"/", b".", b"!", b"~", b"%", b" ", b"\t", b'"', b",", b";", b"\\",
    b"\x00", b"\x7f", b"\x80", b"\xff", "é".encode(), "€".encode(), b"==",
]  # fmt: skip  # fmt: skip
DATA = {"user": "alice-admin", "cart": [1, 2, 3]}

APP = SessionMiddleware(echo_session, secret_key=SECRET)
STORE = EncryptedCookieStore(SECRET)


# -- valid tokens, issued by the real middleware ------------------------------------------


async def _setter(scope: Any, receive: Any, send: Any) -> None:
    scope["session"].update(json.loads(scope["path"][1:]))
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def _issue(data: Any, *, secret: str = SECRET, name: str = "session") -> str:
    app = SessionMiddleware(_setter, secret_key=secret, session_cookie=name)
    reply = asyncio.run(call(app, path="/" + json.dumps(data)))
    return set_cookies(reply)[name].value


def _token_with_tail(tail: int) -> tuple[str, dict[str, Any]]:
    """A valid token whose length is ``tail`` mod 4 (its last character has unused bits)."""
    for pad in range(8):
        data = {**DATA, "pad": "p" * pad}
        token = _issue(data)
        if len(token) % 4 == tail:
            return token, data
    raise AssertionError(f"no token of length {tail} mod 4")


TOKENS = [_token_with_tail(2), _token_with_tail(3)]
VALID, VALID_DATA = TOKENS[0]


# -- the check applied to every header ----------------------------------------------------


def _eight_grams(text: str) -> set[str]:
    return {text[i : i + 8] for i in range(len(text) - 7)}


SECRET_GRAMS = _eight_grams(SECRET) | _eight_grams(OTHER_SECRET)


def _source_text_grams() -> set[str]:
    """Every 8-gram of every string constant in the package's source.

    A log line made of our own fixed words ("it does not verify") leaks
    nothing even when a random cookie happens to contain some of them, and
    Hypothesis draws text from the constants of the code under test, so it
    does build such cookies. A real leak is of cookie bytes we did not write.
    """
    grams: set[str] = set()
    for path in Path(asgi_sessions.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                grams |= _eight_grams(node.value)
    return grams


OUR_TEXT = _source_text_grams()


class Harness:
    """Sends Cookie headers through :data:`APP` and checks each answer and its log."""

    def __init__(self, caplog: pytest.LogCaptureFixture, runner: asyncio.Runner) -> None:
        self.caplog = caplog
        self.runner = runner
        self.count = 0
        caplog.set_level(logging.DEBUG, logger=LOGGER)

    async def send(
        self,
        headers: list[tuple[bytes, bytes]],
        *,
        expect: dict[str, Any] | None = None,
        refused: bool = True,
    ) -> None:
        """One request; ``expect`` is the session the app must see (default: empty)."""
        self.caplog.clear()
        reply = await call(APP, headers)
        context = f"headers={headers!r:.300}"
        assert reply.status == 200, context
        assert reply.json() == ({} if expect is None else expect), context
        records = [r for r in self.caplog.records if r.name.startswith(LOGGER)]
        if refused:
            assert any(r.getMessage().startswith(REFUSED) for r in records), context
        for record in records:
            assert record.levelno == logging.DEBUG, record.getMessage()
            self._assert_clean(record, headers)
        self.count += 1

    def _assert_clean(self, record: logging.LogRecord, headers: list[tuple[bytes, bytes]]) -> None:
        text = " ".join([record.getMessage(), repr(record.args), record.exc_text or ""])
        assert not (_eight_grams(text) & SECRET_GRAMS), f"secret in log: {text!r}"
        for _, value in headers:
            cookie = value.decode("latin-1")
            leaked = [g for g in _eight_grams(text) - OUR_TEXT if g in cookie]
            assert not leaked, f"cookie value in log: {text!r}"

    def run(self, headers: list[tuple[bytes, bytes]], **kwargs: Any) -> None:
        """:meth:`send`, from synchronous code."""
        self.runner.run(self.send(headers, **kwargs))


@pytest.fixture
def harness(caplog: pytest.LogCaptureFixture) -> Iterator[Harness]:
    with asyncio.Runner() as runner:  # one event loop for all of a test's requests
        yield Harness(caplog, runner)


def _cookie(value: bytes | str, name: bytes = b"session") -> list[tuple[bytes, bytes]]:
    raw = value.encode("utf-8") if isinstance(value, str) else value
    return [(b"cookie", name + b"=" + raw)]


# -- controls ------------------------------------------------------------------------------


@pytest.mark.parametrize(("token", "data"), TOKENS, ids=["len%4=2", "len%4=3"])
def test_valid_tokens_are_read(harness: Harness, token: str, data: dict[str, Any]) -> None:
    harness.run(_cookie(token), expect=data, refused=False)


def test_no_cookie_is_an_empty_session_without_a_refusal(harness: Harness) -> None:
    harness.run([], refused=False)
    harness.run([(b"cookie", b"theme=dark; lang=en")], refused=False)


# -- exhaustive single-character changes ---------------------------------------------------


def _single_changes(token: str) -> Iterator[bytes]:
    """Every one-character substitution, deletion and insertion, and every truncation."""
    raw = token.encode("ascii")
    alternatives = [c.encode() for c in B64URL] + HOSTILE
    for i in range(len(raw)):
        for alt in alternatives:
            if alt != raw[i : i + 1]:
                yield raw[:i] + alt + raw[i + 1 :]
        yield raw[:i] + raw[i + 1 :]
        for alt in (b"A", b"-", b"_", b"=", b" "):
            if i or alt != b" ":  # blanks around a cookie value are not part of it
                yield raw[:i] + alt + raw[i:]
    for cut in range(len(raw)):
        yield raw[:cut]
        yield raw[cut + 1 :]
    yield raw + b"A"
    yield raw + b"="


def _lenient_b64(value: bytes) -> bytes | None:
    try:
        return base64.urlsafe_b64decode(value + b"=" * (-len(value) % 4))
    except ValueError:
        return None


@pytest.mark.parametrize(("token", "data"), TOKENS, ids=["len%4=2", "len%4=3"])
def test_every_single_character_change_and_truncation_is_refused(
    harness: Harness, token: str, data: dict[str, Any]
) -> None:
    changes = list(dict.fromkeys(_single_changes(token)))
    assert token.encode() not in changes
    raw = b64decode(token)
    same_bytes = [c for c in changes if len(c) == len(token) and _lenient_b64(c) == raw]
    # The last character has unused bits: other spellings of the very same bytes exist
    # (and "+" or "/" for "-" or "_" in a lenient decoder); all must be refused.
    prefix = token[:-1].encode()
    in_last_char = [c for c in same_bytes if c[:-1] == prefix and chr(c[-1]) in B64URL]
    assert len(in_last_char) == (15 if len(token) % 4 == 2 else 3)

    async def drive() -> None:
        for value in changes:
            await harness.send(_cookie(value))

    harness.runner.run(drive())
    assert harness.count == len(changes) >= 5_000


# -- the valid cookie in the wrong place ------------------------------------------------------


def test_valid_cookie_under_another_cookie_name_is_not_our_session(harness: Harness) -> None:
    for name in (b"Session", b"SESSION", b"xsession", b"session_", b"session.1", b"sess", b"other"):
        harness.run(_cookie(VALID, name), refused=False)


def test_cookie_sealed_for_another_name_is_refused(harness: Harness) -> None:
    harness.run(_cookie(_issue(VALID_DATA, name="other")))


def test_cookie_made_with_another_secret_is_refused(harness: Harness) -> None:
    harness.run(_cookie(_issue(VALID_DATA, secret=OTHER_SECRET)))


def _sealed(plaintext: bytes) -> str:
    return STORE.seal(plaintext, "session")


def _payload(data: bytes, *, expires: int | None = None) -> bytes:
    now = int(time.time())
    return pack_cookie(data, created=now, issued=now, expires=expires, expiry=None)


@pytest.mark.parametrize(
    "plaintext",
    [
        _payload(json.dumps(DATA).encode(), expires=int(time.time()) - 1),
        _payload(json.dumps(DATA).encode(), expires=1),
        _payload(b"[1, 2, 3]"),
        _payload(b'"a string"'),
        _payload(b"null"),
        _payload(b"{not json"),
        _payload(b"\xff\xfe{}"),
        _payload(b'{"a": NaN}'),
        _payload(b'{"a": 1} trailing'),
        _payload(b""),
        b"",
        b"short",
        b"\x00" * 12 + b"\x07" + b"\x00" * 8 + b"{}",  # an unknown custom-expiry kind
    ],
    ids=[
        "expired",
        "expired-long-ago",
        "list",
        "string",
        "null",
        "not-json",
        "not-utf8",
        "nan",
        "trailing",
        "no-data",
        "empty",
        "no-head",
        "bad-expiry-kind",
    ],
)
def test_authentic_cookie_with_bad_content_is_refused(harness: Harness, plaintext: bytes) -> None:
    harness.run(_cookie(_sealed(plaintext)))


def test_empty_and_odd_values_are_refused(harness: Harness) -> None:
    for value in (b"", b'""', b'"', b"null", b" ", b"=", b"==", b"A", b"AA", b"." * 50):
        harness.run(_cookie(value))
    harness.run([(b"cookie", b"session=; other=1")])


def test_100_kb_valid_looking_value_is_refused(harness: Harness) -> None:
    harness.run(_cookie(VALID * (100_000 // len(VALID) + 1)))
    harness.run(_cookie(b64encode(b"\x01" * 80_000)))


# -- duplicates: the first session cookie wins --------------------------------------------------


def test_duplicates_first_valid_then_garbage_reads_the_first(harness: Harness) -> None:
    harness.run(
        [(b"cookie", f"session={VALID}; session=garbage".encode())],
        expect=VALID_DATA,
        refused=False,
    )


def test_duplicates_garbage_first_then_valid_is_an_empty_session(harness: Harness) -> None:
    harness.run([(b"cookie", f"session=garbage; session={VALID}".encode())])


def test_duplicates_in_separate_cookie_headers_follow_the_same_rule(harness: Harness) -> None:
    harness.run([(b"cookie", b"session=garbage"), (b"cookie", f"session={VALID}".encode())])
    harness.run(
        [(b"cookie", f"session={VALID}".encode()), (b"cookie", b"session=garbage")],
        expect=VALID_DATA,
        refused=False,
    )


def test_two_valid_session_cookies_read_the_first(harness: Harness) -> None:
    other_token, other_data = TOKENS[1]
    harness.run(
        [(b"cookie", f"session={other_token}; session={VALID}".encode())],
        expect=other_data,
        refused=False,
    )


# -- property-based ---------------------------------------------------------------------------

BAD_VALUE = st.one_of(
    st.binary(max_size=400),
    st.text(max_size=200).map(lambda s: s.encode("utf-8")),
    st.text(alphabet=B64URL, max_size=300).map(str.encode),
    st.text(alphabet=B64URL + ".", max_size=300).map(str.encode),
)


def _property(
    examples: int, strategy: st.SearchStrategy[Any]
) -> Callable[[Callable[[Any], None]], Callable[[], int]]:
    """Run ``check`` on ``examples`` values drawn from ``strategy``; return how many ran."""

    def wrap(check: Callable[[Any], None]) -> Callable[[], int]:
        def run() -> int:
            seen = 0

            @settings(
                max_examples=examples,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
            )
            @given(strategy)
            def each(value: Any) -> None:
                nonlocal seen
                seen += 1
                check(value)

            each()
            return seen

        return run

    return wrap


def _is_valid_spelling(value: bytes) -> bool:
    """Whether a value could be read as our session (only the valid token itself)."""
    head = value.split(b";", 1)[0].strip()
    if len(head) >= 2 and head[:1] == head[-1:] == b'"':
        head = head[1:-1]
    return head == VALID.encode()


def test_random_values_are_refused(harness: Harness) -> None:
    @_property(2_000, BAD_VALUE)
    def check(value: bytes) -> None:
        if not _is_valid_spelling(value):
            harness.run(_cookie(value))

    assert check() >= 1_500
    assert harness.count >= 1_500


def test_random_values_among_other_cookies_are_refused(harness: Harness) -> None:
    @_property(500, st.tuples(BAD_VALUE, st.booleans()))
    def check(drawn: tuple[bytes, bool]) -> None:
        value, first = drawn
        if _is_valid_spelling(value) or b";" in value:
            return
        others = b"theme=dark; csrftoken=abc123"
        ours = b"session=" + value
        header = b"; ".join([ours, others] if first else [others, ours])
        harness.run([(b"cookie", header)])

    assert check() >= 400


MUTATION = st.lists(
    st.tuples(
        st.sampled_from(["flip", "insert", "delete"]),
        st.integers(min_value=0, max_value=len(VALID) - 1),
        st.integers(min_value=1, max_value=255),
    ),
    min_size=1,
    max_size=6,
)


def _mutate(raw: bytes, steps: list[tuple[str, int, int]]) -> bytes:
    data = bytearray(raw)
    for kind, position, byte in steps:
        position = min(position, len(data))
        if kind == "flip" and position < len(data):
            data[position] ^= byte
        elif kind == "insert":
            data.insert(position, byte)
        elif kind == "delete" and position < len(data):
            del data[position]
    return bytes(data)


def test_random_mutations_of_a_valid_token_are_refused(harness: Harness) -> None:
    @_property(2_000, MUTATION)
    def check(steps: list[tuple[str, int, int]]) -> None:
        value = _mutate(VALID.encode(), steps)
        if not _is_valid_spelling(value):
            harness.run(_cookie(value))

    assert check() >= 1_500


def test_huge_values_are_refused(harness: Harness) -> None:
    huge = st.tuples(
        st.integers(min_value=100_000, max_value=140_000),
        st.sampled_from([b"A", b"-", b"\xff", b"%", "é".encode(), VALID.encode()]),
    )

    @_property(20, huge)
    def check(drawn: tuple[int, bytes]) -> None:
        size, unit = drawn
        harness.run(_cookie((unit * (size // len(unit) + 1))[:size]))

    assert check() >= 10


def test_duplicates_with_a_bad_first_cookie_are_an_empty_session(harness: Harness) -> None:
    duplicates = st.tuples(
        st.lists(BAD_VALUE.filter(lambda v: b";" not in v), min_size=1, max_size=4),
        st.integers(min_value=1, max_value=4),
        st.booleans(),
    )

    @_property(500, duplicates)
    def check(drawn: tuple[list[bytes], int, bool]) -> None:
        bad, position, separate = drawn
        if _is_valid_spelling(bad[0]):
            return
        values = [*bad]
        values.insert(min(position, len(values)), VALID.encode())
        cookies = [b"session=" + value for value in values]
        if separate:
            headers = [(b"cookie", cookie) for cookie in cookies]
        else:
            headers = [(b"cookie", b"; ".join(cookies))]
        harness.run(headers)

    assert check() >= 400
