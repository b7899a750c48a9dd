"""One job: the dataset plus its analyses, each computed once (HTA's ``TraceAnalysis``).

Why one object: the rules, the report and the dashboard read the same measurements (steps,
data-loader waits, communication, idle time...). Each is a typed method or property here,
memoised on the object under its own name and arguments, so no caller keeps a cache of its
own and no two layers compute the same analysis twice. The analyses themselves stay pure
functions in :mod:`analyzer.analyses`; this object only decides *when* they run.

It measures and never judges: thresholds, windows and patience belong to the rules.

The Kineto analyses are a map over ranks and a reduce (:mod:`analyzer.analyses.rank_map`):
each rank's events are read from that rank's cached parts alone, in worker processes when
the dataset allows them, so memory is set by the largest rank, not by how many there are.
No method on the report path reads every rank's events at once (``dataset.merged_reads``
counts the callers that do); :meth:`Job.rank_events` opens one rank's on demand.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from analyzer.analyses.critical_path import CrossRankCriticalPath
    from analyzer.analyses.cross_rank import CrossRank
    from analyzer.engines import DaskEngine
    from analyzer.ingest.dataset import JobDataset
    from analyzer.ingest.pipeline import ProgressFn
    from analyzer.sources.base import Source

F = TypeVar("F", bound=Callable[..., Any])

log = logging.getLogger("stepscope.analyses")

#: fewer map tasks than this run in this process (starting workers would cost more)
MAP_PROCESS_MIN_TASKS = 3


def memoised(fn: F) -> F:
    """Cache a Job method's result per (method, arguments) on the instance.

    Why not ``functools.cache``: that would keep every Job alive in a module-level cache.
    A lock per job keeps two dashboard sessions from computing the same analysis twice."""

    @functools.wraps(fn)
    def wrapper(self: Job, *args: Any, **kwargs: Any) -> Any:
        key = (fn.__name__, args, tuple(sorted(kwargs.items())))
        memo = self._memo
        if key in memo:
            return memo[key]
        with self._lock:
            if key not in memo:
                memo[key] = fn(self, *args, **kwargs)
            return memo[key]

    return cast(F, wrapper)


class Job:
    """A job's dataset and its memoised analyses; ``baseline`` is the run it is compared with.
    ``engine``: the Dask cluster the per-rank map runs on (None: this machine)."""

    def __init__(
        self,
        dataset: JobDataset,
        summary: dict[str, Any] | None = None,
        *,
        baseline: Job | None = None,
        engine: DaskEngine | None = None,
        group_names: dict[str, str] | None = None,
    ) -> None:
        self.dataset = dataset
        self.summary: dict[str, Any] = summary if summary is not None else {}
        self.baseline = baseline
        self.engine = engine
        #: the rule file's ``[parallelism] groups``: a process group's name or description
        #: -> its dimension, where the analysis cannot tell (set before the first analysis)
        self.group_names: dict[str, str] = dict(group_names or {})
        self._memo: dict[tuple[Any, ...], Any] = {}
        self._lock = threading.RLock()

    @classmethod
    def open(
        cls,
        source: Source,
        *,
        cache_dir: str | None = None,
        on_progress: ProgressFn | None = None,
        processes: bool = False,
        engine: DaskEngine | None = None,
        group_names: dict[str, str] | None = None,
    ) -> Job:
        """Ingest ``source`` (incrementally, through the cache) and wrap the dataset; with
        ``engine`` both the parse and the per-rank map run on that Dask cluster."""
        from analyzer.ingest import ingest

        result = ingest(
            source, cache_dir=cache_dir, on_progress=on_progress, processes=processes, engine=engine
        )
        return cls(result.dataset, result.summary, engine=engine, group_names=group_names)

    # -- the tables ---------------------------------------------------------------------
    @property
    def system_metrics(self) -> pa.Table:
        return self.dataset.table("system_metrics")

    @property
    def kineto_events(self) -> pa.Table:
        """Every rank's events in one table: memory grows with the rank count. The analyses
        never read it (they map over ranks); use :meth:`rank_events` for one rank."""
        return self.dataset.table("kineto_events")

    def rank_events(self, rank: int) -> pa.Table:
        """One rank's Kineto events, read from that rank's cached parts alone (what the
        dashboard opens on demand); empty for a rank without events."""
        return self.dataset.rank_events(rank)

    @property
    def kineto_ranks(self) -> list[int]:
        """The ranks with Kineto events, without reading any event."""
        return self.dataset.kineto_ranks

    @property
    def has_kineto_events(self) -> bool:
        return self.dataset.row_counts["kineto_events"] > 0

    @memoised
    def dimensions(self) -> frozenset[str]:
        """The system-metric dimensions (GPUUtilization, CPUUtilization...) the job recorded."""
        sm = self.system_metrics
        if sm.num_rows == 0:
            return frozenset()
        return frozenset(sm.column("dimension").combine_chunks().dictionary.to_pylist())

    def has_dimension(self, dimension: str) -> bool:
        return dimension in self.dimensions()

    # -- system metrics -----------------------------------------------------------------
    @memoised
    def metric_frame(self, dimensions: tuple[str, ...]) -> pd.DataFrame:
        """The samples of ``dimensions`` as a frame (node, device, dimension, t, value).

        One frame per set of dimensions, whatever their order; any set of the four the rules
        read is cut from one sorted frame of all four (sorting 10^7 rows once, not per set).
        """
        from analyzer.analyses import system

        dims = tuple(sorted(dimensions))
        if dims != dimensions:
            return self.metric_frame(dims)
        if set(dims) < set(system.MAIN_DIMENSIONS):
            base = self.metric_frame(tuple(sorted(system.MAIN_DIMENSIONS)))
            return base[base["dimension"].isin(dims)].reset_index(drop=True)
        return system.metric_frame(self.system_metrics, list(dims))

    @memoised
    def gpu_summary(self) -> pd.DataFrame:
        """Per node and GPU: utilization and memory percentiles, and the share of samples
        under ``system.LOW_UTIL_PCT`` % (the report's ``low_util_share_pct``)."""
        from analyzer.analyses import system

        frame = self.metric_frame(("GPUUtilization", "GPUMemoryUtilization"))
        return system.gpu_summary(frame, low_util_pct=system.LOW_UTIL_PCT)

    @memoised
    def heatmap(self, dimension: str, bins: int) -> pd.DataFrame:
        from analyzer.analyses import system

        return system.heatmap(self.metric_frame((dimension,)), bins=bins)

    # -- steps --------------------------------------------------------------------------
    @memoised
    def steps(self) -> pd.DataFrame:
        from analyzer.analyses import steps

        return steps.step_durations(self.dataset)

    @memoised
    def step_stats(self) -> pd.DataFrame:
        from analyzer.analyses import steps

        return steps.step_stats(self.steps())

    @memoised
    def dataloader_waits(self) -> pd.DataFrame:
        return self._per_rank("dataloader_waits")

    @memoised
    def rank_step_breakdown(self) -> pd.DataFrame:
        return self._per_rank("rank_step_breakdown")

    @memoised
    def job_start_ns(self) -> int | None:
        from analyzer.analyses import steps

        return steps.job_start_ns(self.dataset)

    # -- Kineto traces (HTA's analyses): a map over ranks, then a reduce -----------------
    @memoised
    def rank_summaries(self) -> dict[str, pd.DataFrame]:
        """Every per-rank analysis of :data:`analyzer.analyses.rank_map.SUMMARY_NAMES`, mapped
        over the ranks (a batch of ranks' events in memory at a time) and concatenated."""
        from analyzer.analyses import rank_map

        tasks = self._rank_tasks()
        if not tasks:
            return rank_map.empty_summary()
        summaries = {s.ranks: s for s in self._map(tasks)}
        again = rank_map.rerun_for_job(list(summaries.values()))
        if again:  # the job trims its last step where these ranks alone would not
            by_ranks = {t.ranks: t for t in tasks}
            redo = [dataclasses.replace(by_ranks[r], trim=True) for r in again]
            summaries.update((s.ranks, s) for s in self._map(redo))
        return rank_map.reduce_summaries(list(summaries.values()))

    def _rank_tasks(self) -> list[Any]:
        import pyarrow as pa
        import pyarrow.compute as pc

        from analyzer.analyses.rank_map import RankTask, batches

        ds = self.dataset
        traces, steps = ds.table("kineto_traces"), ds.table("steps")
        fr = ds.table("window_fr_entries")

        def rows_of(t: pa.Table, ranks: tuple[int, ...]) -> pa.Table:
            if not t.num_rows:
                return t
            return t.filter(
                pc.fill_null(
                    pc.is_in(t.column("rank"), value_set=pa.array(ranks, pa.int32())), False
                )
            )

        parts = ds.rank_parts
        if "kineto_events" not in ds.tables and parts is not None:
            rows = {r: parts.rows_by_rank.get(r, 0) for r in parts.ranks}
            return [
                RankTask(
                    ranks=b,
                    parts=tuple(p for r in b for p in parts.parts[r]),
                    traces=rows_of(traces, b),
                    steps=rows_of(steps, b),
                    flight_recorder=rows_of(fr, b),
                )
                for b in batches(rows)
            ]
        events = ds.table(
            "kineto_events"
        )  # a dataset held in memory (tests, a library caller): one task
        if events.num_rows == 0:
            return []
        return [
            RankTask(
                ranks=tuple(ds.kineto_ranks),
                events=events,
                traces=traces,
                steps=steps,
                flight_recorder=fr,
            )
        ]

    def _map(self, tasks: list[Any]) -> list[Any]:
        """Run the map over ``tasks``: on the Dask cluster when the job has one, else in worker
        processes when the dataset allows them and there are enough ranks, else here; a worker
        that dies costs a rerun here, not the job."""
        from analyzer.analyses.rank_map import rank_summary

        if self.engine is not None and any(
            t.events is None for t in tasks
        ):  # parts the workers read
            log.info(
                "analysing %d batches of ranks on the Dask cluster at %s",
                len(tasks),
                self.engine.address,
            )
            return self.engine.map(rank_summary, tasks)
        pool = self._map_pool(len(tasks))
        if pool is None:
            return [rank_summary(t) for t in tasks]
        from concurrent.futures.process import BrokenProcessPool

        try:
            with pool:
                return list(pool.map(rank_summary, tasks))
        except BrokenProcessPool:
            log.warning("an analysis worker process died; analysing the ranks in this process")
            return [rank_summary(t) for t in tasks]

    def _map_pool(self, n_tasks: int) -> Any:
        parts = self.dataset.rank_parts
        workers = min(parts.jobs, os.cpu_count() or 1) if parts is not None else 1
        if (
            parts is None
            or not parts.processes
            or workers < 2
            or n_tasks < MAP_PROCESS_MIN_TASKS
            or os.environ.get("STEPSCOPE_INGEST_PROCESSES", "1") == "0"
        ):
            return None
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        ctx = multiprocessing.get_context("forkserver")  # no fork of a threaded parent
        ctx.set_forkserver_preload(["analyzer.analyses.rank_map"])
        try:
            log.info("analysing %d batches of ranks in %d worker processes", n_tasks, workers)
            return ProcessPoolExecutor(max_workers=workers, mp_context=ctx)
        except (OSError, ValueError) as exc:  # e.g. no /dev/shm
            log.info("analysing in this process: cannot start worker processes (%s)", exc)
            return None

    def _per_rank(self, name: str) -> pd.DataFrame:
        frame: pd.DataFrame = self.rank_summaries()[name]
        return frame

    # -- hangs (the stall watchdog's dumps, PyTorch's Flight Recorder) ----------------------
    @memoised
    def hang_dumps(self) -> pd.DataFrame:
        """One row per hang dump (rank, when, how long it had stalled)."""
        frame: pd.DataFrame = self.dataset.table("hang_dumps").to_pandas()
        return frame

    @memoised
    def job_failures(self) -> pd.DataFrame:
        """Why the job failed or stopped (its status and its hosts' log tails, classified)."""
        from analyzer.analyses.failures import job_failures

        return job_failures(self.dataset)

    @memoised
    def collective_progress(self) -> pd.DataFrame:
        from analyzer.analyses.hangs import collective_progress

        return collective_progress(self.dataset)

    @memoised
    def hang_mismatches(self) -> pd.DataFrame:
        from analyzer.analyses.hangs import hang_mismatches

        return hang_mismatches(self.dataset)

    @memoised
    def rank_locations(self) -> pd.DataFrame:
        from analyzer.analyses.hangs import rank_locations

        return rank_locations(self.dataset)

    @memoised
    def collective_arrivals(self) -> pd.DataFrame:
        """Each rank's collective calls with their arrival and lead-in (the map's rows)."""
        return self._per_rank("collective_arrivals")

    @memoised
    def cross_rank(self) -> CrossRank:
        """Collectives matched across ranks (the reduce of the map's arrival rows)."""
        from analyzer.analyses.cross_rank import match_collectives

        return match_collectives(self.collective_arrivals())

    @memoised
    def step_culprits(self) -> pd.DataFrame:
        """Per step, the rank the others waited for and what it did more than them."""
        from analyzer.analyses.cross_rank import step_culprits

        return step_culprits(self.cross_rank())

    @memoised
    def culprit_summary(self) -> pd.DataFrame:
        from analyzer.analyses.cross_rank import culprit_summary

        return culprit_summary(self.step_culprits())

    def kineto_steps(self) -> pd.DataFrame:
        """The ranks' ProfilerStep windows (rank, step, start_ns as integers; dur_ns): what
        the critical path and the timeline export cut each rank's events by."""
        import numpy as np
        import pandas as pd

        cols = ["rank", "step", "start_ns", "dur_ns"]
        steps = self.steps()
        if steps.empty or "source" not in steps:
            return pd.DataFrame(columns=cols)
        st = steps[(steps["source"].astype(object) == "kineto") & steps["rank"].notna()]
        return st[cols].astype({"rank": np.int64, "step": np.int64, "start_ns": np.int64})

    @memoised
    def critical_path(self, step: int | None = None) -> pd.DataFrame:
        """Each rank's critical path per profiled step (HTA's definition; ``step``: that
        one only): rank, step, length_ns, category, ns, pct."""
        from analyzer.analyses.critical_path import step_paths
        from analyzer.analyses.steps import DATALOADER_EVENT_RE

        return step_paths(
            self.rank_events, self.kineto_steps(), data_loading=DATALOADER_EVENT_RE, step=step
        )

    @memoised
    def cross_rank_critical_path(self, step: int | None = None) -> CrossRankCriticalPath:
        """The step's critical path across ranks, joined at the matched collectives, with
        its composition per rank and category and the slack of each (``step``: that one)."""
        from analyzer.analyses.critical_path import cross_rank_steps
        from analyzer.analyses.steps import DATALOADER_EVENT_RE

        cross = self.cross_rank()
        return cross_rank_steps(
            self.rank_events,
            self.kineto_steps(),
            cross.calls,
            cross.matches,
            cross.offsets,
            data_loading=DATALOADER_EVENT_RE,
            step=step,
        )

    # -- parallelism: process groups by dimension, FSDP units, pipeline stages ------------
    @memoised
    def process_groups(self) -> pd.DataFrame:
        """Every process group with its parallel dimension and the evidence for it."""
        from analyzer.analyses.parallelism import classify_groups

        return classify_groups(
            self._per_rank("group_activity"),
            self.dataset.table("kineto_traces"),
            self.dataset.table("window_fr_groups"),
            names=self.group_names,
        )

    @memoised
    def group_summary(self) -> pd.DataFrame:
        """Per rank, group and op: time, exposed time, share of the step, sizes, bandwidth."""
        from analyzer.analyses.parallelism import group_summary

        return group_summary(self._per_rank("group_activity"), self.process_groups())

    @memoised
    def dimension_summary(self) -> pd.DataFrame:
        """Per parallel dimension: what its communication costs per step."""
        from analyzer.analyses.parallelism import dimension_summary

        return dimension_summary(self.group_summary())

    @memoised
    def fsdp_exposure(self) -> pd.DataFrame:
        """Per rank of an FSDP group: all-gather exposed in forward and backward, the tail."""
        from analyzer.analyses.parallelism import fsdp_exposure

        return fsdp_exposure(
            self._per_rank("fsdp_units"), self._per_rank("reduction_tails"), self.process_groups()
        )

    @memoised
    def pipeline_bubbles(self) -> pd.DataFrame:
        """Per pipeline stage: bubble per step against the schedule's ideal."""
        from analyzer.analyses.parallelism import pipeline_bubbles

        return pipeline_bubbles(self._per_rank("stage_steps"), self.process_groups())

    @memoised
    def pipeline_timeline(self, step: int) -> pd.DataFrame:
        """Step ``step`` of every pipeline stage over time: compute and bubble intervals
        (only the stages' own events are read)."""
        from analyzer.analyses.parallelism import stage_timeline

        stages = self.pipeline_bubbles()
        steps = self.steps()
        if stages.empty or steps.empty:
            return stage_timeline(self.dataset, {})
        mine = steps[
            (steps["source"].astype(str) == "kineto")
            & (steps["step"] == step)
            & steps["rank"].isin(stages["rank"])
        ]
        windows = {
            int(r.rank): (int(r.start_ns), int(r.start_ns) + int(r.dur_ns))
            for r in mine.itertuples(index=False)
        }
        import pyarrow as pa

        events = (
            pa.concat_tables([self.rank_events(r) for r in sorted(windows)]) if windows else None
        )
        return stage_timeline(events if events is not None else self.dataset, windows)

    @memoised
    def temporal_breakdown(self) -> pd.DataFrame:
        return self._per_rank("temporal_breakdown")

    @memoised
    def kernel_type_breakdown(self) -> pd.DataFrame:
        return self._per_rank("kernel_type_breakdown")

    @memoised
    def top_kernels(self, n: int) -> pd.DataFrame:
        every = self._per_rank("top_kernels")
        if every.empty:
            return every
        return every[every["position"] <= n].reset_index(drop=True)

    @memoised
    def idle_time_breakdown(self) -> pd.DataFrame:
        return self._per_rank("idle_time_breakdown")

    @memoised
    def stream_idle_summary(self) -> pd.DataFrame:
        return self._per_rank("stream_idle_summary")

    @memoised
    def kernel_launch_summary(self) -> pd.DataFrame:
        return self._per_rank("kernel_launch_summary")

    @memoised
    def gpu_annotation_breakdown(self) -> pd.DataFrame:
        return self._per_rank("gpu_annotation_breakdown")

    @memoised
    def communication_summary(self) -> pd.DataFrame:
        return self._per_rank("communication_summary")

    @memoised
    def collective_summary(self) -> pd.DataFrame:
        return self._per_rank("collective_summary")

    @memoised
    def allocator_memory_summary(self) -> pd.DataFrame:
        return self._per_rank("allocator_memory_summary")

    @memoised
    def allocator_memory_by_step(self) -> pd.DataFrame:
        return self._per_rank("allocator_memory_by_step")

    def step_timeline(self, step: int, ranks: tuple[int, ...]) -> pd.DataFrame:
        """One step's events on ``ranks`` (a drill-down: the last 32 asked for are kept)."""
        from analyzer.analyses import timeline

        key = ("step_timeline", (step, ranks), ())
        with self._lock:
            if key not in self._memo:
                drill = [k for k in self._memo if k[0] == "step_timeline"]
                for old in drill[: max(0, len(drill) - 31)]:
                    del self._memo[old]
                self._memo[key] = timeline.step_timeline(self.dataset, step, ranks=list(ranks))
            return cast("pd.DataFrame", self._memo[key])

    # -- the headline (the report's figures of merit; the baseline comparison reads it) ----
    @memoised
    def headline(self) -> dict[str, Any]:
        """The job's figures of merit (step time, throughput, GPU utilization, stalls...)."""
        from analyzer.analyses import headline

        exposed = (
            headline.exposed_pct_by_rank(self.communication_summary())
            if self.has_kineto_events
            else {}
        )
        return headline.headline(
            self.steps(),
            self.gpu_summary(),
            self.metric_frame(("GPUUtilization",)),
            headline.stall_pct_by_rank(self.dataloader_waits()),
            exposed,
        )

    # -- measurements the rules judge ----------------------------------------------------
    # The figures the rules compare with their thresholds, memoised like every analysis, so
    # no rule runs an analysis on the tables itself. Arguments say *what* is measured (a
    # window, the scan interval, a training mode); thresholds and patience stay in the rules.
    @memoised
    def gpu_utilization_scans(self, window: int, scan_interval_us: int) -> pd.DataFrame:
        """LowGPUUtilization's figures: per GPU and scan, p95 and p5 of the last ``window``
        samples."""
        from analyzer.analyses import system

        frame = self.metric_frame(("GPUUtilization",))
        return system.gpu_utilization_scans(frame, window=window, scan_interval_us=scan_interval_us)

    @memoised
    def system_snapshots(self, resource: str) -> pd.DataFrame:
        """CPUBottleneck's and IOBottleneck's figures: per node and snapshot, the idlest GPU
        and the highest sample of ``resource`` (``CPUUtilization`` or ``I/OWaitPercentage``)."""
        from analyzer.analyses import system

        return system.system_snapshots(self.metric_frame(("GPUUtilization", resource)))

    @memoised
    def gpu_memory_moving_average(self, window: int) -> pd.DataFrame:
        """GPUMemoryIncrease's figures: per GPU and sample, the rise of the ``window``-sample
        moving average of its memory."""
        from analyzer.analyses import system

        return system.gpu_memory_moving_average(
            self.metric_frame(("GPUMemoryUtilization",)), window=window
        )

    @memoised
    def gpu_load_balance_scans(self, scan_interval_us: int) -> pd.DataFrame:
        """LoadBalancing's figures: per node, GPU pair and scan, the distance of their
        utilization histograms so far."""
        from analyzer.analyses import system

        return system.gpu_load_balance_scans(
            self.metric_frame(("GPUUtilization",)), scan_interval_us=scan_interval_us
        )

    @memoised
    def utilization_p95_scans(self, window: int, scan_interval_us: int) -> pd.DataFrame:
        """BatchSize's figures: per GPU and scan, p95 of GPU utilization, GPU memory and the
        node's CPU over the last ``window`` samples."""
        from analyzer.analyses import system

        frame = self.metric_frame(("GPUUtilization", "GPUMemoryUtilization", "CPUUtilization"))
        return system.utilization_p95_scans(frame, window=window, scan_interval_us=scan_interval_us)

    @memoised
    def step_time_scans(self, mode: str | None, scan_interval_us: int) -> pd.DataFrame:
        """StepOutlier's figures: per rank and mode, at every scan from the job's start, the
        steps seen so far and their mean and standard deviation."""
        from analyzer.analyses import steps

        return steps.step_time_scans(
            self.steps(), mode=mode, scan_interval_us=scan_interval_us, first_ns=self.job_start_ns()
        )

    @memoised
    def rank_busy(self) -> pd.DataFrame:
        """StragglerRank's figures: per rank, its steps and median own work and communication
        per step."""
        from analyzer.analyses import steps

        return steps.rank_busy(self.rank_step_breakdown())

    @memoised
    def first_step_ns(self) -> int | None:
        """Start of the job's first training step (epoch ns); None without step annotations."""
        from analyzer.analyses import steps

        return steps.first_step_ns(self.dataset)

    @memoised
    def last_step_timeline_event_ns(self) -> int | None:
        """Start of the last event of the timelines that record steps (epoch ns): how long the
        training loop is known to have run, steps or not."""
        from analyzer.analyses import steps

        return steps.last_step_timeline_event_ns(self.dataset)

    @memoised
    def dataloader_parallelism(self, scan_interval_us: int) -> pd.DataFrame:
        """Dataloader's figures: per node and scan, the median number of data-loading
        processes running in the same second, and the node's cores."""
        from analyzer.analyses import steps

        return steps.dataloader_parallelism(self.dataset, scan_interval_us=scan_interval_us)

    # -- for the report and the dashboard -------------------------------------------------
    # Drill-downs the dashboard zooms into (a time window, some nodes): queries, not part
    # of the report, and not memoised here (the page caches each filter's answer).
    def system_series(
        self,
        dimension: str,
        *,
        nodes: tuple[str, ...] = (),
        window: tuple[float, float] | None = None,
        per: str = "device",
        max_points: int | None = None,
    ) -> pd.DataFrame:
        """One system-metric dimension binned over ``window`` (epoch s) per node and device
        (``per="device"``) or per node (``per="node"``): min, mean and max per time bin,
        never the raw samples (columns: ``summary.SERIES_COLUMNS``)."""
        from analyzer.analyses import summary

        return summary.system_series(
            self.system_metrics,
            dimension,
            nodes=nodes,
            window=window,
            per=per,
            max_points=max_points,
        )

    # -- where the system metrics came from ----------------------------------------------
    @memoised
    def metrics_source_groups(self) -> dict[tuple[str, float] | None, Job | None]:
        """The job's nodes split by where their system metrics came from: ``None`` for the
        job's own files, ``(source, resolution_s)`` for e.g. CloudWatch; each group's value
        is a Job of only those nodes' system metrics, or None when the group is the whole
        job (the rules judge a CloudWatch group with its counts scaled to its resolution)."""
        from analyzer.ingest.cloudwatch_metrics import node_sources

        table = self.system_metrics
        sources = node_sources(table)
        if not sources:
            return {None: None}
        import pyarrow as pa
        import pyarrow.compute as pc

        from analyzer.ingest.dataset import JobDataset

        nodes = table.column("node").cast(pa.string())
        by_group: dict[tuple[str, float] | None, list[str]] = {}
        for node in pc.unique(nodes).to_pylist():
            src = sources.get(node)
            by_group.setdefault(
                None if src is None else (src[0], float(src[1] or 60.0)), []
            ).append(node)
        groups: dict[tuple[str, float] | None, Job | None] = {}
        for key in sorted(by_group, key=lambda k: (k is not None, k or ("", 0.0))):
            if len(by_group) == 1:
                groups[key] = None
                continue
            sub = table.filter(pc.is_in(nodes, value_set=pa.array(by_group[key], pa.string())))
            groups[key] = Job(JobDataset(meta=self.dataset.meta, tables={"system_metrics": sub}))
        return groups

    # -- training health ------------------------------------------------------------------
    # TensorBoard scalars, SageMaker Debugger tensors and stepscope's health hooks, per
    # worker (analyzer.analyses.training); SageMaker Debugger's training rules judge them.
    @memoised
    def training_scalars(self) -> pd.DataFrame:
        from analyzer.analyses import training

        return training.training_scalars(self.dataset)

    @memoised
    def training_tensors(self) -> pd.DataFrame:
        from analyzer.analyses import training

        return training.training_tensors(self.dataset)

    @memoised
    def loss_series(self) -> pd.DataFrame:
        from analyzer.analyses import training

        return training.loss_series(self.training_scalars())

    @memoised
    def loss_trend(self) -> pd.DataFrame:
        from analyzer.analyses import training

        return training.loss_trend(self.loss_series())

    @memoised
    def gradient_norms(self) -> pd.DataFrame:
        from analyzer.analyses import training

        return training.gradient_norms(self.training_tensors())

    @memoised
    def update_ratios(self) -> pd.DataFrame:
        from analyzer.analyses import training

        return training.update_ratios(self.training_tensors())

    @memoised
    def activation_stats(self) -> pd.DataFrame:
        from analyzer.analyses import training

        return training.activation_stats(self.training_tensors())

    @memoised
    def nonfinite_steps(self) -> pd.DataFrame:
        from analyzer.analyses import training

        return training.nonfinite_steps(self.training_scalars(), self.training_tensors())

    # -- how the processes ended -----------------------------------------------------------
    @memoised
    def process_exits(self) -> pd.DataFrame:
        from analyzer.analyses import exits

        return exits.process_exits(self.dataset)

    def has_training_data(self) -> bool:
        """Whether the job recorded any training-health input (the rules' "no data" test)."""
        return bool(
            self.dataset.table("training_scalars").num_rows
            or self.dataset.table("training_tensors").num_rows
        )
