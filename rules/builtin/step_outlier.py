"""StepOutlier — SageMaker built-in rule, judged per rank and training mode."""

from __future__ import annotations

from typing import ClassVar

import pandas as pd

from analyzer.analyses import steps as steps_analyses
from analyzer.ingest.dataset import iso_ns
from analyzer.job import Job
from rules import params as p
from rules.base import Finding


def _iso_ns(ns: float | None) -> str | None:
    """Epoch ns (NaN or None when unknown) → ISO 8601 UTC, to the microsecond."""
    if ns is None or pd.isna(ns):
        return None
    return iso_ns(round(float(ns) / 1e3) * 1000)


class StepOutlier:
    id: ClassVar[str] = "StepOutlier"
    title: ClassVar[str] = "Step-time outliers"
    checks: ClassVar[str] = (
        "Per rank and training mode, at every scan once more than 100 steps were seen: steps longer than "
        "mean + `stddev`·σ of those steps; fires above `n_outliers` outliers."
    )
    why: ClassVar[str] = "Sudden slow steps point at checkpointing, garbage collection, evaluation or stragglers inside training."
    recommendation: ClassVar[str] = "Look at what runs during the slow steps (the trace of those steps); move periodic work off the step."
    severity: ClassVar[str] = "warning"
    params_model: ClassVar[type[p.RuleParams]] = p.StepOutlierParams

    def evaluate(self, job: Job, params: p.StepOutlierParams) -> list[Finding] | str:
        if job.steps().empty:
            return "no step annotations (ProfilerStep#N or framework steps) in this job"
        # smdebug's StepOutlier (rules/step_outlier.py): one group per process and step
        # event name (TRAIN and EVAL steps never pooled), judged only with more than 100
        # steps, re-judged at every scan on all steps seen so far.
        out = steps_analyses.step_outlier_verdicts(
            job.steps(),
            stddev=params.stddev,
            mode=params.mode,
            n_outliers=params.n_outliers,
            scan_interval_us=params.scan_interval_us,
            first_ns=steps_analyses.job_start_ns(job.dataset),
        )
        if out.empty:
            return f"no steps of mode {params.mode} in this job" if params.mode else "no steps in this job"
        if not (out["steps"] > steps_analyses.STEP_OUTLIER_MIN_STEPS).any():
            return f"no rank has more than {steps_analyses.STEP_OUTLIER_MIN_STEPS} steps of one mode"
        findings: list[Finding] = []
        for r in out[out["fired"]].itertuples(index=False):
            rank = None if pd.isna(r.rank) else int(r.rank)
            who = f"rank {rank}" if rank is not None else f"node {r.node}"
            mode = f" {r.mode}" if r.mode else ""
            findings.append(
                Finding(
                    rule=self.id,
                    severity=self.severity,
                    title=f"{r.outliers} outlier{mode} steps on {who}",
                    message=(
                        f"{who}: {r.outliers} of {r.steps}{mode} steps above {r.threshold_ms:.1f} ms "
                        f"(mean + {params.stddev}σ), longest {r.max_ms:.1f} ms; tolerated {params.n_outliers}"
                    ),
                    evidence={
                        "rank": rank,
                        "node": r.node,
                        "mode": r.mode,
                        "outliers": int(r.outliers),
                        "threshold_ms": round(float(r.threshold_ms), 3),
                        "steps": list(r.outlier_steps[:50]),
                        "max_ms": round(float(r.max_ms), 3),
                        "first_fired_at": _iso_ns(r.first_fired_at),
                        "scan_end": _iso_ns(r.scan_end),
                    },
                    recommendation=self.recommendation,
                    where=who,
                )
            )
        return findings
