"""Steps and data loading: step time per rank over time with the outliers StepOutlier named,
its histogram, the data-loader wait per step and rank, and one step's timeline."""

from __future__ import annotations

import re

import plotly.graph_objects as go
import streamlit as st

from dashboards import downsample, tables, ui
from stepscope.report.rule_info import rules_marking

ctx = ui.context()
job, flt = ctx.job, ctx.filters
report = job.report
ui.page_header("Steps and data loading", ctx)

steps = report.charts.steps.frame()
if steps.empty:
    st.info(
        "No training steps in this job: steps come from PyTorch profiler `ProfilerStep#N` "
        "annotations or SageMaker framework traces."
    )
    st.stop()

ranks = flt.rank_list(sorted(int(r) for r in steps["rank"].dropna().unique()), job.rank_node)
sel = steps[steps["rank"].isin(ranks) & flt.in_window_ns(steps["start_ns"])]
if sel.empty:
    st.info("No steps in the selected ranks / time window.")
    st.stop()

# the slow steps the outlier rule named in its findings: the rule's verdict, not a threshold
# of this page
OUTLIER_RULES = rules_marking("outlier_steps")
named = {
    (int(f.evidence["rank"]), int(n))
    for f in report.findings
    if f.rule in OUTLIER_RULES and isinstance(f.evidence.get("rank"), int)
    for n in f.evidence.get("steps") or []
}
out = (
    sel[[(int(r), int(n)) in named for r, n in zip(sel["rank"], sel["step"], strict=True)]]
    if named
    else sel.iloc[:0]
)

per_rank = downsample.points_per_trace(len(ranks))
fig = go.Figure()
for rank, g in sel.groupby("rank", sort=True):
    s = downsample.xy_series(g["start_ns"].to_numpy() / 1e9, g["dur_ms"].to_numpy(), per_rank)
    fig.add_trace(
        go.Scatter(
            x=ui.times(s["x"]),
            y=s["mean"],
            mode="lines+markers" if len(s) <= 300 else "lines",
            name=f"rank {int(rank)}",
            marker={"size": 5},
        )
    )
if not out.empty:
    o = out.sort_values("dur_ms", ascending=False).head(2000)
    fig.add_trace(
        go.Scatter(
            x=ui.times(o["start_ns"] / 1e9),
            y=o["dur_ms"],
            mode="markers",
            name="outlier",
            marker={"symbol": "x", "size": 10, "color": "#d62728"},
            text=[
                f"rank {int(r)} step {int(s)}" for r, s in zip(o["rank"], o["step"], strict=True)
            ],
        )
    )
ui.layout(fig, title="Step time per rank", yaxis_title="ms", height=380)
ui.plot(fig, key="steps-time")
outlier_rule = next((r for r in report.rules if r.rule in OUTLIER_RULES), None)
why = (
    f" ({outlier_rule.rule} could not judge: {outlier_rule.reason})"
    if outlier_rule is not None and outlier_rule.reason
    else ""
)
named_by = outlier_rule.rule if outlier_rule is not None else "the outlier rule"
st.caption(
    f"{len(sel):,} steps on {len(ranks)} rank(s); {len(out):,} outlier(s) marked, as {named_by}'s "
    f"findings name them{why}."
)

#: short headings: the table sits in half the page, under its own "step time" title
STAT_LABELS: dict[str, tables.Col | str] = {
    "step_time_mean_ms": tables.Col("mean", "ms"),
    "step_time_median_ms": tables.Col("median", "ms"),
    "step_time_p95_ms": tables.Col("p95", "ms"),
    "step_time_std_ms": tables.Col("std dev", "ms"),
    "steps_per_s": "steps/s",
}

