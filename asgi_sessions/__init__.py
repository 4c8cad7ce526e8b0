"""asgi_sessions: encrypted, lazily loaded sessions for every ASGI app.

``SessionMiddleware`` puts a :class:`Session` at ``scope["session"]``
(``request.session`` in Starlette and FastAPI). Sessions live in an encrypted
cookie by default, or in a server-side store from :mod:`asgi_sessions.stores`.
"""

from .middleware import SessionMiddleware
from .session import Session

__all__ = ["Session", "SessionMiddleware"]
__version__ = "0.1.0"
