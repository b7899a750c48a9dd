"""The Kineto analyses as a map over ranks and a reduce (issue 12).

Why: every Kineto analysis is per rank (HTA's definitions group by rank), so a job's memory
need not grow with its rank count. :func:`rank_summary` is the map: a few ranks' events, read
from those ranks' own Parquet parts, go in; their rows of every per-rank analysis come out (a
few KB per rank). :func:`reduce_summaries` concatenates them in rank order: the same frames
the analyses give on the merged table of all ranks, without that table ever existing.

A task holds consecutive ranks up to about :data:`BATCH_EVENTS` events (:func:`batches`):
one pandas call costs the same on one rank's 30 k events as on 250 k, so batching takes the
per-call overhead out of the per-rank cost, while memory stays bounded by the batch, never
by the job.

The one decision that is the job's, not the rank's, is HTA's trimming of the last step: it
applies when the *job* holds two distinct ``ProfilerStep`` names. Each task first decides from
its own events (``trim=None``) and reports their step names; :func:`rerun_for_job` names the
few tasks whose own decision differs from the job's (ranks that saw one step name of a job
that saw more), which the caller maps again with ``trim=True``.

:func:`rank_summary` is a top-level function of picklable arguments, so any executor can run
it: this machine's process pool (``analyzer.job``) or, later, a Dask cluster (docs/scale.md).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import pandas as pd
import pyarrow as pa

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
from analyzer.analyses.gpu_kernels import RankEvents
from analyzer.ingest.dataset import JobDataset, RankParts
from analyzer.sources.base import JobMetadata

__all__ = [
    "SUMMARY_NAMES",
    "RankSummary",
    "RankTask",
    "empty_summary",
    "rank_summary",
    "reduce_summaries",
    "rerun_for_job",
]

#: the per-rank analyses the map computes (each a frame with a ``rank`` column)
SUMMARY_NAMES = (
    "temporal_breakdown", "kernel_type_breakdown", "top_kernels", "idle_time_breakdown",
    "stream_idle_summary", "kernel_launch_summary", "gpu_annotation_breakdown",
    "communication_summary", "collective_summary", "allocator_memory_summary",
    "allocator_memory_by_step", "dataloader_waits", "rank_step_breakdown",
    "collective_arrivals", "group_activity", "fsdp_units", "reduction_tails", "stage_steps",
)  # fmt: skip
#: frames built row by row: rebuilt from their records, so a column's type is inferred over
#: every rank's values (an unknown on one rank, a number on another) as it was on the merged table
_ROW_BUILT = ("allocator_memory_summary",)


#: events per map task (about 8 ranks of a 30 k-event trace, ~250 MB in a worker)
BATCH_EVENTS = 250_000


def batches(rows_by_rank: dict[int, int], target: int | None = None) -> list[tuple[int, ...]]:
    """Consecutive ranks grouped until a group holds ``target`` (:data:`BATCH_EVENTS`)
    events; a rank larger than that is a batch of its own."""
    target = BATCH_EVENTS if target is None else target
    out: list[tuple[int, ...]] = []
    group: list[int] = []
    held = 0
    for rank in sorted(rows_by_rank):
        if group and held + rows_by_rank[rank] > target:
            out.append(tuple(group))
            group, held = [], 0
        group.append(rank)
        held += rows_by_rank[rank]
    if group:
        out.append(tuple(group))
    return out


@dataclass(frozen=True)
class RankTask:
    """What the map needs for some ranks: where their events are and their small tables.

    ``parts``: the ranks' ``kineto_events`` Parquet parts (local paths; a distributed
    engine would pass URLs), rank by rank, each rank's in the order of their objects' keys;
    or ``events``, the ranks' events in memory. ``traces`` and ``steps`` are the ranks' rows
    of ``kineto_traces`` and ``steps``. ``trim``: the job's trimming decision (None: the
    task's own, see the module).
    """

    ranks: tuple[int, ...]
    parts: tuple[str, ...] = ()
    traces: pa.Table | None = None
    steps: pa.Table | None = None
    trim: bool | None = None
    events: pa.Table | None = None
    #: the ranks' Flight Recorder records (``window_fr_entries``), for the cross-rank map
    flight_recorder: pa.Table | None = None


@dataclass
class RankSummary:
    ranks: tuple[int, ...]
    trim: bool | None
    #: the distinct ProfilerStep names of the ranks' events
    step_names: frozenset[str]
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    events: int = 0


def _read_events(task: RankTask) -> pa.Table:
    if task.events is not None:
        return task.events
    return RankParts.read_parts(task.parts)


def _table(t: pa.Table | None, name: str) -> pa.Table:
    from analyzer.ingest.schemas import empty_table

    return empty_table(name) if t is None else t


def _base_times(traces: pa.Table) -> dict[int, int]:
    out: dict[int, int] = {}
    for row in traces.select(["rank", "base_time_ns"]).to_pylist():
        if row["base_time_ns"] is not None and row["rank"] is not None:
            out[int(row["rank"])] = int(row["base_time_ns"])
    return out


def rank_summary(task: RankTask) -> RankSummary:
    """The map: some ranks' events → their rows of every analysis in :data:`SUMMARY_NAMES`."""
    table = _read_events(task)
    traces = _table(task.traces, "kineto_traces")
    ds = JobDataset(
        meta=JobMetadata(name=f"ranks {', '.join(map(str, task.ranks))}", source="", kind="local"),
        tables={
            "kineto_events": table,
            "kineto_traces": traces,
            "steps": _table(task.steps, "steps"),
            "window_fr_entries": _table(task.flight_recorder, "window_fr_entries"),
        },
    )
    ev = RankEvents(table, trim=task.trim, base_ns=_base_times(traces))
    return RankSummary(
        ranks=task.ranks,
        trim=task.trim,
        step_names=frozenset(ev.step_names()),
        tables=_analyses(ev, ds),
        events=table.num_rows,
    )


