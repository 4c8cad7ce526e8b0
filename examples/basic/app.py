"""The session tutorial, view by view, on encrypted cookie sessions.

These are the views Django's "How to use sessions" page walks through, as a
Starlette app: set a value and read it back, check that the browser keeps
cookies, create / read / delete a key, count visits, and flush (log out).
Every view answers JSON, so ``curl`` shows exactly what the session holds.

The session lives in the browser's cookie, encrypted with AES-256-GCM-SIV
under ``SECRET_KEY``: no database, no Redis, and nobody who holds the cookie
can read it. Run it (from the repository root) with::

    make venv && .venv/bin/uvicorn examples.basic.app:app --reload
"""

from __future__ import annotations

import logging
import os
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from asgi_sessions import SessionMiddleware, session_of

# DEV ONLY: a fixed key so sessions survive `--reload`. Anyone can read this
# file, so anyone could forge sessions for an app that uses it: in production
# set SECRET_KEY (generate one with `python -m asgi_sessions keygen`).
DEV_ONLY_SECRET_KEY = "dev-only-basic-example-key-do-not-deploy-0123456789"

SECRET_KEY = os.environ.get("SECRET_KEY") or DEV_ONLY_SECRET_KEY
if SECRET_KEY == DEV_ONLY_SECRET_KEY:
    logging.getLogger(__name__).warning("SECRET_KEY is not set: using the dev-only key")


async def read_form(request: Request) -> dict[str, str]:
    """A urlencoded form body (what ``curl -d`` and HTML forms send).

    Parsed by hand so the example needs no ``python-multipart``.
    """
    body = (await request.body())[:10_000].decode("utf-8", "replace")
    return dict(parse_qsl(body))


async def index(request: Request) -> JSONResponse:
    """Everything the session holds.

    ``request.session`` is a ``dict`` subclass, so it serialises as is. The
    cookie is decrypted here, on first touch, not before: views that never
    look at the session cost no cryptography at all.
    """
    return JSONResponse({"session": request.session})


# -- 1. Set a value, read it back ---------------------------------------------


async def set_color(request: Request) -> JSONResponse:
    """``POST /color`` with a form field ``color``: remember it."""
    color = (await read_form(request)).get("color", "").strip()
    if not color:
        return JSONResponse({"error": "send a color"}, status_code=400)
    request.session["fav_color"] = color  # a changed session is saved as the response starts
    return JSONResponse({"fav_color": color})


async def get_color(request: Request) -> JSONResponse:
    """``GET /color``: read it back on a later request (``None`` if never set)."""
    return JSONResponse({"fav_color": request.session.get("fav_color")})


# -- 2. Does this browser keep cookies? ---------------------------------------


async def test_cookie(request: Request) -> JSONResponse:
    """Django's test-cookie dance, the way a login form uses it.

    ``GET`` shows the form and plants a test value; the ``POST`` that submits
    the form checks the value came back. If it did not, the browser refuses
    cookies and a login could never stick, so say so instead of failing
    mysteriously.
    """
    # request.session, typed as our Session: Starlette types it as a plain
    # dict, so a type checker would not know the Django-style methods.
    session = session_of(request)
    if request.method == "GET":
        session.set_test_cookie()
        return JSONResponse({"next": "POST /test-cookie"})
    if session.test_cookie_worked():
        session.delete_test_cookie()  # it did its job; do not carry it around
        return JSONResponse({"cookies": "enabled"})
    return JSONResponse({"cookies": "disabled", "hint": "enable cookies"}, status_code=400)


# -- 3. Create, access and delete one key --------------------------------------


async def item(request: Request) -> JSONResponse:
    """``PUT``, ``GET`` and ``DELETE /items/{key}``: the mapping API, one verb each."""
    key = request.path_params["key"]
    session = request.session
    if request.method == "PUT":
        session[key] = (await read_form(request)).get("value", "")
        return JSONResponse({key: session[key]}, status_code=201)
    if key not in session:
        return JSONResponse({"error": f"no {key!r} in the session"}, status_code=404)
    if request.method == "DELETE":
        del session[key]
        return JSONResponse({"deleted": key})
    return JSONResponse({key: session[key]})


# -- 4. A visit counter --------------------------------------------------------


async def visits(request: Request) -> JSONResponse:
    """Count this visitor's requests.

    Reassigning the key is what marks the session modified. (Changing a
    value *inside* the session, like ``session["cart"].append(x)``, is not
    tracked: reassign the key or call ``session.mark_modified()``.)
    """
    session = request.session
    # Never trust the type of a session value: ``PUT /items/visits`` can store
    # any string here. Anything but a number restarts the count.
    count = session.get("visits")
    session["visits"] = count + 1 if isinstance(count, int) else 1
    return JSONResponse({"visits": session["visits"]})


# -- 5. Flush ------------------------------------------------------------------


async def flush(request: Request) -> JSONResponse:
    """Forget everything: the response deletes the cookie. This is logout."""
    session_of(request).flush()
    return JSONResponse({"session": {}})


app = Starlette(
    routes=[
        Route("/", index),
        Route("/color", get_color, methods=["GET"]),
        Route("/color", set_color, methods=["POST"]),
        Route("/test-cookie", test_cookie, methods=["GET", "POST"]),
        Route("/items/{key}", item, methods=["GET", "PUT", "DELETE"]),
        Route("/visits", visits),
        Route("/flush", flush, methods=["POST"]),
    ],
    middleware=[
        # Starlette's own SessionMiddleware takes the same arguments; this one
        # encrypts the cookie instead of only signing it. In production, behind
        # HTTPS, add https_only=True: the cookie is then marked Secure and never
        # sent over plain http://, where anyone on the network could read and
        # replay it. Off here only because the example is served on plain
        # http://127.0.0.1:8000.
        Middleware(SessionMiddleware, secret_key=SECRET_KEY, max_age=14 * 24 * 60 * 60),
    ],
)
