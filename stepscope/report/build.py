"""Build the report from a job and its rules' results: findings, rule statuses, metrics per
node/GPU/rank, SageMaker's verdicts beside stepscope's, the baseline comparison, and the
series the outputs chart.

It reads the job's memoised analyses (the ones the rules already computed) and judges
nothing itself: verdicts are the rules' findings, the pass/fail policy is the caller's.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from analyzer import __version__
from analyzer.job import Job
from rules.base import SEVERITIES, SEVERITY_RANK, RuleResult
from rules.ruleset import RuleSet
from stepscope.report import cost, rows, training
from stepscope.report import model as m
from stepscope.report.grouping import group_findings, place_key
from stepscope.report.rule_info import leading_rules
from stepscope.report.sources import node_metrics_sources

#: time bins of the HTML report's GPU-utilization heatmap (whole job)
HEATMAP_BINS = 120


def build(
    job: Job,
    ruleset: RuleSet,
    results: list[RuleResult],
    *,
    detail: bool = True,
    pricing: cost.Pricing | None = None,
) -> m.Report:
    """The report of ``job`` judged by ``results`` (rules run with ``ruleset``);
    ``job.baseline``, when set, is compared against. ``detail``: with the top-kernel and
    collective tables the dashboard shows (see :class:`~stepscope.report.model.Charts`).
    ``pricing``: the caller's instance type, count and price (None: the job's own)."""
    leading = leading_rules()
    # leading rules first (a hang), then the rules whose findings lose the most GPU time
    # together (the same order as dollars: one job, one price), then the rules that lose
    # none countable, worst first; a rule's own findings in place order (rank 9, rank 10)
    wasted = [(f, cost.waste_of(f)) for r in results for f in r.findings]
    by_rule: dict[str, float] = {}
    for f, w in wasted:
        by_rule[f.rule] = by_rule.get(f.rule, 0.0) + (w.gpus if w is not None else 0.0)
    costed = sorted(
        wasted,
        key=lambda fw: (
            fw[0].rule not in leading,
            -by_rule[fw[0].rule],
            -SEVERITY_RANK[fw[0].severity],
            fw[0].rule,
            place_key(fw[0].where),
        ),
    )
    findings = [f for f, _ in costed]
    info = job_info(job)
    nodes = node_metrics(job)
    groups = group_findings(
        findings,
        ranks=info.ranks,
        nodes=info.nodes,
        gpus=sum(len(n.gpus) for n in nodes),
        rule_titles={r.rule: r.title for r in results},
    )
    return m.Report(
        generated_at=datetime.now(UTC).isoformat(timespec="seconds"),
        stepscope_version=__version__,
        job=info,
        rules_file=ruleset.source,
        summary=m.Summary(
            counts=m.Counts(**{s: sum(1 for f in findings if f.severity == s) for s in SEVERITIES})
        ),
        findings=list(findings),
        finding_groups=groups,
        rules=[
            m.RuleRow(
                rule=r.rule,
                title=r.title,
                status="error"
                if r.error
                else "skipped"
                if r.skipped_reason
                else "fired"
                if r.fired
                else "passed",
                findings=len(r.findings),
                reason=r.error or r.skipped_reason,
            )
            for r in results
        ],
        metrics=m.Metrics(
            headline=m.Headline.model_validate(job.headline()),
            nodes=nodes,
            ranks=sorted(
                (m.RankMetrics.model_validate(r) for r in rows.rank_metrics(job)),
                key=lambda r: r.rank,
            ),
            parallelism=parallelism(job),
        ),
        sagemaker_rule_reports=sagemaker_verdicts(job, results),
        baseline=baseline(job, results),
        training_health=training.section(job, results, findings),
        cost=cost.compute(
            job.dataset.meta,
            findings,
            [w for _, w in costed],
            pricing=pricing,
            window_s=info.time_span.seconds if info.time_span is not None else None,
            nodes=info.nodes,
            ranks=info.ranks,
        ),
        charts=charts(job, detail=detail),
    )


def parallelism(job: Job) -> m.Parallelism:
    """The job's process groups by parallel dimension, what each dimension's communication
    costs, and the pipeline stages' bubbles (empty lists without collectives)."""
    if not job.has_kineto_events:
        return m.Parallelism(groups=[], dimensions=[], pipeline=[])

    def records(df: pd.DataFrame) -> list[dict[str, Any]]:
        return [
            {k: (None if v is None or v is pd.NA or v != v else v) for k, v in r.items()}
            for r in df.to_dict("records")
        ]

    groups = [
        m.ProcessGroup.model_validate(
            {**r, "ranks": json.loads(r["ranks"]), "ops": str(r["ops"]).split(",")}
        )
        for r in records(job.process_groups())
    ]
    dimensions = [
        m.DimensionCost.model_validate({**r, "groups": str(r["groups"]).split(",")})
        for r in records(job.dimension_summary())
    ]
    pipeline = [m.PipelineStage.model_validate(r) for r in records(job.pipeline_bubbles())]
    return m.Parallelism(groups=groups, dimensions=dimensions, pipeline=pipeline)


def node_metrics(job: Job) -> list[m.NodeMetrics]:
    """Per node the summary figures and where its system metrics came from, in numeric order."""
    sources = node_metrics_sources(job)
    nodes = [
        m.NodeMetrics.model_validate({**n, "metrics_source": sources.get(str(n["node"]))})
        for n in rows.node_metrics(job)
    ]
    return sorted(nodes, key=lambda n: place_key(n.node))


