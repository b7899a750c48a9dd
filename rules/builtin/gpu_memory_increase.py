"""GPUMemoryIncrease — SageMaker built-in rule, judged per node and GPU."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from pydantic import Field

from rules.base import Finding, GroupFigure, Rule, iso
from rules.builtin._metrics_source import by_metrics_source
from rules.params import BuiltinParams, RuleParams

if TYPE_CHECKING:
    from analyzer.job import Job


class GPUMemoryIncreaseParams(BuiltinParams):
    increase: int = Field(
        5,
        ge=0,
        le=100,
        description="Growth of the moving average of GPU memory (percentage points).",
    )
    window: int = Field(10, gt=0, description="Data points in the moving average.")
    patience: int = Field(1000, ge=0, description="Data points to skip at the start.")


class GPUMemoryIncrease(Rule):
    id: ClassVar[str] = "GPUMemoryIncrease"
    title: ClassVar[str] = "GPU memory keeps growing"
    checks: ClassVar[str] = (
        "Per node and GPU: the moving average of the last `window` GPU memory samples "
        "rises by more than `increase` percentage points, after `patience` samples."
    )
    why: ClassVar[str] = (
        "Growing memory usually ends in an out-of-memory crash "
        "hours into the job (a leak, or tensors kept alive)."
    )
    recommendation: ClassVar[str] = (
        "Look for tensors kept across steps (losses accumulated with their graph, growing caches); "
        "call .item()/.detach() on logged values."
    )
    severity: ClassVar[str] = "warning"
    params_model: ClassVar[type[RuleParams]] = GPUMemoryIncreaseParams
    page: ClassVar[str] = "system"
    shades_metric: ClassVar[str | None] = "GPUMemoryUtilization"
    window_color: ClassVar[str | None] = "rgba(157,117,93,0.18)"
    group_figures: ClassVar[dict[str | None, GroupFigure]] = {
        None: GroupFigure(
            "max_increase",
            "GPU memory moving average up {} points",
            then=("last_value_pct", "now {}%", 1),
        ),
    }
    sagemaker_builtin: ClassVar[bool] = True

    def evaluate(self, job: Job, params: GPUMemoryIncreaseParams) -> list[Finding] | str:
        # a moving average needs two datapoints: its rise is NaN over one
        return by_metrics_source(job, params, self._judge, counts={"window": 2, "patience": 0})

    def _judge(self, job: Job, params: GPUMemoryIncreaseParams) -> list[Finding] | str:
        if not job.has_dimension("GPUMemoryUtilization"):
            return "no GPUMemoryUtilization system metrics in this job"
        rises = job.gpu_memory_moving_average(params.window)
        hits = rises[(rises["diff"] > params.increase) & (rises["samples"] > params.patience)]
        # plain strings, so nodes and GPUs are grouped (and listed) in text order
        hits = hits.astype({"node": object, "gpu": object})
        findings: list[Finding] = []
        for (node, gpu), g in hits.groupby(["node", "gpu"], sort=True):
            top = g.loc[g["diff"].idxmax()]
            findings.append(
                self.finding(
                    title=f"GPU memory growing on {node} {gpu}",
                    message=(
                        f"moving average rose by up to {top['diff']:.1f} points "
                        f"(> {params.increase}) in {len(g)} "
                        f"samples; now at {g['value'].iloc[-1]:.1f}%"
                    ),
                    evidence={
                        "node": node,
                        "gpu": gpu,
                        "violations": len(g),
                        "max_increase": round(float(top["diff"]), 2),
                        "window_start": iso(float(g["t"].min())),
                        "window_end": iso(float(g["t"].max())),
                        "last_value_pct": round(float(g["value"].iloc[-1]), 2),
                    },
                    where=f"node {node}, {gpu}",
                )
            )
        return findings
