"""Overview: the job, SageMaker's rule statuses, headline figures, and the findings."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from analyzer.analyses.system import natural_key
from dashboards import tables, ui
from stepscope.present.counts import findings_text
from stepscope.present.evidence import evidence_rows
from stepscope.report.cost import cost_text
from stepscope.report.cost import headline as cost_headline
from stepscope.report.grouping import groups_of
from stepscope.report.model import Finding
from stepscope.report.text import with_code_spans

ctx = ui.context()
job, flt = ctx.job, ctx.filters
rep = job.report
j = rep.job
head = rep.metrics.headline

st.title(job.name)
st.caption(f"{j.source} · {j.kind}")


def _duration() -> str:
    ts = j.time_span
    start, end = j.training_start_time, j.training_end_time
    if start and end:
        secs = (pd.Timestamp(end) - pd.Timestamp(start)).total_seconds()
    elif ts is not None:
        secs = float(ts.seconds)
    else:
        return "—"
    m, s = divmod(round(secs), 60)
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min" if h else f"{m} min {s:02d} s"


instances = f"{j.instance_type} × {j.instance_count or '—'}" if j.instance_type else "—"
c = st.columns(4)
c[0].metric("Status", j.status or "—", help="From DescribeTrainingJob (SageMaker job names only).")
c[1].metric("Instances", instances, help="From DescribeTrainingJob (SageMaker job names only).")
c[2].metric("Duration", _duration())
c[3].metric("Nodes / ranks", f"{j.nodes} / {j.ranks}")

st.subheader("Headline")
h = st.columns(5)
h[0].metric("GPU utilization p50", ui.fmt_num(head.gpu_util_p50, " %"))
h[1].metric("GPU utilization p95", ui.fmt_num(head.gpu_util_p95, " %"))
h[2].metric(
    "Data-loader stall",
    ui.fmt_num(head.dataloader_stall_pct, " %"),
    help="Share of step time waiting for the next batch (mean over ranks).",
)
h[3].metric(
    "Exposed communication",
    ui.fmt_num(head.exposed_comm_pct, " %"),
    help="Share of communication not hidden behind computation (mean over ranks).",
)
spread = head.step_time_std_ms
h[4].metric(
    "Step time",
    ui.fmt_num(head.step_time_mean_ms, " ms"),
    delta=f"± {spread:.1f} ms spread" if spread is not None else None,
    delta_color="off",
    delta_arrow="off",  # a spread, not a change: no arrow that reads as a regression
    help="Mean step time over all ranks; the spread is its standard deviation.",
)
if rep.cost is not None and rep.cost.findings:  # what the findings cost: the bill's share
    st.metric(
        "Recoverable share of the bill",
        ui.fmt_num(rep.cost.recoverable_pct, " %"),
        help="The GPU time the findings lose, as a share of the run's (findings can overlap).",
    )
    st.caption(cost_headline(rep.cost))

# --------------------------------------------------------------------------- the picture


def _rank_parts() -> go.Figure | None:
    """Where each rank's step time goes: the mean step split into compute (own work),
    communication (incl. waiting for the other ranks), data loading and idle (no profiled
    event runs: a part of own work), from the step-breakdown analysis."""
    bd = rep.charts.step_breakdown.frame()
    if bd.empty:
        return None
    keep = flt.rank_list(sorted(int(r) for r in bd["rank"].unique()), job.rank_node)
    cols = ["busy_ms", "comm_ms", "dataloader_ms"] + (["idle_ms"] if "idle_ms" in bd else [])
    per = bd[bd["rank"].isin(keep)].groupby("rank")[cols].mean()
    if per.empty:
        return None
    per = per.sort_index()
    y = [f"rank {int(r)}" for r in per.index]
    idle = per["idle_ms"].fillna(0).clip(upper=per["busy_ms"]) if "idle_ms" in per else None
    compute = per["busy_ms"] if idle is None else per["busy_ms"] - idle
    parts = [
        (compute, "compute", "compute (own work)"),
        (per["comm_ms"], "communication", "communication (incl. waiting)"),
        (per["dataloader_ms"], "data loading", "data loading"),
    ]
    if idle is not None:
        parts.append((idle, "idle", "idle (no profiled event)"))
    return _stacked_ranks(
        y,
        parts,
        title="Where each rank's step time goes (mean per step)",
        unit="ms per step",
        hover="%{y}: %{x:.1f} ms per step",
    )


def _gpu_parts() -> go.Figure | None:
    """Where each rank's GPU time goes over the profiled window (HTA's temporal breakdown and
    communication summary): compute, exposed communication, other non-compute, idle."""
    t = rep.charts.gpu_time.frame()
    if t.empty:
        return None
    t = t[
        t["rank"].isin(flt.rank_list(sorted(int(r) for r in t["rank"]), job.rank_node))
    ].sort_values("rank")
    if t.empty:
        return None
    y = [f"rank {int(r)}" for r in t["rank"]]
    exposed = t["exposed_comm_ns"].fillna(0)
    other = (t["non_compute_time_ns"] - exposed).clip(lower=0)
    return _stacked_ranks(
        y,
        [
            (t["compute_time_ns"] / 1e6, "compute", "compute"),
            (exposed / 1e6, "communication", "exposed communication"),
            (other / 1e6, "other", "other non-compute (memory, overlapped comm.)"),
            (t["idle_time_ns"] / 1e6, "idle", "idle"),
        ],
        title="Where each rank's GPU time goes (profiled window)",
        unit="ms",
        hover="%{y}: %{x:,.1f} ms",
    )


def _stacked_ranks(
    y: list[str], parts: list[tuple[pd.Series, str, str]], *, title: str, unit: str, hover: str
) -> go.Figure:
    """One horizontal stacked bar per rank (rank 0 on top), one colour per part of the time."""
    fig = go.Figure()
    for values, part, label in parts:
        fig.add_trace(
            go.Bar(
                y=y,
                x=values,
                name=label,
                orientation="h",
                marker={"color": ui.PART_COLORS[part]},
                hovertemplate=hover + "<extra>" + label + "</extra>",
            )
        )
    ui.layout(
        fig,
        title=title,
        xaxis_title=unit,
        barmode="stack",
        hovermode="closest",
        height=max(220, 28 * len(y) + 130),
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0, "traceorder": "normal"},
    )
    ui.rank_axis(fig, y, axis="y")
    fig.update_yaxes(autorange="reversed")
    return fig


def _heatmap() -> go.Figure | None:
    """SageMaker's GPU utilization per node × GPU over the job (the report's heatmap)."""
    hm = rep.charts.gpu_heatmap
    if hm is None or not hm.rows:
        return None
    order = [
        i
        for i in sorted(range(len(hm.rows)), key=lambda i: natural_key(hm.rows[i]))
        if not flt.nodes or hm.rows[i].split(" ", 1)[0] in flt.nodes
    ]
    if not order:
        return None
    rows = [hm.rows[i] for i in order]
    z = [[float("nan") if v is None else v for v in hm.values[i]] for i in order]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=ui.times(hm.bin_start_s),
            y=rows,
            zmin=0,
            zmax=100,
            colorscale="Viridis",
            colorbar={"title": "%", "thickness": 12},
            hovertemplate="%{y}<br>%{x}<br>%{z:.0f} %<extra></extra>",
        )
    )
    ui.layout(
        fig,
        title="GPU utilization, node × GPU",
        height=min(460, max(220, 16 * len(rows) + 130)),
        hovermode="closest",
    )
    fig.update_yaxes(categoryorder="array", categoryarray=rows, autorange="reversed")
    return fig


def _draw_picture() -> None:
    ranks_fig, gpu_fig, heat_fig = _rank_parts(), _gpu_parts(), _heatmap()
    left_figs = [
        (f, k)
        for f, k in ((ranks_fig, "ov-rank-parts"), (gpu_fig, "ov-gpu-parts"))
        if f is not None
    ]
    if not left_figs and heat_fig is None:
        return
    st.subheader("Where the time goes")
    cols = st.columns([3, 2]) if left_figs and heat_fig is not None else [st.container()]
    with cols[0]:
        if len(left_figs) > 1:
            for tab, (fig, key) in zip(st.tabs(["per step", "GPU time"]), left_figs, strict=True):
                with tab:
                    ui.plot(fig, key=key)
        elif left_figs:
            ui.plot(*left_figs[0])
        elif heat_fig is not None:
            ui.plot(heat_fig, key="ov-heatmap")
    if left_figs and heat_fig is not None:
        with cols[1]:
            ui.plot(heat_fig, key="ov-heatmap")
    if ranks_fig is not None:
        split = (
            ", split into compute and idle "
            "(no profiled CPU op, runtime call, GPU kernel or copy runs)"
            if len(ranks_fig.data) > 3
            else ""
        )
        st.caption(
            f"Per step: own work is the step minus its communication and data loading{split}; in "
            "synchronous training the other ranks' communication includes waiting for the "
            "slowest one."
        )
    if heat_fig is not None:
        st.caption(
            "A dark row is a GPU that sat idle; "
            "the System page shows it over time with the rules' windows."
        )


# drawn last into its place under the headline: the findings reach the browser first, and
# loading the chart library does not hold back their first paint (bench/bench_dashboard.py)
picture = st.container()

statuses = j.rule_statuses
with st.expander(f"SageMaker rule evaluation statuses ({len(statuses)})", expanded=bool(statuses)):
    if statuses:
        tables.show(
            [
                {
                    "rule": s.get("RuleConfigurationName"),
                    "kind": s.get("kind"),
                    "status": s.get("RuleEvaluationStatus"),
                    "details": s.get("StatusDetails"),
                }
                for s in statuses
            ]
        )
    else:
        st.caption("None: SageMaker reports rule statuses only for training jobs opened by name.")

verdicts = rep.sagemaker_rule_reports
if verdicts:
    differ = sum(1 for v in verdicts if v.agree is False)
    with st.expander(
        f"SageMaker's own rule reports vs stepscope ({differ} differ)", expanded=differ > 0
    ):
        tables.show(
            [
                {
                    "rule": v.rule,
                    "SageMaker": v.labels()[0],
                    "violations": v.sagemaker_violations,
                    "datapoints": v.sagemaker_datapoints,
                    "stepscope": v.labels()[1],
                    "where (stepscope)": ", ".join(v.stepscope_where),
                    "agree": None if v.agree is None else ("yes" if v.agree else "no"),
                }
                for v in verdicts
            ],
            keep=("agree",),
        )
        st.caption(
            "SageMaker's rules pool the samples of all nodes, so one bad node among many can stay "
            "under their thresholds; stepscope judges every node, GPU and rank on its own."
        )

# --------------------------------------------------------------------------- findings


def _about(f: Finding) -> tuple[list[str], list[int]]:
    ev = f.evidence
    nodes = [ev["node"]] if isinstance(ev.get("node"), str) else []
    ranks = [int(ev["rank"])] if isinstance(ev.get("rank"), int) else []
    return nodes, ranks


def _visible(f: Finding) -> bool:
    nodes, ranks = _about(f)
    if flt.nodes and nodes and not set(nodes) & set(flt.nodes):
        return False
    return not (flt.ranks and ranks and not set(ranks) & set(flt.ranks))


findings = rep.findings
groups = groups_of(rep)  # a rule's findings that share a pattern, said once (all 64 ranks: ...)
shown = [f for f in findings if _visible(f)]
counts = rep.summary.counts
st.subheader(f"Findings: {findings_text(len(groups), len(findings))}")
st.caption(
    f"{counts.error} error(s), {counts.warning} warning(s), {counts.info} info, "
    "costliest first, then worst first"
    + (
        f"; {len(groups)} line(s): findings of one rule that share a pattern are one line"
        if len(groups) < len(findings)
        else ""
    )
    + (
        f" · {len(findings) - len(shown)} hidden by the node/rank filters"
        if len(shown) < len(findings)
        else ""
    )
)
if not findings:
    st.success("No rule fired on this job.")


def _box(
    key: str,
    rule: str,
    severity: str,
    title: str,
    where: str,
    message: str,
    members: list[Finding],
    worst: Finding,
    cost: str = "",
) -> None:
    """One finding, or one group of a rule's findings that share a pattern; ``cost``: what
    it loses over the run."""
    with st.container(border=True, key=key):
        st.markdown(
            f"{ui.SEVERITY_BADGE.get(severity, severity)} **{title}** · `{rule}` · {where or 'job'}"
            + (f" · costs {cost}" if cost else "")
        )
        st.markdown(with_code_spans(message))  # names as code: `__getitem__`, not a bold "getitem"
        standing = worst.evidence.get("where_ranks_stand")
        if isinstance(standing, list) and standing:  # a hang: where every rank is
            st.caption("Where each rank stands (its hang dump)")
            tables.show(standing, sort=False)
        st.markdown(f"**Recommendation:** {with_code_spans(worst.recommendation)}")
        target = ui.RULE_PAGE.get(rule, "overview")
        if target != "overview":
            about = [_about(f) for f in members]
            nodes = sorted({n for ns, _ in about for n in ns}, key=natural_key)
            ranks = sorted({r for _, rs in about for r in rs})
            page_title = next(t for k, _, t, _, _ in ui.PAGES if k == target)
            if st.button(
                f"Show chart: {page_title}",
                key=f"goto-{key}",
                on_click=ui.focus,
                args=(nodes, ranks),
                icon=":material/arrow_forward:",
                width="content",
            ):
                st.switch_page(ctx.pages[target])
        if len(members) > 1:
            with st.expander(f"Each of the {len(members)} places"):
                tables.show([{"where": f.where, "finding": f.message} for f in members])
        with st.expander(
            "Evidence" if len(members) == 1 else f"Evidence of the worst ({worst.where})"
        ):
            tables.show(evidence_rows(worst.evidence), sort=False)


# keys by position in the full lists: stable across filters
for gi, g in enumerate(groups):
    visible = [i for i in g.findings if _visible(findings[i])]
    if len(visible) == len(g.findings) and g.count > 1:  # the whole group: said once
        _box(
            f"group-{gi}",
            g.rule,
            g.severity,
            g.title,
            g.where,
            g.message,
            [findings[i] for i in visible],
            findings[g.worst],
            cost_text(rep.cost, g.findings),
        )
        continue
    for i in visible:  # a group of one, or what the node/rank filters leave of a group
        f = findings[i]
        _box(
            f"finding-{i}",
            f.rule,
            f.severity,
            f.title,
            f.where,
            f.message,
            [f],
            f,
            cost_text(rep.cost, [i]),
        )

with st.expander("Rules"):
    tables.show([r.model_dump() for r in rep.rules])

skipped = j.skipped_files
if skipped:
    with st.expander(f"{len(skipped)} file(s) skipped while reading"):
        tables.show([s.model_dump() for s in skipped])

with picture:
    _draw_picture()
