"""Every shared real fixture ingests, with the numbers its content implies."""

from __future__ import annotations

import gzip
import json
import shutil
from decimal import Decimal
from pathlib import Path

import pyarrow.compute as pc
import pytest

from analyzer.ingest import ingest
from analyzer.sources import open_source
from tests.support.fixtures import fixtures_dir


def _ingest(path: Path, tmp_path: Path):
    return ingest(open_source(str(path)), cache_dir=tmp_path / "cache")


def test_sagemaker_debugger_fixtures_ingest(tmp_path: Path) -> None:
    root = fixtures_dir("sagemaker-debugger")
    result = _ingest(root, tmp_path)
    s = result.summary
    assert s["skipped"] == []
    # Every JSON-lines record of the valid system-metrics files becomes one row.
    expected_lines = sum(
        sum(1 for line in p.read_text().splitlines() if line.strip())
        for p in root.glob("test_traces/system/incremental/*.json")
    )
    assert s["tables"]["system_metrics"] == expected_lines == 78
    assert s["tables"]["framework_events"] > 0
    assert s["tables"]["steps"] == 40  # Step:ModeKeys.TRAIN/EVAL in merge_traces
    sm = result.dataset.table("system_metrics")
    assert set(pc.unique(sm.column("node").combine_chunks().dictionary_decode()).to_pylist()) == {
        "algo-1"
    }
    dims = set(pc.unique(sm.column("dimension").combine_chunks().dictionary_decode()).to_pylist())
    assert {"CPUUtilization", "GPUUtilization", "GPUMemoryUtilization"} <= dims


def test_every_framework_trace_file_contributes(tmp_path: Path) -> None:
    root = fixtures_dir("sagemaker-debugger")
    result = _ingest(root, tmp_path)
    fe = result.dataset.table("framework_events")
    files = set(pc.unique(fe.column("file").combine_chunks().dictionary_decode()).to_pylist())
    on_disk = {
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and ("timeline" in p.name or p.name.endswith(".trace.json.gz"))
    }
    assert files == on_disk


def test_framework_times_align_with_file_start(tmp_path: Path) -> None:
    root = fixtures_dir("sagemaker-debugger", "test_traces")
    result = _ingest(root, tmp_path)
    fe = result.dataset.table("framework_events").to_pandas()
    # 1589930988000000_4487_0000_pythontimeline.json: start 1589930987655184 µs + ts 1008335 µs.
    row = fe[fe["file"].astype(str).str.contains("1589930988000000")].iloc[0]
    assert row["start_ns"] == (1589930987655184 + 1008335) * 1000
    assert row["dur_ns"] == 1_000_000 * 1000
    assert row["rank"] == 0 and row["os_pid"] == 4487


def test_corrupt_system_metrics_keeps_good_lines(tmp_path: Path) -> None:
    corrupt = fixtures_dir("sagemaker-debugger", "1591160699.algo-1.json.corrupt")
    job = tmp_path / "job" / "profiler-output" / "system" / "incremental" / "2020060305"
    job.mkdir(parents=True)
    shutil.copy(corrupt, job / "1591160699.algo-1.json")
    result = _ingest(tmp_path / "job", tmp_path)
    good = 0
    for line in corrupt.read_text().splitlines():
        try:
            json.loads(line)
            good += 1
        except json.JSONDecodeError:
            pass
    assert result.summary["tables"]["system_metrics"] == good == 13
    assert any("malformed line" in w["warning"] for w in result.summary["warnings"])


@pytest.mark.parametrize(
    "folder", ["nccl_2rank_rank0", "sampled_128rank", "resnet_single", "alexnet_single", "cpu_only"]
)
def test_kineto_fixtures_ingest(folder: str, tmp_path: Path) -> None:
    root = fixtures_dir("kineto", folder)
    reference = json.loads(fixtures_dir("kineto", "REFERENCE.json").read_text())[folder]
    result = _ingest(root, tmp_path)
    s = result.summary
    assert s["skipped"] == []
    assert result.dataset.ranks == reference["ranks"]
    traces = result.dataset.table("kineto_traces").to_pylist()
    for t in traces:
        meta = reference["meta"][str(t["rank"])]
        assert t["world_size"] == meta["distributedInfo"].get("world_size")
        assert t["backend"] == meta["distributedInfo"].get("backend")
        assert t["base_time_ns"] == meta["baseTimeNanoseconds"]
    # Every complete ('X') event of each file is kept.
    files = sorted(root.glob("*.gz"))
    n_x = 0
    for f in files:
        with gzip.open(f) as fh:
            doc = json.load(fh)
        n_x += sum(1 for e in doc["traceEvents"] if e.get("ph") == "X")
    ev = result.dataset.table("kineto_events")
    assert (
        pc.sum(pc.equal(ev.column("phase").combine_chunks().dictionary_decode(), "X")).as_py()
        == n_x
    )
    steps = result.dataset.table("steps").to_pandas()
    # HTA lists the ProfilerStep numbers it keeps; ours include every annotated step.
    assert set(reference["profiler_steps"]) <= set(steps["step"])


def test_kineto_base_time_is_honoured(tmp_path: Path) -> None:
    root = fixtures_dir("kineto", "nccl_2rank_rank0")
    # Decimal: the µs timestamps carry ns digits that float64 would round away.
    with gzip.open(next(root.glob("*.gz"))) as fh:
        doc = json.load(fh, parse_float=Decimal)
    base = doc["baseTimeNanoseconds"]
    first = next(e for e in doc["traceEvents"] if e.get("ph") == "X" and e.get("cat") == "kernel")
    result = _ingest(root, tmp_path)
    ev = result.dataset.table("kineto_events").to_pandas()
    kernels = ev[(ev["cat"] == "kernel") & (ev["correlation"] == first["args"]["correlation"])]
    assert len(kernels) == 1
    assert kernels.iloc[0]["start_ns"] == base + int(first["ts"] * 1000)


def test_nccl_collective_args(tmp_path: Path) -> None:
    result = _ingest(fixtures_dir("kineto", "nccl_2rank_rank0"), tmp_path)
    ev = result.dataset.table("kineto_events").to_pandas()
    comm = ev[ev["collective"].notna()]
    assert not comm.empty
    ar = comm[comm["collective"] == "allreduce"].iloc[0]
    assert ar["group_size"] == 2 and ar["dtype"] == "Float"
    assert ar["msg_bytes"] == max(ar["in_msg_nelems"], ar["out_msg_nelems"]) * 4


def test_reference_json_is_ignored_not_skipped(tmp_path: Path) -> None:
    result = _ingest(fixtures_dir("kineto"), tmp_path)
    assert result.summary["skipped"] == []
    assert result.summary["ignored"] >= 1
    assert len(result.dataset.ranks) == 3  # 0, 1 and 34 across the folders
