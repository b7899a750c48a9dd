# smprof developer entry points. `make demo` and `make test` are the README's quick start:
# each sets up everything it needs on a fresh machine first.

PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SAMPLE := samples/sample-job
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: setup demo test lint typecheck pytest peers bench clean

$(BIN)/smprof: pyproject.toml
	$(PY) -m pip install -q --upgrade uv || true
	@if command -v uv >/dev/null 2>&1 || $(PY) -m uv --version >/dev/null 2>&1; then \
	  $(PY) -m uv venv -q --allow-existing -p $(PY) $(VENV) && \
	  VIRTUAL_ENV=$(VENV) $(PY) -m uv pip install -q -e '.[dev]'; \
	else \
	  $(PY) -m venv $(VENV) && $(BIN)/pip install -q -e '.[dev]'; \
	fi
	@touch $@

setup: $(BIN)/smprof

## The main job on the bundled sample (no AWS account needed).
demo: setup
	$(BIN)/smprof ingest $(SAMPLE) --cache .smprof-cache

## Reference environments of the peers (smdebug, HTA) for the parity tests and benches.
peers:
	bash bench/setup_peers.sh

lint: setup
	$(BIN)/ruff check .

typecheck: setup
	$(BIN)/mypy

pytest: setup
	$(BIN)/python -m pytest -q

## Everything CI runs: lint, types, the whole test suite (with the peer environments).
test: setup peers lint typecheck pytest

bench: setup peers
	$(BIN)/python bench/bench_ingest.py

clean:
	rm -rf $(VENV) .venv-peers .venv-smdebug .venv-hta .smprof-cache .bench .pytest_cache .mypy_cache .ruff_cache
