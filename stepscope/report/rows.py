"""The report's per-node and per-rank rows, built from the Job's analyses.

Why here and not among the analyses: these rows are the report's (``report/model.py``
types them: ``NodeMetrics``, ``RankMetrics``); the analyses they read are the Job's
memoised measurements, and the headline figures a rule compares
(``analyzer.analyses.headline``) are measurements of their own, so nothing below the report
reaches back up to it.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from analyzer.analyses import idle_time
from analyzer.analyses import system as system_analyses
from analyzer.analyses.headline import exposed_pct_by_rank, stall_pct_by_rank
from analyzer.analyses.summary import rounded
from analyzer.job import Job

__all__ = ["gpu_metrics_by_rank", "node_metrics", "rank_metrics"]


def node_metrics(job: Job) -> list[dict[str, Any]]:
    gpus = job.gpu_summary()
    cpu = job.metric_frame(("CPUUtilization", "I/OWaitPercentage"))
    # per (node, dimension) percentiles in one grouped pass, not a boolean mask per node
    pct: dict[tuple[str, str, float], float] = {}
    if len(cpu):
        q = cpu.groupby(["node", "dimension"], observed=True, sort=False)["value"].quantile(
            [0.5, 0.95]
        )
        pct = {(str(n), str(d), float(p)): float(v) for (n, d, p), v in q.items()}
    gpu_nodes = {str(n) for n in gpus["node"].unique()} if len(gpus) else set()
    nodes = sorted(gpu_nodes | {n for n, _, _ in pct}, key=system_analyses.natural_key)
    out = []
    for node in nodes:
        g = gpus[gpus["node"] == node] if len(gpus) else gpus
        out.append(
            {
                "node": node,
                "cpu_util_p50": rounded(pct.get((node, "CPUUtilization", 0.5))),
                "cpu_util_p95": rounded(pct.get((node, "CPUUtilization", 0.95))),
                "io_wait_p95": rounded(pct.get((node, "I/OWaitPercentage", 0.95))),
                "gpus": [
                    {
                        "gpu": r.gpu,
                        "samples": int(r.samples),
                        "util_pct": {
                            "p5": rounded(r.util_p5),
                            "p50": rounded(r.util_p50),
                            "p95": rounded(r.util_p95),
                            "mean": rounded(r.util_mean),
                        },
                        "memory_pct": {
                            "p5": rounded(r.mem_p5),
                            "p50": rounded(r.mem_p50),
                            "p95": rounded(r.mem_p95),
                        },
                        "low_util_share_pct": rounded(r.low_share_pct),
                    }
                    for r in g.itertuples(index=False)
                ],
            }
        )
    return out


def rank_metrics(job: Job) -> list[dict[str, Any]]:
    ds, steps, waits = job.dataset, job.steps(), job.dataloader_waits()
    stats = job.step_stats().set_index("rank") if not steps.empty else pd.DataFrame()
    ranks = sorted(set(ds.ranks) | (set(stats.index) if len(stats) else set()))
    node_of = {}
    traces = ds.table("kineto_traces")
    if traces.num_rows:
        for row in traces.select(["rank", "node"]).to_pylist():
            node_of[row["rank"]] = row["node"]
    gpu = gpu_metrics_by_rank(job)
    stalls = stall_pct_by_rank(waits)
    out = []
    for rank in ranks:
        st = stats.loc[rank] if len(stats) and rank in stats.index else None
        entry: dict[str, Any] = {
            "rank": int(rank),
            "node": node_of.get(rank),
            "steps": int(st["steps"]) if st is not None else 0,
            "step_time_mean_ms": rounded(st["mean_ms"]) if st is not None else None,
            "step_time_median_ms": rounded(st["median_ms"]) if st is not None else None,
            "step_time_p95_ms": rounded(st["p95_ms"]) if st is not None else None,
            "step_time_std_ms": rounded(st["std_ms"]) if st is not None else None,
            "steps_per_s": rounded(st["steps_per_s"]) if st is not None else None,
            "dataloader_stall_pct": stalls.get(int(rank)),
            "comm_comp_overlap_pct": None,
            "exposed_comm_pct": None,
            "temporal_pct": None,
            "kernel_share_pct": None,
            "idle_breakdown_pct": None,
            "kernel_launches": None,
            "gpu_annotations": [],
            "allocator_memory": [],
        }
        entry.update(gpu.get(int(rank), {}))
        out.append(entry)
    return out


def gpu_metrics_by_rank(job: Job) -> dict[int, dict[str, Any]]:
    """Per-rank GPU breakdowns from the Kineto analyses (HTA's definitions), the same
    memoised results the rules read."""
    if not job.has_kineto_events:
        return {}
    out: dict[int, dict[str, Any]] = {}
    temporal = job.temporal_breakdown()
    for r in temporal.itertuples(index=False):
        out.setdefault(int(r.rank), {})["temporal_pct"] = {
            "compute": rounded(r.compute_time_pct),
            "non_compute": rounded(r.non_compute_time_pct),
            "idle": rounded(r.idle_time_pct),
        }
    types = job.kernel_type_breakdown()
    for rank, g in types.groupby("rank"):
        shares = dict(zip(g["kernel_type"], g["pct"], strict=True))
        out.setdefault(int(rank), {})["kernel_share_pct"] = {
            "computation": rounded(shares.get("COMPUTATION", 0.0)),
            "communication": rounded(shares.get("COMMUNICATION", 0.0)),
            "memory": rounded(shares.get("MEMORY", 0.0)),
            "overlapping": {k: rounded(v) for k, v in shares.items() if " overlapping " in k},
        }
    idle = idle_time.idle_time_by_rank(job.idle_time_breakdown())
    for r in idle.itertuples(index=False):
        if r.idle_ns > 0:
            out.setdefault(int(r.rank), {})["idle_breakdown_pct"] = {
                "host_wait": rounded(r.host_wait_pct),
                "kernel_wait": rounded(r.kernel_wait_pct),
                "other": rounded(r.other_pct),
            }
    launches = job.kernel_launch_summary()
    for r in launches.itertuples(index=False):
        out.setdefault(int(r.rank), {})["kernel_launches"] = {
            "kernels": int(r.kernels),
            "cpu_launch_mean_us": rounded(r.cpu_duration_mean_ns / 1e3),
            "gpu_duration_mean_us": rounded(r.gpu_duration_mean_ns / 1e3),
            "launch_delay_mean_us": rounded(r.launch_delay_mean_ns / 1e3),
            "launch_delay_max_us": rounded(r.launch_delay_max_ns / 1e3),
            "short_kernels": int(r.short_kernels),
            "runtime_outliers": int(r.runtime_outliers),
            "launch_delay_outliers": int(r.launch_delay_outliers),
        }
    mem = job.allocator_memory_summary()
    for rank, g in mem.groupby("rank", sort=True):
        out.setdefault(int(rank), {})["allocator_memory"] = [
            {
                "device": "cpu" if r.device < 0 else f"gpu{int(r.device)}",
                "peak_allocated_mib": rounded(r.peak_allocated_bytes / 2**20),
                "peak_reserved_mib": rounded(r.peak_reserved_bytes / 2**20),
                "steps": int(r.steps),
                "growth_per_step_mib": rounded(r.growth_per_step_bytes / 2**20),
            }
            for r in g.itertuples(index=False)
        ]
    labels = job.gpu_annotation_breakdown()
    for rank, g in labels.groupby("rank", sort=True):
        out.setdefault(int(rank), {})["gpu_annotations"] = [
            {
                "name": str(r.name),
                "count": int(r.count),
                "total_ms": rounded(r.total_ns / 1e6),
                "mean_ms": rounded(r.mean_ns / 1e6),
                "pct": rounded(r.pct),
            }
            for r in g.head(10).itertuples(index=False)
        ]
    comm = job.communication_summary()
    exposed = exposed_pct_by_rank(comm)
    for r in comm.itertuples(index=False):
        has_comm = bool(r.comm_time_ns) and r.comm_time_ns == r.comm_time_ns
        out.setdefault(int(r.rank), {}).update(
            {
                "comm_comp_overlap_pct": rounded(r.comm_comp_overlap_pct) if has_comm else None,
                "exposed_comm_pct": exposed.get(int(r.rank)),
                "comm_share_pct": rounded(r.comm_share_pct) if has_comm else None,
            }
        )
    return out
