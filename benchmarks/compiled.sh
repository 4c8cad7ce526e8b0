#!/usr/bin/env bash
# What compiling the cookie hot path with mypyc would buy. By hand, never in CI.
#
# The package is pure Python. This builds a throwaway copy of the committed
# tree (git HEAD) in a temporary folder, compiles the modules of the cookie
# path with mypyc (shipped with the dev extra's mypy; needs gcc and the
# Python headers), and runs a benchmark against that copy, so the figures can
# be set beside the same benchmark run on the checkout. Nothing in the
# checkout or the virtualenv changes.
#
#   bash benchmarks/compiled.sh instructions [bench_instructions.py args]
#   bash benchmarks/compiled.sh time [bench_inprocess.py args]
#
# session.py is left interpreted on purpose: mypyc does not apply class-level
# attribute defaults to a dict subclass, and with an __init__ setting them the
# compiled Session costs more instructions per request than the interpreted
# one (measured 2026-12-07, see README.md).
set -euo pipefail

mode=${1:-instructions}
shift || true
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$root/.venv/bin/python}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

git -C "$root" archive HEAD | tar -x -C "$work"
cd "$work"
# mypyc builds through setuptools, which refuses hatchling's SPDX license field.
mv pyproject.toml pyproject.toml.off
"$python" -m mypyc \
    asgi_sessions/cookies.py asgi_sessions/crypto.py asgi_sessions/middleware.py \
    asgi_sessions/_record.py asgi_sessions/stores/cookie.py >"$work/build.log" 2>&1 \
    || { tail -20 "$work/build.log" >&2; exit 1; }
PYTHONPATH=$work "$python" -c 'import asgi_sessions.middleware as m; assert m.__file__.endswith(".so"), m.__file__'

case $mode in
instructions) PYTHONPATH=$work "$python" benchmarks/bench_instructions.py --only ours starlette "$@" ;;
time) PYTHONPATH=$work "$python" benchmarks/bench_inprocess.py "$@" ;;
*) echo "usage: $0 instructions|time [benchmark args]" >&2; exit 2 ;;
esac
