"""Kernels: kernel-type shares per rank, why the GPU idled, and the top kernels (HTA's kernel
and idle time breakdowns)."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboards import ui

ctx = ui.context()
job, flt = ctx.job, ctx.filters
series = job.report.charts
ui.page_header("Kernels", ctx, note="profiled window")

kt = series.kernel_types.frame()
top = series.top_kernels.frame() if series.top_kernels is not None else pd.DataFrame()
if kt.empty and top.empty:
    st.info("No GPU kernels in this job's traces (a CPU-only job, or no PyTorch profiler traces with CUDA "
            "activity).")
    st.stop()


def on_selected_ranks(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of the ranks the sidebar filters keep (all when none is picked)."""
    return df[df["rank"].isin(flt.rank_list(sorted(df["rank"].astype(int).unique()), job.rank_node))]


if not kt.empty:
    k = on_selected_ranks(kt)
    fig = go.Figure()
    for kind, g in k.groupby("kernel_type", sort=False):
        fig.add_trace(go.Bar(x=[f"rank {int(r)}" for r in g["rank"]], y=g["pct"], name=str(kind)))
    ui.layout(fig, title="Kernel-type share of GPU time per rank", yaxis_title="%", barmode="stack",
              yaxis_range=[0, 100], hovermode="closest", height=360)
    ui.plot(fig, key="kern-types")

idle = series.idle_time.frame()
if not idle.empty:
    i = on_selected_ranks(idle)
    fig = go.Figure()
    labels = {"host_wait": "host wait (CPU launched too late)", "kernel_wait": "kernel wait (launch gaps < 30 µs)",
              "other": "other (waiting on streams, events, syncs)"}
    for cat, label in labels.items():
        g = i[i["idle_category"] == cat]
        fig.add_trace(go.Bar(x=[f"rank {int(r)} · stream {int(s)}" for r, s in zip(g["rank"], g["stream"], strict=True)],
                             y=g["idle_time_ns"] / 1e6, name=label))
    ui.layout(fig, title="Why the GPU idled, per rank and CUDA stream", yaxis_title="ms idle", barmode="stack",
              hovermode="closest", height=340)
    ui.plot(fig, key="kern-idle")
    st.caption("Idle gaps between consecutive kernels and memory copies on each CUDA stream, by cause "
               "(HTA's idle time breakdown). Much host wait: the CPU does not enqueue work fast enough "
               "(Python overhead, data loading, synchronisation); try CUDA graphs or larger kernels.")

labels = series.gpu_labels.frame()
if not labels.empty:
    lab = on_selected_ranks(labels)
    fig = go.Figure()
    for name, g in lab.groupby("name", sort=False):
        fig.add_trace(go.Bar(x=[f"rank {int(r)}" for r in g["rank"]], y=g["total_ns"] / 1e6, name=str(name)[:60],
                             hovertext=[f"{n} × {c}" for n, c in zip(g["name"], g["count"], strict=True)]))
    ui.layout(fig, title="GPU time by your record_function labels, per rank", yaxis_title="ms", barmode="group",
              hovermode="closest", height=340)
    ui.plot(fig, key="kern-labels")

launched = [r for r in job.report.metrics.ranks if r.kernel_launches is not None]
shown_ranks = set(flt.rank_list([r.rank for r in launched], job.rank_node))
launches = [(r.rank, r.kernel_launches) for r in launched if r.rank in shown_ranks and r.kernel_launches is not None]
if launches:
    st.subheader("Kernel launches")
    st.dataframe(
        pd.DataFrame([{
            "rank": rank,
            "launches": k.kernels,
            "launch call µs (mean)": k.cpu_launch_mean_us,
            "kernel µs (mean)": k.gpu_duration_mean_us,
            "queue delay µs (mean)": k.launch_delay_mean_us,
            "queue delay µs (max)": k.launch_delay_max_us,
            "shorter than their launch": k.short_kernels,
            "launch calls > 50 µs": k.runtime_outliers,
            "queued > 100 µs": k.launch_delay_outliers,
        } for rank, k in launches]),
        hide_index=True, width="stretch",
    )
    st.caption("Per rank, each kernel and memory copy paired with the CPU call that launched it (HTA's kernel "
               "launch statistics). Many kernels shorter than their launch: the job is launch-bound (fuse ops, "
               "CUDA graphs, torch.compile); long queue delays: the GPU is busy with earlier work.")

if not top.empty:
    ranks = flt.rank_list(sorted(top["rank"].astype(int).unique()), job.rank_node)
    if not ranks:
        st.info("No kernels on the selected ranks.")
        st.stop()
    rank = st.selectbox("Rank", ranks, format_func=lambda r: f"rank {r}", key="kern-rank") if len(ranks) > 1 else ranks[0]
    t = top[top["rank"] == rank].sort_values("total_ns", ascending=False)
    short = []
    for n in t["name"].astype(str):  # kernels whose names differ only past the cut stay separate bars
        label = n if len(n) <= 60 else n[:57] + "…"
        while label in short:
            label += "\u200b"  # invisible, but a distinct category for plotly
        short.append(label)
    fig = go.Figure(go.Bar(x=t["total_ns"] / 1e6, y=short, orientation="h",
                           text=t["kernel_class"].astype(str), hovertext=t["name"].astype(str)))
    ui.layout(fig, title=f"Top kernels by GPU time, rank {rank}", xaxis_title="ms", hovermode="closest",
              height=max(300, 24 * len(t) + 100))
    fig.update_yaxes(autorange="reversed")
    ui.plot(fig, key="kern-top")
    view = t.assign(total_ms=t["total_ns"] / 1e6, mean_us=t["mean_ns"] / 1e3)[
        ["kernel_class", "library", "name", "count", "total_ms", "mean_us", "pct_of_class", "pct_of_gpu"]
    ]
    st.dataframe(view.round(3), hide_index=True, width="stretch")
