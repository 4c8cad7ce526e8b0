# Every routine task has one obvious command. Works on a fresh machine with
# only Python >= 3.11 and make: the first target that needs it creates .venv
# and installs the project editable with its dev extras (again only when a
# pyproject.toml changes).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PIP := $(BIN)/python -m pip --quiet --disable-pip-version-check
PYTEST_ARGS ?=
CONSTRAINTS ?=
BENCH_ARGS ?=
RESULTS := benchmarks/.results

.PHONY: help venv demo test suite oldest check lint typecheck docs docs-serve bench clean

help:
	@echo "make demo   - serve the demo app on http://127.0.0.1:8000 (encrypted cookie sessions)"
	@echo "make test   - ruff, mypy --strict, the docs build, then the whole test suite (PYTEST_ARGS='-x -k foo')"
	@echo "make suite  - the test suite alone, e.g. on another Python: make suite PYTHON=python3.13 VENV=.venv-3.13"
	@echo "make oldest - the test suite with every dependency at the oldest release pyproject.toml allows"
	@echo "make check  - ruff (lint and format), and mypy --strict over the package, examples, tests and benchmarks"
	@echo "make docs   - build the documentation site strictly (make docs-serve: live on :8001)"
	@echo "make bench  - the in-process benchmark, by hand, never in CI (BENCH_ARGS='--rounds 60')"
	@echo "make clean  - remove the virtualenv and caches"
	@echo "variables: PYTHON=$(PYTHON) VENV=$(VENV)"

$(STAMP): pyproject.toml examples/custom_store/pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
		|| { echo "$(PYTHON) is older than Python 3.11: run make PYTHON=python3.11 ..." >&2; exit 1; }
	@test -x $(BIN)/python || { echo "creating $(VENV)"; $(PYTHON) -m venv $(VENV); }
	@echo "installing asgi_sessions[dev] into $(VENV)"
	$(PIP) install --upgrade pip
	$(PIP) install -e '.[dev]' $(if $(CONSTRAINTS),-c $(CONSTRAINTS))
	$(PIP) install --no-deps -e examples/custom_store
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	@echo "Serving the demo on http://127.0.0.1:8000 (Ctrl-C to stop)"
	$(BIN)/python -m uvicorn examples.demo.app:app --host 127.0.0.1 --port 8000

lint: $(STAMP)
	$(BIN)/ruff check
	$(BIN)/ruff format --check

# The package, examples, tests and benchmarks (the files in pyproject.toml),
# then the example plugin as the package it installs.
typecheck: $(STAMP)
	$(BIN)/mypy --strict
	$(BIN)/mypy --strict -p acme_sessions

check: lint typecheck

# --strict: a broken link, a missing page or a docstring that does not render fails the build.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir $(VENV)/site
	@echo "docs built into $(VENV)/site"

docs-serve: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --dev-addr 127.0.0.1:8001

test: check docs suite

# The suite alone: how CI runs it a second time on the newest Python we support.
suite: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The suite in .venv-oldest, where every runtime and extra dependency is pinned
# to the lower bound pyproject.toml declares (.ci/oldest.py): a floor is a claim.
OLDEST := .venv-oldest
oldest:
	@mkdir -p $(OLDEST)
	$(PYTHON) .ci/oldest.py > $(OLDEST)/constraints.txt
	@echo "oldest allowed dependencies: $$(tr '\n' ' ' < $(OLDEST)/constraints.txt)"
	$(MAKE) suite VENV=$(OLDEST) CONSTRAINTS=$(OLDEST)/constraints.txt

bench: $(STAMP)
	@mkdir -p $(RESULTS)
	$(BIN)/python benchmarks/bench_inprocess.py --json $(RESULTS)/inprocess.json $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .venv-*/ .mypy_cache .ruff_cache .pytest_cache .hypothesis build dist
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
	find . -name '*.egg-info' -type d -prune -exec rm -rf {} +
