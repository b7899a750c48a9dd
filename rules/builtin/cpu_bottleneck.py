"""CPUBottleneck — SageMaker built-in rule, judged per node (SageMaker pools all nodes)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from pydantic import Field

from rules.base import Finding, GroupFigure, Rule
from rules.builtin._bottleneck import evaluate_bottleneck
from rules.params import BuiltinParams, RuleParams

if TYPE_CHECKING:
    from analyzer.job import Job


class CPUBottleneckParams(BuiltinParams):
    threshold: int = Field(
        50, ge=0, le=100, description="% of samples in a bottleneck above which the rule fires."
    )
    gpu_threshold: int = Field(
        10, ge=0, le=100, description="GPU utilization (%) below which the GPU counts as idle."
    )
    cpu_threshold: int = Field(
        90, ge=0, le=100, description="CPU utilization (%) above which the CPU counts as saturated."
    )
    patience: int = Field(1000, ge=0, description="Data points to skip at the start.")


class CPUBottleneck(Rule):
    id: ClassVar[str] = "CPUBottleneck"
    title: ClassVar[str] = "GPUs idle while CPUs are saturated"
    checks: ClassVar[str] = (
        "Per node: share of system snapshots where a GPU is under "
        "`gpu_threshold` % while a CPU core is over `cpu_threshold` %, "
        "above `threshold` % once more than `patience` snapshots were seen."
    )
    why: ClassVar[str] = (
        "The GPUs wait for the CPU: preprocessing or data loading is the bottleneck."
    )
    recommendation: ClassVar[str] = (
        "Move preprocessing off the training loop (more DataLoader workers, pre-computed features, "
        "GPU data augmentation) or choose an instance type with more vCPUs per GPU."
    )
    severity: ClassVar[str] = "warning"
    params_model: ClassVar[type[RuleParams]] = CPUBottleneckParams
    page: ClassVar[str] = "system"
    shades_metric: ClassVar[str | None] = "CPUUtilization"
    window_color: ClassVar[str | None] = "rgba(245,133,24,0.16)"
    group_figures: ClassVar[dict[str | None, GroupFigure]] = {
        None: GroupFigure("share_pct", "GPUs idle while the CPU is busy in {}% of snapshots"),
    }
    sagemaker_builtin: ClassVar[bool] = True

    def evaluate(self, job: Job, params: CPUBottleneckParams) -> list[Finding] | str:
        return evaluate_bottleneck(
            self,
            job,
            resource="cpu",
            dimension="CPUUtilization",
            resource_threshold=params.cpu_threshold,
            params=params,
        )
