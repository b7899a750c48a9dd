"""Compare: this job against a baseline run (the report's BaselineRegression comparison)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from analyzer.errors import StepscopeError
from dashboards import data, downsample, tables, ui
from stepscope.present.comparison import change, tolerance_text

ctx = ui.context()
job = ctx.job
ui.page_header("Compare", ctx)

if "cmp_source" not in st.session_state:
    st.session_state["cmp_source"] = job.cfg.baseline or ""
SHIPPED = "samples/sample-baseline"  # the bundled sample run without its injected problems
with st.sidebar:
    st.divider()
    src = st.text_input(
        "Baseline run (folder, s3:// prefix or SageMaker job name)",
        key="cmp_source",
        placeholder=f"e.g. {SHIPPED} or my-training-job-2024-01-01",
    )
if not src.strip():
    st.info(
        "This page compares this run with a baseline run (the same training, known good), "
        "and no baseline is given yet. Type one in the sidebar (**Baseline run**: a folder, "
        "an `s3://` prefix or a SageMaker job name), or start the dashboard with one: "
        f"`stepscope dashboard {job.cfg.source} --baseline SOURCE`."
    )
    st.markdown(
        f"For the bundled sample, its baseline is shipped: `{SHIPPED}` (the same job without the "
        f"injected problems): `stepscope dashboard samples/sample-job --baseline {SHIPPED}`."
    )
    st.stop()

try:
    with st.spinner(f"Loading baseline {src} and judging this run against it…"):
        report = data.compare(job, src.strip()).report
except StepscopeError as exc:
    st.error(f"Cannot open the baseline {src}: {exc.one_line()}")
    st.stop()
except Exception as exc:
    st.error(
        f"Cannot open the baseline {src}: internal error: {type(exc).__name__}: "
        f"{str(exc).splitlines()[0] if str(exc) else ''}"
    )
    st.stop()

base = report.baseline
if base is None:  # a report built with a baseline always has its comparison
    st.error(f"No comparison with {src} in the report.")
    st.stop()
comps = base.comparisons
regressed = [c for c in comps if c.regressed]
if regressed:
    st.error(
        f"{len(regressed)} metric(s) regressed against {base.job}: "
        + ", ".join(c.label for c in regressed)
    )
elif comps:
    st.success(f"No regression against {base.job} within the tolerances.")
else:
    st.info("The two runs share no headline metric to compare.")

LOWER_IS_BETTER = {"step_time_mean_ms", "dataloader_stall_pct", "exposed_comm_pct"}
if comps:
    cols = st.columns(len(comps))
    for col, c in zip(cols, comps, strict=True):
        col.metric(
            c.label,
            ui.fmt_num(c.current, digits=2),
            delta=ui.fmt_num(c.change_points, digits=2),
            delta_color="inverse" if c.metric in LOWER_IS_BETTER else "normal",
            help=(
                f"baseline {ui.fmt_num(c.baseline, digits=2)}; change {change(c)}; "
                f"tolerance {tolerance_text(c)}"
            ),
        )
    table = pd.DataFrame(
        [
            {
                "metric": c.label,
                "baseline": c.baseline,
                "current": c.current,
                "change": change(c),  # points for shares, % otherwise: as report.md says it
                "tolerance": tolerance_text(c),
                "regressed": c.regressed,
            }
            for c in comps
        ]
    )
    tables.show(
        table,
        sort=False,
        keep=("regressed",),
        style=lambda s: s.apply(
            lambda r: ["background-color: rgba(214,39,40,0.18)" if r["regressed"] else ""] * len(r),
            axis=1,
        ),
    )

a = [v for v in report.charts.steps.dur_ms if v is not None]
b = [v for v in base.step_ms if v is not None]
if a and b:
    edges, counts = downsample.histogram(
        {"this run": np.asarray(a), f"baseline {base.job}": np.asarray(b)}
    )
    fig = go.Figure()
    if len(edges):
        centres = (edges[:-1] + edges[1:]) / 2
        for name, cnt in counts.items():
            total = max(1, int(cnt.sum()))
            fig.add_trace(
                go.Bar(
                    x=centres,
                    y=cnt / total * 100,
                    name=name,
                    opacity=0.7,
                    width=float(edges[1] - edges[0]),
                )
            )
    ui.layout(
        fig,
        title="Step time distribution",
        xaxis_title="ms",
        yaxis_title="% of steps",
        barmode="overlay",
        hovermode="closest",
    )
    if len(counts) == 2:
        for trace, color in zip(fig.data, ("#4c78a8", "#bab0ac"), strict=False):
            trace.marker.color = color
    ui.plot(fig, key="cmp-hist")

rows = [
    {
        "run": label,
        "rank": r.rank,
        "step_time_mean_ms": r.step_time_mean_ms,
        "step_time_p95_ms": r.step_time_p95_ms,
        "dataloader_stall_pct": r.dataloader_stall_pct,
        "exposed_comm_pct": r.exposed_comm_pct,
    }
    for label, ranks in (("this run", report.metrics.ranks), ("baseline", base.ranks))
    for r in ranks
]
if rows:
    st.subheader("Per rank")
    tables.show(rows, group="run")
