"""The bundled sample job and its baseline hold what their ``.INJECTED.json`` files say.

Both are real runs of samples/train_sample.py under ``stepscope run`` (samples/README.md).
These checks read the raw files, not stepscope's analyses, so a parser or analysis bug cannot
hide a recording that lost what it was recorded for; tests/test_rules_known_answers.py checks
what the rules make of them.
"""

from __future__ import annotations

import gzip
import json
import re
import statistics
from pathlib import Path
from typing import Any

import pytest

from analyzer.ingest import ingest
from analyzer.sources import open_source

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "sample-job"
BASELINE = REPO / "samples" / "sample-baseline"
JOBS = pytest.mark.parametrize("job", [SAMPLE, BASELINE], ids=["sample-job", "sample-baseline"])
#: what ``stepscope run`` writes (docs/collect.md, "Output"), and nothing else
LAUNCHER_FILES = re.compile(
    r"algo-1_rank\d+\.\d+\.pt\.trace\.json\.gz|system/incremental/\d{10}/\d+\.algo-1\.json"
)


def _truths(job: Path) -> dict[str, Any]:
    return json.loads(job.with_name(job.name + ".INJECTED.json").read_text())


def _traces(job: Path) -> dict[int, dict[str, Any]]:
    out = {}
    for p in sorted(job.glob("*.pt.trace.json.gz")):
        with gzip.open(p, "rt") as f:
            t = json.load(f)
        out[t["distributedInfo"]["rank"]] = t
    return out


def _durations_ms(trace: dict[str, Any], pred: Any) -> list[float]:
    return [e["dur"] / 1000 for e in trace["traceEvents"] if e.get("ph") == "X" and pred(e["name"])]


def _loader_ms(trace: dict[str, Any]) -> list[float]:
    return _durations_ms(
        trace, lambda n: n.startswith("enumerate(DataLoader)#") and n.endswith("__next__")
    )


@JOBS
def test_the_folder_is_the_launchers_output_and_ingest_reads_all_of_it(
    job: Path, tmp_path: Path
) -> None:
    files = sorted(p.relative_to(job).as_posix() for p in job.rglob("*") if p.is_file())
    assert files and all(LAUNCHER_FILES.fullmatch(f) for f in files), files
    summary = ingest(open_source(str(job)), cache_dir=tmp_path).summary
    assert summary["ignored"] == 0 and summary["skipped"] == []
    assert summary["files_ingested"] == len(files)
    assert (summary["nodes"], summary["ranks"]) == (1, 2)
    assert sum((job / f).stat().st_size for f in files) < 300_000  # small enough to ship


@JOBS
def test_every_rank_has_its_profiled_steps(job: Path) -> None:
    truths = _truths(job)
    traces = _traces(job)
    assert sorted(traces) == list(range(truths["world_size"]))
    for rank, t in traces.items():
        info = t["distributedInfo"]
        assert (info["rank"], info["world_size"], info["backend"]) == (
            rank,
            truths["world_size"],
            "gloo",
        )
        steps = sorted(
            int(e["name"].split("#")[1])
            for e in t["traceEvents"]
            if e.get("ph") == "X" and e["name"].startswith("ProfilerStep#")
        )
        assert steps == truths["profiled_steps"]
        names = {e.get("name") for e in t["traceEvents"]}
        assert {"gloo:all_reduce", "c10d::allreduce_", "[memory]"} <= names
        assert len(_loader_ms(t)) >= len(steps)
        assert truths["measured"][f"rank{rank}"]["profiler_steps"] == [
            f"ProfilerStep#{s}" for s in steps
        ]


def test_sample_traces_show_the_injected_slowdowns() -> None:
    injected = _truths(SAMPLE)["injected"]
    sleep, extra = (
        injected["dataloader_sleep_ms_per_batch"],
        injected["straggler_extra_ms_per_step"],
    )
    for rank, t in _traces(SAMPLE).items():
        assert sleep <= statistics.median(_loader_ms(t)) <= sleep * 1.05
        wait = statistics.median(_durations_ms(t, lambda n: n == "gloo:all_reduce"))
        if rank == injected["straggler_rank"]:
            assert wait < extra / 3
        else:  # the others wait for the straggler inside the collective
            assert extra * 0.9 <= wait <= extra * 1.5


def test_baseline_traces_show_no_slowdown() -> None:
    """Nothing injected: no rank waits long for data, and no rank waits for another as long
    as the sample's straggler makes it."""
    assert _truths(BASELINE)["injected"] == {}
    extra = _truths(SAMPLE)["injected"]["straggler_extra_ms_per_step"]
    for t in _traces(BASELINE).values():
        assert statistics.median(_loader_ms(t)) < 1.0
        assert statistics.median(_durations_ms(t, lambda n: n == "gloo:all_reduce")) < extra / 3


@JOBS
def test_system_metrics_span_the_run(job: Path) -> None:
    truths = _truths(job)
    files = sorted(job.glob("system/incremental/*/*.algo-1.json"))
    recs = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    assert {r["NodeId"] for r in recs} == {"algo-1"}
    dims = {(r["Type"], r["Dimension"] or r["Name"]) for r in recs}
    assert {
        ("cpu", "CPUUtilization"),
        ("cpu", "I/OWaitPercentage"),
        ("memory", "MemoryUsedPercent"),
    } <= dims
    assert not any(r["Type"] == "gpu" for r in recs)  # recorded on a CPU host
    mem = [r for r in recs if r["Name"] == "MemoryUsedPercent"]
    assert len(mem) == truths["measured"]["system_metrics"]["samples"] >= 5
    steps = [
        e["ts"] / 1e6 + t.get("baseTimeNanoseconds", 0) / 1e9  # Kineto: µs after its base
        for t in _traces(job).values()
        for e in t["traceEvents"]
        if e.get("ph") == "X" and e["name"].startswith("ProfilerStep#")
    ]
    stamps = [r["Timestamp"] for r in recs]
    assert min(stamps) < min(steps) and max(steps) < max(stamps)  # sampled before and after
