"""Command-line tools: ``python -m asgi_sessions {keygen,clear-expired,inspect}``.

- ``keygen`` prints a fresh 256-bit secret for ``secret_key``.
- ``clear-expired --store URL`` removes expired sessions from a server store
  (for cron; with Redis it only prunes the user index of "log out everywhere") and
  prints how many were removed. It never creates a store: a ``file://`` directory
  or SQLite database file that does not exist is an error. A failure is one line
  on stderr and exit status 2 (bad URL, or no such directory or database file),
  3 (store unreachable) or 4 (the store refused, e.g. credentials or a denied
  permission).
- ``inspect COOKIE --secret S`` decrypts a session cookie (a value, or a whole
  ``Cookie`` header for a session chunked over several cookies) and prints its data
  with its creation, issue and expiry times (``--serializer MODULE:NAME`` for an
  app that sets ``serializer=``): for debugging, with your own
  secret, on your own machine.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import functools
import importlib
import json
import os
import secrets
import stat
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import anyio

from ._record import COOKIE_HEAD, unpack_expiry
from .cookies import CookieSpec
from .errors import ImproperlyConfigured, SessionStoreUnavailable
from .serializers import JSONSerializer, Serializer, check_serializer
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
     driver not installed, no such file:// directory or SQLite database file:
     clear-expired never creates a store)
  {EXIT_UNAVAILABLE}  the store cannot be reached or did not answer in time (for Redis, also
     refused credentials)
  {EXIT_STORE_ERROR}  the store answered with an error (wrong credentials, denied permission,
     missing table)
"""

_DENIED = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})
"""File system errors that mean "not allowed": the store refused (exit status 4)."""

_NOT_THERE = frozenset({errno.ENOENT, errno.ENOTDIR, errno.EEXIST, errno.ELOOP, errno.ENAMETOOLONG})
"""File system errors that mean the path names no usable store (exit status 2).

``EEXIST``: something other than a directory sits where ``FileStore`` keeps its
``.locks``. Retrying cannot help, unlike an I/O error or a hung network file
system (exit status 3).
"""


class _Refused(Exception):
    """The store's files exist but may not be used (a denied permission): exit status 4."""


def _from_os_error(error: OSError) -> Exception:
    """The error to report for ``error`` on a store's own files, by what retrying would do."""
    name = errno.errorcode.get(error.errno or 0, type(error).__name__)
    detail = f"{error.strerror or name} ({name})"
    if error.filename is not None:
        detail = f"{detail}: {os.fsdecode(error.filename)}"
    if error.errno in _DENIED:
        return _Refused(detail)
    if error.errno in _NOT_THERE:
        return ImproperlyConfigured(detail)
    return SessionStoreUnavailable(detail)


def _require_existing(store: SessionStore) -> None:
    """Raise unless the files of a ``FileStore`` or SQLite ``SQLStore`` already exist.

    Both create them on first use, as an app wants; from cron, a mistyped path
    would instead create an empty store and report "removed 0" every night.
    """
    if isinstance(store, FileStore):
        _stat_store(store.directory, "directory", want_directory=True)
        return
    try:
        from .stores.sql import SQLStore
    except ImportError:  # no SQLAlchemy: the store cannot be a SQLStore
        return
    if not isinstance(store, SQLStore):
        return
    url = store.engine.url
    database = url.database
    if url.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return  # a server, or an in-memory database: nothing on disk to check
    path = os.path.abspath(database)  # relative to the current directory, as SQLite's is
    _stat_store(path, "SQLite database file", want_directory=False)
    if not os.access(path, os.R_OK | os.W_OK):
        # SQLite would say "unable to open database file", a CANTOPEN that
        # SQLStore reports as an outage (3); it is a denied permission (4).
        raise _Refused(f"{os.strerror(errno.EACCES)} (EACCES): {path}")
    if not _sqlite_has_table(path, store.table.name):
        # The store would create its tables on first use: in the app's own
        # database, given by mistake, and then report "removed 0".
        raise _Refused(f"no table {store.table.name} in {path}")


def _sqlite_has_table(path: str, table: str) -> bool:
    """Whether the SQLite database at ``path`` has ``table``, opened read-only."""
    import sqlite3

    uri = f"{Path(path).as_uri()}?mode=ro"
    try:
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
            row = db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
            ).fetchone()
    except sqlite3.OperationalError:
        return True  # cannot tell now (locked, say): the store's own attempt reports it
    except sqlite3.DatabaseError:  # "file is not a database"
        raise ImproperlyConfigured(f"not a SQLite database file: {path}") from None
    return row is not None


