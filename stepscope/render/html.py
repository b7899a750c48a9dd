"""report.html: one self-contained file (plotly.js inlined once), every trace string escaped."""

from __future__ import annotations

import plotly.graph_objects as go
import plotly.io as pio

from stepscope.render import charts
from stepscope.render.escape import h, h_prose
from stepscope.render.markdown import (
    IDLE_PARTS,
    TEMPORAL_PARTS,
    breakdown,
    change,
    fmt,
    gpu_p50,
    headline,
    source_text,
    where,
)
from stepscope.render.verdict import Verdict
from stepscope.report.grouping import groups_of, message_of
from stepscope.report.model import Report

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;max-width:1200px;color:#222}
h1{margin-bottom:.2rem} .facts{color:#555;margin-bottom:1rem}
table{border-collapse:collapse;margin:.5rem 0 1.5rem;width:100%} th,td{border:1px solid #ddd;padding:.35rem .5rem;text-align:left;vertical-align:top}
th{background:#f5f5f5} .error{color:#b00020;font-weight:600} .warning{color:#b45f06;font-weight:600} .info{color:#1a5fb4}
.pass{color:#1b7d35;font-weight:700} .fail{color:#b00020;font-weight:700} .not-failing{color:#b45f06;font-weight:700}
code{font-size:.9em} table.headline{width:auto} td.num{text-align:right}
details table{margin:.4rem 0 .2rem} summary{cursor:pointer;color:#555}
"""


def render(report: Report, verdict: Verdict) -> str:
    job = report.job
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>stepscope report: {h(job.name)}</title><style>{CSS}</style></head><body>",
        f"<h1>stepscope report: {h(job.name)}</h1>",
        f"<div class='facts'>source <code>{h(job.source)}</code> · {h(where(job))}"
        + (f" · status {h(job.status)}" if job.status else "")
        + "</div>",
    ]
    parts.append(f"<p class='{h(verdict.state)}'>{h(verdict.line())}</p>")
    figures = headline(report)
    if figures:
        parts.append("<table class='headline'><tr><th>headline</th><th>value</th></tr>"
                     + "".join(f"<tr><td>{h(label)}</td><td class='num'>{h(value)}</td></tr>" for label, value in figures)
                     + "</table>")
    parts.append("<h2>Findings</h2>")
    if report.findings:
        parts.append("<table><tr><th>severity</th><th>rule</th><th>where</th><th>finding</th><th>recommendation</th></tr>")
        findings = report.findings
        for g in groups_of(report):
            each = ""
            if g.count > 1:  # the per-place figures, folded under the group's one line
                each = (f"<details><summary>each of the {g.count} findings</summary><table><tr><th>where</th><th>finding</th></tr>"
                        + "".join(f"<tr><td>{h(findings[i].where)}</td><td>{h_prose(message_of(findings[i]))}</td></tr>"
                                  for i in g.findings)
                        + "</table></details>")
            parts.append(
                f"<tr><td class='{h(g.severity)}'>{h(g.severity)}</td><td>{h(g.rule)}</td><td>{h(g.where)}</td>"
                f"<td>{h_prose(g.message)}{each}</td><td>{h_prose(findings[g.worst].recommendation)}</td></tr>"
            )
        parts.append("</table>")
    else:
        parts.append("<p>No rule fired.</p>")

    ranks = report.metrics.ranks
    figs: list[go.Figure | None] = [
        charts.gpu_heatmap(report.charts.gpu_heatmap),
        charts.step_times(report.charts.steps),
        charts.dataloader_share(ranks),
        charts.rank_breakdown(ranks),
        charts.idle_breakdown(ranks),
    ]
    first = True
    for fig in figs:
        if fig is None:
            continue
        parts.append(pio.to_html(fig, full_html=False, include_plotlyjs="inline" if first else False))
        first = False

    nodes = report.metrics.nodes
    if nodes:
        parts.append("<h2>Nodes</h2><table><tr><th>node</th><th>metrics from</th><th>CPU p50 / p95 %</th>"
                     "<th>I/O wait p95 %</th><th>GPUs</th><th>GPU utilization p50 %</th></tr>")
        for n in nodes:
            parts.append(
                "<tr>" + "".join(f"<td>{h(v)}</td>" for v in (
                    n.node, source_text(n), f"{fmt(n.cpu_util_p50)} / {fmt(n.cpu_util_p95)}", fmt(n.io_wait_p95),
                    len(n.gpus), gpu_p50(n))) + "</tr>"
            )
        parts.append("</table>")
    if ranks:
        parts.append("<h2>Ranks</h2><table><tr><th>rank</th><th>node</th><th>steps</th><th>step ms</th><th>data-loader %</th>"
                     "<th>overlap %</th><th>exposed comm %</th><th>compute / non-compute / idle %</th>"
                     "<th>idle: host / kernel wait / other %</th></tr>")
        for r in ranks:
            parts.append(
                "<tr>" + "".join(
                    f"<td>{h(fmt(v))}</td>"
                    for v in (r.rank, r.node, r.steps or 0, r.step_time_mean_ms, r.dataloader_stall_pct,
                              r.comm_comp_overlap_pct, r.exposed_comm_pct,
                              breakdown(r.temporal_pct, TEMPORAL_PARTS, " / "),
                              breakdown(r.idle_breakdown_pct, IDLE_PARTS, " / "))
                ) + "</tr>"
            )
        parts.append("</table>")
    sm = report.sagemaker_rule_reports
    if sm:
        parts.append("<h2>SageMaker's own rule reports</h2><p>SageMaker's rules pool all nodes' samples; stepscope judges "
                     "each node, GPU and rank.</p><table><tr><th>rule</th><th>SageMaker</th><th>violations / datapoints</th>"
                     "<th>stepscope</th><th>where</th></tr>")
        for v in sm:
            theirs, mine = v.labels()
            cls = " class='fail'" if v.agree is False else ""
            parts.append(
                f"<tr><td>{h(v.rule)}</td><td>{h(theirs)}</td>"
                f"<td>{h(fmt(v.sagemaker_violations))} / {h(fmt(v.sagemaker_datapoints))}</td><td{cls}>{h(mine)}"
                f"{' (differs)' if v.agree is False else ''}</td><td>{h(', '.join(v.stepscope_where) or '–')}</td></tr>"
            )
        parts.append("</table>")
    base = report.baseline
    if base is not None:
        parts.append(f"<h2>Against baseline <code>{h(base.source)}</code></h2><table><tr><th>metric</th><th>baseline</th><th>current</th><th>change</th><th>verdict</th></tr>")
        for c in base.comparisons:
            parts.append(
                f"<tr><td>{h(c.label)}</td><td>{h(fmt(c.baseline))}</td><td>{h(fmt(c.current))}</td><td>{h(change(c))}</td>"
                f"<td class='{'fail' if c.regressed else 'pass'}'>{'regressed' if c.regressed else 'ok'}</td></tr>"
            )
        parts.append("</table>")
    parts.append("<h2>Rules</h2><table><tr><th>rule</th><th>status</th><th>note</th></tr>")
    for rule in report.rules:
        parts.append(f"<tr><td>{h(rule.rule)}</td><td>{h(rule.status)}</td><td>{h_prose(rule.reason or '–')}</td></tr>")
    parts.append("</table></body></html>")
    return "\n".join(parts)
