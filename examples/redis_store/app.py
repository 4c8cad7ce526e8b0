"""A shop's sessions in Redis: loaded only where needed, under their own key prefix.

The browser holds only a random session id; the session lives in Redis
under ``shop:session:<SHA-256 of the id>``, with Redis's own expiry. Two
things are worth copying:

- ``autoload=False``: nothing is fetched from Redis until a view asks for
  the session (``await session.load()`` or the async methods such as
  ``await session.aget(key)``). Pages that never look at it — the home page,
  health checks, static files — cost no round trip, cookie or not.
- ``prefix``: one Redis can serve several apps (or hold caches too) without
  their keys mixing; ``SCAN MATCH shop:session:*`` finds exactly ours.

``REDIS_URL`` (default ``redis://127.0.0.1:6379/0``) says which Redis.
Run it (from the repository root) with::

    make venv && .venv/bin/uvicorn examples.redis_store.app:app --reload
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import parse_qsl, urlsplit

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from asgi_sessions import SessionMiddleware, session_of
from asgi_sessions.auth import login, logout, user_of
from asgi_sessions.errors import SessionStoreUnavailable
from asgi_sessions.stores import RedisStore

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
KEY_PREFIX = "shop:session:"
RECENT = 5  # how many recently viewed products to remember

PRODUCTS = {"kettle": "Stovetop kettle", "mug": "Enamel mug", "tea": "Loose-leaf tea"}


async def home(request: Request) -> Response:
    """Never touches the session: no Redis round trip, even with a session cookie."""
    return JSONResponse({"products": sorted(PRODUCTS)})


async def product(request: Request) -> Response:
    """Show a product and remember it as recently viewed.

    The ``a*`` methods load the session first (one ``GET``) and then act like
    their dict counterparts; the change is saved as the response starts
    (one write).
    """
    sku = request.path_params["sku"]
    if sku not in PRODUCTS:
        return JSONResponse({"error": f"no product {sku!r}"}, status_code=404)
    # request.session, typed as our Session: Starlette types it as a plain
    # dict, so a type checker would not know aget/aset.
    session = session_of(request)
    recent = [s for s in await session.aget("recent", []) if s != sku]
    await session.aset("recent", [*recent, sku][-RECENT:])
    return JSONResponse({"sku": sku, "name": PRODUCTS[sku]})


async def recent(request: Request) -> Response:
    """The other style: load once, then use the session as a plain dict."""
    session = session_of(request)
    await session.load()  # without this, session.get() raises SessionNotLoaded
    return JSONResponse({"recent": session.get("recent", [])})


def same_origin(request: Request) -> bool:
    """Was this form posted by our own pages, not by another site?

    SameSite=Lax keeps our cookie off a cross-site POST, but that does not
    stop *login* CSRF: another site can post its own username to ``/login``,
    and the browser keeps the cookie we answer with (the victim then browses
    as the attacker). Browsers say where a request comes from (``Origin``,
    ``Sec-Fetch-Site``); a request with neither (curl, a script) is not a
    browser sent by another site, so it is let through. Behind a proxy that
    rewrites ``Host``, compare ``Origin`` with your public origin instead.
    """
    origin = request.headers.get("origin")
    if request.headers.get("sec-fetch-site") == "cross-site":
        return False
    return origin is None or urlsplit(origin).netloc == request.headers.get("host")


def cross_site() -> Response:
    return JSONResponse({"error": "cross-site requests are refused"}, status_code=403)


async def login_view(request: Request) -> Response:
    if not same_origin(request):
        return cross_site()
    body = (await request.body())[:1000].decode("utf-8", "replace")
    name = dict(parse_qsl(body)).get("username", "").strip()
    if not name:
        return JSONResponse({"error": "send a username"}, status_code=400)
    # A new id (the old Redis key is deleted): an id planted before login is
    # worthless after it. Recently viewed products survive logging in.
    await login(request.session, name)
    return JSONResponse({"user": name})


async def me(request: Request) -> Response:
    return JSONResponse({"user": await user_of(request.session)})


async def logout_view(request: Request) -> Response:
    if not same_origin(request):
        return cross_site()
    await logout(request.session)  # one DEL, no read; the cookie is deleted
    return JSONResponse({"user": None})


async def store_unavailable(request: Request, exc: Exception) -> Response:
    """Redis down or slow (beyond the store's timeout): say so, briefly.

    Pages that do not touch the session keep working meanwhile, and a
    session that could not be loaded is never overwritten.
    """
    return JSONResponse(
        {"error": "sessions are unavailable, try again shortly"},
        status_code=503,
        headers={"Retry-After": "5"},
    )


def create_app(store: RedisStore | None = None) -> Starlette:
    """The shop, with its sessions in ``store`` (by default: REDIS_URL, KEY_PREFIX)."""
    if store is None:
        # The store owns the client it builds from a URL. Pass a ready
        # redis.asyncio client instead to share a pool, or for Sentinel/Cluster.
        store = RedisStore(REDIS_URL, prefix=KEY_PREFIX, timeout=2.0)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await store.close()  # closes the connection pool

    return Starlette(
        routes=[
            Route("/", home),
            Route("/products/{sku}", product),
            Route("/recent", recent),
            Route("/login", login_view, methods=["POST"]),
            Route("/me", me),
            Route("/logout", logout_view, methods=["POST"]),
        ],
        middleware=[
            Middleware(
                SessionMiddleware,
                store=store,  # no secret_key needed: the cookie holds only a random id
                max_age=14 * 24 * 60 * 60,
                autoload=False,
                # In production, behind HTTPS, add https_only=True: the cookie
                # is then marked Secure and never sent over plain http://, where
                # anyone on the network could read the id and use the session.
                # Off here only because the example is served on plain
                # http://127.0.0.1:8000.
            )
        ],
        exception_handlers={SessionStoreUnavailable: store_unavailable},
        lifespan=lifespan,
    )


app = create_app()