def _stat_store(path: str | os.PathLike[str], what: str, *, want_directory: bool) -> None:
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            raise ImproperlyConfigured(f"no such {what}: {os.fspath(path)}") from None
        raise _from_os_error(exc) from None
    if stat.S_ISDIR(mode) != want_directory:
        raise ImproperlyConfigured(f"not a {what}: {os.fspath(path)}")


def _failure(error: Exception, store: SessionStore | None) -> tuple[str, int]:
    """What to print for ``error``, and the exit status."""
    context = error.__context__
    if (
        isinstance(store, FileStore)
        and isinstance(error, SessionStoreUnavailable)
        and isinstance(context, OSError)
        and context.errno in _DENIED | _NOT_THERE
    ):
        # FileStore reports every OSError as unavailability (a request gets a
        # 503 either way), raised "from None", which keeps the OSError as the
        # context: a denied permission, or a path that is no store, is not an
        # outage that retrying would end.
        error = _from_os_error(context)
    if isinstance(error, ImproperlyConfigured):
        return f"bad store URL: {error}", EXIT_CONFIGURATION
    if isinstance(error, SessionStoreUnavailable):
        return f"store unavailable: {error}", EXIT_UNAVAILABLE
    if isinstance(error, _Refused):
        return f"the store refused: {error}", EXIT_STORE_ERROR
    # The driver's own errors: unknown in number and kind.
    return f"the store refused: {_describe(error)}", EXIT_STORE_ERROR


def _clear_expired(args: argparse.Namespace) -> int:
    """Run ``clear_expired``; a failure is one line on stderr and a distinct exit status.

    It runs from cron, whose mail should say what is wrong in a line, not in a
    traceback, and a wrapper script can tell "retry later" (3) from "fix the
    configuration" (2, 4) by the status. It never creates a store (see
    :func:`_require_existing`). Nothing printed repeats the URL's password.
    """
    url: str = args.store

    async def run(store: SessionStore) -> int:
        try:
            return await store.clear_expired()
        finally:
            await store.close()

    store: SessionStore | None = None
    try:
        store = store_from_url(url)
        _require_existing(store)
        removed = anyio.run(run, store)
    except Exception as exc:
        message, status = _failure(exc, store)
        return _fail(message, url, status)
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


def _serializer_from(spec: str) -> Serializer:
    """The app's serializer, named ``MODULE:NAME`` (a class is instantiated)."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ImproperlyConfigured(
            f"--serializer takes MODULE:NAME (e.g. myapp.sessions:serializer), not {spec!r}"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImproperlyConfigured(f"--serializer: cannot import {module_name} ({exc})") from exc
    try:
        found = functools.reduce(getattr, attribute.split("."), module)
    except AttributeError:
        raise ImproperlyConfigured(f"--serializer: {module_name} has no {attribute}") from None
    if isinstance(found, type):
        found = found()
    return check_serializer(found)


def _inspect(args: argparse.Namespace) -> int:
    secrets_ = args.secret or []
    if not secrets_:
        print("inspect needs --secret (repeat it for rotated secrets)", file=sys.stderr)
        return 2
    serializer: Serializer = JSONSerializer()
    if args.serializer is not None:
        try:
            serializer = _serializer_from(args.serializer)
        except ImproperlyConfigured as exc:
            print(exc, file=sys.stderr)
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
    try:
        data = serializer.loads(payload[COOKIE_HEAD.size :])
    except (ValueError, TypeError, RecursionError) as exc:
        print(
            f"the cookie verifies, but its data does not decode ({type(exc).__name__}): "
            "if the app sets serializer=, name it with --serializer MODULE:NAME",
            file=sys.stderr,
        )
        return 1
    report = {
        "data": data,
        "created": _when(created),
        "issued": _when(issued),
        "expires": _when(expires or None),
        "custom_expiry": unpack_expiry(kind, value),
        "read_with_old_secret": stale,
    }
    # default=repr: a serializer other than JSON may decode values JSON cannot print.
    print(json.dumps(report, indent=2, sort_keys=True, ensure_ascii=False, default=repr))
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
    inspect.add_argument(
        "--serializer",
        metavar="MODULE:NAME",
        help="the app's serializer= (default: JSON), e.g. myapp.sessions:serializer",
    )
    inspect.set_defaults(func=_inspect)

    args = parser.parse_args(argv)
    status: int = args.func(args)
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
