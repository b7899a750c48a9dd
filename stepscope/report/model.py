"""Build the report: job, findings, per-rule status, metrics per node/GPU/rank, baseline.

This dict *is* the public contract of ``report.json`` (docs/report-schema.md); the
Markdown, HTML and JUnit renderers only read it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from analyzer import __version__
from analyzer.job import Job
from rules import params as p
from rules.base import SEVERITY_RANK, Finding, RuleResult
from rules.builtin.baseline_regression import BaselineRegression
from rules.engine import at_or_above
from rules.ruleset import RuleSet

SCHEMA_VERSION = 1


def sagemaker_verdicts(job: Job, results: list[RuleResult]) -> list[dict[str, Any]]:
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
        where = sorted({f.where for f in mine.findings}) if mine is not None else []
        rows.append(
            {
                "rule": rep["rule"],
                "sagemaker_triggered": rep["triggered"],
                "sagemaker_violations": rep["violations"],
                "sagemaker_datapoints": rep["datapoints"],
                "stepscope_fired": fired,
                "stepscope_findings": len(mine.findings) if mine is not None else 0,
                "stepscope_where": where,
                "agree": None if fired is None else fired == bool(rep["triggered"]),
                "file": rep["file"],
            }
        )
    return rows


def verdict_labels(row: dict[str, Any]) -> tuple[str, str]:
    """A ``sagemaker_rule_reports`` row's two verdicts in words, as every renderer shows
    them: ("triggered" | "not triggered", "fired" | "passed" | "–" when stepscope could not judge)."""
    theirs = "triggered" if row["sagemaker_triggered"] else "not triggered"
    mine = "–" if row["stepscope_fired"] is None else ("fired" if row["stepscope_fired"] else "passed")
    return theirs, mine


def build(job: Job, ruleset: RuleSet, results: list[RuleResult], *, fail_on: str) -> dict[str, Any]:
    """The report document from the rules' ``results`` on ``job`` (its memoised analyses are
    shared with the rules); ``job.baseline``, when set, is compared against."""
    ds = job.dataset
    ingest_summary = job.summary
    nodes = job.node_metrics()
    ranks = job.rank_metrics()
    head = job.headline()
    findings: list[Finding] = [f for r in results for f in r.findings]
    rule_rows = [
        {
            "rule": r.rule,
            "title": r.title,
            "status": "error" if r.error else "skipped" if r.skipped_reason else "fired" if r.fired else "passed",
            "findings": len(r.findings),
            "reason": r.error or r.skipped_reason,
        }
        for r in results
    ]
    baseline_block = None
    if job.baseline is not None:
        bds = job.baseline.dataset
        params = ruleset.params("BaselineRegression")
        assert isinstance(params, p.BaselineRegressionParams)
        comps = BaselineRegression().comparisons(job, params)
        baseline_block = {"source": bds.meta.source, "job": bds.meta.name, "headline": job.baseline.headline(), "comparisons": comps}
    findings.sort(key=lambda f: (-SEVERITY_RANK[f.severity], f.rule, f.where))
    counts = {s: sum(1 for f in findings if f.severity == s) for s in ("error", "warning", "info")}
    failing = [f for f in findings if at_or_above(f.severity, fail_on)]
    meta = ds.meta.to_dict()
    return {
        "schema_version": SCHEMA_VERSION,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "stepscope_version": __version__,
        "job": {
            **{k: meta[k] for k in ("name", "source", "kind", "status", "instance_type", "instance_count", "training_start_time", "training_end_time")},
            "rule_statuses": meta["rule_statuses"],
            "nodes": ingest_summary["nodes"],
            "ranks": ingest_summary["ranks"],
            "time_span": ingest_summary["time_span"],
            "tables": ingest_summary["tables"],
            "skipped_files": ingest_summary["skipped"],
        },
        "rules_file": ruleset.source,
        "summary": {
            "verdict": "fail" if failing else "pass",
            "fail_on": fail_on,
            "counts": counts,
            "failing_findings": len(failing),
        },
        "findings": [f.to_dict() for f in findings],
        "rules": rule_rows,
        "metrics": {"headline": head, "nodes": nodes, "ranks": ranks},
        "sagemaker_rule_reports": sagemaker_verdicts(job, results),
        "baseline": baseline_block,
    }
