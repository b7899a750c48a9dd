"""Kernels: kernel-type shares per rank, why the GPU idled, and the top kernels (HTA's kernel
and idle time breakdowns)."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboards import tables, ui

ctx = ui.context()
job, flt = ctx.job, ctx.filters
series = job.report.charts
ui.page_header("Kernels", ctx, note="profiled window")

#: kernel types in the dashboard's colours for kinds of time
KIND_COLORS = {
    "computation": ui.PART_COLORS["compute"],
    "communication": ui.PART_COLORS["communication"],
    "memory": ui.PART_COLORS["memory"],
}
MIXED = ("#eeca3b", "#9d755d", "#ff9da6", "#72b7b2", "#bab0ac")  # overlapping types: no alarm red
LAUNCH_LABELS: dict[str, tables.Col | str] = {
    "kernels": "launches",
    "cpu_launch_mean_us": tables.Col("launch call, mean", "µs"),
    "gpu_duration_mean_us": tables.Col("kernel, mean", "µs"),
    "launch_delay_mean_us": tables.Col("queue delay, mean", "µs"),
    "launch_delay_max_us": tables.Col("queue delay, max", "µs"),
    "short_kernels": "shorter than their launch",
    "runtime_outliers": "launch calls > 50 µs",
    "launch_delay_outliers": "queued > 100 µs",
}

kt = series.kernel_types.frame()
top = series.top_kernels.frame() if series.top_kernels is not None else pd.DataFrame()
if kt.empty and top.empty:
    st.info(
        "This page fills from a GPU trace, and this job has none: its PyTorch profiler traces "
        "hold no CUDA kernels (a CPU-only job such as the bundled sample, which trains on CPUs "
        "with gloo)."
    )
    st.markdown(
        "To fill it, profile a run on GPUs with CUDA activity recorded, e.g. "
        "`torch.profiler.profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA], "
        "on_trace_ready=tensorboard_trace_handler(...))` or SageMaker Debugger's framework "
        "profiling; then this page shows the kernel-type shares per rank, why the GPU idled "
        "(per CUDA stream), GPU time per `record_function` label, kernel launch statistics "
        "and the top kernels."
    )
    st.stop()


def on_selected_ranks(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of the ranks the sidebar filters keep (all when none is picked)."""
    return df[
        df["rank"].isin(flt.rank_list(sorted(df["rank"].astype(int).unique()), job.rank_node))
    ]


if not kt.empty:
    k = on_selected_ranks(kt)
    fig = go.Figure()
    for n, (kind, g) in enumerate(k.groupby("kernel_type", sort=False)):
        fig.add_trace(
            go.Bar(
                x=[f"rank {int(r)}" for r in g["rank"]],
                y=g["pct"],
                name=str(kind),
                marker={"color": KIND_COLORS.get(str(kind).lower(), MIXED[n % len(MIXED)])},
            )
        )
    ui.layout(
        fig,
        title="Kernel-type share of GPU time per rank",
        yaxis_title="%",
        barmode="stack",
        yaxis_range=[0, 100],
        hovermode="closest",
        height=360,
    )
    ui.rank_axis(fig, [f"rank {r}" for r in sorted(int(r) for r in k["rank"].unique())])
    ui.plot(fig, key="kern-types")

