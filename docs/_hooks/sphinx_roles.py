"""MkDocs hook: render the Sphinx roles used in asgi_sessions' docstrings.

The docstrings are plain prose that cross-reference with Sphinx roles
(``:class:`~asgi_sessions.errors.SessionNotLoaded```). mkdocstrings renders
them as Markdown, which leaves ``:class:`` in front of a code span. This hook
drops the role and, when the target is a documented object, turns the code
span into a link (an optional autoref: an unknown target stays plain code,
with no warning). It also turns reST's ``Example::`` into ``Example:``.

Only the HTML of pages is touched; no file outside docs/ is read or written.
"""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(
    r":(?:py:)?(?:class|func|meth|mod|data|attr|exc|obj|const)"
    r":<code>(?P<tilde>~?)(?P<target>[A-Za-z_][\w.]*)(?P<call>\(\))?</code>"
)
_DOUBLE_COLON = re.compile(r"::(</p>)")

# Short names used in docstrings, qualified so that they can be linked.
_SHORT = {
    "Session": "asgi_sessions.Session",
    "SessionMiddleware": "asgi_sessions.SessionMiddleware",
    "SessionStore": "asgi_sessions.stores.SessionStore",
    "EncryptedCookieStore": "asgi_sessions.stores.EncryptedCookieStore",
    "SignedCookieStore": "asgi_sessions.stores.SignedCookieStore",
    "CookieStore": "asgi_sessions.stores.CookieStore",
    "MemoryStore": "asgi_sessions.stores.MemoryStore",
    "FileStore": "asgi_sessions.stores.FileStore",
    "RedisStore": "asgi_sessions.stores.RedisStore",
    "SQLStore": "asgi_sessions.stores.SQLStore",
    "WriteThroughStore": "asgi_sessions.stores.WriteThroughStore",
    "StoreConformance": "asgi_sessions.testing.StoreConformance",
    "SessionEvent": "asgi_sessions.events.SessionEvent",
    "SessionError": "asgi_sessions.errors.SessionError",
    "SessionNotLoaded": "asgi_sessions.errors.SessionNotLoaded",
    "SessionStoreUnavailable": "asgi_sessions.errors.SessionStoreUnavailable",
    "SessionTooLarge": "asgi_sessions.errors.SessionTooLarge",
    "SessionInterrupted": "asgi_sessions.errors.SessionInterrupted",
    "ImproperlyConfigured": "asgi_sessions.errors.ImproperlyConfigured",
}


def _link(match: re.Match[str]) -> str:
    target = match["target"]
    shown = target.rsplit(".", 1)[-1] if match["tilde"] else target
    shown += match["call"] or ""
    identifier = _SHORT.get(target, target)
    return f'<autoref identifier="{identifier}" optional><code>{shown}</code></autoref>'


def on_page_content(html: str, **kwargs: Any) -> str:
    """Rewrite roles in the rendered HTML of every page."""
    if ":<code>" in html:
        html = _ROLE.sub(_link, html)
    return _DOUBLE_COLON.sub(r":\1", html)
