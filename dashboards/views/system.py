"""System: the node x GPU heatmap first (a low node shows at a glance), then GPU, GPU memory,
CPU and I/O wait per node with the spread over its devices as a band (per-device lines
behind a toggle), and the windows the rules flagged, named in the legend."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from analyzer.analyses.system import natural_key
from dashboards import tables, ui
from stepscope.report.rule_info import shaded_metrics

ctx = ui.context()
job, flt = ctx.job, ctx.filters
ui.page_header("System", ctx)

dims = ui.dimensions(job)
if not dims:
    st.info(
        "This job has no system metrics (SageMaker Debugger's system monitor was off, "
        "or the source holds only traces)."
    )
    st.stop()

nodes = tuple(flt.nodes)
#: each chart shades the windows of the rules that judge its metric (each rule class says)
RULES = shaded_metrics()
windows = {dim: ui.finding_windows(job, rules, nodes) for dim, rules in RULES.items()}
flagged = sum(len(w) for w in windows.values())

if "GPUUtilization" in dims:
    hm = ui.system_series(job.key, "GPUUtilization", nodes, flt.window, "device", 240, job)
    if not hm.empty:
        hm["row"] = hm["node"].astype(str) + " " + hm["device"].astype(str)
        rows = sorted(hm["row"].unique(), key=natural_key)
        pivot = hm.pivot_table(index="row", columns="t", values="mean", sort=False).reindex(rows)
        fig = go.Figure(
            go.Heatmap(
                z=pivot.to_numpy(),
                x=ui.times(pivot.columns),
                y=rows,
                zmin=0,
                zmax=100,
                colorscale="Viridis",
                colorbar={"title": "%"},
                hovertemplate="%{y}<br>%{x}<br>%{z:.0f} %<extra></extra>",
            )
        )
        ui.layout(
            fig,
            title="GPU utilization: node × GPU (mean per time bin)",
            height=max(240, 20 * len(rows) + 110),
            hovermode="closest",
        )
        fig.update_yaxes(categoryorder="array", categoryarray=rows, autorange="reversed")
        ui.plot(fig, key="sys-heatmap")

c1, c2 = st.columns(2)
# a control that cannot apply is not shown: no GPU rows, no per-device toggle
per_device = "GPUUtilization" in dims and c1.toggle(
    "GPU lines per device",
    value=False,
    help="Off: one line per node (mean over its GPUs), the band is the spread across "
    "them. On: one line per GPU.",
)
per_core = "CPUUtilization" in dims and c2.toggle(
    "CPU lines per core",
    value=False,
    help="Off: one line per node (mean over cores), the band is the spread across cores. "
    "On: one line per core (many lines).",
)
if flagged:
    st.caption(
        f"Shaded: {flagged} window(s) the rules flagged, on the chart of the metric each rule "
        "judges (LowGPUUtilization on GPU utilization, GPUMemoryIncrease on GPU memory, "
        "CPUBottleneck on CPU, IOBottleneck on I/O wait), named in the legend (click one to hide "
        "it) and on hover."
    )

CHARTS = (
    ("GPUUtilization", "GPU utilization", "device" if per_device else "node", "%"),
    ("GPUMemoryUtilization", "GPU memory utilization", "device" if per_device else "node", "%"),
    ("CPUUtilization", "CPU utilization", "device" if per_core else "node", "%"),
    ("I/OWaitPercentage", "I/O wait", "node", "%"),
)

for dim, title, per, unit in CHARTS:
    if dim not in dims:
        continue
    df = ui.system_series(job.key, dim, nodes, flt.window, per, None, job)
    if df.empty:
        st.caption(f"{title}: no samples in the selected nodes / window.")
        continue
    groups = df.groupby(["node", "device"], sort=False, observed=True)
    keys = sorted(groups.groups, key=lambda k: (natural_key(str(k[0])), natural_key(str(k[1]))))
    band = len(keys) <= 16
    fig = go.Figure()
    for n, (node, device) in enumerate(keys):
        g = groups.get_group((node, device))
        name = str(node) if device == "all" else f"{node} {device}"
        ui.add_series(
            fig,
            ui.times(g["t"]),
            g,
            name,
            band=band,
            color=ui.SERIES_COLORS[n % len(ui.SERIES_COLORS)],
        )
    shaded = ui.shade(fig, windows[dim])
    what = "per node, band = min..max over its devices" if per == "node" else "per device"
    side = len(keys) > 12 or shaded > 0  # long legends beside the plot, not over its title
    ui.layout(
        fig,
        title=f"{title} ({what})",
        yaxis_title=unit,
        yaxis_range=[0, 105],
        height=420 if len(keys) > 12 else 340,
        **(
            {
                "legend": {"orientation": "v", "x": 1.01, "y": 1, "font": {"size": 10}},
                "hovermode": "closest",
            }
            if side
            else {}
        ),
    )
    ui.plot(fig, key=f"sys-{dim}")
st.caption(
    "Each line is the mean of a time bin (at most 2,000 bins per line), the band its min..max."
)

rows_ = [
    {
        "node": n.node,
        "cpu_util_p50": n.cpu_util_p50,
        "cpu_util_p95": n.cpu_util_p95,
        "io_wait_p95": n.io_wait_p95,
        "gpus": len(n.gpus),
        "gpu_util_p50": (sum(g.util_pct.p50 or 0 for g in n.gpus) / len(n.gpus))
        if n.gpus
        else None,
    }
    for n in job.report.metrics.nodes
    if not nodes or n.node in nodes
]
if rows_:
    st.subheader("Per node (whole job)")
    tables.show(rows_)
