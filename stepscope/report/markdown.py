"""report.md: short enough for a GitHub step summary, worst findings first."""

from __future__ import annotations

from typing import Any

from stepscope.report.escape import md
from stepscope.report.model import verdict_labels

ICON = {"error": "🔴", "warning": "🟠", "info": "🔵"}


def where(job: dict[str, Any]) -> str:
    """"2 nodes, 16 ranks"; a count of 0 (traces that name no host) is left out."""
    parts = [f"{n} {unit}{'s' if n != 1 else ''}" for n, unit in ((job["nodes"], "node"), (job["ranks"], "rank")) if n]
    return ", ".join(parts) or "no node or rank named in the data"


def render(report: dict[str, Any]) -> str:
    job = report["job"]
    lines = [f"# stepscope report: {md(job['name'])}", ""]
    facts = [f"source `{md(job['source'])}`"]
    if job.get("status"):
        facts.append(f"status **{md(job['status'])}**")
    if job.get("instance_type"):
        facts.append(f"{md(job['instance_type'])} × {job.get('instance_count') or '?'}")
    if job.get("time_span"):
        facts.append(f"{job['time_span']['seconds']:.0f} s profiled")
    facts.append(where(job))
    lines += [" · ".join(facts), ""]

    counts = report["summary"]["counts"]
    verdict = report["summary"]["verdict"]
    lines += [
        f"**{verdict}** — {counts['error']} error(s), {counts['warning']} warning(s), {counts['info']} info "
        f"(fail-on: {report['summary']['fail_on']})",
        "",
    ]
    head = report["metrics"].get("headline", {})
    if head:
        lines += ["| headline | value |", "|---|---|"]
        for key, label, unit in HEADLINE:
            v = head.get(key)
            if v is not None:
                lines.append(f"| {label} | {v:.1f}{unit} |")
        lines.append("")

    findings = report["findings"]
    if findings:
        lines += ["## Findings", "", "| | rule | where | finding |", "|---|---|---|---|"]
        for f in findings:
            lines.append(f"| {ICON[f['severity']]} {f['severity']} | {md(f['rule'])} | {md(f['where'])} | {md(f['message'])} |")
        lines.append("")
        lines += ["### What to do", ""]
        seen: set[str] = set()
        for f in findings:
            if f["rule"] in seen:
                continue
            seen.add(f["rule"])
            lines.append(f"- **{md(f['rule'])}**: {md(f['recommendation'])}")
        lines.append("")
    else:
        lines += ["No rule fired.", ""]

    ranks = report["metrics"].get("ranks", [])
    if ranks:
        lines += [
            "## Ranks",
            "",
            "| rank | steps | step ms (mean) | data-loader wait % | comm/comp overlap % | exposed comm % | compute / non-compute / idle % | idle: host / kernel wait / other % |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in ranks:
            temporal = breakdown(r.get("temporal_pct"), TEMPORAL_PARTS) or "–"
            idle = breakdown(r.get("idle_breakdown_pct"), IDLE_PARTS) or "–"
            lines.append(
                f"| {r['rank']} | {r.get('steps') or 0} | {_fmt(r.get('step_time_mean_ms'))} | {_fmt(r.get('dataloader_stall_pct'))} | "
                f"{_fmt(r.get('comm_comp_overlap_pct'))} | {_fmt(r.get('exposed_comm_pct'))} | {temporal} | {idle} |"
            )
        lines.append("")

    sm = report.get("sagemaker_rule_reports") or []
    if sm:
        lines += [
            "## SageMaker's own rule reports",
            "",
            "SageMaker's rules pool all nodes' samples; stepscope judges each node, GPU and rank.",
            "",
            "| rule | SageMaker | violations / datapoints | stepscope | where |",
            "|---|---|---|---|---|",
        ]
        for r in sm:
            theirs, mine = verdict_labels(r)
            flag = " ⚠ differs" if r["agree"] is False else ""
            lines.append(
                f"| {md(r['rule'])} | {theirs} | {_fmt(r['sagemaker_violations'])} / {_fmt(r['sagemaker_datapoints'])} | "
                f"{mine}{flag} | {md(', '.join(r['stepscope_where'])) or '–'} |"
            )
        lines.append("")

    base = report.get("baseline")
    if base:
        lines += [f"## Against baseline `{md(base['source'])}`", "", "| metric | baseline | current | change | verdict |", "|---|---|---|---|---|"]
        for c in base["comparisons"]:
            lines.append(
                f"| {md(c['label'])} | {_fmt(c['baseline'])} | {_fmt(c['current'])} | {_fmt(c['change_pct'])}% | "
                f"{'regressed' if c['regressed'] else 'ok'} |"
            )
        lines.append("")

    skipped = [r for r in report["rules"] if r["status"] in ("skipped", "error")]
    if skipped:
        lines += ["<details><summary>Rules that could not judge this job</summary>", ""]
        for r in skipped:
            lines.append(f"- {md(r['rule'])}: {md(r.get('reason') or '')}")
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


TEMPORAL_PARTS = ("compute", "non_compute", "idle")
IDLE_PARTS = ("host_wait", "kernel_wait", "other")


def breakdown(parts: dict[str, Any] | None, keys: tuple[str, ...], sep: str = "/") -> str | None:
    """``{"compute": 17.7, ...}`` → ``"17.7/28.7/53.6"`` in ``keys`` order; None without one."""
    if not parts:
        return None
    return sep.join(_fmt(parts.get(k)) for k in keys)


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.1f}"
    return str(v)
