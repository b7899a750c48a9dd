"""Memory that does not grow with the rank count (issue 12): the Kineto analyses are a map over
ranks, each rank read from its own cached parts, and a reduce.

Real traces only: the Kineto fixtures' NCCL rank trace and the bundled sample's traces,
renumbered as further ranks. The per-rank results must be exactly what the analyses give on
the merged table of all ranks (the definition they had before the map), the report path must
never build that table, and reopening the job from the cache must not parse anything again.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from analyzer.analyses import rank_map
from analyzer.ingest import ingest
from analyzer.ingest.dataset import JobDataset
from analyzer.job import Job
from analyzer.sources import open_source
from tests.support.fixtures import fixtures_dir

REPO = Path(__file__).resolve().parents[1]
SAMPLE_TRACES = sorted((REPO / "samples" / "sample-job").glob("*.pt.trace.json.gz"))


def _nccl_doc() -> dict:
    path = fixtures_dir("kineto", "nccl_2rank_rank0", "rank-0.json.gz")
    return json.loads(gzip.decompress(path.read_bytes()))


def _write(doc: dict, path: Path, rank: int, world: int) -> None:
    doc = {
        **doc,
        "distributedInfo": {
            **(doc.get("distributedInfo") or {}),
            "rank": rank,
            "world_size": world,
        },
    }
    path.write_bytes(gzip.compress(json.dumps(doc).encode(), 1))


def _one_step_name(doc: dict) -> dict:
    """The trace with every ProfilerStep annotation but those of its last step removed:
    alone it holds one step name, so HTA would not trim it, but in a job whose other ranks
    hold several it must be trimmed like them (the job's decision, not the rank's)."""
    steps = [e for e in doc["traceEvents"] if str(e.get("name", "")).startswith("ProfilerStep#")]
    assert len({e["name"] for e in steps}) >= 2
    last = max(steps, key=lambda e: e["ts"])["name"]
    keep = [
        e
        for e in doc["traceEvents"]
        if not str(e.get("name", "")).startswith("ProfilerStep#") or e["name"] == last
    ]
    return {**doc, "traceEvents": keep}


@pytest.fixture(scope="module")
def nccl_job(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Ranks 0 and 1: copies of the NCCL rank trace; rank 2: the same with one step name."""
    doc = _nccl_doc()
    root = tmp_path_factory.mktemp("nccl") / "job"
    root.mkdir()
    _write(doc, root / "rank-0.json.gz", 0, 3)
    _write(doc, root / "rank-1.json.gz", 1, 3)
    _write(_one_step_name(doc), root / "rank-2.json.gz", 2, 3)
    return root


