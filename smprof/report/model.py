"""Build the report: job, findings, per-rule status, metrics per node/GPU/rank, baseline.

This dict *is* the public contract of ``report.json`` (docs/report-schema.md); the
Markdown, HTML and JUnit renderers only read it.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pandas as pd

import analyzer.analyses as kineto
from analyzer import __version__
from analyzer.analyses import annotations as labels_analyses
from analyzer.analyses import idle_time, kernel_launch
from analyzer.analyses import memory as memory_analyses
from analyzer.analyses import steps as steps_analyses
from analyzer.analyses import system as system_analyses
from analyzer.ingest.dataset import JobDataset
from rules import params as p
from rules.engine import SEVERITY_RANK, Finding, RuleContext, RuleResult, at_or_above
from rules.ruleset import RuleSet

SCHEMA_VERSION = 1


def _num(v: Any, digits: int = 3) -> float | None:
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) or math.isinf(f) else round(f, digits)


def node_metrics(ds: JobDataset) -> list[dict[str, Any]]:
    gpus = system_analyses.gpu_summary(ds.table("system_metrics"))
    cpu = system_analyses.metric_frame(ds.table("system_metrics"), ["CPUUtilization", "I/OWaitPercentage"])
    # per (node, dimension) percentiles in one grouped pass, not a boolean mask per node
    pct: dict[tuple[str, str, float], float] = {}
    if len(cpu):
        q = cpu.groupby(["node", "dimension"], observed=True, sort=False)["value"].quantile([0.5, 0.95])
        pct = {(str(n), str(d), float(p)): float(v) for (n, d, p), v in q.items()}
    gpu_nodes = {str(n) for n in gpus["node"].unique()} if len(gpus) else set()
    nodes = sorted(gpu_nodes | {n for n, _, _ in pct}, key=system_analyses.natural_key)
    out = []
    for node in nodes:
        g = gpus[gpus["node"] == node] if len(gpus) else gpus
        out.append(
            {
                "node": node,
                "cpu_util_p50": _num(pct.get((node, "CPUUtilization", 0.5))),
                "cpu_util_p95": _num(pct.get((node, "CPUUtilization", 0.95))),
                "io_wait_p95": _num(pct.get((node, "I/OWaitPercentage", 0.95))),
                "gpus": [
                    {
                        "gpu": r.gpu,
                        "samples": int(r.samples),
                        "util_pct": {"p5": _num(r.util_p5), "p50": _num(r.util_p50), "p95": _num(r.util_p95), "mean": _num(r.util_mean)},
                        "memory_pct": {"p5": _num(r.mem_p5), "p50": _num(r.mem_p50), "p95": _num(r.mem_p95)},
                        "low_util_share_pct": _num(r.low_share_pct),
                    }
                    for r in g.itertuples(index=False)
                ],
            }
        )
    return out


def rank_metrics(
    ds: JobDataset, steps: pd.DataFrame, waits: pd.DataFrame, ctx: RuleContext | None = None
) -> list[dict[str, Any]]:
    stats = steps_analyses.step_stats(steps).set_index("rank") if not steps.empty else pd.DataFrame()
    ranks = sorted(set(ds.ranks) | (set(stats.index) if len(stats) else set()))
    node_of = {}
    traces = ds.table("kineto_traces")
    if traces.num_rows:
        for row in traces.select(["rank", "node"]).to_pylist():
            node_of[row["rank"]] = row["node"]
    gpu = gpu_metrics_by_rank(ds, ctx)
    out = []
    for rank in ranks:
        st = stats.loc[rank] if len(stats) and rank in stats.index else None
        w = waits[waits["rank"] == rank] if len(waits) else waits
        stall = float(w["wait_ms"].sum() / w["step_ms"].sum() * 100) if len(w) and w["step_ms"].sum() else None
        entry: dict[str, Any] = {
            "rank": int(rank),
            "node": node_of.get(rank),
            "steps": int(st["steps"]) if st is not None else 0,
            "step_time_mean_ms": _num(st["mean_ms"]) if st is not None else None,
            "step_time_median_ms": _num(st["median_ms"]) if st is not None else None,
            "step_time_p95_ms": _num(st["p95_ms"]) if st is not None else None,
            "step_time_std_ms": _num(st["std_ms"]) if st is not None else None,
            "steps_per_s": _num(st["steps_per_s"]) if st is not None else None,
            "dataloader_stall_pct": _num(stall),
            "comm_comp_overlap_pct": None,
            "exposed_comm_pct": None,
            "temporal_pct": None,
            "kernel_share_pct": None,
            "idle_breakdown_pct": None,
            "kernel_launches": None,
            "gpu_annotations": [],
            "allocator_memory": [],
        }
        entry.update(gpu.get(int(rank), {}))
        out.append(entry)
    return out


def gpu_metrics_by_rank(ds: JobDataset, ctx: RuleContext | None = None) -> dict[int, dict[str, Any]]:
    """Per-rank GPU breakdowns from the Kineto analyses (HTA's definitions). With the rules'
    ``ctx``, the analyses they computed already (same memo keys) are reused."""
    ev = ds.table("kineto_events")
    if ev.num_rows == 0:
        return {}
    ctx = RuleContext(ds) if ctx is None else ctx
    out: dict[int, dict[str, Any]] = {}
    temporal = kineto.temporal_breakdown(ev)
    for r in temporal.itertuples(index=False):
        out.setdefault(int(r.rank), {})["temporal_pct"] = {
            "compute": _num(r.compute_time_pct),
            "non_compute": _num(r.non_compute_time_pct),
            "idle": _num(r.idle_time_pct),
        }
    types = kineto.kernel_type_breakdown(ev)
    for rank, g in types.groupby("rank"):
        shares = dict(zip(g["kernel_type"], g["pct"], strict=True))
        out.setdefault(int(rank), {})["kernel_share_pct"] = {
            "computation": _num(shares.get("COMPUTATION", 0.0)),
            "communication": _num(shares.get("COMMUNICATION", 0.0)),
            "memory": _num(shares.get("MEMORY", 0.0)),
            "overlapping": {k: _num(v) for k, v in shares.items() if " overlapping " in k},
        }
    idle = idle_time.idle_time_by_rank(idle_time.idle_time_breakdown(ev))
    for r in idle.itertuples(index=False):
        if r.idle_ns > 0:
            out.setdefault(int(r.rank), {})["idle_breakdown_pct"] = {
                "host_wait": _num(r.host_wait_pct),
                "kernel_wait": _num(r.kernel_wait_pct),
                "other": _num(r.other_pct),
            }
    launches = ctx.memo(
        ("kernel_launch_summary",), lambda: kernel_launch.kernel_launch_summary(kernel_launch.kernel_launch_stats(ev))
    )
    for r in launches.itertuples(index=False):
        out.setdefault(int(r.rank), {})["kernel_launches"] = {
            "kernels": int(r.kernels),
            "cpu_launch_mean_us": _num(r.cpu_duration_mean_ns / 1e3),
            "gpu_duration_mean_us": _num(r.gpu_duration_mean_ns / 1e3),
            "launch_delay_mean_us": _num(r.launch_delay_mean_ns / 1e3),
            "launch_delay_max_us": _num(r.launch_delay_max_ns / 1e3),
            "short_kernels": int(r.short_kernels),
            "runtime_outliers": int(r.runtime_outliers),
            "launch_delay_outliers": int(r.launch_delay_outliers),
        }
    mem = ctx.memo(("allocator_memory_summary",), lambda: memory_analyses.allocator_memory_summary(ds))
    for rank, g in mem.groupby("rank", sort=True):
        out.setdefault(int(rank), {})["allocator_memory"] = [
            {"device": "cpu" if r.device < 0 else f"gpu{int(r.device)}",
             "peak_allocated_mib": _num(r.peak_allocated_bytes / 2**20), "peak_reserved_mib": _num(r.peak_reserved_bytes / 2**20),
             "steps": int(r.steps), "growth_per_step_mib": _num(r.growth_per_step_bytes / 2**20)}
            for r in g.itertuples(index=False)
        ]
    labels = labels_analyses.gpu_annotation_breakdown(ev)
    for rank, g in labels.groupby("rank", sort=True):
        out.setdefault(int(rank), {})["gpu_annotations"] = [
            {"name": str(r.name), "count": int(r.count), "total_ms": _num(r.total_ns / 1e6),
             "mean_ms": _num(r.mean_ns / 1e6), "pct": _num(r.pct)}
            for r in g.head(10).itertuples(index=False)
        ]
    comm = ctx.memo(("communication_summary",), lambda: kineto.communication_summary(ev))
    for r in comm.itertuples(index=False):
        busy = float(r.gpu_busy_ns) if r.gpu_busy_ns == r.gpu_busy_ns else 0.0
        has_comm = bool(r.comm_time_ns) and r.comm_time_ns == r.comm_time_ns
        out.setdefault(int(r.rank), {}).update(
            {
                "comm_comp_overlap_pct": _num(r.comm_comp_overlap_pct) if has_comm else None,
                "exposed_comm_pct": _num(float(r.exposed_comm_ns) / busy * 100) if has_comm and busy > 0 else None,
                "comm_share_pct": _num(r.comm_share_pct) if has_comm else None,
            }
        )
    return out


def headline(nodes: list[dict[str, Any]], ranks: list[dict[str, Any]], steps: pd.DataFrame, ds: JobDataset) -> dict[str, Any]:
    gpus = system_analyses.gpu_summary(ds.table("system_metrics"))
    sm = system_analyses.metric_frame(ds.table("system_metrics"), ["GPUUtilization"])
    stalls = [r["dataloader_stall_pct"] for r in ranks if r["dataloader_stall_pct"] is not None]
    exposed = [r["exposed_comm_pct"] for r in ranks if r["exposed_comm_pct"] is not None]
    return {
        "gpu_util_p50": _num(sm["value"].quantile(0.5)) if len(sm) else None,
        "gpu_util_p95": _num(sm["value"].quantile(0.95)) if len(sm) else None,
        "gpus": len(gpus),
        "dataloader_stall_pct": _num(sum(stalls) / len(stalls)) if stalls else None,
        "exposed_comm_pct": _num(sum(exposed) / len(exposed)) if exposed else None,
        "step_time_mean_ms": _num(steps["dur_ms"].mean()) if len(steps) else None,
        "step_time_std_ms": _num(steps["dur_ms"].std(ddof=0)) if len(steps) else None,
        "steps_per_s": _num(1000.0 / steps.groupby("rank")["dur_ms"].mean().max()) if len(steps) else None,
    }


def compare(current: dict[str, Any], baseline: dict[str, Any], params: p.BaselineRegressionParams) -> list[dict[str, Any]]:
    """Metric-by-metric comparison of two headlines; 'regressed' beyond the tolerances."""
    specs = (
        ("step_time_mean_ms", "mean step time (ms)", "pct_up", params.step_time_pct),
        ("steps_per_s", "throughput (steps/s)", "pct_down", params.throughput_pct),
        ("gpu_util_p50", "GPU utilization p50 (%)", "points_down", params.gpu_util_points),
        ("dataloader_stall_pct", "data-loader stall share (%)", "points_up", params.stall_points),
        ("exposed_comm_pct", "exposed communication share (%)", "points_up", params.exposed_comm_points),
    )
    out = []
    for key, label, kind, tol in specs:
        b, c = baseline.get(key), current.get(key)
        if b is None or c is None:
            continue
        change_pct = (c - b) / b * 100 if b else None
        if kind == "pct_up":
            regressed = change_pct is not None and change_pct > tol
        elif kind == "pct_down":
            regressed = change_pct is not None and -change_pct > tol
        elif kind == "points_up":
            regressed = c - b > tol
        else:
            regressed = b - c > tol
        out.append(
            {
                "metric": key,
                "label": label,
                "baseline": _num(b),
                "current": _num(c),
                "change_pct": _num(change_pct),
                "change_points": _num(c - b),
                "tolerance": tol,
                "tolerance_kind": kind,
                "regressed": bool(regressed),
            }
        )
    return out


def sagemaker_verdicts(ds: JobDataset, results: list[RuleResult]) -> list[dict[str, Any]]:
    """SageMaker's own rule reports (``rule-output/.../profiler-reports/<Rule>.json``) beside
    smprof's verdict on the same rule: SageMaker pools all nodes' samples, smprof judges each
    node, GPU and rank, so where they disagree the evidence says which one SageMaker missed."""
    table = ds.table("rule_reports")
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
                "smprof_fired": fired,
                "smprof_findings": len(mine.findings) if mine is not None else 0,
                "smprof_where": where,
                "agree": None if fired is None else fired == bool(rep["triggered"]),
                "file": rep["file"],
            }
        )
    return rows


def verdict_labels(row: dict[str, Any]) -> tuple[str, str]:
    """A ``sagemaker_rule_reports`` row's two verdicts in words, as every renderer shows
    them: ("triggered" | "not triggered", "fired" | "passed" | "–" when smprof could not judge)."""
    theirs = "triggered" if row["sagemaker_triggered"] else "not triggered"
    mine = "–" if row["smprof_fired"] is None else ("fired" if row["smprof_fired"] else "passed")
    return theirs, mine


def baseline_findings(comparisons: list[dict[str, Any]], source: str) -> list[Finding]:
    from rules.engine import Finding

    findings = []
    for c in comparisons:
        if not c["regressed"]:
            continue
        unit = "%" if c["tolerance_kind"].startswith("pct") else " points"
        findings.append(
            Finding(
                rule="BaselineRegression",
                severity="warning",
                title=f"{c['label']} regressed against the baseline",
                message=(
                    f"{c['label']}: {c['baseline']} → {c['current']} "
                    f"(tolerance {c['tolerance']}{unit})"
                ),
                evidence={"baseline_source": source, **c},
                recommendation="Compare the two runs' dashboards (Compare page) and look at what changed between them.",
                where="job",
            )
        )
    return findings


def build(
    ds: JobDataset,
    ruleset: RuleSet,
    results: list[RuleResult],
    *,
    ingest_summary: dict[str, Any],
    fail_on: str,
    baseline: tuple[JobDataset, dict[str, Any]] | None = None,
    ctx: RuleContext | None = None,
) -> dict[str, Any]:
    """The report document. ``ctx``: the RuleContext ``results`` were evaluated with, so
    steps and the shared analyses are computed once for rules and report alike."""
    ctx = RuleContext(ds) if ctx is None else ctx
    steps = ctx.steps
    waits = ctx.dataloader_waits
    nodes = node_metrics(ds)
    ranks = rank_metrics(ds, steps, waits, ctx)
    head = headline(nodes, ranks, steps, ds)
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
    if baseline is not None:
        bds, _bsummary = baseline
        bsteps = steps_analyses.step_durations(bds)
        bwaits = steps_analyses.dataloader_waits(bds, bsteps)
        branks = rank_metrics(bds, bsteps, bwaits)
        bhead = headline(node_metrics(bds), branks, bsteps, bds)
        params = ruleset.params("BaselineRegression")
        assert isinstance(params, p.BaselineRegressionParams)
        comps = compare(head, bhead, params)
        bfind = baseline_findings(comps, bds.meta.source) if ruleset.enabled("BaselineRegression") else []
        findings += bfind
        rule_rows.append(
            {
                "rule": "BaselineRegression",
                "title": "Regression against the baseline run",
                "status": "fired" if bfind else "passed",
                "findings": len(bfind),
                "reason": None,
            }
        )
        baseline_block = {"source": bds.meta.source, "job": bds.meta.name, "headline": bhead, "comparisons": comps}
    findings.sort(key=lambda f: (-SEVERITY_RANK[f.severity], f.rule, f.where))
    counts = {s: sum(1 for f in findings if f.severity == s) for s in ("error", "warning", "info")}
    failing = [f for f in findings if at_or_above(f.severity, fail_on)]
    meta = ds.meta.to_dict()
    return {
        "schema_version": SCHEMA_VERSION,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "smprof_version": __version__,
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
        "sagemaker_rule_reports": sagemaker_verdicts(ds, results),
        "baseline": baseline_block,
    }
