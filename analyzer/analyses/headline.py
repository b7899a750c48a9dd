"""The job's figures of merit: step time and its spread, throughput, GPU utilization, the
data-loader stall share and the exposed-communication share.

Measurements over the Job's analyses' outputs (the report's headline, and what
BaselineRegression compares between two runs). The two shares are means over ranks of each
rank's own share, rounded as the report's per-rank rows show them, so the headline is the
mean of the figures a reader sees per rank.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from analyzer.analyses.summary import rounded

__all__ = ["exposed_pct_by_rank", "headline", "stall_pct_by_rank"]


def stall_pct_by_rank(waits: pd.DataFrame) -> dict[int, float | None]:
    """Per rank: the share (%) of its profiled step time spent waiting for the next batch
    (``steps.dataloader_waits``: wait_ms and step_ms per step), None without step time."""
    out: dict[int, float | None] = {}
    if waits.empty:
        return out
    for rank, w in waits.groupby("rank", sort=True):
        total = w["step_ms"].sum()
        out[int(rank)] = rounded(float(w["wait_ms"].sum() / total * 100)) if total else None
    return out


def exposed_pct_by_rank(comm: pd.DataFrame) -> dict[int, float | None]:
    """Per rank: communication not overlapped by computation, as a share (%) of the GPU's
    busy time (``communication.communication_summary``); None without communication."""
    out: dict[int, float | None] = {}
    for r in comm.itertuples(index=False):
        busy = float(r.gpu_busy_ns) if r.gpu_busy_ns == r.gpu_busy_ns else 0.0
        has_comm = bool(r.comm_time_ns) and r.comm_time_ns == r.comm_time_ns
        out[int(r.rank)] = (
            rounded(float(r.exposed_comm_ns) / busy * 100) if has_comm and busy > 0 else None
        )
    return out


def headline(
    steps: pd.DataFrame,
    gpus: pd.DataFrame,
    gpu_util: pd.DataFrame,
    stalls: dict[int, float | None],
    exposed: dict[int, float | None],
) -> dict[str, Any]:
    """``steps`` (dur_ms per rank and step), ``gpus`` (one row per GPU), ``gpu_util`` (the
    GPUUtilization samples' ``value``), and the per-rank shares above."""
    stall = [v for v in stalls.values() if v is not None]
    expo = [v for v in exposed.values() if v is not None]
    return {
        "gpu_util_p50": rounded(gpu_util["value"].quantile(0.5)) if len(gpu_util) else None,
        "gpu_util_p95": rounded(gpu_util["value"].quantile(0.95)) if len(gpu_util) else None,
        "gpus": len(gpus),
        "dataloader_stall_pct": rounded(sum(stall) / len(stall)) if stall else None,
        "exposed_comm_pct": rounded(sum(expo) / len(expo)) if expo else None,
        "step_time_mean_ms": rounded(steps["dur_ms"].mean()) if len(steps) else None,
        "step_time_std_ms": rounded(steps["dur_ms"].std(ddof=0)) if len(steps) else None,
        "steps_per_s": rounded(1000.0 / steps.groupby("rank")["dur_ms"].mean().max())
        if len(steps)
        else None,
    }
