"""BatchSize — SageMaker built-in rule: everything underused, the batch could be larger."""

from __future__ import annotations

from typing import ClassVar

from analyzer.analyses import system as system_analyses
from rules import params as p
from rules.engine import Finding, RuleContext


class BatchSize:
    id: ClassVar[str] = "BatchSize"
    title: ClassVar[str] = "Batch size too small for the hardware"
    checks: ClassVar[str] = (
        "Per node and GPU: p95 of GPU utilization, GPU memory and total CPU utilization over the last "
        "`window` samples all below their `*_threshold_p95`."
    )
    why: ClassVar[str] = "A small batch leaves GPU, memory and CPU idle at once: the job pays for capacity it does not use."
    recommendation: ClassVar[str] = "Increase the batch size (scale the learning rate with it), or choose a smaller instance type."
    severity: ClassVar[str] = "info"
    params_model: ClassVar[type[p.RuleParams]] = p.BatchSizeParams

    def evaluate(self, ctx: RuleContext, params: p.BatchSizeParams) -> list[Finding] | str:
        if not ctx.has_dimension("GPUUtilization"):
            return "no GPUUtilization system metrics in this job"
        res = system_analyses.batch_size_underuse(
            ctx.system_metrics,
            cpu_threshold_p95=params.cpu_threshold_p95,
            gpu_threshold_p95=params.gpu_threshold_p95,
            gpu_memory_threshold_p95=params.gpu_memory_threshold_p95,
            window=params.window,
            patience=params.patience,
        )
        if res.empty:
            return f"fewer than patience={params.patience} samples per GPU"
        findings: list[Finding] = []
        for r in res[res["underused"]].itertuples(index=False):
            findings.append(
                Finding(
                    rule=self.id,
                    severity=self.severity,
                    title=f"{r.gpu} on {r.node} could take a larger batch",
                    message=(
                        f"{r.gpu} on {r.node}: p95 GPU {r.gpu_p95:.0f}% (<{params.gpu_threshold_p95}), memory "
                        f"{r.gpu_mem_p95:.0f}% (<{params.gpu_memory_threshold_p95}), CPU {r.cpu_p95:.0f}% (<{params.cpu_threshold_p95})"
                    ),
                    evidence={
                        "node": r.node,
                        "gpu": r.gpu,
                        "gpu_p95": round(float(r.gpu_p95), 2),
                        "gpu_memory_p95": round(float(r.gpu_mem_p95), 2),
                        "cpu_p95": round(float(r.cpu_p95), 2),
                    },
                    recommendation=self.recommendation,
                    where=f"node {r.node}, {r.gpu}",
                )
            )
        return findings
