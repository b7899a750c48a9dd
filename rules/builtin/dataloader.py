"""Dataloader — SageMaker built-in rule: data-loading processes vs CPU cores, per node."""

from __future__ import annotations

from typing import ClassVar

from analyzer.analyses import steps as steps_analyses
from analyzer.job import Job
from rules import params as p
from rules.base import Finding, iso


class Dataloader:
    id: ClassVar[str] = "Dataloader"
    title: ClassVar[str] = "Too few or too many data-loading processes"
    checks: ClassVar[str] = (
        "Per node, at every scan: median number of PyTorch data-loader processes running in the same second "
        "(SageMaker framework traces), below `min_threshold` % or above `max_threshold` % of the node's CPU "
        "cores, once more than 10 such seconds were seen."
    )
    why: ClassVar[str] = (
        "Too few workers leave cores idle while the GPU waits for batches; too many oversubscribe the CPU "
        "and compete with the training process."
    )
    recommendation: ClassVar[str] = (
        "Set DataLoader num_workers near the number of vCPUs per GPU process, with pin_memory=True and "
        "persistent_workers=True; lower it when workers outnumber the cores."
    )
    severity: ClassVar[str] = "warning"
    params_model: ClassVar[type[p.RuleParams]] = p.DataloaderParams

    def evaluate(self, job: Job, params: p.DataloaderParams) -> list[Finding] | str:
        if not job.has_dimension("CPUUtilization"):
            return "no CPUUtilization system metrics in this job"
        # smdebug's Dataloader (rules/dataloader.py): distinct data-loader processes per
        # second, median over the seconds seen so far, against the core count, every scan.
        res = steps_analyses.dataloader_parallelism(
            job.dataset,
            min_threshold=params.min_threshold,
            max_threshold=params.max_threshold,
            scan_interval_us=params.scan_interval_us,
        )
        if res.empty:
            return "no PyTorch data-loader events (SageMaker framework traces) in this job"
        findings: list[Finding] = []
        for r in res[res["fired"]].itertuples(index=False):
            few = r.kind == "too_few"
            limit = params.min_threshold if few else params.max_threshold
            findings.append(
                Finding(
                    rule=self.id,
                    severity=self.severity,
                    title=f"{'Too few' if few else 'Too many'} data-loading processes on {r.node}",
                    message=(
                        f"{r.node}: a median of {r.median_processes} data-loading processes in parallel on {r.cores} "
                        f"cores ({'<' if few else '>'} {limit}% of the cores) over {r.seconds} seconds with data loading"
                    ),
                    evidence={
                        "node": r.node,
                        "kind": r.kind,
                        "cores": int(r.cores),
                        "median_processes": int(r.median_processes),
                        "seconds": int(r.seconds),
                        "violations": int(r.violations),
                        "first_fired_at": iso(float(r.first_fired_at)),
                        "window_start": iso(float(r.window_start)),
                        "window_end": iso(float(r.window_end)),
                    },
                    recommendation=self.recommendation,
                    where=f"node {r.node}",
                )
            )
        return findings
