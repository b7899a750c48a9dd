"""System: CPU / GPU / GPU memory / I/O wait over time, node x GPU heatmap, flagged windows."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from dashboards import ui

ctx = ui.context()
job, flt = ctx.job, ctx.filters
ui.page_header("System", ctx)

dims = ui.dimensions(job)
if not dims:
    st.info("This job has no system metrics (SageMaker Debugger's system monitor was off, "
            "or the source holds only traces).")
    st.stop()

nodes = tuple(flt.nodes)
windows = ui.finding_windows(job, ("LowGPUUtilization", "CPUBottleneck", "IOBottleneck", "GPUMemoryIncrease"), nodes)
per_core = st.toggle("CPU per core", value=False, help="Off: one line per node (mean over cores), the band "
                     "is the spread across cores. On: one line per core (many lines).")
if windows:
    st.caption(f"Shaded: {len(windows)} window(s) flagged by the rules (low GPU utilization, CPU/I/O "
               "bottleneck, GPU memory growth).")

CHARTS = (
    ("GPUUtilization", "GPU utilization", "device", "%"),
    ("GPUMemoryUtilization", "GPU memory utilization", "device", "%"),
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
    groups = df.groupby(["node", "device"], sort=False)
    band = groups.ngroups <= 16
    fig = go.Figure()
    for (node, device), g in groups:
        name = node if device == "all" else f"{node} {device}"
        ui.add_series(fig, ui.times(g["t"]), g, name, band=band)
    ui.shade(fig, windows)
    what = "per node, band = min..max over devices" if per == "node" else "per node and device"
    many = groups.ngroups > 12
    ui.layout(fig, title=f"{title} ({what}; {len(df):,} points after downsampling)", yaxis_title=unit,
              yaxis_range=[0, 105], height=420 if many else 340,
              **({"legend": {"orientation": "v", "x": 1.01, "y": 1, "font": {"size": 10}}, "hovermode": "closest"}
                 if many else {}))
    ui.plot(fig, key=f"sys-{dim}")

if "GPUUtilization" in dims:
    hm = ui.system_series(job.key, "GPUUtilization", nodes, flt.window, "device", 240, job)
    if not hm.empty:
        hm["row"] = hm["node"] + " " + hm["device"]
        pivot = hm.pivot_table(index="row", columns="t", values="mean", sort=False)
        fig = go.Figure(go.Heatmap(z=pivot.to_numpy(), x=ui.times(pivot.columns), y=list(pivot.index),
                                   zmin=0, zmax=100, colorscale="Viridis", colorbar={"title": "%"}))
        ui.shade(fig, windows, color="rgba(255,255,255,0.0)")
        ui.layout(fig, title="GPU utilization: node × GPU (mean per time bin)",
                  height=max(260, 18 * len(pivot.index) + 120), hovermode="closest")
        fig.update_yaxes(autorange="reversed")
        ui.plot(fig, key="sys-heatmap")

rows = [
    {"node": n.node, "cpu p50 %": n.cpu_util_p50, "cpu p95 %": n.cpu_util_p95,
     "io wait p95 %": n.io_wait_p95, "gpus": len(n.gpus),
     "gpu util p50 % (mean of gpus)": (sum(g.util_pct.p50 or 0 for g in n.gpus) / len(n.gpus)) if n.gpus else None}
    for n in job.report.metrics.nodes if not nodes or n.node in nodes
]
if rows:
    st.subheader("Per node (whole job)")
    st.dataframe(rows, hide_index=True, width="stretch")
