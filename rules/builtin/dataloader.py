"""Dataloader — SageMaker built-in rule: data-loading processes vs CPU cores, per node."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from pydantic import Field

from rules.base import Finding, GroupFigure, Rule, iso
from rules.params import BuiltinParams, RuleParams

if TYPE_CHECKING:
    from analyzer.job import Job

#: smdebug's Dataloader judges only once more than this many seconds with data-loader
#: events were seen (its ``patience``, which the SDK's rule config does not expose).
PATIENCE_SECONDS = 10


class DataloaderParams(BuiltinParams):
    min_threshold: int = Field(
        70,
        ge=0,
        description="Parallel data-loading processes below this % of CPU cores are too few.",
    )
    max_threshold: int = Field(
        200,
        ge=0,
        description="Parallel data-loading processes above this % of CPU cores are too many.",
    )


class Dataloader(Rule):
    id: ClassVar[str] = "Dataloader"
    title: ClassVar[str] = "Too few or too many data-loading processes"
    checks: ClassVar[str] = (
        "Per node, at every scan: median number of PyTorch data-loader processes running in "
        "the same second (SageMaker framework traces), below `min_threshold` % or above "
        "`max_threshold` % of the node's CPU cores, once more than 10 such seconds were seen."
    )
    why: ClassVar[str] = (
        "Too few workers leave cores idle while the GPU waits for batches; "
        "too many oversubscribe the CPU and compete with the training process."
    )
    recommendation: ClassVar[str] = (
        "Set DataLoader num_workers near the number of vCPUs per GPU process, with "
        "pin_memory=True and persistent_workers=True; lower it when workers outnumber the cores."
    )
    severity: ClassVar[str] = "warning"
    params_model: ClassVar[type[RuleParams]] = DataloaderParams
    page: ClassVar[str] = "steps"
    in_rule_configs: ClassVar[bool] = False  # smdebug_rulesconfig has it in profiler_rules only
    group_figures: ClassVar[dict[str | None, GroupFigure]] = {
        "too_few": GroupFigure(
            "median_processes",
            "a median of {} data-loading processes",
            digits=0,
            worst="min",
            then=("cores", "on {} cores", 0),
        ),
        "too_many": GroupFigure(
            "median_processes",
            "a median of {} data-loading processes",
            digits=0,
            then=("cores", "on {} cores", 0),
        ),
    }
    sagemaker_builtin: ClassVar[bool] = True

    def evaluate(self, job: Job, params: DataloaderParams) -> list[Finding] | str:
        if not job.has_dimension("CPUUtilization"):
            return "no CPUUtilization system metrics in this job"
        # smdebug's Dataloader (rules/dataloader.py): distinct data-loader processes per
        # second, median over the seconds seen so far, against the core count, every scan.
        res = job.dataloader_parallelism(params.scan_interval_us)
        if res.empty:
            return "no PyTorch data-loader events (SageMaker framework traces) in this job"
        findings: list[Finding] = []
        for node, g in res.groupby("node", sort=True):
            cores = int(g["cores"].iloc[0])
            kind: str | None = None
            first_fired_at = first_median = violations = 0
            for r in g[g["seconds_seen"] > PATIENCE_SECONDS].itertuples(index=False):
                too_few = r.median_processes < cores * (params.min_threshold / 100)
                too_many = r.median_processes > cores * (params.max_threshold / 100)
                if too_few or too_many:
                    violations += 1
                    if kind is None:
                        kind = "too_few" if too_few else "too_many"
                        first_fired_at, first_median = r.scan_end, int(r.median_processes)
            if kind is None:
                continue
            few = kind == "too_few"
            limit = params.min_threshold if few else params.max_threshold
            seconds = int(g["seconds"].iloc[0])
            findings.append(
                self.finding(
                    title=f"{'Too few' if few else 'Too many'} data-loading processes on {node}",
                    message=(
                        f"a median of {first_median} data-loading processes in parallel on {cores} "
                        f"cores ({'<' if few else '>'} {limit}% of the "
                        f"cores) over {seconds} seconds with data loading"
                    ),
                    evidence={
                        "node": node,
                        "kind": kind,
                        "cores": cores,
                        "median_processes": first_median,
                        "seconds": seconds,
                        "violations": violations,
                        "first_fired_at": iso(float(first_fired_at)),
                        "window_start": iso(float(g["window_start"].iloc[0])),
                        "window_end": iso(float(g["window_end"].iloc[0])),
                    },
                    where=f"node {node}",
                )
            )
        return findings
