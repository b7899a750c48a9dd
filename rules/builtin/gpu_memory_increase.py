"""GPUMemoryIncrease — SageMaker built-in rule, judged per node and GPU."""

from __future__ import annotations

from typing import ClassVar

from analyzer.analyses import system as system_analyses
from analyzer.job import Job
from rules import params as p
from rules.base import Finding, iso


class GPUMemoryIncrease:
    id: ClassVar[str] = "GPUMemoryIncrease"
    title: ClassVar[str] = "GPU memory keeps growing"
    checks: ClassVar[str] = (
        "Per node and GPU: the moving average of the last `window` GPU memory samples rises by more than "
        "`increase` percentage points, after `patience` samples."
    )
    why: ClassVar[str] = "Growing memory usually ends in an out-of-memory crash hours into the job (a leak, or tensors kept alive)."
    recommendation: ClassVar[str] = (
        "Look for tensors kept across steps (losses accumulated with their graph, growing caches); "
        "call .item()/.detach() on logged values."
    )
    severity: ClassVar[str] = "warning"
    params_model: ClassVar[type[p.RuleParams]] = p.GPUMemoryIncreaseParams

    def evaluate(self, job: Job, params: p.GPUMemoryIncreaseParams) -> list[Finding] | str:
        if not job.has_dimension("GPUMemoryUtilization"):
            return "no GPUMemoryUtilization system metrics in this job"
        ev = system_analyses.gpu_memory_increase_events(
            job.system_metrics, increase=params.increase, window=params.window, patience=params.patience
        )
        findings: list[Finding] = []
        for (node, gpu), g in ev.groupby(["node", "gpu"], sort=True):
            top = g.loc[g["diff"].idxmax()]
            findings.append(
                Finding(
                    rule=self.id,
                    severity=self.severity,
                    title=f"GPU memory growing on {node} {gpu}",
                    message=(
                        f"{gpu} on {node}: moving average rose by up to {top['diff']:.1f} points "
                        f"(> {params.increase}) in {len(g)} samples; now at {g['value'].iloc[-1]:.1f}%"
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
                    recommendation=self.recommendation,
                    where=f"node {node}, {gpu}",
                )
            )
        return findings
