"""Training health: per worker the loss over steps, a layer × step heatmap of gradient
norms, update ratios and activation statistics, with SageMaker Debugger's training rules'
findings above them; "Show chart" on a finding picks its worker and draws its chart first,
its step range shaded (the rule's verdict, not a threshold of this page). The sidebar's
node/rank filters narrow the workers to those whose name says they ran there
(``algo-1 rank 0``, ``worker_3``); a worker whose name says neither stays."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from dashboards import tables, ui
from rules.base import Finding
from stepscope.present import training_figures
from stepscope.report.model import TrainingCharts
from stepscope.report.rule_info import chart_of
from stepscope.report.training import CHART_TITLES, NO_DATA_NOTE

WORKER_KEY = "training-worker"
FOCUS_KEY = "training-focus"

ctx = ui.context()
job, flt = ctx.job, ctx.filters
report = job.report
ui.page_header("Training health", ctx)

th = report.training_health
t = report.charts.training
if th is None or not th.workers or t is None:
    st.info(th.note if th is not None and th.note else NO_DATA_NOTE)
    st.stop()

every_worker = [w.worker for w in th.workers]
workers = flt.worker_list(every_worker, job.rank_node, job.nodes)
if not workers:
    st.info(
        f"The node/rank filters ({flt.describe()}) hide every worker with training data "
        f"({', '.join(every_worker)}): clear them in the sidebar to see the charts."
    )
    st.stop()
st.subheader("Workers")
if len(workers) < len(every_worker):
    st.caption(
        f"{len(workers)} of {len(every_worker)} workers: "
        "the others are hidden by the node/rank filters "
        f"({flt.describe()})."
    )
tables.show(
    [w.model_dump() for w in th.workers if w.worker in workers],
    sort=False,
    labels={
        "worker": "worker",
        "first_step": "first step",
        "last_step": "last step",
        "steps": "steps recorded",
        "loss_tag": "training loss",
        "last_loss": "last training loss",
        "last_loss_step": "at step",
        "eval_loss_tag": "evaluation loss",
        "last_eval_loss": "last evaluation loss",
        "gradient_layers": "layers with gradients",
        "first_nonfinite_step": "first non-finite step",
    },
)
st.caption("Training rules: " + ", ".join(f"{v.rule} {v.status}" for v in th.rules))


def _show(index: int, worker: str) -> None:
    """Button callback: this finding's worker, its chart first."""
    st.session_state[WORKER_KEY] = worker
    st.session_state[FOCUS_KEY] = index


every_found = [(i, report.findings[i]) for v in th.rules for i in v.findings]
found = [
    (i, f)
    for i, f in every_found
    if str(f.evidence.get("worker") or "") in workers
    or f.evidence.get("worker") not in every_worker
]  # a job-wide finding stays
st.subheader(f"Findings ({len(found)})")
if len(found) < len(every_found):
    st.caption(f"{len(every_found) - len(found)} hidden by the node/rank filters.")
if not every_found:
    st.success("No training rule fired on this job.")
for i, f in found:
    worker = str(f.evidence.get("worker") or "")
    with st.container(border=True, key=f"training-finding-{i}"):
        st.markdown(
            f"{ui.SEVERITY_BADGE.get(f.severity, f.severity)} **{f.title}** · `{f.rule}` · "
            f"{f.where or 'job'}"
        )
        st.markdown(f.message)
        if worker in workers:
            st.button(
                f"Show chart: {CHART_TITLES[chart_of(f)]}",
                key=f"training-goto-{i}",
                on_click=_show,
                args=(i, worker),
                icon=":material/arrow_downward:",
                width="content",
            )

if st.session_state.get(WORKER_KEY) not in workers:
    worst = next(
        (str(f.evidence.get("worker")) for _, f in found if f.evidence.get("worker") in workers),
        workers[0],
    )
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
        fig.add_vrect(
            x0=lo - 0.5,
            x1=hi + 0.5,
            fillcolor="rgba(214,39,40,0.12)",
            line_width=0,
            annotation_text=focus.rule,
            annotation_position="top left",
        )


def loss_chart(tc: TrainingCharts) -> go.Figure | None:
    fig = training_figures.loss(tc, worker)
    if fig is not None:
        ui.layout(
            fig, title=f"{CHART_TITLES['loss']}: {worker}", xaxis_title="step", yaxis_title="loss"
        )
    return fig


def gradient_chart(tc: TrainingCharts) -> go.Figure | None:
    hm = next((h for h in tc.gradient_norms if h.worker == worker), None)
    fig = None if hm is None else training_figures.gradient_heatmap(hm)
    if hm is None or fig is None:
        return None
    ui.layout(
        fig,
        title=f"{CHART_TITLES['gradient_norms']}: {worker} (mean per step bin)",
        xaxis_title="step",
        height=max(260, 18 * len(hm.rows) + 120),
        hovermode="closest",
        margin={"l": 160, "r": 20, "t": 70, "b": 40},
    )
    fig.update_yaxes(categoryorder="array", categoryarray=hm.rows, autorange="reversed")
    return fig


def ratio_chart(tc: TrainingCharts) -> go.Figure | None:
    fig = training_figures.update_ratios(tc, worker)
    if fig is not None:
        ui.layout(
            fig,
            title=f"{CHART_TITLES['update_ratios']}: {worker}",
            xaxis_title="step",
            yaxis_title="ratio",
            yaxis_type="log",
        )
    return fig


def activation_chart(tc: TrainingCharts) -> go.Figure | None:
    fig = training_figures.activations(tc, worker)
    if fig is not None:
        ui.layout(
            fig,
            title=f"{CHART_TITLES['activations']}: {worker}",
            xaxis_title="step",
            yaxis_title="% zero outputs",
            yaxis_range=[0, 105],
        )
    return fig


BUILDERS = {
    "loss": loss_chart,
    "gradient_norms": gradient_chart,
    "update_ratios": ratio_chart,
    "activations": activation_chart,
}
order = list(BUILDERS)
if focus is not None:  # the finding's chart first
    order.remove(chart_of(focus))
    order.insert(0, chart_of(focus))
    st.caption(
        f"Showing {focus.rule} ({focus.where}) on {CHART_TITLES[chart_of(focus)].lower()}, "
        "its steps shaded."
    )
for chart in order:
    fig = BUILDERS[chart](t)
    if fig is None:
        st.caption(f"{CHART_TITLES[chart]}: not recorded for {worker}.")
        continue
    _mark(fig, chart)
    ui.plot(fig, key=f"training-{chart}")
st.caption(
    "Long series are binned on steps (mean per bin); "
    "a gap is a step where the value was not a number."
)

layers = t.layers.frame()
layers = layers[layers["worker"] == worker] if len(layers) else layers
if len(layers):
    st.subheader("Per layer")
    tables.show(
        layers.drop(columns="worker"),
        sort=False,
        labels={
            "layer": "layer",
            "measure": "measure",
            "module": "module",
            "points": "points",
            "first_step": "first step",
            "last_step": "last step",
            "last": "last",
            "min": "min",
            "max": "max",
        },
    )