def _analyses(ev: RankEvents, ds: JobDataset) -> dict[str, pd.DataFrame]:
    step_rows = steps.step_durations(ds)
    kineto_steps = step_rows[step_rows["source"] == "kineto"] if not step_rows.empty else None
    mem = memory.allocator_memory(ev)
    arrivals = cross_rank.collective_arrivals(
        ev,
        traces=ds.table("kineto_traces"),
        steps=kineto_steps,
        flight_recorder=ds.table("window_fr_entries"),
    )
    return {
        "temporal_breakdown": temporal.temporal_breakdown(ev),
        "kernel_type_breakdown": gpu_kernels.kernel_type_breakdown(ev),
        # every kernel, ranked: the reduce cuts the top n for whichever n is asked
        "top_kernels": gpu_kernels.top_kernels(ev, n=sys.maxsize),
        "idle_time_breakdown": idle_time.idle_time_breakdown(ev),
        "stream_idle_summary": idle_time.stream_idle_summary(ev),
        "kernel_launch_summary": kernel_launch.kernel_launch_summary(
            kernel_launch.kernel_launch_stats(ev)
        ),
        "gpu_annotation_breakdown": gpu_annotations.gpu_annotation_breakdown(ev),
        "communication_summary": communication.communication_summary(ev),
        "collective_summary": communication.collective_summary(ev),
        "allocator_memory_summary": memory.allocator_memory_summary(ds, mem),
        "allocator_memory_by_step": memory.allocator_memory_by_step(ds, mem),
        "dataloader_waits": (waits := steps.dataloader_waits(ds, step_rows)),
        "rank_step_breakdown": steps.rank_step_breakdown(ds, step_rows, waits),
        "collective_arrivals": arrivals,
        # per group and dimension (FSDP units, reduction tails, pipeline stages)
        **parallelism.parallelism_map(ev, arrivals, kineto_steps),
    }


def empty_summary() -> dict[str, pd.DataFrame]:
    """What every analysis gives for a job without Kineto events."""
    return rank_summary(RankTask(ranks=())).tables


def rerun_for_job(summaries: list[RankSummary]) -> list[tuple[int, ...]]:
    """Tasks (their ranks) whose own trimming decision differs from the job's (map them
    again with ``trim=True``): the job trims when its ranks together hold two step names."""
    names: set[str] = set()
    for s in summaries:
        names |= s.step_names
    if len(names) < 2:
        return []  # no task holds two names: every task's own decision (no trim) is the job's
    # A task with two or more names trims on its own; one with none has nothing to trim.
    return [s.ranks for s in summaries if s.trim is None and len(s.step_names) == 1]


def reduce_summaries(summaries: list[RankSummary]) -> dict[str, pd.DataFrame]:
    """The reduce: each analysis's per-task frames, concatenated in rank order."""
    ordered = sorted(summaries, key=lambda s: s.ranks)
    if not ordered:
        return empty_summary()
    out: dict[str, pd.DataFrame] = {}
    for name in SUMMARY_NAMES:
        frames = [s.tables[name] for s in ordered]
        full = [f for f in frames if not f.empty]
        if not full:
            out[name] = frames[0]
        elif name in _ROW_BUILT:
            out[name] = pd.DataFrame(
                [r for f in full for r in f.to_dict("records")], columns=frames[0].columns
            )
        elif len(full) == 1:
            out[name] = full[0]
        else:
            out[name] = pd.concat(full, ignore_index=True)
    return out
