"""The apps ``bench_wire.py`` serves with uvicorn, one per variant (``BENCH_VARIANT``)."""

from __future__ import annotations

import os

from bench_inprocess import SECRET, _routes
from starlette.applications import Starlette
from starlette.middleware import Middleware

REDIS_URL = os.environ.get("ASGI_SESSIONS_REDIS_URL", "redis://127.0.0.1:6379/0")
PREFIX = os.environ.get("BENCH_PREFIX", "bench:wire:")


def build(variant: str) -> Starlette:
    if variant == "bare":
        return Starlette(routes=_routes())
    if variant == "starlette":
        from starlette.middleware.sessions import SessionMiddleware

        return Starlette(
            routes=_routes(), middleware=[Middleware(SessionMiddleware, secret_key=SECRET)]
        )
    if variant.startswith("starsessions"):
        import starsessions
        from redis.asyncio import Redis
        from starsessions.stores.redis import RedisStore

        store = (
            RedisStore(connection=Redis.from_url(REDIS_URL), prefix=PREFIX + "star:")
            if variant == "starsessions-redis"
            else starsessions.CookieStore(secret_key=SECRET)
        )
        return Starlette(
            routes=_routes(),
            middleware=[
                Middleware(
                    starsessions.SessionMiddleware,
                    store=store,
                    cookie_https_only=False,
                    lifetime=1209600,
                ),
                Middleware(starsessions.SessionAutoloadMiddleware),
            ],
        )
    from asgi_sessions import SessionMiddleware as Ours

    if variant == "ours-redis":
        from asgi_sessions.stores import RedisStore as OurRedis

        return Starlette(
            routes=_routes(),
            middleware=[Middleware(Ours, store=OurRedis(REDIS_URL, prefix=PREFIX + "ours:"))],
        )
    return Starlette(routes=_routes(), middleware=[Middleware(Ours, secret_key=SECRET)])


app = build(os.environ.get("BENCH_VARIANT", "bare"))
