"""MaxInitializationTime — SageMaker built-in rule."""

from __future__ import annotations

from typing import ClassVar

from analyzer.analyses import steps as steps_analyses
from rules import params as p
from rules.engine import Finding, RuleContext


class MaxInitializationTime:
    id: ClassVar[str] = "MaxInitializationTime"
    title: ClassVar[str] = "Slow start before the first step"
    checks: ClassVar[str] = "Time from the job's start to its first training step, against `threshold` minutes."
    why: ClassVar[str] = "Long initialization (downloads, dataset preparation, compilation) is paid on every run and every retry."
    recommendation: ClassVar[str] = "Cache or pre-stage datasets and model weights; use FastFile mode; check what runs before the loop."
    severity: ClassVar[str] = "warning"
    params_model: ClassVar[type[p.RuleParams]] = p.MaxInitializationTimeParams

    def evaluate(self, ctx: RuleContext, params: p.MaxInitializationTimeParams) -> list[Finding] | str:
        if ctx.steps.empty:
            return "no step annotations in this job"
        seconds = steps_analyses.time_to_first_step(ctx.dataset, ctx.steps)
        if seconds is None:
            return "job start time unknown"
        if seconds <= params.threshold * 60:
            return []
        return [
            Finding(
                rule=self.id,
                severity=self.severity,
                title=f"First step after {seconds / 60:.1f} minutes",
                message=f"the first step started {seconds / 60:.1f} min after the job started (> {params.threshold} min)",
                evidence={"seconds_to_first_step": round(seconds, 3), "threshold_minutes": params.threshold},
                recommendation=self.recommendation,
                where="job",
            )
        ]
