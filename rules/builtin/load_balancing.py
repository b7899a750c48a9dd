"""LoadBalancing — SageMaker built-in rule: uneven work across the GPUs of a node."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from pydantic import Field

from rules.base import Finding, GroupFigure, Rule, iso
from rules.params import BuiltinParams, RuleParams

if TYPE_CHECKING:
    from analyzer.job import Job


class LoadBalancingParams(BuiltinParams):
    threshold: float = Field(
        0.5,
        ge=0,
        description="Workload imbalance between GPUs (histogram distance) above which it fires.",
    )
    patience: int = Field(1000, ge=0, description="Data points to skip at the start.")


class LoadBalancing(Rule):
    id: ClassVar[str] = "LoadBalancing"
    title: ClassVar[str] = "GPUs of a node carry uneven work"
    checks: ClassVar[str] = (
        "Per node, every pair of GPUs, at every scan: Jensen-Shannon "
        "distance between their utilization histograms so far above "
        "`threshold` (once both have more than `patience` samples)."
    )
    why: ClassVar[str] = (
        "In synchronous training the least-loaded GPUs wait for the busiest one every step."
    )
    recommendation: ClassVar[str] = (
        "Check that every GPU gets a process and equal shards (DistributedSampler, equal "
        "batch sizes); with parameter servers or pipeline stages, rebalance the split."
    )
    severity: ClassVar[str] = "warning"
    params_model: ClassVar[type[RuleParams]] = LoadBalancingParams
    page: ClassVar[str] = "system"
    group_figures: ClassVar[dict[str | None, GroupFigure]] = {
        None: GroupFigure(
            "worst_distance", "GPU utilization histograms {} apart at worst", digits=2
        ),
    }
    sagemaker_builtin: ClassVar[bool] = True

    def evaluate(self, job: Job, params: LoadBalancingParams) -> list[Finding] | str:
        if not job.has_dimension("GPUUtilization"):
            return "no GPUUtilization system metrics in this job"
        # smdebug's LoadBalancing keeps each GPU's histogram over all samples so far and
        # compares them at every scan: it fires when any scan's distance exceeds `threshold`,
        # not only the whole job's (rules/load_balancing.py, invoke_for_timerange).
        scans = job.gpu_load_balance_scans(params.scan_interval_us)
        scans = scans[
            (scans["samples_a"] > params.patience) & (scans["samples_b"] > params.patience)
        ]
        if scans.empty:
            return "fewer than two GPUs per node with enough samples"
        pairs = [
            _pair(key, g, params.threshold)
            for key, g in scans.groupby(["node", "gpu_a", "gpu_b"], sort=False)
        ]
        findings: list[Finding] = []
        for node in sorted({p["node"] for p in pairs if p["distance"] > params.threshold}):
            over = [p for p in pairs if p["node"] == node and p["distance"] > params.threshold]
            top = max(over, key=lambda p: p["distance"])  # the first of equal ones, as idxmax
            findings.append(
                self.finding(
                    title=f"Uneven GPU workload on {node}",
                    message=(
                        f"{len(over)} GPU pairs differ by more than {params.threshold}; worst "
                        f"{top['gpu_a']} vs {top['gpu_b']} distance {top['distance']:.2f} "
                        f"(mean utilization {top['mean_util_a']:.0f}% vs {top['mean_util_b']:.0f}%)"
                    ),
                    evidence={
                        "node": node,
                        "pairs": [
                            {"gpus": [p["gpu_a"], p["gpu_b"]], "distance": round(p["distance"], 3)}
                            for p in over
                        ][:28],
                        "worst_pair": [top["gpu_a"], top["gpu_b"]],
                        "worst_distance": round(top["distance"], 3),
                        "worst_scan_end": iso(top["worst_scan_end"]),
                        "final_distance": round(top["final_distance"], 3),
                        "first_fired_at": iso(float(np.nanmin([p["first_over_at"] for p in over]))),
                    },
                    where=f"node {node}",
                )
            )
        return findings


def _pair(key: Any, g: Any, threshold: float) -> dict[str, Any]:
    """One GPU pair over the scans judged: its largest distance and the scan that saw it, the
    last scan's distance, and the first scan over ``threshold`` (NaN when none was)."""
    node, a, b = key
    d = g["distance"].to_numpy()
    ends = g["scan_end"].to_numpy()
    worst = int(np.nanargmax(d)) if np.isfinite(d).any() else len(d) - 1
    over = np.flatnonzero(d > threshold)
    return {
        "node": node,
        "gpu_a": a,
        "gpu_b": b,
        "distance": float(d[worst]),
        "worst_scan_end": float(ends[worst]),
        "final_distance": float(d[-1]),
        "first_over_at": float(ends[over[0]]) if len(over) else float("nan"),
        "mean_util_a": float(g["mean_util_a"].iloc[0]),
        "mean_util_b": float(g["mean_util_b"].iloc[0]),
    }
