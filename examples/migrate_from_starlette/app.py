"""Switching a live app from Starlette's signed sessions to encrypted ones, logging nobody out.

The app below started on Starlette's own ``SessionMiddleware``, whose cookie
is signed but readable: base64 JSON that anyone holding it can decode. The
migration changes one middleware line (``starlette_app`` is the "before",
``app`` the "after"); the views do not change at all.

The catch is the cookies already out there: the new middleware cannot read
Starlette's format, so every user would be logged out at deploy. Hence a
two-step rollout:

1. Deploy with ``accept_starlette_cookies=True``: an old signed cookie (with
   the same secret) is still read, and the first response that touches the
   session replaces it with an encrypted one.
2. Once ``max_age`` (14 days here) has passed since that deploy, every old
   cookie has expired anyway: remove the option.

Run the migrated app (from the repository root) with::

    make venv && .venv/bin/uvicorn examples.migrate_from_starlette.app:app --reload

and ``examples.migrate_from_starlette.app:starlette_app`` for the "before".
"""

from __future__ import annotations

import logging
import os
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware as StarletteSessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from asgi_sessions import SessionMiddleware
from asgi_sessions.stores import EncryptedCookieStore

# The same secret as before the migration: old cookies are verified with it,
# and the new encryption keys are derived from it.
# DEV ONLY fallback: anyone can read this file; set SECRET_KEY in production.
DEV_ONLY_SECRET_KEY = "dev-only-migration-example-key-do-not-deploy-0123"
SECRET_KEY = os.environ.get("SECRET_KEY") or DEV_ONLY_SECRET_KEY
if SECRET_KEY == DEV_ONLY_SECRET_KEY:
    logging.getLogger(__name__).warning("SECRET_KEY is not set: using the dev-only key")

MAX_AGE = 14 * 24 * 60 * 60  # Starlette's default, kept as it was

# Step 1 of the rollout: True. Step 2, MAX_AGE after that deploy: remove it.
ACCEPT_STARLETTE_COOKIES = True


# -- The views: plain dict access, the same before and after -------------------


async def read_form(request: Request) -> dict[str, str]:
    body = (await request.body())[:10_000].decode("utf-8", "replace")
    return dict(parse_qsl(body))


async def profile(request: Request) -> Response:
    session = request.session
    return JSONResponse({"user": session.get("user"), "theme": session.get("theme", "light")})


async def login(request: Request) -> Response:
    name = (await read_form(request)).get("username", "").strip()
    if not name:
        return JSONResponse({"error": "send a username"}, status_code=400)
    request.session["user"] = name
    return JSONResponse({"user": name})


async def set_theme(request: Request) -> Response:
    request.session["theme"] = (await read_form(request)).get("theme", "light")
    return JSONResponse({"theme": request.session["theme"]})


async def logout(request: Request) -> Response:
    request.session.clear()  # an empty session deletes the cookie, with both middlewares
    return JSONResponse({"user": None})


ROUTES = [
    Route("/", profile),
    Route("/login", login, methods=["POST"]),
    Route("/theme", set_theme, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
]


# -- Before: Starlette's signed (readable) cookie -------------------------------

starlette_app = Starlette(
    routes=ROUTES,
    middleware=[Middleware(StarletteSessionMiddleware, secret_key=SECRET_KEY, max_age=MAX_AGE)],
)


# -- After: encrypted, still reading the old cookies during the switch --------


def create_app(*, accept_starlette_cookies: bool = ACCEPT_STARLETTE_COOKIES) -> Starlette:
    # Was: Middleware(StarletteSessionMiddleware, secret_key=SECRET_KEY, max_age=MAX_AGE).
    # The same arguments work unchanged; the store is only spelled out to
    # switch on the reading of old cookies (that needs itsdangerous, the
    # `migrate` extra, which a Starlette-sessions app already has).
    store = EncryptedCookieStore(SECRET_KEY, accept_starlette_cookies=accept_starlette_cookies)
    return Starlette(
        routes=ROUTES,
        middleware=[
            # In production, behind HTTPS, add https_only=True (keep it if the
            # old middleware had it): the cookie is then marked Secure and never
            # sent over plain http://, where anyone on the network could read
            # and replay it. Off here only because the example is served on
            # plain http://127.0.0.1:8000.
            Middleware(SessionMiddleware, secret_key=SECRET_KEY, max_age=MAX_AGE, store=store)
        ],
    )


app = create_app()
