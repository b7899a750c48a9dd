# stepscope developer entry points. `make demo` and `make test` are the README's quick start:
# each sets up everything it needs on a fresh machine first.

PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SDKV3_VENV ?= .venv-sdkv3
SDKV3_STAMP := $(SDKV3_VENV)/.stepscope-installed
TORCH_VENV ?= .venv-torch
TORCH_STAMP := $(TORCH_VENV)/.stepscope-installed
SAMPLE := samples/sample-job
SAMPLE_BASELINE := samples/sample-baseline
export PIP_DISABLE_PIP_VERSION_CHECK := 1

# Debian's libfaketime: shifts one rank's clock in the cross-rank clock-offset test
FAKETIME_LIB := /usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1

.PHONY: setup demo report dashboard test lint typecheck pytest peers sdk-env torch-env system-deps bench clean

# Everything installs inside the project's own environments, never into the system
# interpreter: a plain venv first (it has pip), uv inside it when it can be had (fast),
# pip otherwise. `--python` names the target env of each `uv pip install`.
UV := $(BIN)/python -m uv
$(BIN)/stepscope: pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@$(BIN)/python -m pip --version >/dev/null 2>&1 || $(BIN)/python -m ensurepip >/dev/null  # a venv made by uv has no pip
	@$(UV) --version >/dev/null 2>&1 || $(BIN)/python -m pip install -q uv || true
	@if $(UV) --version >/dev/null 2>&1; then \
	  $(UV) pip install -q --python $(BIN)/python -e '.[dev,sagemaker-v2]'; \
	else \
	  $(BIN)/python -m pip install -q -e '.[dev,sagemaker-v2]'; \
	fi
	@touch $@

setup: $(BIN)/stepscope

## The main job on the bundled sample (no AWS account needed): ingest it, write the
## bottleneck report (its findings are expected: the sample has a slow DataLoader and a
## straggler rank), then serve the dashboard on it (its URL is printed). Both compare it with its baseline run
## (the same job with nothing injected), so the report's baseline section and the
## dashboard's Compare page show a real comparison.
demo: setup
	$(BIN)/stepscope ingest $(SAMPLE) --cache .stepscope-cache
	$(BIN)/stepscope report $(SAMPLE) --baseline $(SAMPLE_BASELINE) --cache .stepscope-cache --out stepscope-report --fail-on never
	$(BIN)/stepscope dashboard $(SAMPLE) --baseline $(SAMPLE_BASELINE) --cache .stepscope-cache

report: setup
	$(BIN)/stepscope report $(SAMPLE) --baseline $(SAMPLE_BASELINE) --cache .stepscope-cache --out stepscope-report --fail-on never

dashboard: setup
	$(BIN)/stepscope dashboard $(SAMPLE) --baseline $(SAMPLE_BASELINE) --cache .stepscope-cache

## Debian's chromium for the dashboard's real-browser tests (never a downloaded browser).
system-deps:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	test -e $(FAKETIME_LIB) || missing="$$missing libfaketime"; \
	if [ -n "$$missing" ]; then \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	  else echo "missing:$$missing and apt-get unavailable: the browser and clock-offset tests will skip"; fi; \
	fi

## Reference environments of the peers (smdebug, HTA) for the parity tests and benches.
peers: setup
	PATH="$(abspath $(BIN)):$$PATH" bash bench/setup_peers.sh

## The second SageMaker SDK major (v3) for tests/test_attach_sdk_v3.py; the default env has v2.
$(SDKV3_STAMP): pyproject.toml envs/sagemaker-v3.txt | $(BIN)/stepscope
	@if $(UV) --version >/dev/null 2>&1; then \
	  $(UV) venv -q --allow-existing -p $(PY) $(SDKV3_VENV) && \
	  $(UV) pip install -q --python $(SDKV3_VENV)/bin/python -e '.[dev]' -r envs/sagemaker-v3.txt; \
	else \
	  $(PY) -m venv $(SDKV3_VENV) && $(SDKV3_VENV)/bin/pip install -q -e '.[dev]' -r envs/sagemaker-v3.txt; \
	fi
	@touch $@

sdk-env: $(SDKV3_STAMP)

## torch (CPU) for the enabled path of stepscope/collectors/profiling.py (tests/test_profiling_helper.py)
## and for re-recording samples/sample-job. pip, not uv: the torch wheel comes from pip's
## find-links (/opt/wheels), which uv does not read.
$(TORCH_STAMP): pyproject.toml
	$(PY) -m venv $(TORCH_VENV)
	$(TORCH_VENV)/bin/pip install -q torch==2.13.0 tensorboard
	$(TORCH_VENV)/bin/pip install -q -e . pytest pytest-timeout
	@touch $@

torch-env: $(TORCH_STAMP)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

pytest: setup sdk-env torch-env
	STEPSCOPE_REQUIRE_SDK_ENVS=1 $(BIN)/python -m pytest -q
	STEPSCOPE_REQUIRE_TORCH=1 $(TORCH_VENV)/bin/python -m pytest -q tests/test_profiling_helper.py tests/test_collector_launcher.py tests/test_collector_exits.py tests/test_kineto_step_markers.py tests/test_collector_health.py tests/test_rules_training_health.py tests/test_cross_rank_recorded.py tests/test_hang_recorded.py tests/test_parallelism_recorded.py

## Everything CI runs: lint, types, the whole test suite (with the peer and SDK environments).
test: setup system-deps peers sdk-env torch-env lint typecheck pytest

## The benchmarks of the README's "Performance" section (minutes; 8 nodes x 60 min, ~1.5 GB).
bench: setup peers system-deps torch-env
	$(BIN)/python bench/bench_ingest.py
	$(BIN)/python bench/bench_report.py
	$(BIN)/python bench/bench_dashboard.py
	$(BIN)/python bench/bench_sampler.py
	$(BIN)/python bench/bench_scale.py
	$(TORCH_VENV)/bin/python bench/bench_health.py
	$(BIN)/python bench/bench_launcher.py

clean:
	rm -rf $(VENV) $(SDKV3_VENV) $(TORCH_VENV) .venv-sdkv2 .venv-peers .stepscope-cache stepscope-report .bench .pytest_cache .mypy_cache .ruff_cache
