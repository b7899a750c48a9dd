"""LowGPUUtilization — SageMaker built-in rule, judged per node and GPU."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from pydantic import Field

from rules.base import Finding, GroupFigure, Rule, iso
from rules.builtin._metrics_source import by_metrics_source
from rules.params import BuiltinParams, RuleParams

if TYPE_CHECKING:
    from analyzer.job import Job


class LowGPUUtilizationParams(BuiltinParams):
    threshold_p95: int = Field(
        70, ge=0, le=100, description="p95 GPU utilization (%) below which a GPU is underused."
    )
    threshold_p5: int = Field(
        10,
        ge=0,
        le=100,
        description="p5 GPU utilization (%) below which utilization fluctuates too much.",
    )
    window: int = Field(500, gt=0, description="Data points per percentile window.")
    patience: int = Field(
        1000, ge=0, description="Data points to skip at the start (initialization)."
    )


def _kind(p95: float, p5: float, params: LowGPUUtilizationParams) -> str | None:
    """One scan's verdict, as SageMaker's rule words it."""
    if p95 < params.threshold_p95:
        return "underused"
    if p95 > params.threshold_p95 and p5 < params.threshold_p5:
        return "fluctuating"
    return None


class LowGPUUtilization(Rule):
    id: ClassVar[str] = "LowGPUUtilization"
    title: ClassVar[str] = "Low or fluctuating GPU utilization"
    checks: ClassVar[str] = (
        "Per node and GPU, every scan interval: p95 of the last `window` utilization samples "
        "below `threshold_p95` (underused), or above it "
        "while p5 is below `threshold_p5` (fluctuating)."
    )
    why: ClassVar[str] = (
        "Idle GPU time is paid for and wasted; fluctuations "
        "point at input or synchronisation stalls."
    )
    recommendation: ClassVar[str] = (
        "Check the data pipeline and CPU bottlenecks first; if the GPU is simply too "
        "big for the work, increase the batch size or move to a smaller instance type."
    )
    severity: ClassVar[str] = "warning"
    params_model: ClassVar[type[RuleParams]] = LowGPUUtilizationParams
    page: ClassVar[str] = "system"
    shades_metric: ClassVar[str | None] = "GPUUtilization"
    window_color: ClassVar[str | None] = "rgba(214,39,40,0.13)"
    group_figures: ClassVar[dict[str | None, GroupFigure]] = {
        "underused": GroupFigure(
            "worst_p95",
            "GPU utilization p95 {}% in the worst window",
            worst="min",
            then=("violations", "in {} scans", 0),
        ),
        "fluctuating": GroupFigure(
            "worst_p5",
            "GPU utilization p5 {}% in the worst window",
            worst="min",
            then=("worst_p95", "p95 {}%", 1),
        ),
    }
    sagemaker_builtin: ClassVar[bool] = True

    def evaluate(self, job: Job, params: LowGPUUtilizationParams) -> list[Finding] | str:
        return by_metrics_source(job, params, self._judge, counts={"window": 1, "patience": 0})

    def _judge(self, job: Job, params: LowGPUUtilizationParams) -> list[Finding] | str:
        if not job.has_dimension("GPUUtilization"):
            return "no GPUUtilization system metrics in this job"
        scans = job.gpu_utilization_scans(params.window, params.scan_interval_us)
        scans = scans[scans["samples"] > params.patience]
        if scans.empty:
            return (
                f"fewer than patience={params.patience} samples per GPU: not enough data to judge"
            )
        kinds = [_kind(p95, p5, params) for p95, p5 in zip(scans["p95"], scans["p5"], strict=True)]
        hits = scans.assign(kind=kinds)
        hits = hits[hits["kind"].notna()]
        findings: list[Finding] = []
        for (node, gpu, kind), g in hits.groupby(["node", "gpu", "kind"], sort=True):
            worst = g.loc[g["p95"].idxmin()] if kind == "underused" else g.loc[g["p5"].idxmin()]
            findings.append(
                self.finding(
                    title=f"GPU {gpu} on {node} is {kind}",
                    message=(
                        f"{kind} in {len(g)} of "
                        f"{int((scans['node'].eq(node) & scans['gpu'].eq(gpu)).sum())} "
                        f"scans; worst window p95={worst['p95']:.1f}% p5={worst['p5']:.1f}% "
                        f"(thresholds p95<{params.threshold_p95}%, p5<{params.threshold_p5}%)"
                    ),
                    evidence={
                        "node": node,
                        "gpu": gpu,
                        "kind": kind,
                        "violations": len(g),
                        "window_start": iso(float(g["window_start"].min())),
                        "window_end": iso(float(g["scan_end"].max())),
                        "worst_p95": round(float(worst["p95"]), 2),
                        "worst_p5": round(float(worst["p5"]), 2),
                        "worst_window_start": iso(float(worst["window_start"])),
                        "worst_window_end": iso(float(worst["scan_end"])),
                    },
                    where=f"node {node}, {gpu}",
                )
            )
        return findings
