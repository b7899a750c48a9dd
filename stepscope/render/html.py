"""report.html: one self-contained file (plotly.js inlined once), every trace string escaped."""

from __future__ import annotations

from collections.abc import Callable

import plotly.graph_objects as go
import plotly.io as pio

from stepscope.present import training_figures
from stepscope.present.comparison import change
from stepscope.render import charts
from stepscope.render.escape import h, h_prose
from stepscope.render.markdown import (
    IDLE_PARTS,
    MEASURES,
    TEMPORAL_PARTS,
    WORKER_HEADINGS,
    breakdown,
    fmt,
    gpu_p50,
    headline,
    num,
    run_line,
    source_text,
    training_findings,
    where,
    worker_cells,
)
from stepscope.render.verdict import Verdict
from stepscope.report.cost import cost_text
from stepscope.report.cost import headline as cost_headline
from stepscope.report.grouping import groups_of, message_of
from stepscope.report.model import Report
from stepscope.report.training import CHART_TITLES, anchor

CSS = (
    "\n"
    "body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;"
    "max-width:1200px;color:#222}\n"
    "h1{margin-bottom:.2rem} .facts{color:#555;margin-bottom:1rem}\n"
    "table{border-collapse:collapse;margin:.5rem 0 1.5rem;width:100%} "
    "th,td{border:1px solid #ddd;padding:.35rem .5rem;text-align:left;vertical-align:top}\n"
    "th{background:#f5f5f5} .error{color:#b00020;font-weight:600} "
    ".warning{color:#b45f06;font-weight:600} .info{color:#1a5fb4}\n"
    ".pass{color:#1b7d35;font-weight:700} .fail{color:#b00020;font-weight:700} "
    ".not-failing{color:#b45f06;font-weight:700}\n"
    "code{font-size:.9em} table.headline{width:auto} td.num{text-align:right}\n"
    "details table{margin:.4rem 0 .2rem} summary{cursor:pointer;color:#555}\n"
)


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
    if report.cost is not None and report.cost.findings:
        parts.append(f"<p class='cost'>{h(cost_headline(report.cost))}</p>")
    figures = headline(report)
    if figures:
        parts.append(
            "<table class='headline'><tr><th>headline</th><th>value</th></tr>"
            + "".join(
                f"<tr><td>{h(label)}</td><td class='num'>{h(value)}</td></tr>"
                for label, value in figures
            )
            + "</table>"
        )
    parts.append("<h2>Findings</h2>")
    if report.findings:
        parts.append(
            "<table><tr><th>severity</th><th>rule</th><th>where</th><th>finding</th>"
            "<th>cost over the run</th><th>recommendation</th></tr>"
        )
        findings = report.findings
        for g in groups_of(report):
            each = ""
            if g.count > 1:  # the per-place figures, folded under the group's one line
                each = (
                    f"<details><summary>each of the {g.count} findings</summary>"
                    "<table><tr><th>where</th><th>finding</th><th>cost</th></tr>"
                    + "".join(
                        f"<tr><td>{h(findings[i].where)}</td>"
                        f"<td>{h_prose(message_of(findings[i]))}</td>"
                        f"<td class='num'>{h(cost_text(report.cost, [i]))}</td></tr>"
                        for i in g.findings
                    )
                    + "</table></details>"
                )
            parts.append(
                f"<tr><td class='{h(g.severity)}'>{h(g.severity)}</td><td>{h(g.rule)}</td>"
                f"<td>{h(g.where)}</td><td>{h_prose(g.message)}{each}</td>"
                f"<td class='num'>{h(cost_text(report.cost, g.findings))}</td>"
                f"<td>{h_prose(findings[g.worst].recommendation)}</td></tr>"
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
    plotted = [False]

    def figure(fig: go.Figure, div_id: str | None = None) -> str:
        """The figure's div; plotly.js is inlined with the first one only."""
        html = pio.to_html(
            fig, full_html=False, include_plotlyjs=False if plotted[0] else "inline", div_id=div_id
        )
        plotted[0] = True
        return html

    parts += [figure(fig) for fig in figs if fig is not None]

    nodes = report.metrics.nodes
    if nodes:
        parts.append(
            "<h2>Nodes</h2><table><tr><th>node</th><th>metrics from</th><th>CPU p50 / p95 %</th>"
            "<th>I/O wait p95 %</th><th>GPUs</th><th>GPU utilization p50 %</th></tr>"
        )
        for n in nodes:
            parts.append(
                "<tr>"
                + "".join(
                    f"<td>{h(v)}</td>"
                    for v in (
                        n.node,
                        source_text(n),
                        f"{fmt(n.cpu_util_p50)} / {fmt(n.cpu_util_p95)}",
                        fmt(n.io_wait_p95),
                        len(n.gpus),
                        gpu_p50(n),
                    )
                )
                + "</tr>"
            )
        parts.append("</table>")
    if ranks:
        parts.append(
            "<h2>Ranks</h2><table><tr><th>rank</th><th>node</th><th>steps</th><th>step ms</th>"
            "<th>data-loader %</th>"
            "<th>overlap %</th><th>exposed comm %</th><th>compute / non-compute / idle %</th>"
            "<th>idle: host / kernel wait / other %</th></tr>"
        )
        for r in ranks:
            parts.append(
                "<tr>"
                + "".join(
                    f"<td>{h(fmt(v))}</td>"
                    for v in (
                        r.rank,
                        r.node,
                        r.steps or 0,
                        r.step_time_mean_ms,
                        r.dataloader_stall_pct,
                        r.comm_comp_overlap_pct,
                        r.exposed_comm_pct,
                        breakdown(r.temporal_pct, TEMPORAL_PARTS, " / "),
                        breakdown(r.idle_breakdown_pct, IDLE_PARTS, " / "),
                    )
                )
                + "</tr>"
            )
        parts.append("</table>")
    sm = report.sagemaker_rule_reports
    if sm:
        parts.append(
            "<h2>SageMaker's own rule reports</h2><p>SageMaker's rules pool all nodes' samples; "
            "stepscope judges each node, GPU and rank.</p>"
            "<table><tr><th>rule</th><th>SageMaker</th><th>violations / datapoints</th>"
            "<th>stepscope</th><th>where</th></tr>"
        )
        for v in sm:
            theirs, mine = v.labels()
            cls = " class='fail'" if v.agree is False else ""
            parts.append(
                f"<tr><td>{h(v.rule)}</td><td>{h(theirs)}</td>"
                f"<td>{h(fmt(v.sagemaker_violations))} / {h(fmt(v.sagemaker_datapoints))}</td>"
                f"<td{cls}>{h(mine)}{' (differs)' if v.agree is False else ''}</td>"
                f"<td>{h(', '.join(v.stepscope_where) or '–')}</td></tr>"
            )
        parts.append("</table>")
    base = report.baseline
    if base is not None:
        parts.append(
            f"<h2>Against baseline <code>{h(base.source)}</code></h2>"
            "<table><tr><th>metric</th><th>baseline</th><th>current</th><th>change</th>"
            "<th>verdict</th></tr>"
        )
        for c in base.comparisons:
            parts.append(
                f"<tr><td>{h(c.label)}</td><td>{h(fmt(c.baseline))}</td>"
                f"<td>{h(fmt(c.current))}</td><td>{h(change(c))}</td>"
                f"<td class='{'fail' if c.regressed else 'pass'}'>"
                f"{'regressed' if c.regressed else 'ok'}</td></tr>"
            )
        parts.append("</table>")
    parts += training_section(report, figure)
    parts.append("<h2>Rules</h2><table><tr><th>rule</th><th>status</th><th>note</th></tr>")
    for rule in report.rules:
        parts.append(
            f"<tr><td>{h(rule.rule)}</td><td>{h(rule.status)}</td>"
            f"<td>{h_prose(rule.reason or '–')}</td></tr>"
        )
    parts.append("</table>")
    files = report.job.skipped_files
    if files:  # what the verdict was not based on
        parts.append(
            f"<h2>Files not read ({len(files)})</h2><p>Damaged or unreadable; their good records, "
            "if any, are in the report.</p><table><tr><th>file</th><th>reason</th></tr>"
        )
        parts += [
            f"<tr><td><code>{h(f.path)}</code></td><td>{h_prose(f.reason)}</td></tr>" for f in files
        ]
        parts.append("</table>")
    parts.append(f"<p class='run'><small>{h(run_line(report))}</small></p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def training_section(report: Report, figure: Callable[[go.Figure, str | None], str]) -> list[str]:
    """ "Training health": workers, the training rules' findings each linked to the chart that
    shows it, then per worker its loss, gradient-norm heatmap, update ratios and activations."""
    th = report.training_health
    if th is None:
        return []
    parts = ["<h2 id='training-health'>Training health</h2>"]
    if not th.workers:
        return [*parts, f"<p>{h_prose(th.note or 'No training-health data.')}</p>"]
    parts.append(
        "<table><tr>"
        + "".join(f"<th>{h(c)}</th>" for c in WORKER_HEADINGS)
        + "</tr>"
        + "".join(
            "<tr>" + "".join(f"<td>{h(c)}</td>" for c in worker_cells(w)) + "</tr>"
            for w in th.workers
        )
        + "</table>"
    )
    rows = training_findings(report)
    if rows:
        parts.append(
            "<table><tr><th>severity</th><th>rule</th><th>where</th><th>steps</th>"
            "<th>finding</th><th>chart</th></tr>"
        )
        for i, steps, chart, link in rows:
            f = report.findings[i]
            parts.append(
                f"<tr><td class='{h(f.severity)}'>{h(f.severity)}</td><td>{h(f.rule)}</td>"
                f"<td>{h(f.where)}</td>"
                f"<td>{h(steps)}</td><td>{h_prose(f.message)}</td>"
                f"<td><a href='#{h(link)}'>{h(CHART_TITLES[chart])}</a></td></tr>"
            )
        parts.append("</table>")
    parts.append(
        "<p>Training rules: " + h(", ".join(f"{v.rule} {v.status}" for v in th.rules)) + ".</p>"
    )
    t = report.charts.training
    if t is None:
        return parts
    heatmaps = {hm.worker: hm for hm in t.gradient_norms}
    for w in th.workers:
        parts.append(f"<h3>{h(w.worker)}</h3>")
        for chart, fig in (
            ("loss", training_figures.loss(t, w.worker)),
            (
                "gradient_norms",
                training_figures.gradient_heatmap(heatmaps[w.worker])
                if w.worker in heatmaps
                else None,
            ),
            ("update_ratios", training_figures.update_ratios(t, w.worker)),
            ("activations", training_figures.activations(t, w.worker)),
        ):
            link = anchor(chart, w.worker)
            if fig is None:  # a finding may still link here: say what is missing
                parts.append(
                    f"<p id='{h(link)}'>{h(CHART_TITLES[chart])}: not recorded for this worker.</p>"
                )
            else:
                parts.append(figure(fig, link))
    layers = t.layers.frame()
    if len(layers):
        parts.append(
            "<details><summary>Per-layer figures</summary>"
            "<table><tr><th>worker</th><th>layer</th><th>measure</th>"
            "<th>steps</th><th>last</th><th>min</th><th>max</th></tr>"
        )
        for r in layers.itertuples(index=False):
            layer = f"{r.layer} ({r.module})" if isinstance(r.module, str) and r.module else r.layer
            parts.append(
                "<tr>"
                + "".join(
                    f"<td>{h(v)}</td>"
                    for v in (
                        r.worker,
                        layer,
                        MEASURES.get(r.measure, r.measure),
                        f"{r.first_step}–{r.last_step}",
                        num(r.last),
                        num(r.min),
                        num(r.max),
                    )
                )
                + "</tr>"
            )
        parts.append("</table></details>")
    return parts
