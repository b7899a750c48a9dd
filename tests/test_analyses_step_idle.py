"""``rank_step_breakdown``'s ``idle_ms`` (issue 14 item 10): the part of each step in which
none of the rank's profiled events runs, as a known answer from a small synthetic trace.

The trace is a PyTorch profiler file written here and read through ingest and the Job's
per-rank map, so the column comes out the way the report and the dashboard get it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from analyzer.job import Job
from analyzer.sources import open_source

PID, TID, GPU_STREAM = 4242, 4242, 7
BASE_US = 1_796_000_000_000_000  # an epoch in µs, as Kineto writes ts


def _x(cat: str, name: str, start_ms: float, dur_ms: float, **kw: Any) -> dict[str, Any]:
    return {
        "ph": "X",
        "cat": cat,
        "name": name,
        "pid": kw.pop("pid", PID),
        "tid": kw.pop("tid", TID),
        "ts": BASE_US + start_ms * 1000,
        "dur": dur_ms * 1000,
        **kw,
    }


def _gpu(cat: str, name: str, start_ms: float, dur_ms: float) -> dict[str, Any]:
    return _x(
        cat, name, start_ms, dur_ms, pid=0, tid=GPU_STREAM, args={"device": 0, "stream": GPU_STREAM}
    )


#: one 10 ms step; what runs in it (ms from the step's start):
#:   0-2 a CPU op, 1-1.5 a runtime call inside it, 2-3.5 a kernel,
#:   4-5 a data-loader wait, 6-7 a gloo all-reduce (communication), 8-8.5 a memcpy,
#:   9.8-10.8 a CPU op that runs over the step's end (clipped to 9.8-10).
#: Idle: 3.5-4, 5-6, 7-8, 8.5-9.8 = 0.5 + 1 + 1 + 1.3 = 3.8 ms. The step annotation and a
#: "## forward ##" range wrap the step and run nothing themselves.
EVENTS = [
    _x("user_annotation", "ProfilerStep#1", 0, 10),
    _x("user_annotation", "## forward ##", 0, 9),
    _x("cpu_op", "aten::mm", 0, 2),
    _x("cuda_runtime", "cudaLaunchKernel", 1, 0.5),
    _gpu("kernel", "volta_sgemm_128x64_nn", 2, 1.5),
    _x("user_annotation", "enumerate(DataLoader)#_SingleProcessDataLoaderIter.__next__", 4, 1),
    _x("user_annotation", "gloo:all_reduce", 6, 1),
    _gpu("gpu_memcpy", "Memcpy DtoH (Device -> Pageable)", 8, 0.5),
    _x("cpu_op", "aten::copy_", 9.8, 1),
    _x("user_annotation", "ProfilerStep#2", 10.5, 2),  # a second step: aten::copy_ runs on into it
    _x("cpu_op", "aten::add", 11.5, 0.5),
]


def _job(root: Path, tmp: Path) -> Job:
    doc = {
        "schemaVersion": 1,
        "distributedInfo": {"backend": "gloo", "rank": 0, "world_size": 1},
        "traceEvents": EVENTS,
        "baseTimeNanoseconds": 0,
    }
    root.mkdir(parents=True)
    (root / f"algo-1_rank0.{BASE_US}.pt.trace.json").write_text(json.dumps(doc))
    return Job.open(open_source(str(root)), cache_dir=str(tmp / "cache"))


@pytest.fixture(scope="module")
def breakdown(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    tmp = tmp_path_factory.mktemp("idle")
    return _job(tmp / "job", tmp).rank_step_breakdown().set_index("step")


def test_idle_is_the_step_minus_every_running_event(breakdown: pd.DataFrame) -> None:
    one = breakdown.loc[1]
    assert one["step_ms"] == pytest.approx(10.0)
    assert one["comm_ms"] == pytest.approx(1.0)
    assert one["dataloader_ms"] == pytest.approx(1.0)
    assert one["busy_ms"] == pytest.approx(8.0)  # unchanged: step - comm - data loading
    assert one["idle_ms"] == pytest.approx(3.8)


def test_idle_in_a_step_with_one_short_op(breakdown: pd.DataFrame) -> None:
    """Step 2 (10.5-12.5 ms): the op that started in step 1 covers 10.5-10.8 ms, aten::add
    11.5-12: idle 2 - 0.3 - 0.5 = 1.2 ms, and with no communication or data loading all of
    the step is own work."""
    two = breakdown.loc[2]
    assert two["busy_ms"] == pytest.approx(2.0)
    assert two["idle_ms"] == pytest.approx(1.2)


def test_idle_is_a_part_of_own_work(breakdown: pd.DataFrame) -> None:
    assert ((breakdown["idle_ms"] >= 0) & (breakdown["idle_ms"] <= breakdown["busy_ms"])).all()


def test_the_sample_stragglers_sleep_is_idle(tmp_path: Path) -> None:
    """The bundled sample's rank 1 sleeps 40 ms per step outside any profiled op (the injected
    straggler): its idle time is those 40 ms, rank 0's only a few."""
    sample = Path(__file__).resolve().parents[1] / "samples" / "sample-job"
    bd = Job.open(open_source(str(sample)), cache_dir=str(tmp_path)).rank_step_breakdown()
    idle = bd.groupby("rank")["idle_ms"].median()
    assert 38 < idle[1] < 45 and idle[0] < 5, idle
