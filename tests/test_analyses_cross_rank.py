"""Collectives matched across ranks (``analyzer.analyses.cross_rank``): the reduce on rows
with known answers, and the whole map and reduce on real traces (the bundled sample, the
shared NCCL fixtures). The 4-rank recorded known answers (culprit and cause per step, a
shifted clock) are in tests/test_cross_rank_recorded.py (they need torch)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from analyzer.analyses.cross_rank import (
    ARRIVAL_COLUMNS,
    CAUSES,
    culprit_summary,
    match_collectives,
    step_culprits,
)
from analyzer.job import Job
from analyzer.sources import open_source
from tests.support.fixtures import fixtures_dir

REPO = Path(__file__).resolve().parents[1]
MS = 1_000_000
T0 = 1_700_000_000_000_000_000


def _fixture_job(name: str, cache: Path) -> Job:
    return Job.open(open_source(str(fixtures_dir("kineto", name))), cache_dir=str(cache))


def _row(rank: int, step: int | None, position: int, **kw: Any) -> dict[str, Any]:
    row: dict[str, Any] = {c: 0 for c in ARRIVAL_COLUMNS}
    row.update(
        rank=rank,
        node=kw.pop("node", "algo-1"),
        group=kw.pop("group", "0"),
        group_source="trace",
        step=step,
        position=position,
        op=kw.pop("op", "allreduce"),
        msg_bytes=kw.pop("msg_bytes", 4096),
        device="gpu",
        enqueue_ns=None,
        seq=kw.pop("seq", None),  # a Flight Recorder sequence number, where one is known
    )
    row.update(kw)
    return row


def _step_rows(step: int, late: int, delay_ms: float, cause: str, ranks: int = 4) -> list[dict]:
    """One call in ``step``: every rank's lead-in is 10 ms of GPU compute; rank ``late``
    spends ``delay_ms`` more, in ``cause``, and arrives that much later."""
    base = T0 + step * 100 * MS
    rows = []
    for r in range(ranks):
        extra = int(delay_ms * MS) if r == late else 0
        arrival = base + 10 * MS + extra
        leads = {f"lead_{c}_ns": 0 for c in CAUSES}
        leads["lead_gpu_compute_ns"] = 10 * MS
        leads[f"lead_{cause}_ns"] += extra
        end = base + 10 * MS + int(delay_ms * MS) + MS
        rows.append(_row(r, step, 0, arrival_ns=arrival, end_ns=end, lead_start_ns=base, **leads))
    return rows


def test_the_last_rank_of_each_step_and_what_it_did_more() -> None:
    rows = _step_rows(1, late=2, delay_ms=30, cause="dataloader")
    rows += _step_rows(2, late=3, delay_ms=20, cause="host")
    rows += _step_rows(3, late=2, delay_ms=30, cause="dataloader")
    cross = match_collectives(pd.DataFrame(rows))
    assert cross.mismatches.empty and cross.unpaired == 0 and cross.skew_ns == 0
    assert list(cross.matches["last_rank"]) == [2, 3, 2]
    assert list(cross.matches["total_wait_ns"]) == [90 * MS, 60 * MS, 90 * MS]
    assert list(cross.matches["transfer_ns"]) == [MS, MS, MS]

    per_step = step_culprits(cross).set_index("step")
    assert list(per_step["culprit"]) == [2, 3, 2]
    assert list(per_step["cause"]) == ["dataloader", "host", "dataloader"]
    assert per_step.loc[2, "excess_host_ns"] == 20 * MS
    assert per_step.loc[2, "cause_share_pct"] == 100.0

    summary = culprit_summary(step_culprits(cross)).set_index("rank")
    assert list(summary.index) == [2, 3]  # the costliest first
    assert summary.loc[2, "steps_last"] == 2 and summary.loc[2, "steps"] == 3
    assert summary.loc[2, "others_wait_ns_per_step"] == 90 * MS


def test_a_clock_offset_is_estimated_per_host_and_corrected() -> None:
    rows = []
    for step, late in ((1, 2), (2, 0), (3, 1), (4, 3)):
        rows += _step_rows(step, late=late, delay_ms=5, cause="host")
    frame = pd.DataFrame(rows)
    shifted = frame["rank"] == 3  # rank 3 alone on another host, its clock 250 ms ahead
    frame.loc[shifted, "node"] = "algo-2"
    for col in ("arrival_ns", "end_ns", "lead_start_ns"):
        frame.loc[shifted, col] += 250 * MS
    cross = match_collectives(frame)
    offsets = cross.offsets.set_index("rank")["offset_ns"]
    assert offsets.to_dict() == {0: 0, 1: 0, 2: 0, 3: 250 * MS}
    assert cross.skew_ns == 250 * MS
    # corrected, the late rank of each step is the injected one, not the shifted clock
    assert list(cross.matches.sort_values("step")["last_rank"]) == [2, 0, 1, 3]


def test_disagreeing_ranks_are_reported_never_paired() -> None:
    rows = _step_rows(1, late=1, delay_ms=5, cause="host", ranks=2)
    rows += [
        _row(0, 2, 0, op="allreduce", arrival_ns=T0 + 300 * MS, end_ns=T0 + 301 * MS),
        _row(1, 2, 0, op="broadcast", arrival_ns=T0 + 300 * MS, end_ns=T0 + 301 * MS),
        _row(0, 3, 0, msg_bytes=4096, arrival_ns=T0 + 400 * MS, end_ns=T0 + 401 * MS),
        _row(1, 3, 0, msg_bytes=8192, arrival_ns=T0 + 400 * MS, end_ns=T0 + 401 * MS),
        _row(0, 4, 0, arrival_ns=T0 + 500 * MS, end_ns=T0 + 501 * MS),  # rank 1 never came
    ]
    cross = match_collectives(pd.DataFrame(rows))
    details = dict(zip(cross.mismatches["step"], cross.mismatches["detail"], strict=True))
    assert details == {
        2: "rank 0: allreduce (4096 B); rank 1: broadcast (4096 B)",
        3: "rank 0: allreduce (4096 B); rank 1: allreduce (8192 B)",
    }
    assert cross.unpaired == 1
    assert list(cross.matches["step"]) == [1]


def test_nothing_to_match_on_one_rank() -> None:
    cross = match_collectives(pd.DataFrame([_row(0, 1, 0, arrival_ns=T0, end_ns=T0 + MS)]))
    assert not cross.matched and step_culprits(cross).empty
    assert culprit_summary(step_culprits(cross)).empty


def test_bundled_sample_names_the_injected_straggler_every_step(tmp_path: Path) -> None:
    """The sample's rank 1 sleeps 40 ms a step between forward and backward (no profiled op
    there): it is the culprit of every step, for that long, in unrecorded time."""
    job = Job.open(open_source(str(REPO / "samples" / "sample-job")), cache_dir=str(tmp_path))
    cross = job.cross_rank()
    assert cross.groups == {"0": "pg_config"} and cross.skew_ns == 0  # one host, one clock
    assert len(cross.matches) == 8 and set(cross.matches["ranks"]) == {2}
    per_step = job.step_culprits()
    assert list(per_step["step"]) == list(range(2, 10))
    assert set(per_step["culprit"]) == {1} and set(per_step["cause"]) == {"unrecorded"}
    excess = per_step["excess_unrecorded_ns"] / MS
    assert excess.between(36, 48).all(), excess.tolist()
    waited = per_step["others_wait_ns"] / MS
    assert waited.between(30, 48).all(), waited.tolist()


def test_nccl_fixture_calls_match_across_the_ranks_present(tmp_path: Path) -> None:
    """Ranks 0 and 1 of a 128-rank NCCL job: no process group per call and several groups,
    so each op is its own sequence; every call of both profiled steps pairs up."""
    job = Job.open(
        open_source(str(fixtures_dir("kineto", "sampled_128rank"))), cache_dir=str(tmp_path)
    )
    arrivals = job.rank_summaries()["collective_arrivals"]
    assert set(arrivals["group_source"]) == {"order"}
    assert set(arrivals["device"]) == {"gpu"} and arrivals["enqueue_ns"].notna().all()
    assert (arrivals["enqueue_ns"] <= arrivals["arrival_ns"]).all()
    cross = job.cross_rank()
    assert set(cross.groups) == {"?:alltoall", "?:allreduce", "?:allgather"}
    assert cross.mismatches.empty and cross.unpaired == 0
    assert len(cross.matches) == 10 and set(cross.matches["ranks"]) == {2}
    assert sorted(job.step_culprits()["step"]) == [551, 552]
    # the lead-ins split the time before each call exactly
    leads = arrivals[[f"lead_{c}_ns" for c in CAUSES]].sum(axis=1)
    span = arrivals["arrival_ns"] - arrivals["lead_start_ns"]
    assert np.array_equal(leads.to_numpy(np.int64), span.to_numpy(np.int64))


def test_single_rank_nccl_trace_has_its_groups_but_nothing_to_match(tmp_path: Path) -> None:
    job = Job.open(
        open_source(str(fixtures_dir("kineto", "nccl_2rank_rank0"))), cache_dir=str(tmp_path)
    )
    arrivals = job.rank_summaries()["collective_arrivals"]
    assert set(arrivals["group_source"]) == {"trace"} and set(arrivals["group"]) == {"0"}
    assert not job.cross_rank().matched


@pytest.mark.parametrize("name", ["cpu_only", "resnet_single"])
def test_traces_without_collectives_give_empty_frames(name: str, tmp_path: Path) -> None:
    job = _fixture_job(name, tmp_path)
    assert job.step_culprits().empty and job.culprit_summary().empty


def test_the_critical_path_goes_through_the_late_ranks_unprofiled_time(tmp_path: Path) -> None:
    """The bundled sample: rank 1 arrives last at every step's collectives, late by time no
    profiled op covers (the culprit analysis's ``unrecorded``). The step's critical path
    across ranks runs on rank 1 in every step, through that time (the time between its
    training thread's top-level ops, less its waits), and is as long as the step."""
    job = Job.open(open_source(str(REPO / "samples" / "sample-job")), cache_dir=str(tmp_path))
    culprits = job.step_culprits().set_index("step")
    path = job.cross_rank_critical_path()
    assert all(path.ok.values()) and sorted(path.length_ns.index) == sorted(culprits.index)
    comp = path.composition
    steps = job.steps().query("source == 'kineto'")
    for step, sub in comp.groupby("step"):
        per_rank = sub.groupby("rank")["ns"].sum()
        assert per_rank.idxmax() == culprits.loc[step, "culprit"] == 1, (step, sub)
        late = sub[(sub["rank"] == 1) & (sub["category"] == "unrecorded")]["ns"].sum() / MS
        assert late >= 0.8 * culprits.loc[step, "others_wait_ns"] / MS, (step, late)
        longest = steps[steps["step"] == step]["dur_ns"].max()
        assert 0.97 * longest <= path.length_ns[step] <= 1.03 * longest, (step, longest)
