"""LowGPUUtilization — SageMaker built-in rule, judged per node and GPU."""

from __future__ import annotations

from typing import ClassVar

from analyzer.analyses import system as system_analyses
from analyzer.job import Job
from rules import params as p
from rules.base import Finding, iso


class LowGPUUtilization:
    id: ClassVar[str] = "LowGPUUtilization"
    title: ClassVar[str] = "Low or fluctuating GPU utilization"
    checks: ClassVar[str] = (
        "Per node and GPU, every scan interval: p95 of the last `window` utilization samples "
        "below `threshold_p95` (underused), or above it while p5 is below `threshold_p5` (fluctuating)."
    )
    why: ClassVar[str] = "Idle GPU time is paid for and wasted; fluctuations point at input or synchronisation stalls."
    recommendation: ClassVar[str] = (
        "Check the data pipeline and CPU bottlenecks first; if the GPU is simply too big for the work, "
        "increase the batch size or move to a smaller instance type."
    )
    severity: ClassVar[str] = "warning"
    params_model: ClassVar[type[p.RuleParams]] = p.LowGPUUtilizationParams

    def evaluate(self, job: Job, params: p.LowGPUUtilizationParams) -> list[Finding] | str:
        if not job.has_dimension("GPUUtilization"):
            return "no GPUUtilization system metrics in this job"
        scans = system_analyses.low_gpu_utilization_scans(
                job.system_metrics,
                threshold_p95=params.threshold_p95,
                threshold_p5=params.threshold_p5,
                window=params.window,
                patience=params.patience,
                scan_interval_us=params.scan_interval_us,
            )
        if scans.empty:
            return f"fewer than patience={params.patience} samples per GPU: not enough data to judge"
        findings: list[Finding] = []
        hits = scans[scans["kind"].notna()]
        for (node, gpu, kind), g in hits.groupby(["node", "gpu", "kind"], sort=True):
            worst = g.loc[g["p95"].idxmin()] if kind == "underused" else g.loc[g["p5"].idxmin()]
            findings.append(
                Finding(
                    rule=self.id,
                    severity=self.severity,
                    title=f"GPU {gpu} on {node} is {kind}",
                    message=(
                        f"{gpu} on {node}: {kind} in {len(g)} of {int((scans['node'].eq(node) & scans['gpu'].eq(gpu)).sum())} scans; "
                        f"worst window p95={worst['p95']:.1f}% p5={worst['p5']:.1f}% "
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
                    recommendation=self.recommendation,
                    where=f"node {node}, {gpu}",
                )
            )
        return findings
