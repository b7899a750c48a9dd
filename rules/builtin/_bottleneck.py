"""Shared body of CPUBottleneck and IOBottleneck: the same test on a different resource."""

from __future__ import annotations

from typing import Any

from analyzer.analyses import system as system_analyses
from analyzer.job import Job
from rules.base import Finding, iso


def evaluate_bottleneck(
    rule: Any, job: Job, *, resource: str, dimension: str, resource_threshold: float, params: Any
) -> list[Finding] | str:
    if not job.has_dimension("GPUUtilization"):
        return "no GPUUtilization system metrics in this job"
    if not job.has_dimension(dimension):
        return f"no {dimension} system metrics in this job"
    snaps = system_analyses.bottleneck_snapshots(
            job.system_metrics, resource=resource, gpu_threshold=params.gpu_threshold, resource_threshold=resource_threshold
        )
    verdicts = system_analyses.bottleneck_verdicts(
        snaps, threshold=params.threshold, patience=params.patience, scan_interval_us=params.scan_interval_us
    )
    label = {"cpu": "CPU", "io": "I/O"}[resource]
    findings: list[Finding] = []
    for row in verdicts.itertuples(index=False):
        if not row.fired:
            continue
        windows = [(iso(a), iso(b)) for a, b in row.windows]
        longest = max(row.windows, key=lambda w: w[1] - w[0]) if row.windows else None
        findings.append(
            Finding(
                rule=rule.id,
                severity=rule.severity,
                title=f"{label} bottleneck on {row.node}",
                message=(
                    f"{row.node}: GPUs idle (<{params.gpu_threshold}%) while {label} "
                    f"{'utilization' if resource == 'cpu' else 'wait'} >{resource_threshold}% in "
                    f"{row.bottlenecks} of {row.snapshots} snapshots ({row.share_pct:.1f}% > {params.threshold}%)"
                ),
                evidence={
                    "node": row.node,
                    "bottleneck_snapshots": int(row.bottlenecks),
                    "snapshots": int(row.snapshots),
                    "share_pct": round(float(row.share_pct), 2),
                    "first_fired_at": iso(row.first_fired_at),
                    "windows": windows[:20],
                    "window_start": iso(longest[0]) if longest else None,
                    "window_end": iso(longest[1]) if longest else None,
                },
                recommendation=rule.recommendation,
                where=f"node {row.node}",
            )
        )
    return findings
