"""Instructions per request, counted by valgrind: bench_inprocess without the noise.

Timings on a shared machine move by 10 % between runs; the number of CPU
instructions a request executes barely moves at all. This script runs the
apps of ``bench_inprocess.py`` (same variants, routes, seed session and
browser-like cookie jar) under ``valgrind --tool=callgrind`` twice per
(variant, route), once with a few requests and once with many more, and
reports the difference divided by the difference in requests: the
instructions one request costs, with start-up, imports and warm-up cancelled
out. Repeated runs agree to within a few hundred instructions, so a change
that saves 1 % is visible here long before it is visible in a timing.

Instruction counts are not time: a cache miss, an allocation or a system
call costs time and few instructions, and the peers spend their time
differently from us (Starlette's ``/read`` takes more time per instruction
than ours), so ratios against a peer here differ from the time ratios of
``bench_inprocess.py`` by up to ~0.08. The issue's targets are stated in
time; use this script to see what a change to ours really saves.

Run by hand (never in CI); needs ``valgrind`` (Debian package)::

    python benchmarks/bench_instructions.py                  # every variant and route
    python benchmarks/bench_instructions.py --only ours --routes /write

A full run takes about two minutes on two cores.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_inprocess as inprocess  # noqa: E402 - needs the path above

_COLLECTED = re.compile(r"Collected : (\d+)")


async def _drive(variant: str, route: str, count: int) -> None:
    """The child's work: seed the session as bench_inprocess does, then ``count`` requests."""
    warnings.simplefilter("ignore")
    variants = inprocess.build_variants()
    browser = inprocess.Browser()
    if variant == "bare":
        # The bare app is sent the same cookie bytes as ours, as in bench_inprocess.
        donor = "ours" if "ours" in variants else "starlette"
        assert await inprocess.request(variants[donor], "/seed", browser) == 200
    else:
        assert await inprocess.request(variants[variant], "/seed", browser) == 200
    app = variants[variant]
    for _ in range(50):  # warm every cache a long-running server would have warm
        await inprocess.request(app, route, browser)
    for _ in range(count):
        status = await inprocess.request(app, route, browser)
    assert count == 0 or status == 200


def _count(variant: str, route: str, requests: int) -> int:
    """Instructions executed by a child process that serves ``requests`` requests."""
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        variant,
        route,
        str(requests),
    ]
    # A fixed hash seed: with random ones, dict and set layouts (and so the
    # counts) differ by a percent or two between runs.
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    match = _COLLECTED.search(done.stderr)
    if done.returncode != 0 or match is None:
        raise RuntimeError(f"{variant} {route}: valgrind failed:\n{done.stderr[-2000:]}")
    return int(match.group(1))


def per_request(variant: str, route: str, low: int, high: int) -> float:
    """Instructions of one request: the difference of two runs over their request difference."""
    return (_count(variant, route, high) - _count(variant, route, low)) / (high - low)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", nargs="*", help="variants (default: all)")
    parser.add_argument("--routes", nargs="*", default=list(inprocess.ROUTES))
    parser.add_argument("--low", type=int, default=200, help="requests in the short run")
    parser.add_argument("--high", type=int, default=1200, help="requests in the long run")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--child", nargs=3, metavar=("VARIANT", "ROUTE", "N"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.child:
        variant, route, count = args.child
        asyncio.run(_drive(variant, route, int(count)))
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind not found: apt-get install valgrind", file=sys.stderr)
        return 2
    warnings.simplefilter("ignore")
    names = args.only or list(inprocess.build_variants())
    if "bare" not in names:
        names = ["bare", *names]  # every ratio needs it
    pairs = [(n, r) for n in names for r in args.routes]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = {pair: pool.submit(per_request, *pair, args.low, args.high) for pair in pairs}
        counts = {pair: future.result() for pair, future in futures.items()}
    meta = inprocess.environment()
    print(
        f"{meta['date']}  python {meta['python']} on {meta['machine']}  {meta['versions']}"
        f"  commit {meta['commit']}"
    )
    print(f"instructions per request (callgrind, {args.high} - {args.low} requests)")
    header = f"{'variant':14}" + "".join(f"{r:>26}" for r in args.routes)
    print(header)
    print("-" * len(header))
    for name in names:
        cells = "".join(
            f"{counts[name, r] / 1000:9.1f} k ({counts[name, r] / counts['bare', r]:5.2f}x bare)"
            for r in args.routes
        )
        print(f"{name:14}{cells}")
    if "ours" in names and "starlette" in names:
        print()
        print(
            "ours / starlette: "
            + ", ".join(
                f"{r} {counts['ours', r] / counts['starlette', r]:.3f}x" for r in args.routes
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
