"""report.md: short enough for a GitHub step summary, worst findings first."""

from __future__ import annotations

from pydantic import BaseModel

from stepscope.present.comparison import change
from stepscope.render.escape import md, md_code, md_prose
from stepscope.render.verdict import Verdict
from stepscope.report.cost import cost_text
from stepscope.report.cost import headline as cost_headline
from stepscope.report.grouping import groups_of, message_of
from stepscope.report.model import JobInfo, NodeMetrics, Report, TrainingWorker
from stepscope.report.rule_info import chart_of
from stepscope.report.training import CHART_TITLES, anchor

ICON = {"error": "🔴", "warning": "🟠", "info": "🔵"}
VERDICT_ICON = {"fail": "🔴", "not-failing": "🟠", "pass": "✅"}


def where(job: JobInfo) -> str:
    """ "2 nodes, 16 ranks"; a count of 0 (traces that name no host) is left out."""
    parts = [
        f"{n} {unit}{'s' if n != 1 else ''}"
        for n, unit in ((job.nodes, "node"), (job.ranks, "rank"))
        if n
    ]
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
    if report.cost is not None and report.cost.findings:
        lines += [f"💸 {md_prose(cost_headline(report.cost), table=False)}", ""]
    figures = headline(report)
    if figures:
        lines += [
            "| headline | value |",
            "|---|---|",
            *(f"| {label} | {value} |" for label, value in figures),
            "",
        ]

    findings = report.findings
    if findings:
        groups = groups_of(report)
        lines += [
            "## Findings",
            "",
            "| | rule | where | finding | cost over the run |",
            "|---|---|---|---|---|",
        ]
        for g in groups:
            lines.append(
                f"| {ICON[g.severity]} {g.severity} | {md(g.rule)} | {md(g.where)} | "
                f"{md_prose(g.message)} | {cost_text(report.cost, g.findings)} |"
            )
        lines.append("")
        for g in groups:
            if g.count > 1:  # the per-place figures under the group's one line
                lines += [
                    (
                        f"<details><summary>{md(g.rule)}, {md(g.where)}: "
                        f"each of the {g.count} findings</summary>"
                    ),
                    "",
                    "| where | finding | cost over the run |",
                    "|---|---|---|",
                ]
                lines += [
                    f"| {md(findings[i].where)} | {md_prose(message_of(findings[i]))} "
                    f"| {cost_text(report.cost, [i])} |"
                    for i in g.findings
                ]
                lines += ["", "</details>", ""]
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

    nodes = report.metrics.nodes
    if nodes:
        lines += [
            "## Nodes",
            "",
            (
                "| node | metrics from | CPU p50 / p95 % | I/O wait p95 % | GPUs "
                "| GPU utilization p50 % |"
            ),
            "|---|---|---|---|---|---|",
        ]
        for n in nodes:
            lines.append(
                f"| {md(n.node)} | {md(source_text(n))} | "
                f"{fmt(n.cpu_util_p50)} / {fmt(n.cpu_util_p95)} | "
                f"{fmt(n.io_wait_p95)} | {len(n.gpus)} | {gpu_p50(n)} |"
            )
        lines.append("")

    ranks = report.metrics.ranks
    if ranks:
        lines += [
            "## Ranks",
            "",
            (
                "| rank | steps | step ms (mean) | data-loader wait % | comm/comp overlap % "
                "| exposed comm % | compute / non-compute / idle % "
                "| idle: host / kernel wait / other % |"
            ),
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in ranks:
            temporal = breakdown(r.temporal_pct, TEMPORAL_PARTS) or "–"
            idle = breakdown(r.idle_breakdown_pct, IDLE_PARTS) or "–"
            lines.append(
                f"| {r.rank} | {r.steps or 0} | {fmt(r.step_time_mean_ms)} | "
                f"{fmt(r.dataloader_stall_pct)} | {fmt(r.comm_comp_overlap_pct)} | "
                f"{fmt(r.exposed_comm_pct)} | {temporal} | {idle} |"
            )
        lines.append("")

    lines += parallelism_section(report)

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
                f"| {md(v.rule)} | {theirs} | "
                f"{fmt(v.sagemaker_violations)} / {fmt(v.sagemaker_datapoints)} | "
                f"{mine}{flag} | {md(', '.join(v.stepscope_where)) or '–'} |"
            )
        lines.append("")

    base = report.baseline
    if base is not None:
        lines += [
            f"## Against baseline {md_code(base.source, table=False)}",
            "",
            "| metric | baseline | current | change | verdict |",
            "|---|---|---|---|---|",
        ]
        for c in base.comparisons:
            lines.append(
                f"| {md(c.label)} | {fmt(c.baseline)} | {fmt(c.current)} | {change(c)} | "
                f"{'regressed' if c.regressed else 'ok'} |"
            )
        lines.append("")

    lines += training_section(report)

    skipped = [rule for rule in report.rules if rule.status in ("skipped", "error")]
    if skipped:
        lines += ["<details><summary>Rules that could not judge this job</summary>", ""]
        for rule in skipped:
            lines.append(f"- {md(rule.rule)}: {md_prose(rule.reason or '–', table=False)}")
        lines += ["", "</details>", ""]
    files = report.job.skipped_files
    if files:  # what the verdict was not based on: a damaged or unreadable file's data
        lines += [
            f"## Files not read ({len(files)})",
            "",
            "Damaged or unreadable; their good records, if any, are in the report.",
            "",
        ]
        lines += [
            f"- {md_code(f.path, table=False)}: {md_prose(f.reason, table=False)}" for f in files
        ]
        lines.append("")
    lines += [f"<sub>{md(run_line(report))}</sub>", ""]
    return "\n".join(lines)


