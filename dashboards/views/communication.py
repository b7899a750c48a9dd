"""Communication: per rank compute / communication / exposed communication / idle, the
collectives, and the straggler ranks (StragglerRank's findings) the others wait for."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from analyzer.analyses.cross_rank import CAUSE_SHORT
from dashboards import tables, ui
from stepscope.present.perfetto import timeline_bytes
from stepscope.report.rule_info import rules_marking

ctx = ui.context()
job, flt = ctx.job, ctx.filters
report = job.report
ui.page_header("Communication", ctx)

#: the rules whose findings name a rank that holds the others back (each rule class says)
STRAGGLER_RULES = rules_marking("straggler")
verdicts = [
    f
    for f in report.findings
    if f.rule in STRAGGLER_RULES and isinstance(f.evidence.get("rank"), int)
]
straggling = {int(f.evidence["rank"]) for f in verdicts}
#: the straggler evidence of a verdict from collectives matched across ranks (it has
#: ``steps_last``; one from own work per step has ``busy_ms``)
#: the cross-rank causes (analyzer.analyses.cross_rank.CAUSES) in the page's colours
CAUSE_PARTS = {
    "gpu_compute": "compute",
    "gpu_memory": "memory",
    "dataloader": "data loading",
    "host": "other",
    "communication": "communication",
    "unrecorded": "idle",
}
#: the critical path's categories (analyzer.analyses.critical_path.CATEGORIES): their
#: colour on this page and their words
CRITICAL_PATH_PARTS = {
    "cpu": "other",
    "data_loading": "data loading",
    "kernel_launch": "other",
    "gpu_compute": "compute",
    "gpu_memory": "memory",
    "gpu_communication": "communication",
    "gpu_gap": "idle",
    "communication": "communication",
    "unrecorded": "idle",
}
CRITICAL_PATH_LABELS = {
    "cpu": "CPU ops",
    "data_loading": "data loading",
    "kernel_launch": "kernel launches",
    "gpu_compute": "GPU compute",
    "gpu_memory": "GPU copies",
    "gpu_communication": "GPU collectives",
    "gpu_gap": "gaps between kernels",
    "communication": "host collectives",
    "unrecorded": "unprofiled time (Python, sleeping)",
}
#: up to this many ranks the page finds the selected step's critical path without asking
CRITICAL_PATH_AUTO_RANKS = 16
CROSS_RANK_COLUMNS = (
    "rank", "steps_last", "steps", "others_wait_ms_per_step", "wait_ms_per_waiting_rank",
    "excess_ms", "cause", "cause_share_pct", "process_groups", "clock_skew_ms",
)  # fmt: skip


def _label(r: int) -> str:
    return f"rank {r} ⚠ straggler" if r in straggling else f"rank {r}"


def _outline(ranks: list[int], part: str) -> dict[str, object]:
    """The part's colour, straggler bars outlined in red (StragglerRank's alarm)."""
    return {
        "color": ui.PART_COLORS[part],
        "line": {
            "color": ["#d62728" if r in straggling else "rgba(0,0,0,0)" for r in ranks],
            "width": 3,
        },
    }


temporal = report.charts.gpu_time.frame()
shown_any = False
if not temporal.empty:
    shown_any = True
    t = temporal[
        temporal["rank"].isin(flt.rank_list(temporal["rank"].astype(int), job.rank_node))
    ].sort_values("rank")
    ranks = [int(r) for r in t["rank"]]
    x = [_label(r) for r in ranks]
    ms = 1e6
    fig = go.Figure()
    fig.add_trace(
        go.Bar(x=x, y=t["compute_time_ns"] / ms, name="compute", marker=_outline(ranks, "compute"))
    )
    other = (t["non_compute_time_ns"] - t["exposed_comm_ns"].fillna(0)).clip(lower=0)
    fig.add_trace(
        go.Bar(
            x=x,
            y=t["exposed_comm_ns"].fillna(0) / ms,
            name="exposed communication",
            marker={"color": ui.PART_COLORS["communication"]},
        )
    )
    fig.add_trace(
        go.Bar(
            x=x,
            y=other / ms,
            name="other non-compute (memory, overlapped comm.)",
            marker={"color": ui.PART_COLORS["other"]},
        )
    )
    fig.add_trace(
        go.Bar(x=x, y=t["idle_time_ns"] / ms, name="idle", marker={"color": ui.PART_COLORS["idle"]})
    )
    ui.layout(
        fig,
        title="GPU time per rank (HTA temporal breakdown, profiled window)",
        yaxis_title="ms",
        barmode="stack",
        hovermode="closest",
    )
    ui.rank_axis(fig, x)
    ui.plot(fig, key="comm-temporal")
    fig = go.Figure()
    fig.add_trace(
        go.Bar(
            x=x,
            y=t["comm_time_ns"].fillna(0) / ms,
            name="communication",
            marker={"color": "#d4b9da"},
        )
    )
    fig.add_trace(
        go.Bar(
            x=x,
            y=t["exposed_comm_ns"].fillna(0) / ms,
            name="exposed (not overlapped)",
            marker={"color": ui.PART_COLORS["communication"]},
        )
    )
    ui.layout(
        fig,
        title="Communication vs exposed communication per rank",
        yaxis_title="ms",
        barmode="group",
        hovermode="closest",
        height=300,
    )
    ui.rank_axis(fig, x)
    ui.plot(fig, key="comm-exposed")

bd = report.charts.step_breakdown.frame()
if not bd.empty and (
    temporal.empty or st.toggle("Per-step breakdown from step annotations", value=False)
):
    shown_any = True
    steps = report.charts.steps.frame()[["rank", "step", "start_ns"]]
    b = bd.merge(steps, on=["rank", "step"], how="left")
    b = b[
        b["rank"].isin(flt.rank_list(sorted(b["rank"].astype(int).unique()), job.rank_node))
        & flt.in_window_ns(b["start_ns"].fillna(0))
    ]
    med = (
        b.groupby("rank")[["busy_ms", "comm_ms", "dataloader_ms"]]
        .median()
        .reset_index()
        .sort_values("rank")
    )
    ranks = [int(r) for r in med["rank"]]
    x = [_label(r) for r in ranks]
    fig = go.Figure()
    fig.add_trace(
        go.Bar(x=x, y=med["busy_ms"], name="own work (compute)", marker=_outline(ranks, "compute"))
    )
    fig.add_trace(
        go.Bar(
            x=x,
            y=med["comm_ms"],
            name="communication (incl. waiting for others)",
            marker={"color": ui.PART_COLORS["communication"]},
        )
    )
    fig.add_trace(
        go.Bar(
            x=x,
            y=med["dataloader_ms"],
            name="data loading",
            marker={"color": ui.PART_COLORS["data loading"]},
        )
    )
    ui.layout(
        fig,
        title="Median time per step and rank",
        yaxis_title="ms",
        barmode="stack",
        hovermode="closest",
    )
    ui.rank_axis(fig, x)
    ui.plot(fig, key="comm-steps")
    st.caption(
        "From the step annotations: communication is the union of collective events within "
        "each step; in synchronous training it includes waiting for the slowest rank."
    )

if not shown_any:
    st.info(
        "No GPU kernels and no profiled steps: "
        "a communication breakdown needs PyTorch profiler traces."
    )

st.subheader("Straggler ranks")
rule = next((r for r in report.rules if r.rule in STRAGGLER_RULES), None)
if rule is None:
    st.caption(f"{' and '.join(STRAGGLER_RULES)} disabled in the rule file.")
elif rule.status in ("skipped", "error"):
    st.caption(f"{rule.rule} could not judge this job: {rule.reason}.")
elif not verdicts:
    st.caption(
        f"None: no rank holds the others back beyond {rule.rule}'s threshold ({rule.rule} passed)."
    )
else:
    shown = set(flt.rank_list(sorted(straggling), job.rank_node))
    matched = [f for f in verdicts if "steps_last" in f.evidence]
    own_work = [f for f in verdicts if "steps_last" not in f.evidence]
    if matched:
        tables.show(
            [
                {k: f.evidence.get(k) for k in CROSS_RANK_COLUMNS}
                for f in matched
                if f.evidence["rank"] in shown
            ]
        )
        st.caption(
            f"From {rule.rule}, collectives matched across ranks: the steps in which the rank "
            "arrived last at the step's collectives, the other ranks' wait per such step (in "
            "total and each), how much longer its lead-in to those collectives was than the "
            "others' median, and the activity that made up most of that difference "
            "(docs/analyses.md, cross_rank)."
        )
    if own_work:
        tables.show(
            [
                {
                    k: f.evidence.get(k)
                    for k in (
                        "rank",
                        "steps",
                        "busy_ms",
                        "others_busy_ms",
                        "excess_ms",
                        "excess_pct",
                    )
                }
                for f in own_work
                if f.evidence["rank"] in shown
            ]
        )
        st.caption(
            f"Per straggler, from {rule.rule}'s evidence (no collective matched across ranks): "
            "median own work per step (ms) against the median of the other ranks, and the "
            "excess every other rank waits each step."
        )
    st.warning(
        f"Straggler rank(s): {', '.join(map(str, sorted(straggling)))}: the other ranks wait for "
        "them in the collectives."
    )

st.subheader("Who held the others back, step by step")
culprits = report.charts.culprits.frame() if report.charts.culprits is not None else pd.DataFrame()
if culprits.empty:
    st.caption(
        "No collective matched across ranks: this needs traces of at least two ranks that "
        "call the same collectives (docs/analyses.md, cross_rank)."
    )
else:
    shown_culprits = culprits[
        culprits["culprit"].isin(flt.rank_list(culprits["culprit"].astype(int), job.rank_node))
    ]
    fig = go.Figure()
    for cause, part in CAUSE_PARTS.items():
        sel = shown_culprits[shown_culprits["cause"] == cause]
        if sel.empty:
            continue
        fig.add_trace(
            go.Bar(
                x=sel["step"],
                y=sel["others_wait_ns"] / 1e6,
                name=CAUSE_SHORT[cause],
                marker={"color": ui.PART_COLORS[part]},
                text=[f"rank {int(r)}" for r in sel["culprit"]],
                textposition="inside",
            )
        )
    fig.update_layout(
        xaxis_title="step",
        yaxis_title="the other ranks' wait (rank-ms)",
        legend_title="what the late rank did more",
        height=320,
        margin={"t": 10},
    )
    st.plotly_chart(fig, width="stretch")
    table = shown_culprits.assign(
        others_wait_ms=shown_culprits["others_wait_ns"] / 1e6,
        cause=shown_culprits["cause"].map(CAUSE_SHORT),
    )[["step", "culprit", "others_wait_ms", "cause", "cause_share_pct", "calls_last", "ranks"]]
    tables.show(table.to_dict("records"), sort=False)
    st.caption(
        "Per step: the rank whose late arrival at the step's collectives cost the others the "
        "most waiting (summed over the waiting ranks), and the activity in which its lead-in "
        "to those collectives was longer than theirs (clock offsets between hosts corrected)."
    )
    # one step of the selected ranks as a Perfetto timeline (what `stepscope export` writes)
    export_steps = sorted(int(s) for s in culprits["step"])
    export_ranks = flt.rank_list(job.job.kineto_ranks, job.rank_node)
    pick_col, button_col = st.columns([1, 3], vertical_alignment="bottom")
    export_step = pick_col.selectbox("Step", export_steps, key="comm-export-step")
    button_col.download_button(
        f"Download step {export_step} as a Perfetto timeline",
        data=lambda: timeline_bytes(
            job.job,
            findings=report.findings,
            ranks=export_ranks or None,
            steps=(export_step, export_step),
        ),
        file_name=f"{job.name}-step{export_step}.json.gz".replace("/", "_"),
        mime="application/gzip",
        on_click="ignore",
        key="comm-export",
        help=(
            "Every selected rank's events in that step on one clock, who held the others "
            "back and each rank's wait, the findings as markers: open it in "
            "https://ui.perfetto.dev (docs/cli-export.md)."
        ),
    )

    # the step's critical path across ranks (docs/analyses.md, critical_path), on demand
    ranks_in_job = len(job.job.kineto_ranks)
    if ranks_in_job <= CRITICAL_PATH_AUTO_RANKS or st.button(
        f"Find step {export_step}'s critical path across all {ranks_in_job} ranks",
        key="comm-critical-path",
        help="Reads every rank's events of that step (about 0.2 s per rank).",
    ):
        path = job.job.cross_rank_critical_path(int(export_step))
        comp = path.composition
        if comp.empty:
            st.caption(f"No critical path found for step {export_step}.")
        else:
            length_ms = float(path.length_ns.get(int(export_step), 0)) / 1e6
            fig = go.Figure()
            for category, part in CRITICAL_PATH_PARTS.items():
                sel = comp[comp["category"] == category]
                if sel.empty:
                    continue
                fig.add_trace(
                    go.Bar(
                        y=[f"rank {int(r)}" for r in sel["rank"]],
                        x=sel["ns"] / 1e6,
                        name=CRITICAL_PATH_LABELS[category],
                        orientation="h",
                        marker={"color": ui.PART_COLORS[part]},
                    )
                )
            fig.update_layout(
                barmode="stack",
                xaxis_title=f"ms of step {export_step}'s critical path ({length_ms:.1f} ms)",
                height=110 + 35 * comp["rank"].nunique(),
                margin={"t": 10},
            )
            st.plotly_chart(fig, width="stretch")
            slack = path.slack.sort_values("slack_ns", ascending=False).head(8)
            tables.show(
                [
                    {
                        "rank": int(r.rank),
                        "on the path": CRITICAL_PATH_LABELS.get(str(r.category), str(r.category)),
                        "the step shorter by (ms) without it": round(float(r.slack_ns) / 1e6, 3),
                    }
                    for r in slack.itertuples(index=False)
                ],
                sort=False,
            )
            st.caption(
                "The chain of dependent work that sets the step's length, across ranks: where a "
                "rank waited in a collective, the path goes on along the rank it waited for. "
                "Per rank, its time on the path by kind, and how much shorter the step would "
                "be without each (HTA's critical path definitions, joined at the matched "
                "collectives; docs/analyses.md)."
            )

st.subheader("By parallel dimension")
parallel = report.metrics.parallelism
if parallel is None or not parallel.dimensions:
    st.caption("No collective calls in the traces: no process groups to tell apart.")
else:
    dims = pd.DataFrame([d.model_dump() for d in parallel.dimensions])
    fig = go.Figure()
    fig.add_trace(
        go.Bar(
            y=dims["label"],
            x=dims["exposed_ms_per_step"],
            name="exposed (nothing computes meanwhile)",
            orientation="h",
            marker={"color": ui.PART_COLORS["exposed communication"]},
        )
    )
    fig.add_trace(
        go.Bar(
            y=dims["label"],
            x=(dims["time_ms_per_step"] - dims["exposed_ms_per_step"]).clip(lower=0),
            name="hidden behind computation",
            orientation="h",
            marker={"color": ui.PART_COLORS["compute"]},
        )
    )
    fig.update_layout(
        barmode="stack",
        xaxis_title="ms per step (mean over the dimension's ranks)",
        height=90 + 40 * len(dims),
        margin={"t": 10},
    )
    st.plotly_chart(fig, width="stretch")
    tables.show(
        [
            {
                "group": g.group,
                "description": g.desc or "",
                "size": g.size,
                "ops": ", ".join(g.ops),
                "dimension": g.dimension,
                "why": g.evidence,
            }
            for g in parallel.groups
        ],
        sort=False,
    )
    st.caption(
        "Each process group's parallel dimension, from the rule file's [parallelism] groups, "
        "its name (a DeviceMesh dimension), or its ops (docs/analyses.md, parallelism)."
    )
    if parallel.pipeline:
        st.markdown("**Pipeline stages over one step**")
        stages = pd.DataFrame([p.model_dump() for p in parallel.pipeline])
        tables.show(
            stages[
                ["stage", "rank", "microbatches", "step_ms", "compute_ms", "bubble_ms",
                 "bubble_pct", "ideal_pct", "slowest"]
            ].to_dict("records"),
            sort=False,
        )  # fmt: skip
        stage_steps = sorted(int(s) for s in job.job.steps()["step"].unique())
        pick = st.selectbox("Step", stage_steps, key="comm-pipeline-step")
        line = job.job.pipeline_timeline(int(pick))
        stage_of = dict(zip(stages["rank"], stages["stage"], strict=True))
        fig = go.Figure()
        for kind, colour in (
            ("compute", ui.PART_COLORS["compute"]),
            ("bubble", ui.PART_COLORS["idle"]),
        ):
            sel = line[line["kind"] == kind]
            fig.add_trace(
                go.Bar(
                    y=[f"stage {stage_of.get(r, '?')} (rank {r})" for r in sel["rank"]],
                    x=sel["end_ms"] - sel["start_ms"],
                    base=sel["start_ms"],
                    orientation="h",
                    name=kind,
                    marker={"color": colour},
                )
            )
        fig.update_layout(
            barmode="overlay",
            xaxis_title="ms from the step's earliest start",
            yaxis={"autorange": "reversed"},
            height=120 + 45 * len(stages),
            margin={"t": 10},
        )
        st.plotly_chart(fig, width="stretch")
        st.caption(
            "Grey: the stage computes nothing (it waits for activations, gradients or its "
            "sends): the bubble. The ideal is (p-1)/(m+p-1) of the step for GPipe and 1F1B "
            "with p stages and m micro-batches; the stage that computes most sets the pace."
        )

st.subheader("Collectives")
coll = (
    report.charts.collectives.frame() if report.charts.collectives is not None else pd.DataFrame()
)
if coll.empty:
    st.caption("No collective calls in the traces.")
else:
    c = coll[coll["rank"].isin(flt.rank_list(coll["rank"].astype(int), job.rank_node))]
    tables.show(c)
    st.caption(
        "Whole profiled window (not narrowed by the time filter). Sizes and bandwidths show "
        "where the trace records message sizes (NCCL does; gloo does not, so those columns are "
        "left out)."
    )
