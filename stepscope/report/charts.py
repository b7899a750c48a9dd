"""Plotly figures for the report (and the dashboard): built from the report's tables only.

Large series are downsampled before they reach a figure: a browser should never receive
millions of raw samples.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.graph_objects as go

from analyzer.job import Job


def gpu_heatmap(job: Job, bins: int = 120) -> go.Figure | None:
    hm = job.heatmap("GPUUtilization", bins).copy()
    if hm.empty:
        return None
    hm["row"] = hm["node"].astype(str) + " " + hm["device"].astype(str)
    pivot = hm.pivot_table(index="row", columns="bin_start", values="value")
    # whole milliseconds: plotly converts to datetime (µs) and warns on every lost nanosecond
    x = pd.to_datetime(pivot.columns, unit="s", utc=True).round("ms")
    fig = go.Figure(go.Heatmap(z=pivot.to_numpy(), x=x, y=list(pivot.index), zmin=0, zmax=100, colorscale="Viridis", colorbar={"title": "%"}))
    fig.update_layout(title="GPU utilization per node × GPU", height=max(260, 22 * len(pivot.index) + 120), margin={"l": 120})
    return fig


def step_times(steps: pd.DataFrame) -> go.Figure | None:
    if steps.empty:
        return None
    fig = go.Figure()
    for rank, g in steps.groupby("rank"):
        fig.add_trace(go.Scatter(x=g["step"], y=g["dur_ms"], mode="lines+markers", name=f"rank {int(rank)}"))
    fig.update_layout(title="Step time per rank", xaxis_title="step", yaxis_title="ms", height=360)
    span = int(steps["step"].max() - steps["step"].min()) if len(steps) else 0
    fig.update_xaxes(tickformat="d", dtick=max(1, span // 10))  # step numbers are integers: no 551.2
    return fig


def rank_breakdown(ranks: list[dict[str, Any]]) -> go.Figure | None:
    rows = [r for r in ranks if r.get("temporal_pct")]
    if not rows:
        return None
    x = [f"rank {r['rank']}" for r in rows]
    fig = go.Figure()
    for key, label in (("compute", "compute"), ("non_compute", "non-compute"), ("idle", "idle")):
        fig.add_trace(go.Bar(x=x, y=[r["temporal_pct"][key] for r in rows], name=label))
    fig.update_layout(barmode="stack", title="GPU time per rank (HTA temporal breakdown)", yaxis_title="%", height=360)
    return fig


def idle_breakdown(ranks: list[dict[str, Any]]) -> go.Figure | None:
    rows = [r for r in ranks if r.get("idle_breakdown_pct")]
    if not rows:
        return None
    x = [f"rank {r['rank']}" for r in rows]
    fig = go.Figure()
    for key, label in (("host_wait", "host wait"), ("kernel_wait", "kernel wait"), ("other", "other")):
        fig.add_trace(go.Bar(x=x, y=[r["idle_breakdown_pct"][key] for r in rows], name=label))
    fig.update_layout(barmode="stack", title="Why the GPU idled (HTA idle time breakdown, all streams)",
                      yaxis_title="% of idle time", yaxis_range=[0, 100], height=340)
    return fig


def dataloader_share(ranks: list[dict[str, Any]]) -> go.Figure | None:
    rows = [r for r in ranks if r.get("dataloader_stall_pct") is not None]
    if not rows or not any(r["dataloader_stall_pct"] for r in rows):
        return None  # no rank waits for data: the table says 0, a chart of nothing says less
    fig = go.Figure(go.Bar(x=[f"rank {r['rank']}" for r in rows], y=[r["dataloader_stall_pct"] for r in rows]))
    fig.update_layout(title="Share of step time waiting for data", yaxis_title="%", yaxis_range=[0, 100], height=320)
    return fig