@pytest.fixture(scope="module")
def single_job(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("single") / "job"
    root.mkdir()
    _write(_nccl_doc(), root / "rank-0.json.gz", 0, 1)
    return root


def _merged(ds: JobDataset) -> JobDataset:
    """The dataset as it was before the map: every rank's events in one in-memory table."""
    events = pa.concat_tables([ds.rank_events(r) for r in ds.kineto_ranks]).unify_dictionaries()
    return JobDataset(
        meta=ds.meta,
        tables={
            "kineto_events": events,
            "kineto_traces": ds.table("kineto_traces"),
            "steps": ds.table("steps"),
        },
    )


def _whole_job(ds: JobDataset) -> dict[str, pd.DataFrame]:
    """Each analysis of the map computed by its own function over the merged table."""
    from analyzer.analyses import annotations as gpu_annotations
    from analyzer.analyses import (
        communication,
        cross_rank,
        gpu_kernels,
        idle_time,
        kernel_launch,
        memory,
        parallelism,
        steps,
        temporal,
    )

    step_rows = steps.step_durations(ds)
    kineto_steps = step_rows[step_rows["source"] == "kineto"]
    arrivals = cross_rank.collective_arrivals(
        ds,
        traces=ds.table("kineto_traces"),
        steps=kineto_steps,
        flight_recorder=ds.table("window_fr_entries"),
    )
    return {
        "temporal_breakdown": temporal.temporal_breakdown(ds),
        "kernel_type_breakdown": gpu_kernels.kernel_type_breakdown(ds),
        "top_kernels": gpu_kernels.top_kernels(ds, n=15),
        "idle_time_breakdown": idle_time.idle_time_breakdown(ds),
        "stream_idle_summary": idle_time.stream_idle_summary(ds),
        "kernel_launch_summary": kernel_launch.kernel_launch_summary(
            kernel_launch.kernel_launch_stats(ds)
        ),
        "gpu_annotation_breakdown": gpu_annotations.gpu_annotation_breakdown(ds),
        "communication_summary": communication.communication_summary(ds),
        "collective_summary": communication.collective_summary(ds),
        "allocator_memory_summary": memory.allocator_memory_summary(ds),
        "allocator_memory_by_step": memory.allocator_memory_by_step(ds),
        "dataloader_waits": steps.dataloader_waits(ds, step_rows),
        "rank_step_breakdown": steps.rank_step_breakdown(ds, step_rows),
        "collective_arrivals": arrivals,
        "group_activity": parallelism.group_activity(ds, arrivals, kineto_steps),
        "fsdp_units": parallelism.fsdp_units(ds, arrivals, kineto_steps),
        "reduction_tails": parallelism.reduction_tails(ds, arrivals, kineto_steps),
        "stage_steps": parallelism.stage_steps(ds, arrivals, kineto_steps),
    }


def _job_method(job: Job, name: str) -> pd.DataFrame:
    """The job's frame of a map analysis: its method, or (the parallelism map's rows, which
    the job reduces further) the concatenated map output."""
    if name == "top_kernels":
        return job.top_kernels(15)
    method = getattr(job, name, None)
    return method() if method is not None else job._per_rank(name)


@pytest.mark.parametrize("batch_events", [1, rank_map.BATCH_EVENTS])
def test_map_over_ranks_equals_the_analyses_of_the_merged_table(
    nccl_job: Path, tmp_path: Path, batch_events: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One rank per task (rank 2 then needs the job's trimming decision: mapped twice) and
    the default batches: both exactly the analyses of the merged table."""
    monkeypatch.setattr(rank_map, "BATCH_EVENTS", batch_events)
    job = Job.open(open_source(str(nccl_job)), cache_dir=str(tmp_path))
    tasks = job._rank_tasks()
    assert [t.ranks for t in tasks] == ([(0,), (1,), (2,)] if batch_events == 1 else [(0, 1, 2)])
    assert job.kineto_ranks == [0, 1, 2]
    expected = _whole_job(_merged(job.dataset))
    assert set(expected) == set(rank_map.SUMMARY_NAMES)
    for name, frame in expected.items():
        got = _job_method(job, name)
        pd.testing.assert_frame_equal(got, frame, check_exact=True, obj=name)
    # the job trims rank 2's last step (it alone holds one step name): the rerun happened
    temporal = job.temporal_breakdown().set_index("rank")
    untrimmed = rank_map.rank_summary(
        rank_map.RankTask(ranks=(2,), events=job.rank_events(2))
    ).tables
    assert (
        untrimmed["temporal_breakdown"]["kernel_time_ns"].iloc[0]
        > temporal.loc[2, "kernel_time_ns"]
    )


def test_copies_of_one_rank_give_its_single_rank_results(
    nccl_job: Path, single_job: Path, tmp_path: Path
) -> None:
    many = Job.open(open_source(str(nccl_job)), cache_dir=str(tmp_path / "many"))
    one = Job.open(open_source(str(single_job)), cache_dir=str(tmp_path / "one"))
    for name in rank_map.SUMMARY_NAMES:
        mine = _job_method(one, name)
        # a DDP job has no FSDP units and no pipeline stages (its trace no allocator events)
        assert not mine.empty or name.startswith(("allocator", "fsdp_units", "stage_steps")), name
        for rank in (0, 1):
            copy = _job_method(many, name)
            copy = copy[copy["rank"] == rank].reset_index(drop=True)
            pd.testing.assert_frame_equal(
                copy.assign(rank=copy["rank"].astype(mine["rank"].dtype) * 0),
                mine.assign(rank=mine["rank"] * 0),
                obj=f"{name} rank {rank}",
            )


def test_report_path_never_builds_the_merged_events(nccl_job: Path, tmp_path: Path) -> None:
    from rules.ruleset import load_ruleset
    from stepscope.report.analyze import analyze

    result = analyze(str(nccl_job), load_ruleset(), cache_dir=str(tmp_path))
    assert result.report.metrics.ranks and len(result.report.metrics.ranks) == 3
    ds = result.job.dataset
    assert ds.rank_parts is not None and "kineto_events" not in ds.tables
    assert ds.merged_reads == 0, "the report read every rank's events into one table"
    assert not (
        Path(result.job.summary["cache"]["dir"]) / "merged" / "kineto_events.arrow"
    ).exists()
    one = result.job.rank_events(1)  # the dashboard's on-demand read: one rank, its parts only
    assert one.num_rows == result.job.rank_events(0).num_rows > 0  # rank 1 is a copy of rank 0
    assert set(one.column("rank").to_pylist()) == {1} and ds.merged_reads == 0
    assert (
        result.job.kineto_events.num_rows == ds.row_counts["kineto_events"] and ds.merged_reads == 1
    )


def test_reopen_from_cache_parses_nothing_and_reads_no_event(
    nccl_job: Path, tmp_path: Path
) -> None:
    first = ingest(open_source(str(nccl_job)), cache_dir=tmp_path)
    assert first.summary["files_read"] == 3 and not first.summary["cache"]["reopened"]
    again = ingest(open_source(str(nccl_job)), cache_dir=tmp_path)
    assert again.summary["files_read"] == 0 and again.summary["cache"]["reopened"]
    assert (
        again.summary["tables"] == first.summary["tables"]
        and again.summary["time_span"] == first.summary["time_span"]
    )
    assert again.dataset.rank_parts is not None and again.dataset.rank_parts.ranks == [0, 1, 2]
    assert again.dataset.merged_reads == 0
    before = Job(first.dataset).temporal_breakdown()
    pd.testing.assert_frame_equal(Job(again.dataset).temporal_breakdown(), before)


def test_worker_processes_give_the_same_summaries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ten ranks (the bundled sample's real traces, renumbered), two per task, mapped in
    worker processes and in this process: the same frames."""
    monkeypatch.setattr(rank_map, "BATCH_EVENTS", 1)
    if not SAMPLE_TRACES:
        pytest.skip("samples/sample-job has no traces")
    root = tmp_path / "job"
    root.mkdir()
    docs = [json.loads(gzip.decompress(p.read_bytes())) for p in SAMPLE_TRACES]
    for r in range(10):
        _write(docs[r % len(docs)], root / f"algo-1_rank{r}.{1000 + r}.pt.trace.json.gz", r, 10)
    pooled = Job.open(open_source(str(root)), cache_dir=str(tmp_path / "c"), processes=True)
    assert pooled.dataset.rank_parts is not None and pooled.dataset.rank_parts.processes
    rows = pooled.dataset.rank_parts.rows_by_rank
    assert len(rows) == 10 and all(n > 0 for n in rows.values())
    monkeypatch.setattr(rank_map, "BATCH_EVENTS", 2 * max(rows.values()))
    tasks = pooled._rank_tasks()
    assert len(tasks) >= 5 and pooled._map_pool(len(tasks)) is not None
    local = Job(
        JobDataset(
            meta=pooled.dataset.meta,
            tables=dict(pooled.dataset.tables),
            stats=pooled.dataset.stats,
            rank_parts=pooled.dataset.rank_parts.__class__(
                parts=pooled.dataset.rank_parts.parts,
                rows=pooled.dataset.rank_parts.rows,
                rows_by_rank=rows,
                span=pooled.dataset.rank_parts.span,
                processes=False,
            ),
        )
    )
    assert local._map_pool(len(tasks)) is None
    for name in rank_map.SUMMARY_NAMES:
        pd.testing.assert_frame_equal(_job_method(pooled, name), _job_method(local, name), obj=name)
    assert pooled.dataset.merged_reads == 0 and local.dataset.merged_reads == 0