left, right = st.columns(2)
with left:
    edges, counts = downsample.histogram(
        {f"rank {int(r)}": g["dur_ms"].to_numpy() for r, g in sel.groupby("rank")}
    )
    fig = go.Figure()
    if len(edges):
        centres = (edges[:-1] + edges[1:]) / 2
        for name, cnt in counts.items():
            fig.add_trace(
                go.Bar(
                    x=centres,
                    y=cnt,
                    name=name,
                    width=float(edges[1] - edges[0]),
                    opacity=0.6,
                    hovertemplate="%{x:.1f} ms: %{y} step(s)<extra>" + name + "</extra>",
                )
            )
    ui.layout(
        fig,
        title="Step time histogram",
        xaxis_title="ms",
        yaxis_title="steps",
        barmode="overlay",
        hovermode="closest",
    )
    ui.count_axis(fig, max((int(c.max()) for c in counts.values() if len(c)), default=0))
    ui.plot(fig, key="steps-hist")
with right:
    stats = [
        {
            "rank": r.rank,
            "steps": r.steps,
            "step_time_mean_ms": r.step_time_mean_ms,
            "step_time_median_ms": r.step_time_median_ms,
            "step_time_p95_ms": r.step_time_p95_ms,
            "step_time_std_ms": r.step_time_std_ms,
            "steps_per_s": r.steps_per_s,
        }
        for r in report.metrics.ranks
        if r.steps and r.rank in ranks
    ]
    st.markdown("**Step time per rank (whole job)**")
    tables.show(stats, labels=STAT_LABELS)

KIND_COLORS = {
    "data loading": ui.PART_COLORS["data loading"],
    "communication": ui.PART_COLORS["communication"],
    "computation": ui.PART_COLORS["compute"],
    "memory": ui.PART_COLORS["memory"],
    "label": "#d4cdc6",
}
LANE = re.compile(r"^(rank \d+) · CPU (\d+)(?: · (\d+))?$")


def lane_label(lane: str) -> str:
    """ "rank 0 · CPU 0 · 1" (the timeline's lane id) as a reader understands it: rank 0, its
    first CPU thread, a range nested one level inside another."""
    m = LANE.match(lane)
    if m is None:
        return lane.replace(" · stream ", " · CUDA stream ")
    rank, thread, depth = m.groups()
    return f"{rank} · thread {int(thread) + 1}" + (f" · nested {depth}" if depth else "")


