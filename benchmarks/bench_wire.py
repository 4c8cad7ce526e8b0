"""Over-the-wire benchmark: uvicorn on loopback, driven by wrk at 32 connections.

For each variant (bare app, Starlette's middleware, starsessions with its
cookie and Redis stores, ours with the encrypted cookie and Redis) a uvicorn
process (one worker, httptools, no access log) serves ``wire_apps.py``; a
seeding step creates 64 sessions, and wrk (through a small Lua script)
sends their cookies round-robin to ``/read`` and ``/write``, like 64 users
sharing the 32 connections (a ``/write`` cookie is never updated: for server
stores every write increments the same stored counter of that user). Variants and routes are
interleaved over several rounds; medians of requests/s are reported with
ratios to the bare app. The machine has 2 cores shared by server and wrk:
compare ratios, not absolute numbers.

Needs ``wrk`` (Debian package) and Redis on 6379. Run by hand:
``python benchmarks/bench_wire.py --rounds 3 --seconds 5``.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
VARIANTS = [
    "bare",
    "starlette",
    "starsessions-cookie",
    "starsessions-redis",
    "ours-cookie",
    "ours-redis",
]
ROUTES = ["/read", "/write"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(variant: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {**os.environ, "BENCH_VARIANT": variant, "PYTHONPATH": f"{HERE}:{HERE.parent}"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "wire_apps:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        cwd=HERE,
        env=env,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/untouched", timeout=1).read()
            return process, port
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"{variant} did not start")


USERS = 64


def seed_cookie(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/seed", timeout=5) as response:
        header: str | None = response.headers.get("set-cookie")
    assert header, "no session cookie"
    return header.split(";", 1)[0]


def cookie_script(cookies: list[str], directory: Path) -> Path:
    """A wrk script sending the given cookies round-robin."""
    table = ", ".join(f'"{cookie}"' for cookie in cookies)
    script = directory / "cookies.lua"
    script.write_text(
        f"local cookies = {{{table}}}\n"
        "local i = 0\n"
        "request = function()\n"
        "  i = i % #cookies + 1\n"
        '  wrk.headers["Cookie"] = cookies[i]\n'
        "  return wrk.format(nil)\n"
        "end\n"
    )
    return script


def wrk(port: int, route: str, script: Path | None, seconds: int) -> float:
    command = ["wrk", "-t2", "-c32", f"-d{seconds}s", "--latency"]
    if script is not None:
        command += ["-s", str(script)]
    output = subprocess.run(
        [*command, f"http://127.0.0.1:{port}{route}"], capture_output=True, text=True, check=True
    ).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", output)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if errors:
        raise RuntimeError(f"{errors.group(1)} error responses on {route}")
    assert match is not None, output
    return float(match.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 1
    results: dict[str, dict[str, list[float]]] = {v: {r: [] for r in ROUTES} for v in VARIANTS}
    rng = random.Random(1)
    tmp = tempfile.mkdtemp()
    for round_number in range(args.rounds):
        order = VARIANTS[:]
        rng.shuffle(order)
        for variant in order:
            process, port = serve(variant)
            try:
                script = None
                if variant != "bare":
                    cookies = [seed_cookie(port) for _ in range(USERS)]
                    script = cookie_script(cookies, Path(tmp))
                for route in ROUTES:
                    results[variant][route].append(wrk(port, route, script, args.seconds))
            finally:
                process.terminate()
                process.wait(timeout=10)
        print(f"round {round_number + 1}/{args.rounds} done", file=sys.stderr)
    bare = {r: statistics.median(results["bare"][r]) for r in ROUTES}
    print(f"{'variant':22}" + "".join(f"{r:>28}" for r in ROUTES))
    for variant in VARIANTS:
        cells = ""
        for route in ROUTES:
            rps = statistics.median(results[variant][route])
            cells += f"{rps:12.0f} req/s ({rps / bare[route]:4.2f}x)"
        print(f"{variant:22}{cells}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
