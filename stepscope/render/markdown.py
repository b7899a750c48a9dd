"""report.md: short enough for a GitHub step summary, worst findings first."""

from __future__ import annotations

from pydantic import BaseModel

from stepscope.render.escape import md, md_code, md_prose
from stepscope.render.verdict import Verdict
from stepscope.report.model import JobInfo, Report

ICON = {"error": "🔴", "warning": "🟠", "info": "🔵"}
VERDICT_ICON = {"fail": "🔴", "not-failing": "🟠", "pass": "✅"}


def where(job: JobInfo) -> str:
    """"2 nodes, 16 ranks"; a count of 0 (traces that name no host) is left out."""
    parts = [f"{n} {unit}{'s' if n != 1 else ''}" for n, unit in ((job.nodes, "node"), (job.ranks, "rank")) if n]
    return ", ".join(parts) or "no node or rank named in the data"


def render(report: Report, verdict: Verdict) -> str:
    job = report.job
    lines = [f"# stepscope report: {md(job.name)}", ""]
    facts = [f"source {md_code(job.source, table=False)}"]
    if job.status:
        facts.append(f"status **{md(job.status)}**")
    if job.instance_type:
        facts.append(f"{md(job.instance_type)} × {job.instance_count or '?'}")
    if job.time_span is not None:
        facts.append(f"{job.time_span.seconds:.0f} s profiled")
    facts.append(where(job))
    lines += [" · ".join(facts), ""]

    lines += [f"{VERDICT_ICON[verdict.state]} **{md(verdict.line())}**", ""]
    figures = headline(report)
    if figures:
        lines += ["| headline | value |", "|---|---|", *(f"| {label} | {value} |" for label, value in figures), ""]

    findings = report.findings
    if findings:
        lines += ["## Findings", "", "| | rule | where | finding |", "|---|---|---|---|"]
        for f in findings:
            lines.append(f"| {ICON[f.severity]} {f.severity} | {md(f.rule)} | {md(f.where)} | {md_prose(f.message)} |")
        lines.append("")
        lines += ["### What to do", ""]
        seen: set[str] = set()
        for f in findings:
            if f.rule in seen:
                continue
            seen.add(f.rule)
            lines.append(f"- **{md(f.rule)}**: {md_prose(f.recommendation, table=False)}")
        lines.append("")
    else:
        lines += ["No rule fired.", ""]

    ranks = report.metrics.ranks
    if ranks:
        lines += [
            "## Ranks",
            "",
            "| rank | steps | step ms (mean) | data-loader wait % | comm/comp overlap % | exposed comm % | compute / non-compute / idle % | idle: host / kernel wait / other % |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in ranks:
            temporal = breakdown(r.temporal_pct, TEMPORAL_PARTS) or "–"
            idle = breakdown(r.idle_breakdown_pct, IDLE_PARTS) or "–"
            lines.append(
                f"| {r.rank} | {r.steps or 0} | {fmt(r.step_time_mean_ms)} | {fmt(r.dataloader_stall_pct)} | "
                f"{fmt(r.comm_comp_overlap_pct)} | {fmt(r.exposed_comm_pct)} | {temporal} | {idle} |"
            )
        lines.append("")

    sm = report.sagemaker_rule_reports
    if sm:
        lines += [
            "## SageMaker's own rule reports",
            "",
            "SageMaker's rules pool all nodes' samples; stepscope judges each node, GPU and rank.",
            "",
            "| rule | SageMaker | violations / datapoints | stepscope | where |",
            "|---|---|---|---|---|",
        ]
        for v in sm:
            theirs, mine = v.labels()
            flag = " ⚠ differs" if v.agree is False else ""
            lines.append(
                f"| {md(v.rule)} | {theirs} | {fmt(v.sagemaker_violations)} / {fmt(v.sagemaker_datapoints)} | "
                f"{mine}{flag} | {md(', '.join(v.stepscope_where)) or '–'} |"
            )
        lines.append("")

    base = report.baseline
    if base is not None:
        lines += [f"## Against baseline {md_code(base.source, table=False)}", "", "| metric | baseline | current | change | verdict |", "|---|---|---|---|---|"]
        for c in base.comparisons:
            lines.append(
                f"| {md(c.label)} | {fmt(c.baseline)} | {fmt(c.current)} | {fmt(c.change_pct, '%')} | "
                f"{'regressed' if c.regressed else 'ok'} |"
            )
        lines.append("")

    skipped = [rule for rule in report.rules if rule.status in ("skipped", "error")]
    if skipped:
        lines += ["<details><summary>Rules that could not judge this job</summary>", ""]
        for rule in skipped:
            lines.append(f"- {md(rule.rule)}: {md_prose(rule.reason or '–', table=False)}")
        lines += ["", "</details>", ""]
    return "\n".join(lines)


HEADLINE = (
    ("gpu_util_p50", "GPU utilization p50", "%"),
    ("gpu_util_p95", "GPU utilization p95", "%"),
    ("dataloader_stall_pct", "data-loader stall share", "%"),
    ("exposed_comm_pct", "exposed communication share", "%"),
    ("step_time_mean_ms", "step time (mean)", " ms"),
    ("step_time_std_ms", "step time (std)", " ms"),
    ("steps_per_s", "throughput", " steps/s"),
)


def headline(report: Report) -> list[tuple[str, str]]:
    """The headline figures the job has, as (label, formatted value): report.md and
    report.html show the same table."""
    head = report.metrics.headline
    return [(label, f"{v:.1f}{unit}") for key, label, unit in HEADLINE if (v := getattr(head, key)) is not None]


TEMPORAL_PARTS = ("compute", "non_compute", "idle")
IDLE_PARTS = ("host_wait", "kernel_wait", "other")


def breakdown(parts: BaseModel | None, keys: tuple[str, ...], sep: str = "/") -> str | None:
    """A rank's ``temporal_pct`` (compute 17.7, ...) → ``"17.7/28.7/53.6"`` in ``keys``
    order; None without one."""
    if parts is None:
        return None
    return sep.join(fmt(getattr(parts, k)) for k in keys)


def fmt(v: object, unit: str = "") -> str:
    """A table cell's value: one decimal, "–" for none (blank would read as a rendering bug)."""
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.1f}{unit}"
    return f"{v}{unit}"
