"""StepOutlier — SageMaker built-in rule, judged per rank and training mode."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from pydantic import Field

from rules.base import Finding, GroupFigure, Rule
from rules.params import BuiltinParams, RuleParams

if TYPE_CHECKING:
    from analyzer.job import Job

#: smdebug's StepOutlier judges a rank's steps of one mode only once it has seen more than
#: this many (``len(step_durations) > 100`` in rules/step_outlier.py; not a rule parameter).
MIN_STEPS = 100


class StepOutlierParams(BuiltinParams):
    stddev: int = Field(
        3, gt=0, description="A step is an outlier above mean + stddev x standard deviation."
    )
    mode: str | None = Field(
        None, description="Training mode to check (TRAIN, EVAL...); all when unset."
    )
    n_outliers: int = Field(10, ge=0, description="Outliers tolerated before the rule fires.")


def _missing(value: Any) -> bool:
    return value is None or value != value  # None or NaN


def _iso_ns(ns: int | None) -> str | None:
    """Epoch ns (None when unknown) → ISO 8601 UTC, to the microsecond."""
    if ns is None:
        return None
    from analyzer.ingest.dataset import iso_ns

    return iso_ns(round(float(ns) / 1e3) * 1000)


class StepOutlier(Rule):
    id: ClassVar[str] = "StepOutlier"
    title: ClassVar[str] = "Step-time outliers"
    checks: ClassVar[str] = (
        "Per rank and training mode, at every scan once more than 100 steps were seen: steps "
        "longer than mean + `stddev`·σ of those steps; fires above `n_outliers` outliers."
    )
    why: ClassVar[str] = (
        "Sudden slow steps point at checkpointing, garbage "
        "collection, evaluation or stragglers inside training."
    )
    recommendation: ClassVar[str] = (
        "Look at what runs during the slow steps (the trace "
        "of those steps); move periodic work off the step."
    )
    severity: ClassVar[str] = "warning"
    params_model: ClassVar[type[RuleParams]] = StepOutlierParams
    page: ClassVar[str] = "steps"
    marks: ClassVar[str | None] = "outlier_steps"
    group_figures: ClassVar[dict[str | None, GroupFigure]] = {
        None: GroupFigure(
            "outliers", "{} outlier steps", digits=0, then=("max_ms", "longest {} ms", 1)
        ),
    }
    sagemaker_builtin: ClassVar[bool] = True

    def evaluate(self, job: Job, params: StepOutlierParams) -> list[Finding] | str:
        if job.steps().empty:
            return "no step annotations (ProfilerStep#N or framework steps) in this job"
        # smdebug's StepOutlier (rules/step_outlier.py): one group per process and step
        # event name (TRAIN and EVAL steps never pooled), judged only with more than 100
        # steps, re-judged at every scan on all steps seen so far.
        scans = job.step_time_scans(params.mode, params.scan_interval_us)
        if scans.empty:
            return (
                f"no steps of mode {params.mode} in this job"
                if params.mode
                else "no steps in this job"
            )
        if not (scans["steps"] > MIN_STEPS).any():
            return f"no rank has more than {MIN_STEPS} steps of one mode"
        findings: list[Finding] = []
        for r in scans.itertuples(index=False):
            # (scan end, threshold, outliers) at the last scan that fired, and the first one's end
            fired: tuple[int, float, np.ndarray] | None = None
            first_fired: int | None = None
            for n, end, mean, std in zip(r.seen, r.scan_end, r.mean_ms, r.std_ms, strict=True):
                if n <= MIN_STEPS:
                    continue
                thr = float(mean + params.stddev * std)
                hit = np.flatnonzero(r.dur_ms[:n] > thr)
                if len(hit) > params.n_outliers:
                    fired = (int(end), thr, hit)
                    if first_fired is None:
                        first_fired = int(end)
            if fired is None:
                continue
            scan_end, threshold_ms, hit = fired
            rank = None if _missing(r.rank) else int(r.rank)
            who = f"rank {rank}" if rank is not None else f"node {r.node}"
            mode = f" {r.mode}" if r.mode else ""
            findings.append(
                self.finding(
                    title=f"{len(hit)} outlier{mode} steps on {who}",
                    message=(
                        f"{len(hit)} of {r.steps}{mode} steps above {threshold_ms:.1f} ms "
                        f"(mean + {params.stddev}σ), longest "
                        f"{r.max_ms:.1f} ms; tolerated {params.n_outliers}"
                    ),
                    evidence={
                        "rank": rank,
                        "node": r.node,
                        "mode": r.mode,
                        "outliers": len(hit),
                        "threshold_ms": round(threshold_ms, 3),
                        "steps": [int(x) for x in r.step[hit]][:50],
                        "max_ms": round(float(r.max_ms), 3),
                        "first_fired_at": _iso_ns(first_fired),
                        "scan_end": _iso_ns(scan_end),
                    },
                    where=who,
                )
            )
        return findings
