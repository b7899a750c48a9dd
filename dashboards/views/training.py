"""Training health: per worker the loss over steps, a layer × step heatmap of gradient
norms, update ratios and activation statistics, with SageMaker Debugger's training rules'
findings above them; "Show chart" on a finding picks its worker and draws its chart first,
its step range shaded (the rule's verdict, not a threshold of this page)."""

from __future__ import annotations

from typing import Any

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from dashboards import tables, ui
from rules.base import Finding
from stepscope.report.model import TrainingCharts
from stepscope.report.training import CHART_TITLES, NO_DATA_NOTE, chart_of, log_norms

WORKER_KEY = "training-worker"
FOCUS_KEY = "training-focus"

ctx = ui.context()
job = ctx.job
report = job.report
ui.page_header("Training health", ctx)

th = report.training_health
t = report.charts.training
if th is None or not th.workers or t is None:
    st.info(th.note if th is not None and th.note else NO_DATA_NOTE)
    st.stop()

workers = [w.worker for w in th.workers]
st.subheader("Workers")
tables.show([w.model_dump() for w in th.workers], sort=False, labels={
    "worker": "worker", "first_step": "first step", "last_step": "last step", "steps": "steps recorded",
    "loss_tag": "training loss", "last_loss": "last training loss", "last_loss_step": "at step",
    "eval_loss_tag": "evaluation loss", "last_eval_loss": "last evaluation loss",
    "gradient_layers": "layers with gradients", "first_nonfinite_step": "first non-finite step",
})
st.caption("Training rules: " + ", ".join(f"{v.rule} {v.status}" for v in th.rules))


def _show(index: int, worker: str) -> None:
    """Button callback: this finding's worker, its chart first."""
    st.session_state[WORKER_KEY] = worker
    st.session_state[FOCUS_KEY] = index


found = [(i, report.findings[i]) for v in th.rules for i in v.findings]
st.subheader(f"Findings ({len(found)})")
if not found:
    st.success("No training rule fired on this job.")
for i, f in found:
    worker = str(f.evidence.get("worker") or "")
    with st.container(border=True, key=f"training-finding-{i}"):
        st.markdown(f"{ui.SEVERITY_BADGE.get(f.severity, f.severity)} **{f.title}** · `{f.rule}` · {f.where or 'job'}")
        st.markdown(f.message)
        if worker in workers:
            st.button(f"Show chart: {CHART_TITLES[chart_of(f)]}", key=f"training-goto-{i}", on_click=_show,
                      args=(i, worker), icon=":material/arrow_downward:", width="content")

if st.session_state.get(WORKER_KEY) not in workers:
    worst = next((str(f.evidence.get("worker")) for _, f in found if f.evidence.get("worker") in workers), workers[0])
    st.session_state[WORKER_KEY] = worst  # the worst finding's worker first
worker = st.selectbox("Worker", workers, key=WORKER_KEY)
focus_index = st.session_state.get(FOCUS_KEY)
focus: Finding | None = None
if isinstance(focus_index, int) and 0 <= focus_index < len(report.findings):
    cand = report.findings[focus_index]
    focus = cand if cand.evidence.get("worker") == worker else None


def _steps_of(f: Finding) -> tuple[float, float] | None:
    rng = f.evidence.get("step_range")
    if isinstance(rng, list) and len(rng) == 2 and all(isinstance(v, int | float) for v in rng):
        return float(rng[0]), float(rng[1])
    return None


def _mark(fig: go.Figure, chart: str) -> None:
    """Shade the focused finding's step range on the chart that shows it."""
    if focus is None or chart_of(focus) != chart:
        return
    rng = _steps_of(focus)
    if rng is not None:
        lo, hi = rng
        fig.add_vrect(x0=lo - 0.5, x1=hi + 0.5, fillcolor="rgba(214,39,40,0.12)", line_width=0,
                      annotation_text=focus.rule, annotation_position="top left")


def _of(df: Any) -> Any:
    return df[df["worker"] == worker] if len(df) else df


