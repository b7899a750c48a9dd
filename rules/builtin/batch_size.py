"""BatchSize — SageMaker built-in rule: everything underused, the batch could be larger."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from pydantic import Field

from rules.base import Finding, GroupFigure, Rule, iso
from rules.builtin._metrics_source import by_metrics_source
from rules.params import BuiltinParams, RuleParams

if TYPE_CHECKING:
    from analyzer.job import Job


class BatchSizeParams(BuiltinParams):
    cpu_threshold_p95: int = Field(
        70, ge=0, le=100, description="p95 CPU utilization (%) below which the CPU is underused."
    )
    gpu_threshold_p95: int = Field(
        70, ge=0, le=100, description="p95 GPU utilization (%) below which the GPU is underused."
    )
    gpu_memory_threshold_p95: int = Field(
        70, ge=0, le=100, description="p95 GPU memory (%) below which memory is underused."
    )
    patience: int = Field(1000, ge=0, description="Data points to skip at the start.")
    window: int = Field(500, gt=0, description="Data points per percentile window.")


class BatchSize(Rule):
    id: ClassVar[str] = "BatchSize"
    title: ClassVar[str] = "Batch size too small for the hardware"
    checks: ClassVar[str] = (
        "Per node and GPU, at every scan after `patience` samples: p95 "
        "of GPU utilization, GPU memory and total CPU utilization over "
        "the last `window` samples all below their `*_threshold_p95`."
    )
    why: ClassVar[str] = (
        "A small batch leaves GPU, memory and CPU idle at "
        "once: the job pays for capacity it does not use."
    )
    recommendation: ClassVar[str] = (
        "Increase the batch size (scale the learning rate "
        "with it), or choose a smaller instance type."
    )
    severity: ClassVar[str] = "info"
    params_model: ClassVar[type[RuleParams]] = BatchSizeParams
    page: ClassVar[str] = "system"
    group_figures: ClassVar[dict[str | None, GroupFigure]] = {
        None: GroupFigure(
            "gpu_p95",
            "GPU utilization p95 {}% at worst",
            digits=0,
            worst="min",
            then=("gpu_memory_p95", "memory p95 {}%", 0),
        ),
    }
    sagemaker_builtin: ClassVar[bool] = True

    def evaluate(self, job: Job, params: BatchSizeParams) -> list[Finding] | str:
        return by_metrics_source(job, params, self._judge, counts={"window": 1, "patience": 0})

    def _judge(self, job: Job, params: BatchSizeParams) -> list[Finding] | str:
        if not job.has_dimension("GPUUtilization"):
            return "no GPUUtilization system metrics in this job"
        # smdebug's BatchSize judges the last `window` samples at every scan (not only the
        # job's last window): an underused stretch anywhere after `patience` fires
        # (rules/batch_size.py, invoke_for_timerange).
        res = job.utilization_p95_scans(params.window, params.scan_interval_us)
        res = res[res["cpu_samples"] > params.patience]
        if res.empty:
            return (
                f"fewer than patience={params.patience} and window={params.window} samples per node"
            )
        underused = (
            (res["cpu_p95"] < params.cpu_threshold_p95)
            & (res["gpu_p95"] < params.gpu_threshold_p95)
            & (res["gpu_mem_p95"] < params.gpu_memory_threshold_p95)
        )
        findings: list[Finding] = []
        for (node, gpu), g in res[underused].groupby(["node", "gpu"], sort=True, observed=True):
            r = g.loc[g["gpu_p95"].idxmin()]
            scans = int(((res["node"] == node) & (res["gpu"] == gpu)).sum())
            findings.append(
                self.finding(
                    title=f"{gpu} on {node} could take a larger batch",
                    message=(
                        f"underused in {len(g)} of {scans} scans; at worst p95 GPU "
                        f"{r['gpu_p95']:.0f}% (<{params.gpu_threshold_p95}), memory "
                        f"{r['gpu_mem_p95']:.0f}% (<{params.gpu_memory_threshold_p95}), "
                        f"CPU {r['cpu_p95']:.0f}% (<{params.cpu_threshold_p95})"
                    ),
                    evidence={
                        "node": node,
                        "gpu": gpu,
                        "violations": len(g),
                        "gpu_p95": round(float(r["gpu_p95"]), 2),
                        "gpu_memory_p95": round(float(r["gpu_mem_p95"]), 2),
                        "cpu_p95": round(float(r["cpu_p95"]), 2),
                        "window_start": iso(float(g["window_start"].min())),
                        "window_end": iso(float(g["scan_end"].max())),
                        "worst_window_start": iso(float(r["window_start"])),
                        "worst_window_end": iso(float(r["scan_end"])),
                        "first_fired_at": iso(float(g["scan_end"].min())),
                    },
                    where=f"node {node}, {gpu}",
                )
            )
        return findings
