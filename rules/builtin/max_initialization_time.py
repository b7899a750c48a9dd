"""MaxInitializationTime — SageMaker built-in rule."""

from __future__ import annotations

from typing import ClassVar

from analyzer.analyses import steps as steps_analyses
from analyzer.job import Job
from rules import params as p
from rules.base import Finding


class MaxInitializationTime:
    id: ClassVar[str] = "MaxInitializationTime"
    title: ClassVar[str] = "Slow start before the first step"
    checks: ClassVar[str] = (
        "Time from the job's start to its first training step, against `threshold` minutes as SageMaker's "
        "once-per-scan check sees it (it fires when no step started within the first scan past the threshold)."
    )
    why: ClassVar[str] = "Long initialization (downloads, dataset preparation, compilation) is paid on every run and every retry."
    recommendation: ClassVar[str] = "Cache or pre-stage datasets and model weights; use FastFile mode; check what runs before the loop."
    severity: ClassVar[str] = "warning"
    params_model: ClassVar[type[p.RuleParams]] = p.MaxInitializationTimeParams

    def evaluate(self, job: Job, params: p.MaxInitializationTimeParams) -> list[Finding] | str:
        ds = job.dataset
        start_ns = steps_analyses.job_start_ns(ds)
        if start_ns is None:
            return "job start time unknown"
        # smdebug (rules/max_initialization_time.py) checks once per scan whether a
        # `Step:ModeKeys` event was seen yet: it fires only from the first scan past the
        # threshold, and only if no step started by that scan's end.
        limit_s = steps_analyses.max_initialization_limit_s(params.threshold, params.scan_interval_us)
        first_ns = steps_analyses.first_step_ns(ds)
        evidence: dict[str, object] = {"threshold_minutes": params.threshold, "fires_after_s": limit_s}
        if first_ns is None:
            # smdebug fires on a job that never reaches its first step. Only the training
            # loop's own timelines (python / model timelines, which record steps) say the
            # job ran without one; Horovod timelines hold collectives, never steps. How long
            # it ran is told by their events' starts (a damaged duration cannot stretch it).
            last_ns = steps_analyses.last_step_timeline_event_ns(ds)
            if last_ns is None:
                return "no step annotations in this job"
            ran_s = (last_ns - start_ns) / 1e9
            if ran_s <= limit_s - params.scan_interval_us / 1e6:
                return []
            return [
                Finding(
                    rule=self.id,
                    severity=self.severity,
                    title=f"No training step in {ran_s / 60:.1f} minutes",
                    message=f"the job recorded framework events for {ran_s / 60:.1f} min but no training step (> {params.threshold} min)",
                    evidence={**evidence, "seconds_to_first_step": None, "seconds_recorded": round(ran_s, 3)},
                    recommendation=self.recommendation,
                    where="job",
                )
            ]
        seconds = max(0.0, (first_ns - start_ns) / 1e9)
        if seconds <= limit_s:
            return []
        return [
            Finding(
                rule=self.id,
                severity=self.severity,
                title=f"First step after {seconds / 60:.1f} minutes",
                message=f"the first step started {seconds / 60:.1f} min after the job started (> {params.threshold} min)",
                evidence={**evidence, "seconds_to_first_step": round(seconds, 3)},
                recommendation=self.recommendation,
                where="job",
            )
        ]
