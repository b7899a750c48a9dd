"""Overview: the job, SageMaker's rule statuses, headline figures, and the findings."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboards import ui
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
h[2].metric("Data-loader stall", ui.fmt_num(head.dataloader_stall_pct, " %"),
            help="Share of step time waiting for the next batch (mean over ranks).")
h[3].metric("Exposed communication", ui.fmt_num(head.exposed_comm_pct, " %"),
            help="Share of communication not hidden behind computation (mean over ranks).")
spread = head.step_time_std_ms
h[4].metric("Step time", ui.fmt_num(head.step_time_mean_ms, " ms"),
            delta=f"± {spread:.1f} ms spread" if spread is not None else None, delta_color="off",
            help="Mean step time over all ranks; the spread is its standard deviation.")

statuses = j.rule_statuses
with st.expander(f"SageMaker rule evaluation statuses ({len(statuses)})", expanded=bool(statuses)):
    if statuses:
        st.dataframe(
            pd.DataFrame([{"rule": s.get("RuleConfigurationName"), "kind": s.get("kind"),
                           "status": s.get("RuleEvaluationStatus"), "details": s.get("StatusDetails")}
                          for s in statuses]),
            hide_index=True, width="stretch",
        )
    else:
        st.caption("None: SageMaker reports rule statuses only for training jobs opened by name.")

verdicts = rep.sagemaker_rule_reports
if verdicts:
    differ = sum(1 for v in verdicts if v.agree is False)
    with st.expander(f"SageMaker's own rule reports vs stepscope ({differ} differ)", expanded=differ > 0):
        st.dataframe(
            pd.DataFrame([{"rule": v.rule, "SageMaker": v.labels()[0],
                           "violations": v.sagemaker_violations, "datapoints": v.sagemaker_datapoints,
                           "stepscope": v.labels()[1],
                           "where (stepscope)": ", ".join(v.stepscope_where),
                           "agree": "–" if v.agree is None else ("yes" if v.agree else "no")}
                          for v in verdicts]),
            hide_index=True, width="stretch",
        )
        st.caption("SageMaker's rules pool the samples of all nodes, so one bad node among many can stay under "
                   "their thresholds; stepscope judges every node, GPU and rank on its own.")

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
shown = [f for f in findings if _visible(f)]
counts = rep.summary.counts
st.subheader(f"Findings ({len(findings)})")
st.caption(
    f"{counts.error} error(s), {counts.warning} warning(s), {counts.info} info, worst first"
    + (f" · {len(findings) - len(shown)} hidden by the node/rank filters" if len(shown) < len(findings) else "")
)
if not findings:
    st.success("No rule fired on this job.")

for i, f in enumerate(findings):  # keys by position in the full list: stable across filters
    if not _visible(f):
        continue
    with st.container(border=True, key=f"finding-{i}"):
        st.markdown(f"{ui.SEVERITY_BADGE.get(f.severity, f.severity)} **{f.title}** "
                    f"· `{f.rule}` · {f.where or 'job'}")
        st.markdown(with_code_spans(f.message))  # names as code: `__getitem__`, not a bold "getitem"
        st.markdown(f"**Recommendation:** {with_code_spans(f.recommendation)}")
        cols = st.columns([1, 4])
        target = ui.RULE_PAGE.get(f.rule, "overview")
        if target != "overview":
            nodes, ranks = _about(f)
            title = next(t for k, _, t, _, _ in ui.PAGES if k == target)
            if cols[0].button(f"Show chart: {title}", key=f"goto-{i}", on_click=ui.focus,
                              args=(nodes, ranks), icon=":material/arrow_forward:"):
                st.switch_page(ctx.pages[target])
        with cols[1].expander("Evidence"):
            st.json(f.evidence, expanded=True)

with st.expander("Rules"):
    st.dataframe(pd.DataFrame([r.model_dump() for r in rep.rules]), hide_index=True, width="stretch")

skipped = j.skipped_files
if skipped:
    with st.expander(f"{len(skipped)} file(s) skipped while reading"):
        st.dataframe(pd.DataFrame([s.model_dump() for s in skipped]), hide_index=True, width="stretch")
