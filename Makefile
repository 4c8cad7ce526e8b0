# Every routine task has one obvious command. Works on a fresh machine with
# only Python >= 3.11 and make: the first target that needs it creates .venv.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: help venv demo test check lint typecheck bench clean

help:
	@echo "make demo   - serve the demo app on http://127.0.0.1:8000 (encrypted cookie sessions)"
	@echo "make test   - ruff, mypy --strict and the whole test suite"
	@echo "make check  - ruff and mypy only"
	@echo "make bench  - the in-process benchmark (by hand, not in CI)"
	@echo "make clean  - remove the virtualenv and caches"

$(STAMP): pyproject.toml examples/custom_store/pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e examples/custom_store
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	@echo "Serving the demo on http://127.0.0.1:8000 (Ctrl-C to stop)"
	$(BIN)/python -m uvicorn examples.demo.app:app --host 127.0.0.1 --port 8000

lint: $(STAMP)
	$(BIN)/ruff check asgi_sessions tests examples benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy --strict asgi_sessions

check: lint typecheck

test: check
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_inprocess.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis build dist *.egg-info
