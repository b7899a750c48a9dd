"""Plotly figures for report.html, built from the report's chart series and metrics only.

A rank is drawn in its colour from ``stepscope.report.palette``, the dashboard's too. The
training-health figures are the dashboard's as well: ``stepscope.present.training_figures``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from stepscope.report.model import Heatmap, RankMetrics, Steps
from stepscope.report.palette import rank_color


def gpu_heatmap(hm: Heatmap | None) -> go.Figure | None:
    if hm is None:
        return None
    z = np.array([[np.nan if v is None else v for v in row] for row in hm.values], dtype=float)
    # whole milliseconds: plotly converts to datetime (µs) and warns on every lost nanosecond
    x = pd.to_datetime(pd.Index(hm.bin_start_s, dtype="float64"), unit="s", utc=True).round("ms")
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=x,
            y=list(hm.rows),
            zmin=0,
            zmax=100,
            colorscale="Viridis",
            colorbar={"title": "%"},
        )
    )
    fig.update_layout(
        title="GPU utilization per node × GPU",
        height=max(260, 22 * len(hm.rows) + 120),
        margin={"l": 120},
    )
    return fig


def step_times(series: Steps) -> go.Figure | None:
    if series.empty:
        return None
    steps = series.frame()
    fig = go.Figure()
    for rank, g in steps.groupby("rank"):
        color = rank_color(int(rank))
        fig.add_trace(
            go.Scatter(
                x=g["step"],
                y=g["dur_ms"],
                mode="lines+markers",
                name=f"rank {int(rank)}",
                line={"color": color},
                marker={"color": color},
            )
        )
    fig.update_layout(title="Step time per rank", xaxis_title="step", yaxis_title="ms", height=360)
    span = int(steps["step"].max() - steps["step"].min()) if len(steps) else 0
    fig.update_xaxes(
        tickformat="d", dtick=max(1, span // 10)
    )  # step numbers are integers: no 551.2
    return fig


def rank_breakdown(ranks: list[RankMetrics]) -> go.Figure | None:
    rows = [r for r in ranks if r.temporal_pct is not None]
    if not rows:
        return None
    x = [f"rank {r.rank}" for r in rows]
    fig = go.Figure()
    for key, label in (("compute", "compute"), ("non_compute", "non-compute"), ("idle", "idle")):
        fig.add_trace(go.Bar(x=x, y=[getattr(r.temporal_pct, key) for r in rows], name=label))
    fig.update_layout(
        barmode="stack",
        title="GPU time per rank (HTA temporal breakdown)",
        yaxis_title="%",
        height=360,
    )
    return fig


def idle_breakdown(ranks: list[RankMetrics]) -> go.Figure | None:
    rows = [r for r in ranks if r.idle_breakdown_pct is not None]
    if not rows:
        return None
    x = [f"rank {r.rank}" for r in rows]
    fig = go.Figure()
    for key, label in (
        ("host_wait", "host wait"),
        ("kernel_wait", "kernel wait"),
        ("other", "other"),
    ):
        fig.add_trace(go.Bar(x=x, y=[getattr(r.idle_breakdown_pct, key) for r in rows], name=label))
    fig.update_layout(
        barmode="stack",
        title="Why the GPU idled (HTA idle time breakdown, all streams)",
        yaxis_title="% of idle time",
        yaxis_range=[0, 100],
        height=340,
    )
    return fig


def dataloader_share(ranks: list[RankMetrics]) -> go.Figure | None:
    rows = [r for r in ranks if r.dataloader_stall_pct is not None]
    if not rows or not any(r.dataloader_stall_pct for r in rows):
        return None  # no rank waits for data: the table says 0, a chart of nothing says less
    fig = go.Figure(
        go.Bar(x=[f"rank {r.rank}" for r in rows], y=[r.dataloader_stall_pct for r in rows])
    )
    fig.update_layout(
        title="Share of step time waiting for data",
        yaxis_title="%",
        yaxis_range=[0, 100],
        height=320,
    )
    return fig