def parallelism_section(report: Report) -> list[str]:
    """Communication by parallel dimension and the pipeline stages (docs/analyses.md)."""
    par = report.metrics.parallelism
    if par is None or not par.dimensions:
        return []
    lines = [
        "## Communication by parallel dimension",
        "",
        "| dimension | groups | ranks | comm ms / step | exposed ms / step | % of step "
        "| worst rank (exposed ms / step) |",
        "|---|---|---|---|---|---|---|",
    ]
    for d in par.dimensions:
        lines.append(
            f"| {md(d.label)} | {md(', '.join(d.groups))} | {d.ranks} | "
            f"{fmt(d.time_ms_per_step)} | {fmt(d.exposed_ms_per_step)} | {fmt(d.share_pct)} | "
            f"{d.worst_rank} ({fmt(d.worst_exposed_ms_per_step)}) |"
        )
    lines.append("")
    lines += ["| group | description | size | ops | dimension | why |", "|---|---|---|---|---|---|"]
    for g in par.groups:
        lines.append(
            f"| {md(g.group)} | {md(g.desc or '–')} | {g.size} | {md(', '.join(g.ops))} | "
            f"{md(g.dimension)} | {md(g.evidence)} |"
        )
    lines.append("")
    if par.pipeline:
        lines += [
            "### Pipeline stages",
            "",
            "| stage | rank | group | micro-batches | step ms | compute ms | bubble ms "
            "| bubble % | ideal % | |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for p in par.pipeline:
            mark = "sets the pace" if p.slowest else ""
            lines.append(
                f"| {'–' if p.stage is None else p.stage} | {p.rank} | {md(p.group)} | "
                f"{fmt(p.microbatches)} | {fmt(p.step_ms)} | {fmt(p.compute_ms)} | "
                f"{fmt(p.bubble_ms)} | {fmt(p.bubble_pct)} | {fmt(p.ideal_pct)} | {mark} |"
            )
        lines.append("")
    return lines


def run_line(report: Report) -> str:
    """Which run a report file is: when, by which stepscope, on which source (every format
    says it, so files of two runs in one folder are told apart)."""
    return (
        f"Report of {report.job.source}, written {report.generated_at} "
        f"by stepscope {report.stepscope_version}."
    )


def source_text(node: NodeMetrics) -> str:
    """ "CloudWatch at 60 s", "stepscope collector at 0.5 s"; "–" where unknown."""
    return node.metrics_source.text() if node.metrics_source is not None else "–"


def gpu_p50(node: NodeMetrics) -> str:
    """The node's GPUs' utilization p50: one figure, or the lowest and highest GPU's."""
    values = [g.util_pct.p50 for g in node.gpus if g.util_pct.p50 is not None]
    if not values:
        return "–"
    lo, hi = fmt(min(values)), fmt(max(values))
    return lo if lo == hi else f"{lo}–{hi}"


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
    return [
        (label, f"{v:.1f}{unit}")
        for key, label, unit in HEADLINE
        if (v := getattr(head, key)) is not None
    ]


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


# --------------------------------------------------------------------------- training health

#: the per-layer measurements as the tables name them
MEASURES = {
    "gradient_norm": "gradient norm",
    "update_ratio": "update ratio",
    "zero_fraction": "zero share",
}
#: at most this many per-layer rows in report.md (the HTML and the dashboard show all)
MAX_LAYER_ROWS = 40


def worker_cells(w: TrainingWorker) -> list[str]:
    """A worker's row: steps, step range, last training / evaluation loss, gradient layers,
    first non-finite step (report.md and report.html show the same cells)."""
    steps = "–" if w.first_step is None else f"{w.first_step}–{w.last_step}"
    loss = (
        "–" if w.last_loss is None else f"{w.last_loss:.4g} ({w.loss_tag}, step {w.last_loss_step})"
    )
    if w.last_loss is None and w.loss_tag:
        loss = f"not a number ({w.loss_tag})"
    ev = "–" if w.last_eval_loss is None else f"{w.last_eval_loss:.4g} ({w.eval_loss_tag})"
    bad = "–" if w.first_nonfinite_step is None else str(w.first_nonfinite_step)
    return [w.worker, str(w.steps), steps, loss, ev, str(w.gradient_layers), bad]


WORKER_HEADINGS = (
    "worker",
    "steps recorded",
    "step range",
    "last training loss",
    "last evaluation loss",
    "layers with gradients",
    "first non-finite step",
)


def training_findings(report: Report) -> list[tuple[int, str, str, str]]:
    """The training rules' findings as (index into findings, step range, chart, chart anchor)."""
    th = report.training_health
    if th is None:
        return []
    out = []
    for v in th.rules:
        for i in v.findings:
            f = report.findings[i]
            rng = f.evidence.get("step_range")
            steps = (
                (f"{rng[0]}–{rng[1]}" if rng[0] != rng[1] else str(rng[0]))
                if isinstance(rng, list) and len(rng) == 2
                else str(f.evidence.get("step", "–"))
            )
            chart = chart_of(f)
            out.append((i, steps, chart, anchor(chart, str(f.evidence.get("worker") or ""))))
    return out


def training_section(report: Report) -> list[str]:
    """report.md's "Training health": workers, the training rules' findings with the chart
    (in report.html) that shows each, and the per-layer figures."""
    th = report.training_health
    if th is None:
        return []
    lines = ["## Training health", ""]
    if not th.workers:
        return [*lines, md_prose(th.note or "No training-health data.", table=False), ""]
    lines += ["| " + " | ".join(WORKER_HEADINGS) + " |", "|" + "---|" * len(WORKER_HEADINGS)]
    lines += ["| " + " | ".join(md(c) for c in worker_cells(w)) + " |" for w in th.workers]
    lines.append("")
    rows = training_findings(report)
    judged = ", ".join(f"{v.rule} {v.status}" for v in th.rules)
    lines += [f"Training rules: {md(judged)}.", ""]
    if rows:
        lines += ["| | rule | where | steps | chart |", "|---|---|---|---|---|"]
        for i, steps, chart, link in rows:
            f = report.findings[i]
            lines.append(
                f"| {ICON[f.severity]} | {md(f.rule)} | {md(f.where)} | {steps} | "
                f"[{CHART_TITLES[chart]}](report.html#{link}) |"
            )
        lines.append("")
    t = report.charts.training
    layers = t.layers.frame() if t is not None else None
    if layers is not None and len(layers):
        lines += [
            "| worker | layer | measure | steps | last | min | max |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in layers.head(MAX_LAYER_ROWS).itertuples(index=False):
            layer = f"{r.layer} ({r.module})" if isinstance(r.module, str) and r.module else r.layer
            lines.append(
                f"| {md(r.worker)} | {md(layer)} | {MEASURES.get(r.measure, r.measure)} | "
                f"{r.first_step}–{r.last_step} | {num(r.last)} | {num(r.min)} | {num(r.max)} |"
            )
        if len(layers) > MAX_LAYER_ROWS:
            lines.append(f"\n{len(layers) - MAX_LAYER_ROWS} more rows in report.html.")
        lines.append("")
    return lines


def num(v: object) -> str:
    """A training figure: 4 significant digits (norms and ratios span decades), "–" for none."""
    if v is None or (isinstance(v, float) and v != v):
        return "–"
    return f"{v:.4g}" if isinstance(v, float) else str(v)
