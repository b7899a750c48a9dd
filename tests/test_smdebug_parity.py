"""stepscope reads the same rows as smdebug 1.0.34's own readers, on every real SageMaker fixture.

smdebug cannot live in the project venv (it pins protobuf<=3.20.3), so its numbers come from
``bench/peers/smdebug_reference.py`` run in the peers env (``bench/setup_peers.sh``) as a
subprocess; stepscope is ingested in-process. Compared per fixture folder (each is a
profiler-output root, what smdebug's readers are given):

* system metrics: row count, first and last timestamp (µs, as smdebug computes them:
  ``int(float(Timestamp) * 1e6)``), node set (the table has no per-file column);
* framework events: smdebug only ever yields complete events (``X`` and ``B``/``E`` pairs,
  which it turns into ``X``), so stepscope's ``X`` rows are compared; instants and unmatched
  ``B`` rows that stepscope also keeps are not smdebug's to count. Row count, rows per file,
  and the time span (first start, last end), within 1 µs as both sides add float µs.
  Where smdebug has no absolute clock (a TensorFlow trace without its ``.metadata`` file)
  it reports relative µs, so only the span's length is compared there.
"""

from __future__ import annotations

import json
import os
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from analyzer.ingest import ingest
from analyzer.sources import open_source
from tests.support.fixtures import REPO_ROOT, find_fixtures, fixtures_dir

PEERS_PYTHON = (
    Path(os.environ.get("STEPSCOPE_PEERS_VENV", REPO_ROOT / ".venv-peers")) / "bin" / "python"
)
REFERENCE_SCRIPT = REPO_ROOT / "bench" / "peers" / "smdebug_reference.py"

# The SageMaker Debugger fixture folders laid out as profiler-output roots (system/ and/or
# framework/ inside). test_layout_folders_are_all_listed keeps this list complete.
LAYOUT_FOLDERS = [
    "test_traces",
    "merge_traces",
    "model_timeline_traces",
    "horovod_timeline_traces",
    "tfprofiler_timeline_traces",
    "tfprofiler_local_missing_metadata",
]

_EPOCH_2000_US = 946_684_800 * 10**6
_NO_ENV = "smdebug env not set up: run bench/setup_peers.sh"


@cache
def _smdebug(folder: str) -> dict[str, Any]:
    """smdebug_reference.py's JSON for the folder (reader parts only), once per session."""
    proc = subprocess.run(
        [str(PEERS_PYTHON), str(REFERENCE_SCRIPT), "--parts", "sys-reader,fw-reader", folder],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "SMDEBUG_LOG_ALL_TO_STDOUT": "false", "SMDEBUG_LOG_LEVEL": "error"},
        check=False,
    )
    if proc.returncode != 0:
        raise AssertionError(f"smdebug_reference.py failed on {folder}:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout)


def _reference(folder: Path) -> dict[str, Any]:
    if not PEERS_PYTHON.exists():
        pytest.skip(_NO_ENV)
    return _smdebug(str(folder))


@cache
def _stepscope_tables(folder: str, cache_dir: str) -> dict[str, pa.Table]:
    result = ingest(open_source(folder), cache_dir=cache_dir)
    return result.dataset.tables


def _tables(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, pa.Table]:
    return _stepscope_tables(str(folder), str(tmp_path_factory.mktemp("cache")))


def _table(tables: dict[str, pa.Table], name: str) -> pa.Table:
    from analyzer.ingest.schemas import empty_table

    return tables.get(name, empty_table(name))


def _dict_values(col: pa.ChunkedArray) -> list[Any]:
    arr = col.combine_chunks()
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    return arr.to_pylist()


def _per_file(table: pa.Table) -> dict[str, int]:
    if table.num_rows == 0:
        return {}
    counts = pc.value_counts(pa.array(_dict_values(table.column("file"))))
    return {c["values"]: c["counts"] for c in counts.to_pylist()}


def test_layout_folders_are_all_listed() -> None:
    root = fixtures_dir("sagemaker-debugger")
    found = sorted(
        p.name
        for p in root.iterdir()
        if p.is_dir() and ((p / "system").is_dir() or (p / "framework").is_dir())
    )
    assert found == sorted(LAYOUT_FOLDERS)


@pytest.mark.parametrize("name", LAYOUT_FOLDERS)
def test_system_metrics_match_smdebug(name: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    folder = fixtures_dir("sagemaker-debugger", name)
    ref = _reference(folder)["system"]["reader"]
    assert "error" not in ref, f"smdebug's reader raised on {name}: {ref['error']}"
    sm = _table(_tables(folder, tmp_path_factory), "system_metrics")

    assert sm.num_rows == ref["rows"]
    if ref["rows"] == 0:
        return
    ts = sm.column("timestamp").cast(pa.int64())  # µs since the epoch
    assert (pc.min(ts).as_py(), pc.max(ts).as_py()) == (ref["min_ts_us"], ref["max_ts_us"]), (
        "smdebug's µs are int(float(Timestamp) * 1e6): the float64 product, truncated"
    )
    assert sorted(set(_dict_values(sm.column("node")))) == ref["nodes"]


@pytest.mark.parametrize("name", LAYOUT_FOLDERS)
def test_framework_events_match_smdebug(
    name: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    folder = fixtures_dir("sagemaker-debugger", name)
    ref = _reference(folder)["framework"]["reader"]
    assert "error" not in ref, f"smdebug's reader raised on {name}: {ref['error']}"
    fe = _table(_tables(folder, tmp_path_factory), "framework_events")
    complete = (
        fe.filter(pc.equal(pc.cast(fe.column("phase"), pa.string()), "X")) if fe.num_rows else fe
    )

    assert complete.num_rows == ref["rows"]
    assert _per_file(complete) == {k: v for k, v in ref["per_file"].items() if v}
    if ref["rows"] == 0:
        return
    start_ns = complete.column("start_ns")
    end_ns = pc.add(start_ns, pc.fill_null(complete.column("dur_ns"), 0))
    lo, hi = pc.min(start_ns).as_py() / 1000, pc.max(end_ns).as_py() / 1000  # µs
    if ref["min_start_us"] >= _EPOCH_2000_US:
        assert lo == pytest.approx(ref["min_start_us"], abs=1.0)
        assert hi == pytest.approx(ref["max_end_us"], abs=1.0)
    else:
        # smdebug has no clock for this trace (relative µs); stepscope may anchor it: same length.
        assert hi - lo == pytest.approx(ref["max_end_us"] - ref["min_start_us"], abs=1.0)


def test_reference_script_reports_smdebug_semantics() -> None:
    """The reference itself: the corrupt last line is dropped, the 13 good lines kept."""
    root = find_fixtures()
    if root is None or not (root / "sagemaker-debugger" / "test_traces").is_dir():
        pytest.skip(
            "shared fixtures not found: set STEPSCOPE_FIXTURES or put them at ../shared/fixtures"
        )
    if not PEERS_PYTHON.exists():
        pytest.skip(_NO_ENV)
    ref = _smdebug(str(root / "sagemaker-debugger" / "test_traces"))
    assert ref["smdebug"] == "1.0.34"
    assert ref["system"]["reader"]["rows"] == 78
    assert ref["framework"]["reader"]["rows"] == 4
