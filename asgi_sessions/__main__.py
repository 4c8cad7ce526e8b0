"""Command-line tools: ``python -m asgi_sessions {keygen,clear-expired,inspect}``.

- ``keygen`` prints a fresh 256-bit secret for ``secret_key``.
- ``clear-expired --store URL`` removes expired sessions from a server store
  (for cron; with Redis it only prunes the user index of "log out everywhere") and
  prints how many were removed. A failure is one line on stderr and exit status
  2 (bad URL), 3 (store unreachable) or 4 (the store refused, e.g. credentials).
- ``inspect COOKIE --secret S`` decrypts a session cookie (a value, or a whole
  ``Cookie`` header for a session chunked over several cookies) and prints its data
  with its creation, issue and expiry times: for debugging, with your own
  secret, on your own machine.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
from collections.abc import Sequence
from datetime import UTC, datetime

import anyio

from ._record import COOKIE_HEAD, unpack_expiry
from .cookies import CookieSpec
from .errors import ImproperlyConfigured, SessionStoreUnavailable
from .serializers import JSONSerializer
from .stores import (
    EncryptedCookieStore,
    SessionStore,
    SignedCookieStore,
    _scrub,
    store_from_url,
)
from .stores.cookie import CookieRefused
from .stores.file import FileStore

__all__ = ["main"]


def _keygen(_: argparse.Namespace) -> int:
    print(secrets.token_urlsafe(32))
    return 0


EXIT_CONFIGURATION = 2
"""Bad usage or a store URL that cannot work (as argparse's own usage errors)."""
EXIT_UNAVAILABLE = 3
"""The store could not be reached, or did not answer in time: worth retrying."""
EXIT_STORE_ERROR = 4
"""The store answered with an error: wrong credentials, a denied permission, a missing table."""

_EXIT_CODES = f"""\
exit status:
  0  done
  {EXIT_CONFIGURATION}  bad usage or store URL (unknown scheme or query parameter, malformed URL,
     driver not installed)
  {EXIT_UNAVAILABLE}  the store cannot be reached or did not answer in time (for Redis, also
     refused credentials)
  {EXIT_STORE_ERROR}  the store answered with an error (wrong credentials, denied permission,
     missing table)
"""


def _clear_expired(args: argparse.Namespace) -> int:
    """Run ``clear_expired``; a failure is one line on stderr and a distinct exit status.

    It runs from cron, whose mail should say what is wrong in a line, not in a
    traceback, and a wrapper script can tell "retry later" (3) from "fix the
    configuration" (2, 4) by the status. Nothing printed repeats the URL's password.
    """
    url: str = args.store

    async def run(store: SessionStore) -> int:
        try:
            return await store.clear_expired()
        finally:
            await store.close()

    try:
        store = store_from_url(url)
        if isinstance(store, FileStore) and not store.directory.is_dir():
            # FileStore makes its directory on first use; a mistyped path
            # here would otherwise "succeed" from cron forever.
            raise ImproperlyConfigured(f"no such directory: {store.directory}")
        removed = anyio.run(run, store)
    except ImproperlyConfigured as exc:
        return _fail(f"bad store URL: {exc}", url, EXIT_CONFIGURATION)
    except SessionStoreUnavailable as exc:
        return _fail(f"store unavailable: {exc}", url, EXIT_UNAVAILABLE)
    except Exception as exc:  # the driver's own errors: unknown in number and kind
        return _fail(f"the store refused: {_describe(exc)}", url, EXIT_STORE_ERROR)
    print(f"removed {removed} expired session(s)")
    return 0


def _describe(error: BaseException) -> str:
    """The first line of the driver's message (SQLAlchemy wraps it in several)."""
    original = getattr(error, "orig", None)  # SQLAlchemy's DBAPIError
    if isinstance(original, BaseException):
        error = original
    name = type(error).__name__
    sqlstate = getattr(error, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate:
        name = f"{name} (SQLSTATE {sqlstate})"
    lines = str(error).strip().splitlines()
    return f"{name}: {lines[0]}" if lines else name


def _fail(message: str, url: str, status: int) -> int:
    print(f"clear-expired: {_scrub(message, url)}", file=sys.stderr)
    return status


def _when(timestamp: int | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat()


def _token_of(text: str, name: str) -> str | None:
    """The session value in ``text``: a bare cookie value, or a whole ``Cookie`` header.

    A header (``session=N.…; session.1=…``) is how a chunked session must be
    given, since its value spans several cookies; it is reassembled here.
    """
    if text[:7].lower() == "cookie:":  # pasted with its header name
        text = text[7:].strip()
    if "=" not in text and ";" not in text:
        return text  # our tokens hold neither: a bare value
    spec = CookieSpec(name, chunked=True, https_only=True)  # https_only: any prefix is valid
    return spec.read_value([(b"cookie", text.encode("latin-1", "replace"))])


def _inspect(args: argparse.Namespace) -> int:
    secrets_ = args.secret or []
    if not secrets_:
        print("inspect needs --secret (repeat it for rotated secrets)", file=sys.stderr)
        return 2
    store_class = SignedCookieStore if args.signed else EncryptedCookieStore
    store = store_class(secrets_)
    token = _token_of(args.cookie.strip(), args.name)
    if token is None:
        print(f"no cookie named {args.name!r} in that Cookie header", file=sys.stderr)
        return 1
    try:
        opened = store.open(token, args.name, None)
    except CookieRefused as refused:
        print(
            f"the cookie is refused ({refused.reason}) with these secrets under this cookie name",
            file=sys.stderr,
        )
        return 1
    assert opened is not None  # the built-in stores raise instead
    payload, stale, _ = opened
    created, issued, expires, kind, value = COOKIE_HEAD.unpack_from(payload)
    report = {
        "data": JSONSerializer().loads(payload[COOKIE_HEAD.size :]),
        "created": _when(created),
        "issued": _when(issued),
        "expires": _when(expires or None),
        "custom_expiry": unpack_expiry(kind, value),
        "read_with_old_secret": stale,
    }
    print(json.dumps(report, indent=2, sort_keys=True, ensure_ascii=False))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m asgi_sessions``; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m asgi_sessions")
    commands = parser.add_subparsers(dest="command", required=True)

    keygen = commands.add_parser("keygen", help="print a new random secret_key")
    keygen.set_defaults(func=_keygen)

    clear = commands.add_parser(
        "clear-expired",
        help="remove expired sessions from a store",
        epilog=_EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    clear.add_argument(
        "--store",
        required=True,
        help="store URL, e.g. sqlite+aiosqlite:///s.db or redis://host:6379/0?prefix=app:",
    )
    clear.set_defaults(func=_clear_expired)

    inspect = commands.add_parser("inspect", help="decrypt and show a session cookie")
    inspect.add_argument(
        "cookie",
        help="the cookie value, or a whole Cookie header (name=value; name.1=...) "
        "for a chunked session",
    )
    inspect.add_argument("--secret", action="append", help="a secret_key; repeat for rotation")
    inspect.add_argument("--name", default="session", help="the cookie name (default: session)")
    inspect.add_argument("--signed", action="store_true", help="a SignedCookieStore cookie")
    inspect.set_defaults(func=_inspect)

    args = parser.parse_args(argv)
    status: int = args.func(args)
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