def loss_chart(tc: TrainingCharts) -> go.Figure | None:
    df = _of(tc.loss.frame())
    if df.empty:
        return None
    fig = go.Figure()
    for (tag, phase), g in df.groupby(["tag", "phase"], sort=True):
        fig.add_trace(go.Scatter(x=g["step"], y=g["value"], mode="lines+markers" if len(g) <= 60 else "lines",
                                 name=f"{tag} ({phase})", line={"dash": "dash" if phase == "eval" else "solid"}))
    ui.layout(fig, title=f"{CHART_TITLES['loss']}: {worker}", xaxis_title="step", yaxis_title="loss")
    return fig


def gradient_chart(tc: TrainingCharts) -> go.Figure | None:
    hm = next((h for h in tc.gradient_norms if h.worker == worker), None)
    if hm is None or not hm.rows or not hm.steps:
        return None
    z = np.array([[np.nan if v is None else v for v in row] for row in hm.values], dtype=float)
    logz = log_norms(z)
    fig = go.Figure(go.Heatmap(z=logz, x=hm.steps, y=hm.rows, customdata=z, colorscale="Viridis",
                               colorbar={"title": "log10 ‖g‖"},
                               hovertemplate="%{y}<br>step %{x:.0f}<br>‖g‖ %{customdata:.3g}<extra></extra>"))
    ui.layout(fig, title=f"{CHART_TITLES['gradient_norms']}: {worker} (mean per step bin)", xaxis_title="step",
              height=max(260, 18 * len(hm.rows) + 120), hovermode="closest", margin={"l": 160, "r": 20, "t": 70, "b": 40})
    fig.update_yaxes(categoryorder="array", categoryarray=hm.rows, autorange="reversed")
    return fig


def ratio_chart(tc: TrainingCharts) -> go.Figure | None:
    df = _of(tc.update_ratios.frame())
    if df.empty:
        return None
    fig = go.Figure()
    for name, g in df.groupby("name", sort=False):
        fig.add_trace(go.Scatter(x=g["step"], y=g["ratio"], mode="lines", name=str(name)))
    ui.layout(fig, title=f"{CHART_TITLES['update_ratios']}: {worker}", xaxis_title="step", yaxis_title="ratio",
              yaxis_type="log")
    return fig


def activation_chart(tc: TrainingCharts) -> go.Figure | None:
    df = _of(tc.activations.frame())
    if df.empty or df["zero_fraction"].isna().all():
        return None
    fig = go.Figure()
    for (name, module), g in df.groupby(["name", "module"], sort=False, dropna=False):
        label = f"{name} ({module})" if isinstance(module, str) and module else str(name)
        fig.add_trace(go.Scatter(x=g["step"], y=g["zero_fraction"] * 100, mode="lines", name=label))
    ui.layout(fig, title=f"{CHART_TITLES['activations']}: {worker}", xaxis_title="step", yaxis_title="% zero outputs",
              yaxis_range=[0, 105])
    return fig


BUILDERS = {"loss": loss_chart, "gradient_norms": gradient_chart, "update_ratios": ratio_chart,
            "activations": activation_chart}
order = list(BUILDERS)
if focus is not None:  # the finding's chart first
    order.remove(chart_of(focus))
    order.insert(0, chart_of(focus))
    st.caption(f"Showing {focus.rule} ({focus.where}) on {CHART_TITLES[chart_of(focus)].lower()}, its steps shaded.")
for chart in order:
    fig = BUILDERS[chart](t)
    if fig is None:
        st.caption(f"{CHART_TITLES[chart]}: not recorded for {worker}.")
        continue
    _mark(fig, chart)
    ui.plot(fig, key=f"training-{chart}")
st.caption("Long series are binned on steps (mean per bin); a gap is a step where the value was not a number.")

layers = _of(t.layers.frame())
if len(layers):
    st.subheader("Per layer")
    tables.show(layers.drop(columns="worker"), sort=False, labels={
        "layer": "layer", "measure": "measure", "module": "module", "points": "points", "first_step": "first step",
        "last_step": "last step", "last": "last", "min": "min", "max": "max",
    })
