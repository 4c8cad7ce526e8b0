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
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

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
the scheme and its object a callable taking the URL and returning a
:class:`SessionStore`."""


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
    """
    scheme = urlsplit(url).scheme.lower()
    if not scheme:
        raise ImproperlyConfigured(f"not a store URL (no scheme): {_redact(url)}")
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == scheme:
            store = ep.load()(url)
            if not isinstance(store, SessionStore):
                raise ImproperlyConfigured(f"entry point {ep.name!r} did not return a SessionStore")
            return store
    if scheme == "memory":
        from .memory import MemoryStore

        return MemoryStore()
    if scheme == "file":
        parts = urlsplit(url)
        path = unquote(parts.path)
        if parts.netloc not in ("", "localhost") or not path:
            raise ImproperlyConfigured("file store URLs look like file:///absolute/directory")
        from .file import FileStore

        return FileStore(path)
    if scheme in ("redis", "rediss", "unix"):
        from .redis import RedisStore

        return RedisStore(url)
    dialect = scheme.split("+", 1)[0]
    if dialect in ("sqlite", "postgresql", "postgres", "mysql", "mariadb"):
        if "+" not in scheme:
            raise ImproperlyConfigured(
                "SQL store URLs name an async driver: sqlite+aiosqlite://, "
                "postgresql+asyncpg://, mysql+asyncmy://"
            )
        from .sql import SQLStore

        return SQLStore(url)
    raise ImproperlyConfigured(f"no session store for URL scheme {scheme!r}")


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return url.replace(parts.password, "***")
    return url