def job_info(job: Job) -> m.JobInfo:
    meta = job.dataset.meta.to_dict()
    s = job.summary
    return m.JobInfo(
        **{
            k: meta[k]
            for k in (
                "name",
                "source",
                "kind",
                "status",
                "instance_type",
                "instance_count",
                "training_start_time",
                "training_end_time",
                "rule_statuses",
            )
        },
        nodes=s["nodes"],
        ranks=s["ranks"],
        time_span=s["time_span"],
        tables=s["tables"],
        skipped_files=s["skipped"],
        node_names=sorted((str(n) for n in s.get("node_names") or []), key=place_key),
        rank_ids=[int(r) for r in s.get("rank_ids") or []],
    )


def sagemaker_verdicts(job: Job, results: list[RuleResult]) -> list[m.SageMakerVerdict]:
    """SageMaker's own rule reports (``rule-output/.../profiler-reports/<Rule>.json``) beside
    stepscope's verdict on the same rule: SageMaker pools all nodes' samples, stepscope judges each
    node, GPU and rank, so where they disagree the evidence says which one SageMaker missed."""
    table = job.dataset.table("rule_reports")
    if table.num_rows == 0:
        return []
    ours = {r.rule: r for r in results}
    rows = []
    for rep in sorted(table.to_pylist(), key=lambda r: (r["rule"] or "", r["file"] or "")):
        if rep["triggered"] is None:  # summary files (OverallSystemUsage...) carry no verdict
            continue
        mine = ours.get(rep["rule"])
        fired = None if mine is None or mine.skipped_reason or mine.error else mine.fired
        rows.append(
            m.SageMakerVerdict(
                rule=rep["rule"],
                sagemaker_triggered=rep["triggered"],
                sagemaker_violations=rep["violations"],
                sagemaker_datapoints=rep["datapoints"],
                stepscope_fired=fired,
                stepscope_findings=len(mine.findings) if mine is not None else 0,
                stepscope_where=sorted({f.where for f in mine.findings}, key=place_key)
                if mine is not None
                else [],
                agree=None if fired is None else fired == bool(rep["triggered"]),
                file=rep["file"],
            )
        )
    return rows


def baseline(job: Job, results: list[RuleResult]) -> m.Baseline | None:
    """The headline figures against ``job.baseline`` (the comparison rows the baseline rule
    carries in its result, judged with the rule file's tolerances; none when that rule is
    off), and what the Compare page shows of the baseline run."""
    base = job.baseline
    if base is None:
        return None
    compared: list[dict[str, Any]] = next(
        (r.details["comparisons"] for r in results if "comparisons" in r.details), []
    )
    return m.Baseline(
        source=base.dataset.meta.source,
        job=base.dataset.meta.name,
        headline=m.Headline.model_validate(base.headline()),
        comparisons=[m.Comparison.model_validate(c) for c in compared],
        ranks=[m.RankMetrics.model_validate(r) for r in rows.rank_metrics(base)],
        step_ms=base.steps()["dur_ms"].tolist() if not base.steps().empty else [],
    )


def charts(job: Job, *, detail: bool = True) -> m.Charts:
    """The series the HTML report and the dashboard pages chart, from the job's analyses."""
    steps = job.steps()
    kineto = job.has_kineto_events  # the trace analyses have nothing to say without events
    empty = pd.DataFrame()
    return m.Charts(
        gpu_heatmap=gpu_heatmap(job),
        steps=m.Steps.of(steps),
        dataloader_waits=m.DataloaderWaits.of(job.dataloader_waits()),
        step_breakdown=m.StepBreakdown.of(job.rank_step_breakdown()),
        step_memory=m.StepMemory.of(job.allocator_memory_by_step()),
        gpu_time=m.GpuTime.of(gpu_time(job) if kineto else empty),
        kernel_types=m.KernelTypes.of(job.kernel_type_breakdown() if kineto else empty),
        idle_time=m.IdleTime.of(job.idle_time_breakdown() if kineto else empty),
        gpu_labels=m.GpuLabels.of(job.gpu_annotation_breakdown() if kineto else empty),
        top_kernels=m.TopKernels.of(job.top_kernels(15) if kineto else empty) if detail else None,
        collectives=m.Collectives.of(job.collective_summary() if kineto else empty)
        if detail
        else None,
        culprits=m.StepCulprits.of(job.step_culprits() if kineto else empty),
        training=training.charts(job),
    )


def gpu_heatmap(job: Job) -> m.Heatmap | None:
    hm = job.heatmap("GPUUtilization", HEATMAP_BINS)
    if hm.empty:
        return None
    rows = hm["node"].astype(str) + " " + hm["device"].astype(str)
    pivot = hm.assign(row=rows).pivot_table(index="row", columns="bin_start", values="value")
    pivot = pivot.loc[sorted(pivot.index, key=lambda r: place_key(str(r)))]  # algo-2 before algo-10
    return m.Heatmap(
        rows=[str(r) for r in pivot.index],
        bin_start_s=[float(c) for c in pivot.columns],
        values=[[None if v != v else v for v in row] for row in pivot.to_numpy().tolist()],
    )


def gpu_time(job: Job) -> pd.DataFrame:
    """HTA's temporal breakdown per rank with the rank's communication summary beside it."""
    temporal = job.temporal_breakdown()
    comm = job.communication_summary()
    if comm.empty:
        return temporal.assign(comm_time_ns=None, exposed_comm_ns=None)
    return temporal.merge(comm[["rank", "comm_time_ns", "exposed_comm_ns"]], on="rank", how="left")
