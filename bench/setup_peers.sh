#!/usr/bin/env bash
# Create the peer-tools env (.venv-peers, python3.11) with smdebug 1.0.34 and HTA (traceinsight).
#
#   bench/setup_peers.sh            # create or update; a no-op (well under a second) when current
#   bench/setup_peers.sh --verify   # also import the readers and run them on the shared fixtures
#   bench/setup_peers.sh --force    # recreate from scratch
#
# Env: PEERS_VENV (default <repo>/.venv-peers), PEERS_PYTHON (default python3.11).
# Uses uv when present (about 10 s cold, from uv's cache much less), else venv + pip.
set -euo pipefail
export SMDEBUG_LOG_LEVEL="${SMDEBUG_LOG_LEVEL:-error}" SMDEBUG_LOG_ALL_TO_STDOUT="${SMDEBUG_LOG_ALL_TO_STDOUT:-false}"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${PEERS_VENV:-$ROOT/.venv-peers}"
REQ="$ROOT/bench/peers-requirements.txt"
PY="${PEERS_PYTHON:-python3.11}"
STAMP="$VENV/.peers-stamp"

verify=0
force=0
for arg in "$@"; do
  case "$arg" in
    --verify) verify=1 ;;
    --force) force=1 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done

want="$(sha256sum "$REQ" | cut -d' ' -f1)"
have="$(cat "$STAMP" 2>/dev/null || true)"

if [[ $force == 1 ]]; then
  rm -rf "$VENV"
  have=""
fi

if [[ -x "$VENV/bin/python" && "$have" == "$want" ]]; then
  echo "peers env up to date: $VENV"
else
  started=$SECONDS
  if ! command -v "$PY" >/dev/null 2>&1; then
    echo "error: $PY not found (smdebug 1.0.34 and the reference numbers need CPython 3.11)" >&2
    exit 1
  fi
  if command -v uv >/dev/null 2>&1; then
    [[ -x "$VENV/bin/python" ]] || uv venv --quiet --python "$(command -v "$PY")" "$VENV"
    VIRTUAL_ENV="$VENV" uv pip install --quiet --python "$VENV/bin/python" -r "$REQ"
  else
    [[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet -r "$REQ"
  fi
  # Import check before stamping, so a half-installed env is never reported as current.
  "$VENV/bin/python" - <<'PY'
import smdebug.profiler.algorithm_metrics_reader  # noqa: F401
import smdebug.profiler.analysis.utils.profiler_data_to_pandas  # noqa: F401
import smdebug.profiler.system_metrics_reader  # noqa: F401
from hta.trace_analysis import TraceAnalysis  # noqa: F401
PY
  echo "$want" > "$STAMP"
  echo "peers env ready: $VENV ($((SECONDS - started)) s)"
fi

if [[ $verify == 1 ]]; then
  fixtures="${STEPSCOPE_FIXTURES:-$ROOT/../shared/fixtures}"
  "$VENV/bin/python" - <<'PY'
from smdebug.profiler.algorithm_metrics_reader import LocalAlgorithmMetricsReader  # noqa: F401
from smdebug.profiler.analysis.utils.profiler_data_to_pandas import PandasFrame  # noqa: F401
from smdebug.profiler.system_metrics_reader import LocalSystemMetricsReader  # noqa: F401
from hta.trace_analysis import TraceAnalysis  # noqa: F401
import smdebug, importlib.metadata as md
print("imports ok: smdebug", smdebug.__version__, "| traceinsight", md.version("traceinsight"),
      "| protobuf", md.version("protobuf"))
PY
  if [[ -d "$fixtures/sagemaker-debugger/test_traces" ]]; then
    "$VENV/bin/python" "$ROOT/bench/peers/smdebug_reference.py" --summary \
      "$fixtures/sagemaker-debugger/test_traces"
  else
    echo "shared fixtures not found at $fixtures: reader run skipped"
  fi
  if [[ -d "$fixtures/kineto/nccl_2rank_rank0" ]]; then
    "$VENV/bin/python" "$ROOT/bench/peers/hta_reference.py" --summary "$fixtures/kineto/nccl_2rank_rank0"
  fi
fi
