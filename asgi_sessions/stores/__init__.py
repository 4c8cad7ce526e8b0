"""Where sessions live.

Client-side: :class:`EncryptedCookieStore` (the default) and the readable
:class:`SignedCookieStore`. Server-side: :class:`MemoryStore`,
:class:`FileStore`, :class:`RedisStore`, :class:`SQLStore` and
:class:`WriteThroughStore`, all implementing :class:`SessionStore`, the ABC a
plugin implements.

Stores whose driver is an optional extra (Redis, SQL) are imported on first
use, so ``from asgi_sessions.stores import RedisStore`` costs nothing until
it is used and fails with the ``pip install`` line if the extra is missing.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Sequence
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, unquote, unquote_plus, urlsplit

from ..errors import ImproperlyConfigured
from .base import SessionStore, StoreKey
from .cookie import CookieStore, EncryptedCookieStore, SignedCookieStore

if TYPE_CHECKING:
    from .file import FileStore
    from .layered import WriteThroughStore
    from .memory import MemoryStore
    from .redis import RedisStore
    from .sql import SQLStore

__all__ = [
    "CookieStore",
    "EncryptedCookieStore",
    "FileStore",
    "MemoryStore",
    "RedisStore",
    "SQLStore",
    "SessionStore",
    "SignedCookieStore",
    "StoreKey",
    "WriteThroughStore",
    "store_from_url",
]

_LAZY = {
    "MemoryStore": (".memory", None),
    "FileStore": (".file", None),
    "RedisStore": (".redis", "redis"),
    "SQLStore": (".sql", "sql"),
    "WriteThroughStore": (".layered", None),
}

ENTRY_POINT_GROUP = "asgi_sessions.stores"
"""Third-party stores register a URL scheme here: the entry point's name is
the scheme (matched case-insensitively, as URL schemes are) and its object a
callable taking the URL and returning a :class:`SessionStore`."""


def __getattr__(name: str) -> Any:
    try:
        module_name, extra = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    try:
        module = importlib.import_module(module_name, __name__)
    except ImportError as exc:
        if (exc.name or "").startswith("asgi_sessions") or extra is None:
            raise
        raise ImportError(
            f"{name} needs an optional dependency: pip install 'asgi-sealed-sessions[{extra}]'"
        ) from exc
    value = getattr(module, name)
    globals()[name] = value
    return value


def store_from_url(url: str) -> SessionStore:
    """Build a server-side store from a URL.

    ``memory://``, ``file:///absolute/dir``, ``redis://``/``rediss://``/``unix://``,
    any SQLAlchemy async URL (``sqlite+aiosqlite:///path``,
    ``postgresql+asyncpg://…``, ``mysql+asyncmy://…``), or a scheme
    registered by a plugin in the ``asgi_sessions.stores`` entry-point group.

    Redis URLs also take ``prefix`` and ``timeout`` query parameters, SQL URLs
    ``table_name`` and ``timeout`` (the store's own options); any other query
    parameter must be one the driver is known to accept from a URL. Everything
    that cannot work raises :class:`ImproperlyConfigured` here, at startup,
    rather than at the first request, and no message repeats a password.
    """
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # "Invalid IPv6 URL"
        raise ImproperlyConfigured(f"not a valid store URL ({exc}): {_redact(url)}") from exc
    scheme = parts.scheme.lower()
    if not scheme:
        # Not echoed, even redacted: without a scheme nothing says where a
        # password would be in it.
        hint = "; remove the quotes around it" if url[:1] in ("'", '"') else ""
        raise ImproperlyConfigured(
            "not a store URL: it has no scheme (store URLs look like "
            f"redis://host:6379/0 or sqlite+aiosqlite:///sessions.db){hint}"
        )
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        # urlsplit lowercases the scheme, so the name must be compared the same way.
        if ep.name.lower() == scheme:
            return _plugin_store(ep, url)
    if scheme in ("memory", "file"):
        if parts.query:
            raise ImproperlyConfigured(
                f"{scheme}:// store URLs take no query parameters; build the store "
                "yourself for non-default options"
            )
        return _local_store(scheme, parts)
    if scheme in ("redis", "rediss", "unix"):
        return _redis_store(url, scheme, parts)
    dialect = scheme.split("+", 1)[0]
    if dialect in _SQL_DIALECTS:
        return _sql_store(url, scheme)
    raise ImproperlyConfigured(f"no session store for URL scheme {scheme!r}")


def _plugin_store(ep: EntryPoint, url: str) -> SessionStore:
    """Call a plugin's factory; a plugin that cannot even load says which one it is."""
    try:
        factory = ep.load()
    except Exception as exc:  # an import error, a missing attribute, or its module failing
        dist = ep.dist.name if ep.dist is not None else "an unknown distribution"
        raise ImproperlyConfigured(
            f"the store plugin for {ep.name}:// (entry point {ep.name} = {ep.value} of {dist}, "
            f"group {ENTRY_POINT_GROUP}) failed to load: {type(exc).__name__}: {exc}"
        ) from exc
    store = factory(url)
    if not isinstance(store, SessionStore):
        raise ImproperlyConfigured(f"entry point {ep.name!r} did not return a SessionStore")
    return store


def _local_store(scheme: str, parts: SplitResult) -> SessionStore:
    if scheme == "memory":
        from .memory import MemoryStore

        return MemoryStore()
    path = unquote(parts.path)
    if parts.netloc not in ("", "localhost") or not path.startswith("/") or "\x00" in path:
        # A relative path would depend on the current directory of each
        # worker (and of cron's clear-expired): refused, as the docs say.
        raise ImproperlyConfigured("file store URLs look like file:///absolute/directory")
    from .file import FileStore

    return FileStore(path)


_REDIS_OWN = ("prefix", "timeout")
"""Query parameters that are :class:`RedisStore`'s options, not redis-py's."""

_REDIS_STRINGS = frozenset({"client_name"})
"""Connection options redis-py takes from a URL as plain strings (it parses
the others itself, see ``URL_QUERY_ARGUMENT_PARSERS``)."""

_REDIS_TLS_STRINGS = frozenset(
    {"ssl_keyfile", "ssl_certfile", "ssl_cert_reqs", "ssl_ca_certs", "ssl_ca_path"}
    | {"ssl_ciphers", "ssl_password"}
)
"""TLS options redis-py passes from a ``rediss://`` URL as strings."""


def _redis_store(url: str, scheme: str, parts: SplitResult) -> SessionStore:
    """A :class:`RedisStore`, its ``prefix`` and ``timeout`` taken from the query.

    redis-py hands every query parameter it does not know to the connection
    class, which fails with a ``TypeError`` at the first command: so ours are
    taken out, and anything redis-py would choke on is refused here.
    """
    try:
        from redis.asyncio.connection import URL_QUERY_ARGUMENT_PARSERS

        from .redis import RedisStore
    except ImportError as exc:
        raise ImproperlyConfigured(
            f"{scheme}:// stores need the redis extra: pip install 'asgi-sealed-sessions[redis]'"
        ) from exc
    if scheme != "unix" and not url[len(scheme) + 1 :].startswith("//"):
        raise ImproperlyConfigured(
            f"{scheme}:// URLs look like {scheme}://[[user]:password@]host[:port][/db]"
        )
    try:
        parts.port  # noqa: B018  (parsed lazily: raises on a port out of range)
    except ValueError as exc:
        raise ImproperlyConfigured(f"bad port in store URL {_redact(url)}: {exc}") from exc
    if scheme != "unix" and parts.path not in ("", "/") and not parts.path[1:].isdigit():
        # redis-py silently ignores a path that is not a number, using db 0.
        raise ImproperlyConfigured(
            f"the path of a {scheme}:// URL is the database number (/0, /1, …): {_redact(url)}"
        )
    allowed = (set(URL_QUERY_ARGUMENT_PARSERS) | _REDIS_STRINGS) - set(_REDIS_OWN)
    if scheme == "rediss":
        allowed |= _REDIS_TLS_STRINGS
    own, kept = _split_query(url, parts.query, _REDIS_OWN, allowed)
    options: dict[str, Any] = {}
    if "prefix" in own:
        options["prefix"] = own["prefix"]
    if "timeout" in own:
        options["timeout"] = _seconds(own["timeout"])
    base = url.split("#", 1)[0].split("?", 1)[0]  # redis-py ignores a fragment anyway
    client_url = base + ("?" + "&".join(kept) if kept else "")
    try:
        return RedisStore(client_url, **options)
    except ImproperlyConfigured:
        raise
    except ValueError as exc:  # redis-py's own URL parsing
        raise ImproperlyConfigured(f"not a valid {scheme}:// URL ({exc}): {_redact(url)}") from exc


def _split_query(
    url: str, query: str, own: Sequence[str], allowed: set[str] | frozenset[str]
) -> tuple[dict[str, str], list[str]]:
    """Our own parameters (decoded), and the driver's (raw, so their encoding survives).

    Anything else raises :class:`ImproperlyConfigured` naming what is allowed.
    """
    mine: dict[str, str] = {}
    kept: list[str] = []
    unknown: list[str] = []
    for piece in query.split("&"):
        if not piece:
            continue
        raw_name, _, raw_value = piece.partition("=")
        name = unquote_plus(raw_name)
        if name in own:
            if name in mine:
                raise ImproperlyConfigured(f"query parameter {name!r} given twice in store URL")
            mine[name] = unquote_plus(raw_value)
        elif name in allowed:
            kept.append(piece)
        else:
            unknown.append(name)
    if unknown:
        scheme = url.split(":", 1)[0].lower()
        raise ImproperlyConfigured(
            f"unknown query parameter(s) {', '.join(map(repr, unknown))} in a {scheme}:// "
            f"store URL; allowed: {', '.join([*own, *sorted(allowed)])}"
        )
    return mine, kept


def _seconds(value: str) -> float:
    """A ``timeout`` query parameter: a positive, finite number of seconds."""
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise ImproperlyConfigured(
            f"timeout in a store URL must be a positive number of seconds, not {value!r}"
        )
    return seconds


_SQL_DIALECTS = ("sqlite", "postgresql", "postgres", "mysql", "mariadb")

_SQL_DRIVERS = {"aiosqlite": "sql", "asyncpg": "postgres", "asyncmy": "mysql"}
"""The async drivers SQLStore supports, and the extra that installs each."""

_SQL_SUPPORTED = (
    "supported drivers: sqlite+aiosqlite://, postgresql+asyncpg://, mysql+asyncmy:// "
    "(or mariadb+asyncmy://)"
)

_SQL_OWN = ("table_name", "timeout")
"""Query parameters that are :class:`SQLStore`'s options, not the driver's."""

_SQL_PASS_THROUGH = {
    "asyncpg": frozenset({"ssl", "prepared_statement_cache_size"}),
    "asyncmy": frozenset({"charset"}),
    "aiosqlite": frozenset(),
}
"""Driver options that SQLAlchemy hands on from the URL and the driver accepts.

Anything else in the query would reach asyncpg's ``connect()`` as an unknown
keyword (a ``TypeError`` at the first request) or be dropped by SQLite with
a warning, so it is refused when the store is built.
"""


def _sql_store(url: str, scheme: str) -> SessionStore:
    """A :class:`SQLStore`; every way the URL can be wrong is an ImproperlyConfigured."""
    dialect, plus, driver = scheme.partition("+")
    if dialect == "postgres":  # Heroku's and libpq's spelling; SQLAlchemy 1.4 dropped it
        raise ImproperlyConfigured(
            f"{scheme}:// is spelled postgresql+asyncpg:// in a SQL store URL; {_SQL_SUPPORTED}"
        )
    if not plus or driver not in _SQL_DRIVERS:
        named = f" ({driver!r} is not one of them)" if plus else ""
        raise ImproperlyConfigured(f"SQL store URLs name an async driver{named}; {_SQL_SUPPORTED}")
    try:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import SQLAlchemyError

        from .sql import SQLStore
    except ImportError as exc:
        raise ImproperlyConfigured(
            "SQL stores need the sql extra: pip install 'asgi-sealed-sessions[sql]'"
        ) from exc
    try:
        parsed = make_url(url)
        parsed.port  # noqa: B018  (a port that is not a number)
    except (SQLAlchemyError, ValueError) as exc:
        # Not echoed: SQLAlchemy could not find its parts, so neither can _redact.
        raise ImproperlyConfigured(
            f"not a valid SQL store URL ({type(exc).__name__}: {_scrub(str(exc), url)}); "
            f"they look like postgresql+asyncpg://user:password@host:5432/db; {_SQL_SUPPORTED}"
        ) from exc
    query = urlsplit(url).query
    own, _ = _split_query(url, query, _SQL_OWN, _SQL_PASS_THROUGH[driver])
    options: dict[str, Any] = {}
    if "table_name" in own:
        if not own["table_name"]:
            raise ImproperlyConfigured("table_name in a store URL must not be empty")
        options["table_name"] = own["table_name"]
    if "timeout" in own:
        options["timeout"] = _seconds(own["timeout"])
    parsed = parsed.difference_update_query(_SQL_OWN)
    try:
        return SQLStore(parsed, **options)
    except ImportError as exc:
        raise ImproperlyConfigured(
            f"{scheme}:// needs the {driver} driver: "
            f"pip install 'asgi-sealed-sessions[{_SQL_DRIVERS[driver]}]'"
        ) from exc
    except (SQLAlchemyError, ValueError, TypeError) as exc:
        raise ImproperlyConfigured(
            f"cannot build a SQL store from {_redact(url)} ({type(exc).__name__}); {_SQL_SUPPORTED}"
        ) from exc


def _userinfo_span(url: str) -> tuple[int, int] | None:
    """Where credentials may sit in ``url``, even a malformed one: from ``://``
    (or the start) to the last ``@``.

    The last ``@`` overall, not the one before the first ``/``: a password may
    hold an unencoded ``/`` or ``@``, and a URL missing its ``//`` has no
    reliable structure at all. Hiding too much of an error message is harmless;
    showing a password is not.
    """
    start = url.find("://")
    start = 0 if start < 0 else start + 3
    at = url.rfind("@")
    return (start, at) if at >= start else None


def _redact(url: str) -> str:
    """``url`` with anything that may be a username or password replaced by ``***``."""
    span = _userinfo_span(url)
    if span is None:
        return url
    start, at = span
    return url[:start] + "***" + url[at:]


def _scrub(text: str, url: str) -> str:
    """``text`` (an error message from a store or driver) without ``url``'s password.

    Drivers should not repeat a password, but a message printed by the CLI is
    checked anyway, as written in the URL and decoded.
    """
    span = _userinfo_span(url)
    if span is None:
        return text
    _, colon, password = url[span[0] : span[1]].partition(":")
    if colon:
        for secret in sorted({password, unquote(password), unquote_plus(password)}, key=len)[::-1]:
            if secret:
                text = text.replace(secret, "***")
    return text
