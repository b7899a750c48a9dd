"""LoadBalancing — SageMaker built-in rule: uneven work across the GPUs of a node."""

from __future__ import annotations

from typing import ClassVar

from analyzer.analyses import system as system_analyses
from analyzer.job import Job
from rules import params as p
from rules.base import Finding, iso


class LoadBalancing:
    id: ClassVar[str] = "LoadBalancing"
    title: ClassVar[str] = "GPUs of a node carry uneven work"
    checks: ClassVar[str] = (
        "Per node, every pair of GPUs, at every scan: Jensen-Shannon distance between their utilization "
        "histograms so far above `threshold` (once both have more than `patience` samples)."
    )
    why: ClassVar[str] = "In synchronous training the least-loaded GPUs wait for the busiest one every step."
    recommendation: ClassVar[str] = (
        "Check that every GPU gets a process and equal shards (DistributedSampler, equal batch sizes); "
        "with parameter servers or pipeline stages, rebalance the split."
    )
    severity: ClassVar[str] = "warning"
    params_model: ClassVar[type[p.RuleParams]] = p.LoadBalancingParams

    def evaluate(self, job: Job, params: p.LoadBalancingParams) -> list[Finding] | str:
        if not job.has_dimension("GPUUtilization"):
            return "no GPUUtilization system metrics in this job"
        # smdebug's LoadBalancing keeps each GPU's histogram over all samples so far and
        # compares them at every scan: it fires when any scan's distance exceeds `threshold`,
        # not only the whole job's (rules/load_balancing.py, invoke_for_timerange).
        pairs = system_analyses.gpu_load_balance(
            job.system_metrics, patience=params.patience, threshold=params.threshold, scan_interval_us=params.scan_interval_us
        )
        if pairs.empty:
            return "fewer than two GPUs per node with enough samples"
        findings: list[Finding] = []
        for node, g in pairs[pairs["distance"] > params.threshold].groupby("node", sort=True):
            top = g.loc[g["distance"].idxmax()]
            first_over = float(g["first_over_at"].min())
            findings.append(
                Finding(
                    rule=self.id,
                    severity=self.severity,
                    title=f"Uneven GPU workload on {node}",
                    message=(
                        f"{node}: {len(g)} GPU pairs differ by more than {params.threshold}; worst "
                        f"{top['gpu_a']} vs {top['gpu_b']} distance {top['distance']:.2f} "
                        f"(mean utilization {top['mean_util_a']:.0f}% vs {top['mean_util_b']:.0f}%)"
                    ),
                    evidence={
                        "node": node,
                        "pairs": [
                            {"gpus": [r.gpu_a, r.gpu_b], "distance": round(float(r.distance), 3)}
                            for r in g.itertuples(index=False)
                        ][:28],
                        "worst_pair": [top["gpu_a"], top["gpu_b"]],
                        "worst_distance": round(float(top["distance"]), 3),
                        "worst_scan_end": iso(float(top["worst_scan_end"])),
                        "final_distance": round(float(top["final_distance"]), 3),
                        "first_fired_at": iso(first_over),
                    },
                    recommendation=self.recommendation,
                    where=f"node {node}",
                )
            )
        return findings
