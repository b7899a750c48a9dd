"""Each rule's parameters: names, types and defaults, validated by pydantic.

The SageMaker Debugger built-in profiler rules keep SageMaker's own parameter names and
the SDK's defaults (``smdebug_rulesconfig.profiler_rules.rules``, as shipped with the
SageMaker Python SDK), so one rule file configures both SageMaker's rule containers and
``stepscope report``. stepscope's own rules follow below them.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

SCAN_INTERVAL_US = 60 * 1000 * 1000


class RuleParams(BaseModel):
    """Common base: unknown keys are errors (a typo must not silently keep a default)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, strict=True)


class BuiltinParams(RuleParams):
    scan_interval_us: int = Field(SCAN_INTERVAL_US, gt=0, description="How often SageMaker's rule container scans new data (µs).")


# --- SageMaker Debugger built-in profiler rules -------------------------------------------
class LowGPUUtilizationParams(BuiltinParams):
    threshold_p95: int = Field(70, ge=0, le=100, description="p95 GPU utilization (%) below which a GPU is underused.")
    threshold_p5: int = Field(10, ge=0, le=100, description="p5 GPU utilization (%) below which utilization fluctuates too much.")
    window: int = Field(500, gt=0, description="Data points per percentile window.")
    patience: int = Field(1000, ge=0, description="Data points to skip at the start (initialization).")


class CPUBottleneckParams(BuiltinParams):
    threshold: int = Field(50, ge=0, le=100, description="% of samples in a bottleneck above which the rule fires.")
    gpu_threshold: int = Field(10, ge=0, le=100, description="GPU utilization (%) below which the GPU counts as idle.")
    cpu_threshold: int = Field(90, ge=0, le=100, description="CPU utilization (%) above which the CPU counts as saturated.")
    patience: int = Field(1000, ge=0, description="Data points to skip at the start.")


class IOBottleneckParams(BuiltinParams):
    threshold: int = Field(50, ge=0, le=100, description="% of samples in a bottleneck above which the rule fires.")
    gpu_threshold: int = Field(10, ge=0, le=100, description="GPU utilization (%) below which the GPU counts as idle.")
    io_threshold: int = Field(50, ge=0, le=100, description="I/O wait (%) above which I/O counts as the bottleneck.")
    patience: int = Field(1000, ge=0, description="Data points to skip at the start.")


class StepOutlierParams(BuiltinParams):
    stddev: int = Field(3, gt=0, description="A step is an outlier above mean + stddev x standard deviation.")
    mode: str | None = Field(None, description="Training mode to check (TRAIN, EVAL...); all when unset.")
    n_outliers: int = Field(10, ge=0, description="Outliers tolerated before the rule fires.")


class GPUMemoryIncreaseParams(BuiltinParams):
    increase: int = Field(5, ge=0, le=100, description="Growth of the moving average of GPU memory (percentage points).")
    window: int = Field(10, gt=0, description="Data points in the moving average.")
    patience: int = Field(1000, ge=0, description="Data points to skip at the start.")


class LoadBalancingParams(BuiltinParams):
    threshold: float = Field(0.5, ge=0, description="Workload imbalance between GPUs (histogram distance) above which it fires.")
    patience: int = Field(1000, ge=0, description="Data points to skip at the start.")


class BatchSizeParams(BuiltinParams):
    cpu_threshold_p95: int = Field(70, ge=0, le=100, description="p95 CPU utilization (%) below which the CPU is underused.")
    gpu_threshold_p95: int = Field(70, ge=0, le=100, description="p95 GPU utilization (%) below which the GPU is underused.")
    gpu_memory_threshold_p95: int = Field(70, ge=0, le=100, description="p95 GPU memory (%) below which memory is underused.")
    patience: int = Field(1000, ge=0, description="Data points to skip at the start.")
    window: int = Field(500, gt=0, description="Data points per percentile window.")


class MaxInitializationTimeParams(BuiltinParams):
    threshold: int = Field(20, gt=0, description="Minutes before the first step above which the rule fires.")


class DataloaderParams(BuiltinParams):
    min_threshold: int = Field(70, ge=0, description="Parallel data-loading processes below this % of CPU cores are too few.")
    max_threshold: int = Field(200, ge=0, description="Parallel data-loading processes above this % of CPU cores are too many.")


class OverallSystemUsageParams(BuiltinParams):
    pass


class ProfilerReportParams(RuleParams):
    """ProfilerReport runs every rule above; its parameters are ``<Rule>_<param>`` overrides,
    which stepscope fills in from the rule file rather than asking for them twice."""


# --- stepscope's own rules -----------------------------------------------------------------------
class DataLoaderStallParams(RuleParams):
    threshold_pct: float = Field(20.0, ge=0, le=100, description="Share of step time (%) spent waiting for the next batch above which a rank stalls.")
    min_steps: int = Field(3, ge=1, description="Steps needed before judging a rank.")


class ExposedCommunicationParams(RuleParams):
    threshold_pct: float = Field(25.0, ge=0, le=100, description="Exposed (non-overlapped) communication as % of GPU busy time above which it fires.")


class AllocatorMemoryGrowthParams(RuleParams):
    growth_mb: float = Field(64.0, ge=0, description="Growth (MiB) of allocated memory at step start, first to last profiled step, above which it fires.")
    min_steps: int = Field(3, ge=2, description="Profiled steps with memory events needed before judging.")


class GPUStarvedByHostParams(RuleParams):
    threshold_pct: float = Field(30.0, ge=0, le=100, description="Host-wait idle time as % of the busiest stream's span above which it fires.")
    min_events: int = Field(100, ge=1, description="Kernels and copies a stream needs before it is judged.")


class StragglerRankParams(RuleParams):
    threshold_pct: float = Field(15.0, ge=0, description="A rank whose median step (or compute) time exceeds the median of all ranks by this % is a straggler.")
    min_steps: int = Field(3, ge=1, description="Steps needed per rank before judging.")


class BaselineRegressionParams(RuleParams):
    step_time_pct: float = Field(10.0, ge=0, description="Mean step time may grow by this % over the baseline.")
    throughput_pct: float = Field(10.0, ge=0, description="Throughput (steps/s) may drop by this % under the baseline.")
    gpu_util_points: float = Field(5.0, ge=0, description="Median GPU utilization may drop by this many points.")
    stall_points: float = Field(5.0, ge=0, description="Data-loader stall share may grow by this many points.")
    exposed_comm_points: float = Field(5.0, ge=0, description="Exposed communication share may grow by this many points.")
