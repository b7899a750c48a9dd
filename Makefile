# smprof developer entry points. `make demo` and `make test` are the README's quick start:
# each sets up everything it needs on a fresh machine first.

PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SAMPLE := samples/sample-job
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: setup demo dashboard report test lint typecheck pytest peers system-deps bench clean

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

## The main job on the bundled sample (no AWS account needed): ingest it, write the
## bottleneck report (its findings are expected: the sample has a slow DataLoader and a
## straggler rank), then open the dashboard on it.
demo: setup
	$(BIN)/smprof ingest $(SAMPLE) --cache .smprof-cache
	$(BIN)/smprof report $(SAMPLE) --cache .smprof-cache --out smprof-report --fail-on never
	$(BIN)/smprof dashboard $(SAMPLE) --cache .smprof-cache

report: setup
	$(BIN)/smprof report $(SAMPLE) --cache .smprof-cache --out smprof-report --fail-on never

dashboard: setup
	$(BIN)/smprof dashboard $(SAMPLE) --cache .smprof-cache

## Debian's chromium for the dashboard's real-browser tests (never a downloaded browser).
system-deps:
	@if ! command -v chromium >/dev/null 2>&1; then \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
	  else echo "chromium missing and apt-get unavailable: the browser tests will skip"; fi; \
	fi

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
test: setup system-deps peers lint typecheck pytest

bench: setup peers
	$(BIN)/python bench/bench_ingest.py

clean:
	rm -rf $(VENV) .venv-peers .venv-smdebug .venv-hta .smprof-cache .bench .pytest_cache .mypy_cache .ruff_cache
