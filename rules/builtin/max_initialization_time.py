"""MaxInitializationTime — SageMaker built-in rule."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, ClassVar

from pydantic import Field

from rules.base import Finding, Rule
from rules.params import BuiltinParams, RuleParams

if TYPE_CHECKING:
    from analyzer.job import Job


class MaxInitializationTimeParams(BuiltinParams):
    threshold: int = Field(
        20, gt=0, description="Minutes before the first step above which the rule fires."
    )


def fires_after_s(threshold_min: float, scan_interval_us: int) -> float:
    """Seconds after the job's start from which smdebug's MaxInitializationTime fires.

    smdebug checks once per scan: at scan k (window [k·s, (k+1)·s] after the start) it
    fires when k·s exceeds ``threshold`` minutes and no step event overlapped any window
    so far. The first scan past the threshold is k = floor(threshold·60 / s) + 1, which
    has seen every step started by (k + 1)·s: the rule fires when the first step starts
    later than that (22 min for the defaults: threshold 20 min, 60 s scans).
    """
    s = scan_interval_us / 1e6
    k = math.floor(threshold_min * 60 / s) + 1
    return (k + 1) * s


class MaxInitializationTime(Rule):
    id: ClassVar[str] = "MaxInitializationTime"
    title: ClassVar[str] = "Slow start before the first step"
    checks: ClassVar[str] = (
        "Time from the job's start to its first training step, against "
        "`threshold` minutes as SageMaker's once-per-scan check sees it (it "
        "fires when no step started within the first scan past the threshold)."
    )
    why: ClassVar[str] = (
        "Long initialization (downloads, dataset preparation, "
        "compilation) is paid on every run and every retry."
    )
    recommendation: ClassVar[str] = (
        "Cache or pre-stage datasets and model weights; use "
        "FastFile mode; check what runs before the loop."
    )
    severity: ClassVar[str] = "warning"
    params_model: ClassVar[type[RuleParams]] = MaxInitializationTimeParams
    page: ClassVar[str] = "steps"
    sagemaker_builtin: ClassVar[bool] = True

    def evaluate(self, job: Job, params: MaxInitializationTimeParams) -> list[Finding] | str:
        start_ns = job.job_start_ns()
        if start_ns is None:
            return "job start time unknown"
        # smdebug (rules/max_initialization_time.py) checks once per scan whether a
        # `Step:ModeKeys` event was seen yet: it fires only from the first scan past the
        # threshold, and only if no step started by that scan's end.
        limit_s = fires_after_s(params.threshold, params.scan_interval_us)
        first_ns = job.first_step_ns()
        evidence: dict[str, object] = {
            "threshold_minutes": params.threshold,
            "fires_after_s": limit_s,
        }
        if first_ns is None:
            # smdebug fires on a job that never reaches its first step. Only the training
            # loop's own timelines (python / model timelines, which record steps) say the
            # job ran without one; Horovod timelines hold collectives, never steps. How long
            # it ran is told by their events' starts (a damaged duration cannot stretch it).
            last_ns = job.last_step_timeline_event_ns()
            if last_ns is None:
                return "no step annotations in this job"
            ran_s = (last_ns - start_ns) / 1e9
            if ran_s <= limit_s - params.scan_interval_us / 1e6:
                return []
            return [
                self.finding(
                    title=f"No training step in {ran_s / 60:.1f} minutes",
                    message=(
                        f"the job recorded framework events for {ran_s / 60:.1f} "
                        f"min but no training step (> {params.threshold} min)"
                    ),
                    evidence={
                        **evidence,
                        "seconds_to_first_step": None,
                        "seconds_recorded": round(ran_s, 3),
                    },
                    where="job",
                )
            ]
        seconds = max(0.0, (first_ns - start_ns) / 1e9)
        if seconds <= limit_s:
            return []
        return [
            self.finding(
                title=f"First step after {seconds / 60:.1f} minutes",
                message=(
                    f"the first step started {seconds / 60:.1f} min "
                    f"after the job started (> {params.threshold} min)"
                ),
                evidence={**evidence, "seconds_to_first_step": round(seconds, 3)},
                where="job",
            )
        ]