idle = series.idle_time.frame()
if not idle.empty:
    i = on_selected_ranks(idle)
    fig = go.Figure()
    labels = {
        "host_wait": "host wait (CPU launched too late)",
        "kernel_wait": "kernel wait (launch gaps < 30 µs)",
        "other": "other (waiting on streams, events, syncs)",
    }
    colors = {"host_wait": "#f58518", "kernel_wait": "#4c78a8", "other": ui.PART_COLORS["idle"]}
    for cat, label in labels.items():
        g = i[i["idle_category"] == cat]
        fig.add_trace(
            go.Bar(
                x=[
                    f"rank {int(r)} · stream {int(s)}"
                    for r, s in zip(g["rank"], g["stream"], strict=True)
                ],
                y=g["idle_time_ns"] / 1e6,
                name=label,
                marker={"color": colors[cat]},
            )
        )
    ui.layout(
        fig,
        title="Why the GPU idled, per rank and CUDA stream",
        yaxis_title="ms idle",
        barmode="stack",
        hovermode="closest",
        height=340,
    )
    pairs = sorted({(int(r), int(s)) for r, s in zip(i["rank"], i["stream"], strict=True)})
    ui.rank_axis(fig, [f"rank {r} · stream {s}" for r, s in pairs])
    ui.plot(fig, key="kern-idle")
    st.caption(
        "Idle gaps between consecutive kernels and memory copies on each CUDA stream, by cause "
        "(HTA's idle time breakdown). Much host wait: the CPU does not enqueue work fast enough "
        "(Python overhead, data loading, synchronisation); try CUDA graphs or larger kernels."
    )

labels = series.gpu_labels.frame()
if not labels.empty:
    lab = on_selected_ranks(labels)
    fig = go.Figure()
    for name, g in lab.groupby("name", sort=False):
        fig.add_trace(
            go.Bar(
                x=[f"rank {int(r)}" for r in g["rank"]],
                y=g["total_ns"] / 1e6,
                name=str(name)[:60],
                hovertext=[f"{n} × {c}" for n, c in zip(g["name"], g["count"], strict=True)],
            )
        )
    ui.layout(
        fig,
        title="GPU time by your record_function labels, per rank",
        yaxis_title="ms",
        barmode="group",
        hovermode="closest",
        height=340,
    )
    ui.rank_axis(fig, [f"rank {r}" for r in sorted(int(r) for r in lab["rank"].unique())])
    ui.plot(fig, key="kern-labels")

launched = [r for r in job.report.metrics.ranks if r.kernel_launches is not None]
shown_ranks = set(flt.rank_list([r.rank for r in launched], job.rank_node))
launches = [
    (r.rank, r.kernel_launches)
    for r in launched
    if r.rank in shown_ranks and r.kernel_launches is not None
]
if launches:
    st.subheader("Kernel launches")
    tables.show([{"rank": rank} | k.model_dump() for rank, k in launches], labels=LAUNCH_LABELS)
    st.caption(
        "Per rank, each kernel and memory copy paired with the CPU call that launched it "
        "(HTA's kernel launch statistics). Many kernels shorter than their launch: the job is "
        "launch-bound (fuse ops, CUDA graphs, torch.compile); long queue delays: the GPU is busy "
        "with earlier work."
    )

if not top.empty:
    ranks = flt.rank_list(sorted(top["rank"].astype(int).unique()), job.rank_node)
    if not ranks:
        st.info("No kernels on the selected ranks.")
        st.stop()
    rank = (
        st.selectbox("Rank", ranks, format_func=lambda r: f"rank {r}", key="kern-rank")
        if len(ranks) > 1
        else ranks[0]
    )
    t = top[top["rank"] == rank].sort_values("total_ns", ascending=False)
    short = []
    for n in t["name"].astype(
        str
    ):  # kernels whose names differ only past the cut stay separate bars
        label = n if len(n) <= 60 else n[:57] + "…"
        while label in short:
            label += "\u200b"  # invisible, but a distinct category for plotly
        short.append(label)
    fig = go.Figure(
        go.Bar(
            x=t["total_ns"] / 1e6,
            y=short,
            orientation="h",
            text=t["kernel_class"].astype(str),
            hovertext=t["name"].astype(str),
        )
    )
    ui.layout(
        fig,
        title=f"Top kernels by GPU time, rank {rank}",
        xaxis_title="ms",
        hovermode="closest",
        height=max(300, 24 * len(t) + 100),
    )
    fig.update_yaxes(autorange="reversed")
    ui.plot(fig, key="kern-top")
    tables.show(
        t[
            [
                "kernel_class",
                "library",
                "name",
                "count",
                "total_ns",
                "mean_ns",
                "pct_of_class",
                "pct_of_gpu",
            ]
        ],
        labels={"mean_ns": tables.Col("mean", "µs", 1e-3)},
        sort=False,
    )
