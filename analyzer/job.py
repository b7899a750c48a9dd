"""One job: the dataset plus its analyses, each computed once (HTA's ``TraceAnalysis``).

Why one object: the rules, the report and the dashboard read the same measurements (steps,
data-loader waits, communication, idle time...). Each is a typed method or property here,
memoised on the object under its own name and arguments, so no caller keeps a cache of its
own and no two layers compute the same analysis twice. The analyses themselves stay pure
functions in :mod:`analyzer.analyses`; this object only decides *when* they run.

It measures and never judges: thresholds, windows and patience belong to the rules.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from analyzer.ingest.dataset import JobDataset
    from analyzer.ingest.pipeline import ProgressFn
    from analyzer.sources.base import Source

F = TypeVar("F", bound=Callable[..., Any])


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
    """A job's dataset and its memoised analyses; ``baseline`` is the run it is compared with."""

    def __init__(self, dataset: JobDataset, summary: dict[str, Any] | None = None, *,
                 baseline: Job | None = None) -> None:
        self.dataset = dataset
        self.summary: dict[str, Any] = summary if summary is not None else {}
        self.baseline = baseline
        self._memo: dict[tuple[Any, ...], Any] = {}
        self._lock = threading.RLock()

    @classmethod
    def open(cls, source: Source, *, cache_dir: str | None = None, on_progress: ProgressFn | None = None,
             processes: bool = False) -> Job:
        """Ingest ``source`` (incrementally, through the cache) and wrap the dataset."""
        from analyzer.ingest import ingest

        result = ingest(source, cache_dir=cache_dir, on_progress=on_progress, processes=processes)
        return cls(result.dataset, result.summary)

    # -- the tables ---------------------------------------------------------------------
    @property
    def system_metrics(self) -> pa.Table:
        return self.dataset.table("system_metrics")

    @property
    def kineto_events(self) -> pa.Table:
        return self.dataset.table("kineto_events")

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
        from analyzer.analyses import steps

        return steps.dataloader_waits(self.dataset, self.steps())

    @memoised
    def rank_step_breakdown(self) -> pd.DataFrame:
        from analyzer.analyses import steps

        return steps.rank_step_breakdown(self.dataset, self.steps())

    @memoised
    def job_start_ns(self) -> int | None:
        from analyzer.analyses import steps

        return steps.job_start_ns(self.dataset)

    # -- Kineto traces (HTA's analyses) -------------------------------------------------
    @memoised
    def temporal_breakdown(self) -> pd.DataFrame:
        from analyzer.analyses import temporal

        return temporal.temporal_breakdown(self.kineto_events)

    @memoised
    def kernel_type_breakdown(self) -> pd.DataFrame:
        from analyzer.analyses import gpu_kernels

        return gpu_kernels.kernel_type_breakdown(self.kineto_events)

    @memoised
    def top_kernels(self, n: int) -> pd.DataFrame:
        from analyzer.analyses import gpu_kernels

        return gpu_kernels.top_kernels(self.kineto_events, n=n)

    @memoised
    def idle_time_breakdown(self) -> pd.DataFrame:
        from analyzer.analyses import idle_time

        return idle_time.idle_time_breakdown(self.kineto_events)

    @memoised
    def stream_idle_summary(self) -> pd.DataFrame:
        from analyzer.analyses import idle_time

        return idle_time.stream_idle_summary(self.kineto_events)

    @memoised
    def kernel_launch_summary(self) -> pd.DataFrame:
        from analyzer.analyses import kernel_launch

        return kernel_launch.kernel_launch_summary(kernel_launch.kernel_launch_stats(self.kineto_events))

    @memoised
    def gpu_annotation_breakdown(self) -> pd.DataFrame:
        from analyzer.analyses import annotations

        return annotations.gpu_annotation_breakdown(self.kineto_events)

    @memoised
    def communication_summary(self) -> pd.DataFrame:
        from analyzer.analyses import communication

        return communication.communication_summary(self.kineto_events)

    @memoised
    def collective_summary(self) -> pd.DataFrame:
        from analyzer.analyses import communication

        return communication.collective_summary(self.kineto_events)

    @memoised
    def allocator_memory_summary(self) -> pd.DataFrame:
        from analyzer.analyses import memory

        return memory.allocator_memory_summary(self.dataset)

    @memoised
    def allocator_memory_by_step(self) -> pd.DataFrame:
        from analyzer.analyses import memory

        return memory.allocator_memory_by_step(self.dataset)

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

    # -- summaries (report metrics; the baseline comparison reads the headline) -----------
    @memoised
    def node_metrics(self) -> list[dict[str, Any]]:
        """Per node: CPU and I/O-wait percentiles, and per GPU utilization and memory."""
        from analyzer.analyses import summary

        return summary.node_metrics(self)

    @memoised
    def rank_metrics(self) -> list[dict[str, Any]]:
        """Per rank: step times, data-loader stall, and the GPU breakdowns of its trace."""
        from analyzer.analyses import summary

        return summary.rank_metrics(self)

    @memoised
    def headline(self) -> dict[str, Any]:
        """The job's figures of merit (step time, throughput, GPU utilization, stalls...)."""
        from analyzer.analyses import summary

        return summary.headline(self, self.rank_metrics())

    # -- measurements the rules judge ----------------------------------------------------
    # The figures the rules compare with their thresholds, memoised like every analysis, so
    # no rule runs an analysis on the tables itself. Arguments say *what* is measured (a
    # window, the scan interval, a training mode); thresholds and patience stay in the rules.
    @memoised
    def gpu_utilization_scans(self, window: int, scan_interval_us: int) -> pd.DataFrame:
        """LowGPUUtilization's figures: per GPU and scan, p95 and p5 of the last ``window`` samples."""
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

        return system.gpu_memory_moving_average(self.metric_frame(("GPUMemoryUtilization",)), window=window)

    @memoised
    def gpu_load_balance_scans(self, scan_interval_us: int) -> pd.DataFrame:
        """LoadBalancing's figures: per node, GPU pair and scan, the distance of their
        utilization histograms so far."""
        from analyzer.analyses import system

        return system.gpu_load_balance_scans(self.metric_frame(("GPUUtilization",)), scan_interval_us=scan_interval_us)

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

        return steps.step_time_scans(self.steps(), mode=mode, scan_interval_us=scan_interval_us,
                                     first_ns=self.job_start_ns())

    @memoised
    def rank_busy(self) -> pd.DataFrame:
        """StragglerRank's figures: per rank, its steps and median own work and communication per step."""
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
    def system_series(self, dimension: str, *, nodes: tuple[str, ...] = (), window: tuple[float, float] | None = None,
                      per: str = "device", max_points: int | None = None) -> pd.DataFrame:
        """One system-metric dimension binned over ``window`` (epoch s) per node and device
        (``per="device"``) or per node (``per="node"``): min, mean and max per time bin,
        never the raw samples (columns: ``summary.SERIES_COLUMNS``)."""
        from analyzer.analyses import summary

        return summary.system_series(self.system_metrics, dimension, nodes=nodes, window=window, per=per,
                                     max_points=max_points)

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
            by_group.setdefault(None if src is None else (src[0], float(src[1] or 60.0)), []).append(node)
        groups: dict[tuple[str, float] | None, Job | None] = {}
        for key in sorted(by_group, key=lambda k: (k is not None, k or ("", 0.0))):
            if len(by_group) == 1:
                groups[key] = None
                continue
            sub = table.filter(pc.is_in(nodes, value_set=pa.array(by_group[key], pa.string())))
            groups[key] = Job(JobDataset(meta=self.dataset.meta, tables={"system_metrics": sub}))
        return groups
