"""Reading the session cookie from a request and writing Set-Cookie headers.

Owns: finding one cookie (and its chunks) in the raw ``Cookie`` headers
without parsing every other cookie, the exact Set-Cookie spelling Starlette
uses (``path=``, ``Max-Age=``, ``httponly``, ``samesite=``, ``secure``,
``domain=``, ``partitioned``), the browser's 4096-byte limit, and splitting a
large value across ``name``, ``name.1``, ... when chunking is enabled.

Never knows: what the value means (sealed data or a session id).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal

from .errors import ImproperlyConfigured, SessionTooLarge

__all__ = ["COOKIE_LIMIT", "CookieJarView", "CookieSpec"]

COOKIE_LIMIT: Final = 4096
"""Browsers keep a cookie only if ``name=value`` plus attributes fit in 4096 bytes."""

MAX_CHUNKS: Final = 16
"""More chunks than this are refused on read (and never written): a cookie
jar is shared with the rest of the site, and browsers cap cookies per domain."""

_EXPIRED: Final = "expires=Thu, 01 Jan 1970 00:00:00 GMT; "
_CHUNK_HEAD = re.compile(r"([2-9]|1[0-6])\.(.*)\Z", re.DOTALL)


def _find(header: bytes, name_eq: bytes) -> str | None:
    """The value of the first cookie ``name_eq`` (``b"name="``) in a Cookie header."""
    start = header.find(name_eq)
    while start != -1:
        # A real match starts the header or follows ";" and optional
        # whitespace: not "xsession=", nor " session=" inside another
        # cookie's value ("pref=a session=b" is one cookie, "pref").
        before = start - 1
        while before >= 0 and header[before] in b" \t":
            before -= 1
        if before < 0 or header[before] == 59:  # ord(";")
            begin = start + len(name_eq)
            end = header.find(b";", begin)
            value = (header[begin:] if end == -1 else header[begin:end]).strip()
            if len(value) >= 2 and value[0] == 34 == value[-1]:  # a quoted value
                value = value[1:-1]
            return value.decode("latin-1")
        start = header.find(name_eq, start + 1)
    return None


@dataclass(frozen=True, slots=True)
class CookieJarView:
    """What the request carried for our cookie.

    ``value`` is the (re-assembled) cookie value or ``None``; ``chunks`` is how
    many cookies it occupied (0 when absent), so stale ones can be deleted.
    """

    value: str | None
    chunks: int


_ABSENT: Final = CookieJarView(None, 0)


class CookieSpec:
    """One cookie's name and attributes, turned into header text once.

    The per-request work is a string search and a concatenation; everything
    else is prepared here at construction.
    """

    __slots__ = (
        "_age_line",
        "_delete_tail",
        "_name_eq",
        "_set_tail",
        "chunked",
        "name",
        "path",
    )

    def __init__(
        self,
        name: str,
        *,
        path: str = "/",
        domain: str | None = None,
        same_site: Literal["lax", "strict", "none"] = "lax",
        https_only: bool = False,
        http_only: bool = True,
        partitioned: bool = False,
        chunked: bool = False,
    ) -> None:
        if not name or not re.fullmatch(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+", name):
            raise ImproperlyConfigured(f"{name!r} is not a valid cookie name")
        # Any case, as Starlette (and browsers) take it; written in lowercase.
        site = same_site.lower() if isinstance(same_site, str) else same_site
        if site not in ("lax", "strict", "none"):
            raise ImproperlyConfigured("same_site must be 'lax', 'strict' or 'none'")
        # Browsers match these prefixes case-insensitively (RFC 6265bis), so
        # "__host-sid" is held to the same rules as "__Host-sid".
        prefix = name[:9].lower()
        if prefix.startswith("__secure-") and not https_only:
            raise ImproperlyConfigured(
                f"cookie {name!r}: browsers only accept a __Secure- cookie with the Secure "
                "attribute; set https_only=True"
            )
        if prefix.startswith("__host-") and (not https_only or path != "/" or domain is not None):
            raise ImproperlyConfigured(
                f"cookie {name!r}: browsers only accept a __Host- cookie that is Secure "
                "(https_only=True), has path='/' and no domain"
            )
        if partitioned and not https_only:
            warnings.warn(
                f"cookie {name!r}: browsers ignore a partitioned cookie without the Secure "
                "attribute; set https_only=True",
                UserWarning,
                stacklevel=3,
            )
        self.name = name
        self.path = path
        self.chunked = chunked
        flags = ("httponly; " if http_only else "") + "samesite=" + site
        if https_only:
            flags += "; secure"
        if domain is not None:
            flags += f"; domain={domain}"
        if partitioned:
            flags += "; partitioned"
        self._name_eq = (name + "=").encode("latin-1")
        self._set_tail = flags
        # The last Max-Age seen and the line tail it makes: every cookie of a
        # middleware usually gets the same Max-Age, so the tail is built once.
        self._age_line: tuple[int | None, bytes] = (None, self._attributes(None).encode("latin-1"))
        self._delete_tail = f"=null; path={path}; {_EXPIRED}{flags}"

    # -- reading ---------------------------------------------------------------

    def read(self, headers: Iterable[tuple[bytes, bytes]]) -> str | None:
        """Our cookie's value in raw ASGI headers, or ``None``.

        With duplicates, the first wins: browsers send the cookie with the most
        specific path first (RFC 6265 §5.4). Only bytes are searched; nothing
        else in the header is parsed or decoded.
        """
        header = None
        for field, raw in headers:
            if field == b"cookie":
                header = raw if header is None else header + b"; " + raw
        if header is None:
            return None
        return _find(header, self._name_eq)

    def read_value(self, headers: Iterable[tuple[bytes, bytes]]) -> str | None:
        """Our cookie's whole value: :meth:`read`, reassembled if chunking is on."""
        value = self.read(headers)
        if value is None or not self.chunked:
            return value
        return self.read_chunked(headers, value).value

    def chunk_count(self, headers: Iterable[tuple[bytes, bytes]]) -> int:
        """How many cookies the request's value occupied (0 if none), to delete stale chunks."""
        if not self.chunked:
            return 0  # chunks exist only when chunking is on
        return self.read_chunked(headers, self.read(headers)).chunks

    def read_chunked(
        self, headers: Iterable[tuple[bytes, bytes]], head: str | None
    ) -> CookieJarView:
        """Reassemble a chunked value whose first cookie held ``head``.

        A value without the ``N.`` head is a single cookie. A missing chunk
        makes the value empty, which then fails to verify like any damage.
        """
        if head is None:
            return _ABSENT
        match = _CHUNK_HEAD.match(head)
        if match is None:
            return CookieJarView(head, 1)
        count = int(match.group(1))
        header = b"; ".join(raw for field, raw in headers if field == b"cookie")
        parts = [match.group(2)]
        for index in range(1, count):
            part = _find(header, f"{self.name}.{index}=".encode("latin-1"))
            if part is None:
                return CookieJarView("", count)
            parts.append(part)
        return CookieJarView("".join(parts), count)

    # -- writing ---------------------------------------------------------------

    def _attributes(self, max_age: int | None) -> str:
        """Everything after ``name=value`` in a Set-Cookie line."""
        age = "" if max_age is None else f"Max-Age={max_age}; "
        return f"; path={self.path}; {age}{self._set_tail}"

    def set_line(self, value: str, max_age: int | None) -> bytes:
        """The Set-Cookie value storing ``value`` when chunking is off.

        The hot path of every write: the same line as :meth:`set_headers`
        with no chunks, built as bytes from a cached attribute tail.
        Raises :class:`SessionTooLarge` when it does not fit.
        """
        assert not self.chunked, "set_line is for unchunked cookies; use set_headers"
        age, tail = self._age_line
        if age != max_age:
            tail = self._attributes(max_age).encode("latin-1")
            self._age_line = (max_age, tail)
        line = self._name_eq + value.encode("latin-1") + tail
        if len(line) > COOKIE_LIMIT:
            raise SessionTooLarge(len(line), COOKIE_LIMIT)
        return line

    def _line(self, name: str, value: str, max_age: int | None) -> str:
        return f"{name}={value}{self._attributes(max_age)}"

    def set_headers(self, value: str, max_age: int | None, previous_chunks: int) -> list[str]:
        """Set-Cookie header values that store ``value``, deleting stale chunks.

        Raises :class:`SessionTooLarge` when the value does not fit and chunking
        is off (or needs more than :data:`MAX_CHUNKS` cookies).
        """
        line = self._line(self.name, value, max_age)
        if len(line) <= COOKIE_LIMIT:
            lines = [line]
        elif not self.chunked:
            raise SessionTooLarge(len(line), COOKIE_LIMIT)
        else:
            lines = self._chunk(value, max_age, len(line))
        lines.extend(self._delete_lines(len(lines), previous_chunks))
        return lines

    def _chunk(self, value: str, max_age: int | None, size: int) -> list[str]:
        # Room for one chunk: the limit less the attributes of the longest
        # chunk name and the "N." head of the first chunk.
        overhead = len(self._line(f"{self.name}.{MAX_CHUNKS}", "", max_age)) + 3
        room = COOKIE_LIMIT - overhead
        pieces = [value[i : i + room] for i in range(0, len(value), room)]
        if len(pieces) > MAX_CHUNKS:
            raise SessionTooLarge(size, COOKIE_LIMIT * MAX_CHUNKS, chunked=True)
        lines = [self._line(self.name, f"{len(pieces)}.{pieces[0]}", max_age)]
        lines.extend(
            self._line(f"{self.name}.{i}", piece, max_age) for i, piece in enumerate(pieces[1:], 1)
        )
        return lines

    def _delete_lines(self, start: int, previous_chunks: int) -> list[str]:
        return [f"{self.name}.{i}{self._delete_tail}" for i in range(start, previous_chunks)]

    def delete_headers(self, previous_chunks: int) -> list[str]:
        """Set-Cookie header values that delete the cookie and all its chunks."""
        return [self.name + self._delete_tail, *self._delete_lines(1, previous_chunks)]
