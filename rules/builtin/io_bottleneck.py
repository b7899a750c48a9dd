"""IOBottleneck — SageMaker built-in rule, judged per node (SageMaker pools all nodes)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from pydantic import Field

from rules.base import Finding, GroupFigure, Rule
from rules.builtin._bottleneck import evaluate_bottleneck
from rules.params import BuiltinParams, RuleParams

if TYPE_CHECKING:
    from analyzer.job import Job


class IOBottleneckParams(BuiltinParams):
    threshold: int = Field(
        50, ge=0, le=100, description="% of samples in a bottleneck above which the rule fires."
    )
    gpu_threshold: int = Field(
        10, ge=0, le=100, description="GPU utilization (%) below which the GPU counts as idle."
    )
    io_threshold: int = Field(
        50, ge=0, le=100, description="I/O wait (%) above which I/O counts as the bottleneck."
    )
    patience: int = Field(1000, ge=0, description="Data points to skip at the start.")


class IOBottleneck(Rule):
    id: ClassVar[str] = "IOBottleneck"
    title: ClassVar[str] = "GPUs idle while waiting on I/O"
    checks: ClassVar[str] = (
        "Per node: share of system snapshots where a GPU is under "
        "`gpu_threshold` % while a core's I/O wait is over `io_threshold` %, "
        "above `threshold` % once more than `patience` snapshots were seen."
    )
    why: ClassVar[str] = "The GPUs wait for storage or the network to deliver training data."
    recommendation: ClassVar[str] = (
        "Use FastFile or Pipe mode or FSx for Lustre instead of File mode, "
        "shard and prefetch the dataset, and store it in fewer, larger files."
    )
    severity: ClassVar[str] = "warning"
    params_model: ClassVar[type[RuleParams]] = IOBottleneckParams
    page: ClassVar[str] = "system"
    shades_metric: ClassVar[str | None] = "I/OWaitPercentage"
    window_color: ClassVar[str | None] = "rgba(178,121,162,0.18)"
    group_figures: ClassVar[dict[str | None, GroupFigure]] = {
        None: GroupFigure("share_pct", "GPUs idle while waiting for I/O in {}% of snapshots"),
    }
    sagemaker_builtin: ClassVar[bool] = True

    def evaluate(self, job: Job, params: IOBottleneckParams) -> list[Finding] | str:
        return evaluate_bottleneck(
            self,
            job,
            resource="io",
            dimension="I/OWaitPercentage",
            resource_threshold=params.io_threshold,
            params=params,
        )