kineto_steps = sel[sel["source"].astype(object) == "kineto"]
if not kineto_steps.empty:
    st.subheader("One step, every rank")
    numbers = sorted(int(n) for n in kineto_steps["step"].unique())
    pick = (
        st.select_slider(
            "Step", options=numbers, value=numbers[len(numbers) // 2], key="steps-pick"
        )
        if len(numbers) > 1
        else numbers[0]
    )
    shown = tuple(ranks[:8])
    tl = job.job.step_timeline(int(pick), shown)
    if tl.empty:
        st.info(f"No profiler events in step {pick} on the selected ranks.")
    else:
        tl = tl.assign(lane=tl["lane"].astype(str).map(lane_label))
        lanes = tl.drop_duplicates("lane").sort_values("lane_order")["lane"].tolist()
        fig = go.Figure()
        for kind, g in tl.groupby("kind", sort=False):
            fig.add_trace(
                go.Bar(
                    y=g["lane"],
                    x=g["dur_ms"],
                    base=g["start_ms"],
                    orientation="h",
                    name=str(kind),
                    marker={"color": KIND_COLORS.get(str(kind), "#999")},
                    hovertext=g["name"],
                    hovertemplate="%{hovertext}<br>%{base:.2f} ms + %{x:.3f} ms<extra></extra>",
                )
            )
        fig.update_yaxes(categoryorder="array", categoryarray=lanes, autorange="reversed")
        ui.layout(
            fig,
            title=f"Step {pick}: what each CPU thread and CUDA stream did",
            xaxis_title="ms from the step's start",
            barmode="overlay",
            hovermode="closest",
            height=max(320, 26 * len(lanes) + 140),
        )
        ui.plot(fig, key="steps-timeline")
        more = (
            f" ({tl.attrs.get('dropped', 0):,} shortest events left out)"
            if tl.attrs.get("dropped")
            else ""
        )
        first = (
            ""
            if len(ranks) <= 8
            else f" First 8 of {len(ranks)} selected ranks; pick ranks in the sidebar."
        )
        st.caption(
            "Data loading, labelled ranges (record_function), collectives and GPU kernels during "
            f"one ProfilerStep, from the earliest rank's start: a straggler's extra work shows as "
            f"the gap the others spend inside their collective. One row per rank and CPU thread "
            f'("thread 1": the rank\'s first thread; "nested 1": ranges that run inside another '
            f"range on that thread) and per CUDA stream.{more}{first}"
        )

st.subheader("Data loading")
waits = report.charts.dataloader_waits.frame()
if waits.empty:
    st.info(
        "No data-loader events in the traces (`enumerate(DataLoader)#…__next__` and friends): "
        "the data-loader wait cannot be measured for this job."
    )
else:
    starts = steps[["rank", "step", "start_ns"]]
    w = waits.merge(starts, on=["rank", "step"], how="left")
    w = w[w["rank"].isin(ranks) & flt.in_window_ns(w["start_ns"].fillna(0))]
    fig = go.Figure()
    for rank, g in w.groupby("rank", sort=True):
        s = downsample.xy_series(g["step"].to_numpy(), g["wait_ms"].to_numpy(), per_rank)
        fig.add_trace(
            go.Scatter(
                x=s["x"],
                y=s["mean"],
                mode="lines+markers" if len(s) <= 300 else "lines",
                name=f"rank {int(rank)}",
            )
        )
    ui.layout(fig, title="Data-loader wait per step", xaxis_title="step", yaxis_title="ms")
    ui.plot(fig, key="steps-dl")
    rows = [
        r for r in report.metrics.ranks if r.rank in ranks and r.dataloader_stall_pct is not None
    ]
    if rows:
        fig = go.Figure(
            go.Bar(
                x=[f"rank {r.rank}" for r in rows],
                y=[r.dataloader_stall_pct for r in rows],
                marker={"color": ui.PART_COLORS["data loading"]},
                name="data loading",
            )
        )
        ui.rank_axis(fig, [f"rank {r.rank}" for r in sorted(rows, key=lambda r: r.rank)])
        ui.layout(
            fig,
            title="Share of step time waiting for data (whole job)",
            yaxis_title="%",
            yaxis_range=[0, 100],
            height=300,
            hovermode="closest",
        )
        ui.plot(fig, key="steps-dl-share")

mem = report.charts.step_memory.frame()
if not mem.empty:
    st.subheader("Memory held at each step's start")
    m = mem[mem["rank"].isin(ranks)].dropna(subset=["allocated_at_start_bytes"])
    top = float(m["allocated_at_start_bytes"].max()) if len(m) else 0.0
    unit, scale = ("MiB", 2**20) if top >= 2**20 else ("KiB", 2**10)
    fig = go.Figure()
    for (rank, device), g in m.groupby(["rank", "device"], sort=True):
        dev = "cpu" if device < 0 else f"gpu{int(device)}"
        fig.add_trace(
            go.Scatter(
                x=g["step"],
                y=g["allocated_at_start_bytes"].astype(float) / scale,
                mode="lines+markers",
                name=f"rank {int(rank)} {dev}",
            )
        )
    ui.layout(
        fig,
        title="Allocated memory at the start of each profiled step",
        xaxis_title="step",
        yaxis_title=unit,
    )
    ui.plot(fig, key="steps-mem")
    st.caption(
        "The PyTorch caching allocator's live tensors when each step begins "
        "(profiler memory events). "
        "Flat is healthy; a line that climbs step after step is memory that outlives its step "
        "(AllocatorMemoryGrowth)."
    )
