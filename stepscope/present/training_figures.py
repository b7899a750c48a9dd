"""The training-health figures, one builder each, for every output that draws them.

Why in the report layer: report.html (``stepscope.render.charts``) and the dashboard's
Training page draw the same loss, gradient-norm, update-ratio and activation figures from
the report's :class:`~stepscope.report.model.TrainingCharts`, and outputs do not import each
other. Each builder gives the traces and report.html's layout; a caller restyles the layout
(the dashboard's own titles, legend and margins) and adds its own marks on top.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from stepscope.report.model import LayerHeatmap, TrainingCharts
from stepscope.report.training import CHART_TITLES, log_norms

__all__ = ["activations", "gradient_heatmap", "loss", "update_ratios"]


def _of_worker(df: pd.DataFrame, worker: str) -> pd.DataFrame:
    return df[df["worker"] == worker] if len(df) else df


def loss(t: TrainingCharts, worker: str) -> go.Figure | None:
    """One worker's losses over steps: a line per tag, evaluation losses dashed."""
    df = _of_worker(t.loss.frame(), worker)
    if df.empty:
        return None
    fig = go.Figure()
    for (tag, phase), g in df.groupby(["tag", "phase"], sort=True):
        fig.add_trace(
            go.Scatter(
                x=g["step"],
                y=g["value"],
                mode="lines+markers" if len(g) <= 60 else "lines",
                name=f"{tag} ({phase})",
                line={"dash": "dash" if phase == "eval" else "solid"},
            )
        )
    fig.update_layout(
        title=f"{CHART_TITLES['loss']}: {worker}",
        xaxis_title="step",
        yaxis_title="loss",
        height=340,
    )
    return fig


def gradient_heatmap(hm: LayerHeatmap) -> go.Figure | None:
    """Layers × steps of the gradient norm, coloured by log10 (norms span many decades)."""
    if not hm.rows or not hm.steps:
        return None
    z = np.array([[np.nan if v is None else v for v in row] for row in hm.values], dtype=float)
    fig = go.Figure(
        go.Heatmap(
            z=log_norms(z),
            x=list(hm.steps),
            y=list(hm.rows),
            customdata=z,
            colorscale="Viridis",
            colorbar={"title": "log10 ‖g‖"},
            hovertemplate="%{y}<br>step %{x:.0f}<br>‖g‖ %{customdata:.3g}<extra></extra>",
        )
    )
    fig.update_layout(
        title=f"{CHART_TITLES['gradient_norms']}: {hm.worker}",
        xaxis_title="step",
        height=max(260, 18 * len(hm.rows) + 120),
        margin={"l": 160},
    )
    fig.update_yaxes(autorange="reversed")
    return fig


def update_ratios(t: TrainingCharts, worker: str) -> go.Figure | None:
    """Each layer's update ratio ‖Δw‖/‖w‖ over steps, on a log axis."""
    df = _of_worker(t.update_ratios.frame(), worker)
    if df.empty:
        return None
    fig = go.Figure()
    for name, g in df.groupby("name", sort=False):
        fig.add_trace(go.Scatter(x=g["step"], y=g["ratio"], mode="lines", name=str(name)))
    fig.update_layout(
        title=f"{CHART_TITLES['update_ratios']}: {worker}",
        xaxis_title="step",
        yaxis_title="ratio",
        yaxis_type="log",
        height=340,
    )
    return fig


def activations(t: TrainingCharts, worker: str) -> go.Figure | None:
    """Each activation layer's share of zero outputs over steps (a dead ReLU sits at 100 %)."""
    df = _of_worker(t.activations.frame(), worker)
    if df.empty or df["zero_fraction"].isna().all():
        return None
    fig = go.Figure()
    for (name, module), g in df.groupby(["name", "module"], sort=False, dropna=False):
        label = f"{name} ({module})" if isinstance(module, str) and module else str(name)
        fig.add_trace(go.Scatter(x=g["step"], y=g["zero_fraction"] * 100, mode="lines", name=label))
    fig.update_layout(
        title=f"Activations: share of zero outputs per layer: {worker}",
        xaxis_title="step",
        yaxis_title="% zeros",
        yaxis_range=[0, 105],
        height=340,
    )
    return fig
