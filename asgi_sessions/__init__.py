"""asgi_sessions: encrypted, lazily loaded sessions for every ASGI app.

``SessionMiddleware`` puts a :class:`Session` at ``scope["session"]``
(``request.session`` in Starlette and FastAPI). Sessions live in an encrypted
cookie by default, or in a server-side store from :mod:`asgi_sessions.stores`.
:func:`session_of` gives it to a type checker as a :class:`Session`.
"""

from .middleware import SessionMiddleware, session_of
from .session import Session

__all__ = ["Session", "SessionMiddleware", "session_of"]
__version__ = "0.1.0"
