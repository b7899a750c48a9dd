"""The report as typed models: what the renderers and the dashboard pages read, and nothing else.

Why typed: every output reads the same fields by name (a typo is a mypy error, not a
``KeyError`` in one renderer), and pydantic gives the JSON round trip the dashboard's cache
of evaluated reports needs. :meth:`Report.document` is the public ``report.json`` contract
(docs/report-schema.md) *without* the verdict: ``--fail-on`` is the caller's policy, so the
JSON writer adds it. :class:`Charts` and a few identity fields (node names, the baseline's
per-rank figures) are for the HTML and the dashboard only and never reach ``report.json``.
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

import pandas as pd
from pydantic import (
    BaseModel,
    ConfigDict,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

from rules.base import Finding

SCHEMA_VERSION = 1


class Model(BaseModel):
    """A report part: unknown fields are an error, so a measurement added upstream cannot
    silently vanish from (or appear in) ``report.json``."""

    model_config = ConfigDict(extra="forbid")


# --------------------------------------------------------------------------- the job


class TimeSpan(Model):
    start_ns: int
    end_ns: int
    start: str
    end: str
    seconds: float


class SkippedFile(Model):
    path: str
    reason: str


class JobInfo(Model):
    name: str
    source: str
    kind: str
    status: str | None
    instance_type: str | None
    instance_count: int | None
    training_start_time: str | None
    training_end_time: str | None
    rule_statuses: list[dict[str, Any]]
    nodes: int
    ranks: int
    time_span: TimeSpan | None
    tables: dict[str, int]
    skipped_files: list[SkippedFile]
    #: not in report.json: the dashboard's node and rank filters
    node_names: list[str] = []
    rank_ids: list[int] = []


# --------------------------------------------------------------------------- verdicts


class Counts(Model):
    error: int
    warning: int
    info: int


class Summary(Model):
    """The findings counted by severity. The pass/fail verdict is not here: it depends on
    ``--fail-on``, which the caller applies (``report.json`` shows it beside these counts)."""

    counts: Counts


class FindingGroup(Model):
    """One rule's findings that share a pattern (same severity, same kind of message and
    evidence) over many places, said once: "all 64 ranks: 120.3–172.3 ms of communication not
    overlapped ... (worst: rank 0)". A finding no other matches is a group of one, so the
    groups cover every finding (:mod:`stepscope.report.grouping`)."""

    rule: str
    severity: str
    #: the finding's title for a group of one, else the rule's
    title: str
    #: "all 64 ranks", "ranks 3 and 17 of 64", "4 of 10 GPUs (algo-2, algo-3)"; a group of one:
    #: its finding's
    where: str
    #: one line: the figure's range over the group and its worst place; a group of one: its
    #: finding's
    message: str
    count: int
    #: indexes into ``Report.findings``, in numeric place order (rank 9 before rank 10)
    findings: list[int]
    #: each finding's ``where``, in the same order
    locations: list[str]
    #: index into ``Report.findings`` of the worst finding (by the rule's figure), else the first
    worst: int


class RuleRow(Model):
    rule: str
    title: str
    status: str  # fired | passed | skipped | error
    findings: int
    reason: str | None


class SageMakerVerdict(Model):
    """SageMaker's own rule report beside stepscope's verdict on the same rule."""

    rule: str
    sagemaker_triggered: int | None
    sagemaker_violations: int | None
    sagemaker_datapoints: int | None
    stepscope_fired: bool | None
    stepscope_findings: int
    stepscope_where: list[str]
    agree: bool | None
    file: str

    def labels(self) -> tuple[str, str]:
        """The two verdicts in words, as every output shows them: ("triggered" | "not
        triggered", "fired" | "passed" | "–" when stepscope could not judge)."""
        theirs = "triggered" if self.sagemaker_triggered else "not triggered"
        mine = (
            "–" if self.stepscope_fired is None else ("fired" if self.stepscope_fired else "passed")
        )
        return theirs, mine


# --------------------------------------------------------------------------- cost


class FindingCost(Model):
    """What one finding loses over the run (:mod:`stepscope.report.cost`)."""

    #: index into ``Report.findings``
    finding: int
    rule: str
    #: GPUs' worth of time lost: lost GPU-seconds per second of the profiled window
    gpus: float
    #: how the rule counted it, in words
    basis: str
    #: over the run (``Cost.label`` says whether extrapolated)
    gpu_hours: float
    #: None: no price known
    usd: float | None


class Cost(Model):
    """What the findings cost: the job's instances, the price and where each came from, the
    run against the profiled window, and each finding's GPU-hours and dollars."""

    instance_type: str | None
    #: --instance-type | DescribeTrainingJob | resourceconfig.json
    instance_type_source: str | None
    instance_count: int | None
    instance_count_source: str | None
    gpus_per_instance: int | None
    #: price table | ranks per node in the data
    gpus_source: str | None
    region: str | None
    #: USD per instance-hour, on demand
    price_per_hour: float | None
    #: --price-per-hour | price table (<region>, taken <date>)
    price_source: str | None
    window_s: float | None
    run_s: float | None
    #: TrainingTimeInSeconds | training start to end | None (run unknown: the window only)
    run_source: str | None
    extrapolated: bool
    #: "extrapolated from the profiled window (X s) to the run (Y s, ...)"
    label: str
    run_gpu_hours: float | None
    run_usd: float | None
    lost_gpu_hours: float
    lost_usd: float | None
    #: the findings' lost GPU time as a share of the run's (capped at 100: findings overlap)
    recoverable_pct: float | None
    #: why dollars are missing ("no price known for ml.x; --price-per-hour sets one")
    note: str | None
    findings: list[FindingCost]


# --------------------------------------------------------------------------- metrics


class Headline(Model):
    gpu_util_p50: float | None
    gpu_util_p95: float | None
    gpus: int
    dataloader_stall_pct: float | None
    exposed_comm_pct: float | None
    step_time_mean_ms: float | None
    step_time_std_ms: float | None
    steps_per_s: float | None


class UtilPct(Model):
    p5: float | None
    p50: float | None
    p95: float | None
    mean: float | None


class MemoryPct(Model):
    p5: float | None
    p50: float | None
    p95: float | None


class GpuMetrics(Model):
    gpu: str
    samples: int
    util_pct: UtilPct
    memory_pct: MemoryPct
    low_util_share_pct: float | None


class MetricsSource(Model):
    """Where a node's system metrics came from (:mod:`stepscope.report.sources`): a verdict on
    0.5 s samples and one on one-minute averages are not the same evidence."""

    source: str  # collector | debugger-format | cloudwatch
    label: str  # stepscope collector | Debugger-format files | CloudWatch
    #: seconds between samples: CloudWatch's period, the files' median sampling interval
    resolution_s: float | None

    def text(self) -> str:
        """``"CloudWatch at 60 s"``, ``"stepscope collector at 0.5 s"``: every output's words."""
        return (
            self.label if self.resolution_s is None else f"{self.label} at {self.resolution_s:g} s"
        )


class NodeMetrics(Model):
    node: str
    cpu_util_p50: float | None
    cpu_util_p95: float | None
    io_wait_p95: float | None
    gpus: list[GpuMetrics]
    #: None only for a node the system metrics do not name
    metrics_source: MetricsSource | None = None


class TemporalPct(Model):
    compute: float | None
    non_compute: float | None
    idle: float | None


class KernelSharePct(Model):
    computation: float | None
    communication: float | None
    memory: float | None
    overlapping: dict[str, float | None]


class IdlePct(Model):
    host_wait: float | None
    kernel_wait: float | None
    other: float | None


class KernelLaunches(Model):
    kernels: int
    cpu_launch_mean_us: float | None
    gpu_duration_mean_us: float | None
    launch_delay_mean_us: float | None
    launch_delay_max_us: float | None
    short_kernels: int
    runtime_outliers: int
    launch_delay_outliers: int


class GpuAnnotation(Model):
    name: str
    count: int
    total_ms: float | None
    mean_ms: float | None
    pct: float | None


class AllocatorMemory(Model):
    device: str
    peak_allocated_mib: float | None
    peak_reserved_mib: float | None
    steps: int
    growth_per_step_mib: float | None


class RankMetrics(Model):
    rank: int
    node: str | None
    steps: int
    step_time_mean_ms: float | None
    step_time_median_ms: float | None
    step_time_p95_ms: float | None
    step_time_std_ms: float | None
    steps_per_s: float | None
    dataloader_stall_pct: float | None
    comm_comp_overlap_pct: float | None
    exposed_comm_pct: float | None
    temporal_pct: TemporalPct | None
    kernel_share_pct: KernelSharePct | None
    idle_breakdown_pct: IdlePct | None
    kernel_launches: KernelLaunches | None
    gpu_annotations: list[GpuAnnotation]
    allocator_memory: list[AllocatorMemory]
    #: only for ranks the communication summary covers (report.json has no key otherwise)
    comm_share_pct: float | None = None

    @model_serializer(mode="wrap")
    def _omit_unmeasured(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        out: dict[str, Any] = handler(self)
        if "comm_share_pct" not in self.model_fields_set:
            out.pop("comm_share_pct", None)
        return out


class ProcessGroup(Model):
    """A process group and the parallel dimension it carries (docs/analyses.md, parallelism)."""

    group: str
    desc: str | None
    ranks: list[int]
    size: int
    ops: list[str]
    dimension: str  # data | fsdp | tensor | pipeline | expert | context | other
    evidence: str


class DimensionCost(Model):
    """What one parallel dimension's communication costs per step (mean over its ranks)."""

    dimension: str
    label: str
    groups: list[str]
    ranks: int
    time_ms_per_step: float | None
    exposed_ms_per_step: float | None
    share_pct: float | None
    worst_rank: int
    worst_exposed_ms_per_step: float | None


class PipelineStage(Model):
    """One pipeline stage's bubble per step against the schedule's ideal."""

    rank: int
    group: str
    stage: int | None
    stages: int
    microbatches: float | None
    microbatch_source: str  # schedule | receives
    steps: int
    step_ms: float | None
    compute_ms: float | None
    bubble_ms: float | None
    bubble_pct: float | None
    ideal_pct: float | None
    excess_points: float | None
    slowest: bool


class Parallelism(Model):
    """Communication by parallel dimension: the groups, each dimension's cost, the stages."""

    groups: list[ProcessGroup]
    dimensions: list[DimensionCost]
    pipeline: list[PipelineStage]


class Metrics(Model):
    headline: Headline
    nodes: list[NodeMetrics]
    ranks: list[RankMetrics]
    #: None only in a report cached before the section existed
    parallelism: Parallelism | None = None


class Comparison(Model):
    """One headline figure against the baseline run (BaselineRegression's comparison)."""

    metric: str
    label: str
    baseline: float | None
    current: float | None
    change_pct: float | None
    change_points: float | None
    tolerance: int | float
    tolerance_kind: str  # pct_up | pct_down | points_up | points_down
    regressed: bool


class Baseline(Model):
    source: str
    job: str
    headline: Headline
    comparisons: list[Comparison]
    #: not in report.json: what the dashboard's Compare page shows of the baseline run
    ranks: list[RankMetrics] = []
    step_ms: list[float | None] = []


# --------------------------------------------------------------------------- training health


class TrainingWorker(Model):
    """One training process's record (node and rank, Debugger worker or TensorBoard run)."""

    worker: str
    first_step: int | None
    last_step: int | None
    #: distinct steps with any training record
    steps: int
    #: the training loss's tag and its last finite value (None: no finite training loss)
    loss_tag: str | None
    last_loss: float | None
    last_loss_step: int | None
    eval_loss_tag: str | None
    last_eval_loss: float | None
    #: layers (parameters) with a gradient norm
    gradient_layers: int
    #: the first step where a loss, scalar or tensor statistic stopped being a number
    first_nonfinite_step: int | None


class TrainingRuleVerdict(Model):
    """A training rule's status and which chart of the section shows its findings."""

    rule: str
    status: str  # fired | passed | skipped | error
    #: indexes into ``Report.findings``
    findings: list[int]
    #: loss | gradient_norms | update_ratios | activations
    chart: str


class TrainingHealth(Model):
    """The "Training health" section: per worker what was recorded and how the training
    rules judged it. Empty ``workers`` with ``note``: the job recorded no training data."""

    workers: list[TrainingWorker]
    rules: list[TrainingRuleVerdict]
    #: one line: what fills the section (None when it has data)
    note: str | None


# --------------------------------------------------------------------------- chart series


class Columns(Model):
    """A table as one typed list per column: compact in JSON, one :meth:`frame` away from
    a chart. Subclasses declare the columns; all lists have the same length."""

    #: the pandas dtype a column gets back in :meth:`frame` where the lists alone would not say
    dtypes: ClassVar[dict[str, str]] = {}

    @classmethod
    def of(cls, df: pd.DataFrame) -> Self:
        """The declared columns of ``df``; missing values (NaN, NA) become None."""
        cols: dict[str, list[Any]] = {}
        for name in cls.model_fields:
            if name not in df and len(df) == 0:
                cols[name] = []  # an empty analysis result may come without its columns
                continue
            s = df[name]
            values = s.tolist()
            cols[name] = (
                [None if v is None or v is pd.NA or v != v else v for v in values]
                if s.hasnans
                else values
            )
        return cls.model_validate(cols)

    @model_validator(mode="after")
    def _same_length(self) -> Self:
        lengths = {len(getattr(self, name)) for name in type(self).model_fields}
        if len(lengths) > 1:
            raise ValueError(
                f"{type(self).__name__}: columns of different lengths {sorted(lengths)}"
            )
        return self

    def frame(self) -> pd.DataFrame:
        """The table as a DataFrame (missing values NaN), for a page to filter and plot."""
        df = pd.DataFrame({name: getattr(self, name) for name in type(self).model_fields})
        return df.astype(self.dtypes) if self.dtypes and len(df) else df

    def __len__(self) -> int:
        first = next(iter(type(self).model_fields))
        return len(getattr(self, first))

    @property
    def empty(self) -> bool:
        return len(self) == 0


class Heatmap(Model):
    """GPU utilization per node × GPU (``rows``) and time bin (``bin_start_s``, epoch s): the
    mean of each bin, None where a GPU has no sample in it."""

    rows: list[str]
    bin_start_s: list[float]
    values: list[list[float | None]]


class Steps(Columns):
    """Every step of every rank, in the order of the steps analysis (rank None: a framework
    step no rank was named for)."""

    rank: list[int | None]
    step: list[int]
    source: list[str]
    start_ns: list[int]
    dur_ms: list[float | None]


class DataloaderWaits(Columns):
    rank: list[int]
    step: list[int]
    wait_ms: list[float | None]


class StepBreakdown(Columns):
    """Per rank and step: own work, communication (incl. waiting for others), data loading,
    and idle (the part of own work in which none of the rank's profiled events runs)."""

    rank: list[int]
    step: list[int]
    busy_ms: list[float | None]
    comm_ms: list[float | None]
    dataloader_ms: list[float | None]
    idle_ms: list[float | None]


class StepMemory(Columns):
    """Allocator memory live at each step's start (device -1: the CPU)."""

    rank: list[int]
    device: list[int]
    step: list[int]
    allocated_at_start_bytes: list[int | None]

    dtypes: ClassVar[dict[str, str]] = {"allocated_at_start_bytes": "float64"}


class GpuTime(Columns):
    """Per rank GPU time over the profiled window (HTA's temporal breakdown) and, where the
    rank communicated, its communication time and the part not overlapped by computation."""

    rank: list[int]
    compute_time_ns: list[int]
    non_compute_time_ns: list[int]
    idle_time_ns: list[int]
    comm_time_ns: list[int | None]
    exposed_comm_ns: list[int | None]

    dtypes: ClassVar[dict[str, str]] = {"comm_time_ns": "float64", "exposed_comm_ns": "float64"}


class KernelTypes(Columns):
    rank: list[int]
    kernel_type: list[str]
    pct: list[float | None]


class IdleTime(Columns):
    """Per rank, CUDA stream and cause (host_wait | kernel_wait | other): GPU idle time."""

    rank: list[int]
    stream: list[int]
    idle_category: list[str]
    idle_time_ns: list[int]


class GpuLabels(Columns):
    """GPU time per ``record_function`` label and rank (HTA's GPU user annotations)."""

    rank: list[int]
    name: list[str]
    count: list[int]
    total_ns: list[int]


class TopKernels(Columns):
    rank: list[int]
    kernel_class: list[str]
    library: list[str]
    name: list[str]
    count: list[int]
    total_ns: list[int]
    mean_ns: list[float | None]
    pct_of_class: list[float | None]
    pct_of_gpu: list[float | None]


class Collectives(Columns):
    """Per rank and collective: calls, time and (where sizes are recorded) bandwidth."""

    rank: list[int]
    device: list[str]
    library: list[str]
    collective: list[str]
    calls: list[int]
    total_ns: list[int]
    mean_ns: list[float | None]
    max_ns: list[int]
    sized_calls: list[int]
    total_bytes: list[float | None]
    mean_bytes: list[float | None]
    min_bytes: list[float | None]
    max_bytes: list[float | None]
    algbw_gbps: list[float | None]
    busbw_gbps: list[float | None]

    dtypes: ClassVar[dict[str, str]] = {
        c: "float64"
        for c in ("total_bytes", "mean_bytes", "min_bytes", "max_bytes", "algbw_gbps", "busbw_gbps")
    }


class StepCulprits(Columns):
    """Per step, from collectives matched across ranks: the rank the others waited for
    (``culprit``), their wait in rank-nanoseconds, and what that rank did more than them
    before the collectives (``excess_<cause>_ns``; ``cause``: the largest)."""

    step: list[int]
    culprit: list[int]
    others_wait_ns: list[float]
    calls_last: list[int]
    calls: list[int]
    ranks: list[int]
    excess_gpu_compute_ns: list[float]
    excess_gpu_memory_ns: list[float]
    excess_dataloader_ns: list[float]
    excess_host_ns: list[float]
    excess_communication_ns: list[float]
    excess_unrecorded_ns: list[float]
    cause: list[str | None]
    cause_share_pct: list[float | None]

    dtypes: ClassVar[dict[str, str]] = {"cause_share_pct": "float64"}


class TrainingLoss(Columns):
    """Loss per worker, tag and step (binned on steps where a series is long)."""

    worker: list[str]
    tag: list[str]
    phase: list[str]  # train | eval
    step: list[float]
    value: list[float | None]

    dtypes: ClassVar[dict[str, str]] = {"value": "float64"}


class LayerHeatmap(Model):
    """One worker's gradient norm per layer (``rows``) and step bin (``steps``: the bin's
    mean step): the bin's mean norm, None where the layer has no finite value in it."""

    worker: str
    rows: list[str]
    steps: list[float]
    values: list[list[float | None]]


class UpdateRatioSeries(Columns):
    worker: list[str]
    name: list[str]
    step: list[float]
    ratio: list[float | None]

    dtypes: ClassVar[dict[str, str]] = {"ratio": "float64"}


class ActivationSeries(Columns):
    """Per worker, layer and step (bin): the share of zero outputs and the outputs' range."""

    worker: list[str]
    name: list[str]
    module: list[str | None]
    step: list[float]
    zero_fraction: list[float | None]
    min: list[float | None]
    max: list[float | None]

    dtypes: ClassVar[dict[str, str]] = {
        "zero_fraction": "float64",
        "min": "float64",
        "max": "float64",
    }


class LayerSummary(Columns):
    """Per worker, layer and measurement (gradient norm, update ratio, zero fraction): the
    steps it covers and its last, smallest and largest finite value (from the whole series,
    not the binned one)."""

    worker: list[str]
    layer: list[str]
    measure: list[str]  # gradient_norm | update_ratio | zero_fraction
    module: list[str | None]
    points: list[int]
    first_step: list[int]
    last_step: list[int]
    last: list[float | None]
    min: list[float | None]
    max: list[float | None]

    dtypes: ClassVar[dict[str, str]] = {"last": "float64", "min": "float64", "max": "float64"}


class TrainingCharts(Model):
    loss: TrainingLoss
    gradient_norms: list[LayerHeatmap]
    update_ratios: UpdateRatioSeries
    activations: ActivationSeries
    layers: LayerSummary


class Charts(Model):
    """The series the HTML report and the dashboard pages chart (whole job; the dashboard's
    zoomable system-metric series and step timelines are queries of the Job instead).

    ``top_kernels`` and ``collectives`` are None when the report was built without its
    detail tables (``stepscope report``: no file shows them, and on a large trace they
    cost a second of their own)."""

    gpu_heatmap: Heatmap | None
    steps: Steps
    dataloader_waits: DataloaderWaits
    step_breakdown: StepBreakdown
    step_memory: StepMemory
    gpu_time: GpuTime
    kernel_types: KernelTypes
    idle_time: IdleTime
    gpu_labels: GpuLabels
    top_kernels: TopKernels | None = None
    collectives: Collectives | None = None
    #: who held the others back in each step (None: a report cached before it existed)
    culprits: StepCulprits | None = None
    #: the training-health section's series (None: a report cached before it existed)
    training: TrainingCharts | None = None


# --------------------------------------------------------------------------- the report

#: what :meth:`Report.document` leaves out: the outputs' extras, not the public contract
NOT_IN_DOCUMENT: dict[str, Any] = {
    "charts": True,
    "job": {"node_names": True, "rank_ids": True},
    "baseline": {"ranks": True, "step_ms": True},
}


class Report(Model):
    """What stepscope concluded about one job: findings, rule statuses, metrics, SageMaker's
    verdicts beside its own, the baseline comparison, and the series the outputs chart."""

    schema_version: int = SCHEMA_VERSION
    generated_at: str
    stepscope_version: str
    job: JobInfo
    rules_file: str
    summary: Summary
    #: leading rules' first, then the rules by their findings' cost together (lost GPU time),
    #: then worst first, then by rule; a rule's findings by place (numeric: rank 9 before 10)
    findings: list[Finding]
    #: the findings grouped by pattern, in the order of their first finding
    finding_groups: list[FindingGroup] = []
    rules: list[RuleRow]
    metrics: Metrics
    sagemaker_rule_reports: list[SageMakerVerdict]
    baseline: Baseline | None
    #: None only in a report cached before the section existed
    training_health: TrainingHealth | None = None
    #: what the findings cost (None only in a report cached before the section existed)
    cost: Cost | None = None
    charts: Charts

    def document(self) -> dict[str, Any]:
        """The ``report.json`` fields (docs/report-schema.md), verdict not included."""
        return self.model_dump(exclude=NOT_IN_DOCUMENT)
