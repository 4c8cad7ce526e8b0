"""In-process benchmark of server-side stores: ours on Redis, SQLite and PostgreSQL
against starsessions' RedisStore, in one interleaved run.

Same method as ``bench_inprocess.py`` (direct ASGI calls, cookies carried like
a browser, three routes, medians of per-round means, variants in a fresh
random order every round). Ours runs with its defaults (``autoload=True``: a
request carrying a session cookie loads it before the view); starsessions
runs with its autoload middleware, as its docs recommend for
``request.session`` access.

Needs the local services (Redis on 6379, PostgreSQL on 5432); a variant whose
service is down is skipped with a note. Run by hand:
``python benchmarks/bench_stores.py --rounds 30 --batch 100``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import tempfile
import warnings
from collections.abc import Callable
from typing import Any

from bench_inprocess import ROUTES, Browser, _routes, report, request
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.types import ASGIApp

REDIS_URL = os.environ.get("ASGI_SESSIONS_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get(
    "ASGI_SESSIONS_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
PREFIX = f"bench:{secrets.token_hex(4)}:"
TABLE = f"bench_sessions_{secrets.token_hex(4)}"


async def build_variants(
    tmp: str, only: set[str] | None = None
) -> tuple[dict[str, ASGIApp], list[Any]]:
    import asgi_sessions.stores as ours
    from asgi_sessions import SessionMiddleware as Ours

    cleanup: list[Any] = []
    variants: dict[str, ASGIApp] = {"bare": Starlette(routes=_routes())}
    try:
        import starsessions
        from redis.asyncio import Redis
        from starsessions.stores.redis import RedisStore as StarRedis

        connection = Redis.from_url(REDIS_URL)
        await connection.ping()
        variants["starsessions-redis"] = Starlette(
            routes=_routes(),
            middleware=[
                Middleware(
                    starsessions.SessionMiddleware,
                    store=StarRedis(connection=connection, prefix=PREFIX + "star:"),
                    cookie_https_only=False,
                    lifetime=1209600,
                ),
                Middleware(starsessions.SessionAutoloadMiddleware),
            ],
        )
        cleanup.append(connection)
    except Exception as exc:
        print(f"starsessions-redis skipped: {exc}", file=sys.stderr)
    stores: dict[str, Callable[[], ours.SessionStore]] = {
        "ours-redis": lambda: ours.RedisStore(REDIS_URL, prefix=PREFIX),
        "ours-sqlite": lambda: ours.SQLStore(f"sqlite+aiosqlite:///{tmp}/sessions.db"),
        "ours-postgres": lambda: ours.SQLStore(POSTGRES_URL, table_name=TABLE),
    }
    for name, factory in stores.items():
        if only is not None and name not in only:
            continue
        try:
            store = factory()
            await store.read("0" * 64)  # reachable? (creates SQL tables)
        except Exception as exc:
            print(f"{name} skipped: {exc}", file=sys.stderr)
            continue
        cleanup.append(store)
        variants[name] = Starlette(routes=_routes(), middleware=[Middleware(Ours, store=store)])
    return variants, cleanup


async def run(
    rounds: int, batch: int, only: set[str] | None = None
) -> dict[str, dict[str, list[float]]]:
    import random
    import time

    with tempfile.TemporaryDirectory() as tmp:
        variants, cleanup = await build_variants(tmp, only)
        try:
            browsers = {name: Browser() for name in variants}
            for name, app in variants.items():
                if name != "bare":
                    assert await request(app, "/seed", browsers[name]) == 200
            for name, app in variants.items():
                for route in ROUTES:
                    for _ in range(20):
                        await request(app, route, browsers[name])
            samples: dict[str, dict[str, list[float]]] = {
                n: {r: [] for r in ROUTES} for n in variants
            }
            pairs = [(n, r) for n in variants for r in ROUTES]
            rng = random.Random(1)
            for _ in range(rounds):
                rng.shuffle(pairs)
                for name, route in pairs:
                    app, browser = variants[name], browsers[name]
                    start = time.perf_counter_ns()
                    for _ in range(batch):
                        await request(app, route, browser)
                    samples[name][route].append((time.perf_counter_ns() - start) / batch / 1000)
            return samples
        finally:
            await _cleanup(cleanup)


async def _cleanup(resources: list[Any]) -> None:
    from redis.asyncio import Redis

    client = Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=PREFIX + "*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()
    for resource in resources:
        if hasattr(resource, "close") and not isinstance(resource, Redis):
            await resource.close()
        elif isinstance(resource, Redis):
            await resource.aclose()
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(POSTGRES_URL)
    try:
        async with engine.begin() as connection:
            await connection.execute(text(f"DROP TABLE IF EXISTS {TABLE}"))
    except Exception:
        pass
    finally:
        await engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument(
        "--only", nargs="+", help="our variants to run (e.g. ours-redis); peers always run"
    )
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    samples = asyncio.run(run(args.rounds, args.batch, set(args.only) if args.only else None))
    medians = report(samples)
    if "ours-redis" in medians and "starsessions-redis" in medians:
        ours, theirs = medians["ours-redis"], medians["starsessions-redis"]
        print(
            "ours-redis / starsessions-redis: "
            + ", ".join(f"{r} {ours[r] / theirs[r]:.2f}x" for r in ROUTES)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
