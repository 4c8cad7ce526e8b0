"""In-process benchmark: per-request cost of session middleware, peers side by side.

Calls each ASGI app directly (no server, no HTTP client), carrying every
Set-Cookie back as the Cookie header the way a browser does, on three routes:

- ``/untouched``  the request carries a valid session cookie; the view never
                  touches the session
- ``/read``       the view reads a few keys
- ``/write``      the view increments a counter

Variants: the bare app (no middleware), Starlette's ``SessionMiddleware``
(signed cookie), starsessions (``CookieStore`` + autoload), and ours
(encrypted cookie, the default). One run interleaves them: every round runs
a batch of each (variant, route) in a fresh random order, so machine drift
hits every variant alike. Medians of the per-round means are reported, with
ratios to the bare app, of ours to Starlette's, and against the issue's
targets. Before and after timing, every variant is checked to really read,
write and keep the seeded session (a misconfigured peer would look fast).

Run by hand (never in CI): ``make bench`` or
``python benchmarks/bench_inprocess.py --rounds 100 --batch 300 --json out.json``.
See ``benchmarks/README.md`` for the method, the targets and recorded results.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import gc
import importlib.metadata
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
import warnings
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message

SECRET = "benchmark-secret-0123456789abcdef0123456789abcdef"
ROUTES = ("/untouched", "/read", "/write")
# The targets for ours: route -> (baseline variant, highest allowed time ratio).
TARGETS = {
    "/untouched": ("bare", 1.15),
    "/read": ("starlette", 0.70),
    "/write": ("starlette", 0.60),
}
SEED = {"user_id": 42, "name": "alice", "cart": [101, 202, 303], "csrf": "c" * 32, "theme": "dark"}


async def untouched(request: Request) -> Response:
    return PlainTextResponse("ok")


def _session(request: Request) -> Any:
    # The bare app has no middleware: its views work on an empty dict, so
    # every variant runs the same view code.
    return request.session if "session" in request.scope else {}


async def read(request: Request) -> Response:
    session = _session(request)
    return PlainTextResponse(
        f"{session.get('user_id')} {session.get('name')} {len(session.get('cart', []))}"
        f" {session.get('counter')}"
    )


async def write(request: Request) -> Response:
    session = _session(request)
    session["counter"] = session.get("counter", 0) + 1
    return PlainTextResponse("ok")


async def seed(request: Request) -> Response:
    request.session.update(SEED)
    return PlainTextResponse("ok")


def _routes() -> list[Route]:
    return [
        Route("/untouched", untouched),
        Route("/read", read),
        Route("/write", write),
        Route("/seed", seed),
    ]


def build_variants() -> dict[str, ASGIApp]:
    from starlette.middleware.sessions import SessionMiddleware as StarletteSessions

    variants: dict[str, ASGIApp] = {
        "bare": Starlette(routes=_routes()),
        "starlette": Starlette(
            routes=_routes(), middleware=[Middleware(StarletteSessions, secret_key=SECRET)]
        ),
    }
    try:
        import starsessions

        variants["starsessions"] = Starlette(
            routes=_routes(),
            middleware=[
                Middleware(
                    starsessions.SessionMiddleware,
                    store=starsessions.CookieStore(secret_key=SECRET),
                    cookie_https_only=False,
                    lifetime=1209600,
                ),
                Middleware(starsessions.SessionAutoloadMiddleware),
            ],
        )
    except ImportError:
        print("starsessions: not installed, skipped", file=sys.stderr)
    try:
        from asgi_sessions import SessionMiddleware as Ours

        variants["ours"] = Starlette(
            routes=_routes(), middleware=[Middleware(Ours, secret_key=SECRET)]
        )
    except ImportError:
        print("ours: unavailable", file=sys.stderr)
    return variants


class Browser:
    """Keeps cookies like a browser: Set-Cookie in, Cookie header out."""

    def __init__(self) -> None:
        self.cookies: dict[str, str] = {}
        self._header: list[tuple[bytes, bytes]] = []

    def header(self) -> list[tuple[bytes, bytes]]:
        # Rebuilt only when a cookie changes, so the driver's own cost is the
        # same for every variant.
        return self._header

    def _rebuild(self) -> None:
        value = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        self._header = [(b"cookie", value.encode("latin-1"))] if value else []

    def absorb(self, headers: list[tuple[bytes, bytes]]) -> None:
        for name, value in headers:
            if name.lower() != b"set-cookie":
                continue
            text = value.decode("latin-1")
            pair, _, attributes = text.partition(";")
            key, _, val = pair.strip().partition("=")
            lowered = attributes.lower()
            if "expires=thu, 01 jan 1970" in lowered or "max-age=0" in lowered:
                if self.cookies.pop(key, None) is not None:
                    self._rebuild()
            elif self.cookies.get(key) != val:
                self.cookies[key] = val
                self._rebuild()


async def request(
    app: ASGIApp, path: str, browser: Browser, body: list[bytes] | None = None
) -> int:
    """One GET through ``app``; returns the status (the body goes to ``body`` if given)."""
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"bench.local"),
            (b"user-agent", b"bench/1.0"),
            (b"accept", b"*/*"),
            *browser.header(),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    status = 0

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
            browser.absorb(message.get("headers", []))
        elif body is not None and message["type"] == "http.response.body":
            body.append(message.get("body", b""))

    await app(scope, receive, send)
    return status


async def run(rounds: int, batch: int, seed_value: int) -> dict[str, dict[str, list[float]]]:
    rng = random.Random(seed_value)
    variants = build_variants()
    browsers = {name: Browser() for name in variants}
    for name, app in variants.items():
        if name != "bare":
            assert await request(app, "/seed", browsers[name]) == 200
            assert browsers[name].cookies, f"{name} set no cookie"
    # The bare app gets a cookie header of the same size: every variant's
    # requests carry the same bytes.
    donor = next((n for n in ("ours", "starlette") if n in browsers), None)
    if donor is not None:
        browsers["bare"].cookies = dict(browsers[donor].cookies)
        browsers["bare"]._rebuild()
    await verify(variants, browsers)
    samples: dict[str, dict[str, list[float]]] = {n: {r: [] for r in ROUTES} for n in variants}
    # Warm up every path once so first-call costs are not measured.
    for name, app in variants.items():
        for route in ROUTES:
            for _ in range(50):
                await request(app, route, browsers[name])
    pairs = [(n, r) for n in variants for r in ROUTES]
    for _ in range(rounds):
        rng.shuffle(pairs)
        for name, route in pairs:
            app, browser = variants[name], browsers[name]
            gc.disable()
            start = time.perf_counter_ns()
            for _ in range(batch):
                await request(app, route, browser)
            elapsed = time.perf_counter_ns() - start
            gc.enable()
            samples[name][route].append(elapsed / batch / 1000)
    await verify(variants, browsers)  # still measuring what we think after the run
    return samples


async def verify(variants: dict[str, ASGIApp], browsers: dict[str, Browser]) -> None:
    """Fail loudly unless every variant really reads, writes and keeps the seeded session.

    A misconfigured peer (say, starsessions without autoload) would otherwise
    be timed doing nothing and look fast.
    """

    async def get(name: str, path: str) -> str:
        chunks: list[bytes] = []
        status = await request(variants[name], path, browsers[name], chunks)
        assert status == 200, f"{name} {path}: status {status}"
        return b"".join(chunks).decode()

    for name in variants:
        before = dict(browsers[name].cookies)
        await get(name, "/untouched")
        assert browsers[name].cookies.keys() == before.keys(), f"{name}: /untouched lost a cookie"
        seen = (await get(name, "/read")).split()
        if name == "bare":
            assert seen[:3] == ["None", "None", "0"], f"bare read {seen}"
            continue
        assert seen[:3] == ["42", "alice", "3"], f"{name} did not read the seeded session: {seen}"
        await get(name, "/write")
        after = (await get(name, "/read")).split()
        expected = 1 if seen[3] == "None" else int(seen[3]) + 1
        assert after[3] == str(expected), f"{name} did not persist /write: {seen} -> {after}"


def report(samples: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, float]]:
    medians = {
        n: {r: statistics.median(v) for r, v in routes.items()} for n, routes in samples.items()
    }
    bare = medians["bare"]
    header = f"{'variant':14}" + "".join(f"{r:>26}" for r in ROUTES)
    print(header)
    print("-" * len(header))
    for name, routes in medians.items():
        cells = "".join(f"{routes[r]:9.1f} µs ({routes[r] / bare[r]:5.2f}x bare)" for r in ROUTES)
        print(f"{name:14}{cells}")
    if "ours" in medians and "starlette" in medians:
        ours, theirs = medians["ours"], medians["starlette"]
        print()
        print("ours / starlette: " + ", ".join(f"{r} {ours[r] / theirs[r]:.2f}x" for r in ROUTES))
        verdicts = []
        for route, (baseline, limit) in TARGETS.items():
            ratio = ours[route] / medians[baseline][route]
            verdict = "ok" if ratio <= limit else "MISSED"
            verdicts.append(f"{route} {ratio:.3f}x {baseline} (<= {limit:.2f}: {verdict})")
        print("targets: " + "; ".join(verdicts))
    return medians


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--batch", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", help="write medians and raw samples to this file")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")  # weak demo secrets in peers, deprecations
    meta = environment()
    print(
        f"{meta['date']}  python {meta['python']} on {meta['machine']} ({meta['cpus']} cpus)"
        f"  {meta['versions']}  commit {meta['commit']}"
    )
    print(f"{args.rounds} rounds x {args.batch} requests per (variant, route); median µs/request")
    samples = asyncio.run(run(args.rounds, args.batch, args.seed))
    medians = report(samples)
    if args.json:
        quartiles = {
            n: {r: statistics.quantiles(v, n=4) for r, v in routes.items()}
            for n, routes in samples.items()
        }
        result = {
            "meta": {**meta, "rounds": args.rounds, "batch": args.batch, "seed": args.seed},
            "medians_us": medians,
            "quartiles_us": quartiles,
            "samples_us": samples,
        }
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=1)
        print(f"wrote {args.json}")
    return 0


def environment() -> dict[str, Any]:
    """What a result needs next to it to be compared later: when, where, which versions."""
    versions = []
    for dist in ("starlette", "starsessions", "cryptography"):
        try:
            versions.append(f"{dist} {importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{dist} -")
    try:
        here = os.path.dirname(os.path.abspath(__file__))
        commit = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "versions": ", ".join(versions),
        "commit": commit,
    }


if __name__ == "__main__":
    sys.exit(main())
