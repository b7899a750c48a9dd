"""Shared body of CPUBottleneck and IOBottleneck: the same test on a different resource."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import numpy as np

from rules.base import Finding, Rule, iso
from rules.builtin._metrics_source import by_metrics_source

if TYPE_CHECKING:
    from analyzer.job import Job


class BottleneckParams(Protocol):
    """What CPUBottleneckParams and IOBottleneckParams share (each adds its resource's
    threshold)."""

    threshold: int
    gpu_threshold: int
    patience: int
    scan_interval_us: int


def evaluate_bottleneck(
    rule: Rule,
    job: Job,
    *,
    resource: str,
    dimension: str,
    resource_threshold: float,
    params: BottleneckParams,
) -> list[Finding] | str:
    """Per node, judged per metrics source (``_metrics_source``)."""
    return by_metrics_source(
        job,
        params,
        lambda j, p: _evaluate_bottleneck(
            rule,
            j,
            resource=resource,
            dimension=dimension,
            resource_threshold=resource_threshold,
            params=p,
        ),
        counts={"patience": 0},
    )


def _evaluate_bottleneck(
    rule: Rule,
    job: Job,
    *,
    resource: str,
    dimension: str,
    resource_threshold: float,
    params: BottleneckParams,
) -> list[Finding] | str:
    """Per node: the rule fires at the first scan, past ``patience`` snapshots, where more than
    ``threshold`` % of the snapshots so far had a GPU under ``gpu_threshold`` while the
    resource was over ``resource_threshold`` (SageMaker's rule, but per node)."""
    if not job.has_dimension("GPUUtilization"):
        return "no GPUUtilization system metrics in this job"
    if not job.has_dimension(dimension):
        return f"no {dimension} system metrics in this job"
    snaps = job.system_snapshots(dimension)
    if snaps.empty:
        return []
    from analyzer.analyses.system import runs

    snaps = snaps.assign(
        bottleneck=(snaps["min_gpu_util"] < params.gpu_threshold)
        & (snaps["max_resource"] > resource_threshold)
    )
    first = float(snaps["t"].min())
    step = params.scan_interval_us / 1e6
    label = {"cpu": "CPU", "io": "I/O"}[resource]
    findings: list[Finding] = []
    for node, g in snaps.groupby("node", sort=True, observed=True):
        t = g["t"].to_numpy()
        b = g["bottleneck"].to_numpy()
        # every scan sees the snapshots started before its end
        ends = first + step * np.arange(1, int(np.floor((t[-1] - first) / step)) + 2)
        n = np.searchsorted(t, ends, side="left")
        nb = np.concatenate([[0], np.cumsum(b)])[n]
        share = np.where(n > 0, nb / np.maximum(n, 1) * 100, 0.0)
        fired = (n > params.patience) & (n > 0) & (share > params.threshold)
        if not fired.any():
            continue
        bottlenecks, snapshots = int(b.sum()), len(t)
        share_pct = float(b.mean() * 100)
        found = runs(t, b)
        windows = [(iso(a), iso(z)) for a, z in found]
        longest = max(found, key=lambda w: w[1] - w[0]) if found else None
        findings.append(
            rule.finding(
                title=f"{label} bottleneck on {node}",
                message=(
                    f"GPUs idle (<{params.gpu_threshold}%) while {label} "
                    f"{'utilization' if resource == 'cpu' else 'wait'} >{resource_threshold}% in "
                    f"{bottlenecks} of {snapshots} snapshots "
                    f"({share_pct:.1f}% > {params.threshold}%)"
                ),
                evidence={
                    "node": node,
                    "bottleneck_snapshots": bottlenecks,
                    "snapshots": snapshots,
                    "share_pct": round(share_pct, 2),
                    "first_fired_at": iso(float(ends[fired][0])),
                    "windows": windows[:20],
                    "window_start": iso(longest[0]) if longest else None,
                    "window_end": iso(longest[1]) if longest else None,
                },
                where=f"node {node}",
            )
        )
    return findings
