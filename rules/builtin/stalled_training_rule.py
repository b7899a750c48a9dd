"""StalledTrainingRule — SageMaker Debugger built-in: a worker stopped writing training data."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from pydantic import Field

from rules.base import Finding, iso
from rules.builtin._training import TrainingRule, no_data
from rules.params import RuleParams

if TYPE_CHECKING:
    from analyzer.job import Job


class StalledTrainingRuleParams(RuleParams):
    threshold: int = Field(
        1800,
        ge=1,
        description=(
            "Seconds without a new training record (loss, "
            "tensor) after which the worker has stalled."
        ),
    )
    stop_training_on_fire: bool = Field(
        False,
        description=(
            "SageMaker only: stop the training job when the "
            "rule fires (no effect on `stepscope report`)."
        ),
    )
    training_job_name_prefix: str | None = Field(
        None,
        description=(
            "SageMaker only: the job-name prefix the rule "
            "container may stop (no effect on `stepscope report`)."
        ),
    )


class StalledTrainingRule(TrainingRule):
    id: ClassVar[str] = "StalledTrainingRule"
    title: ClassVar[str] = "Training stalled"
    checks: ClassVar[str] = (
        "SageMaker Debugger's built-in, per worker: a gap of more than `threshold` s between "
        "two of its training records, or after its last record: up to the job's end when the "
        "job has ended (Debugger's end marker, an ended status, stepscope run's exit records, "
        "or a last record older than SageMaker's 28-day longest run), else up to now (a job "
        "with no end marker whose last record is older than `threshold` is hung)."
    )
    why: ClassVar[str] = (
        "A worker that writes nothing for half an hour is hung (a deadlock, "
        "a collective waiting for a dead peer) while the job keeps billing."
    )
    recommendation: ClassVar[str] = (
        "Look at the worker's log and stack (py-spy dump) at the gap; set "
        "NCCL/collective timeouts so a dead peer fails the job instead of hanging it."
    )
    params_model: ClassVar[type[RuleParams]] = StalledTrainingRuleParams

    def evaluate(self, job: Job, params: StalledTrainingRuleParams) -> list[Finding] | str:
        import pandas as pd

        frames = [
            f[["worker_label", "step", "wall_time_ns"]]
            for f in (job.training_scalars(), job.training_tensors())
            if not f.empty
        ]
        times = (
            pd.concat(frames)
            if frames
            else pd.DataFrame(columns=["worker_label", "step", "wall_time_ns"])
        )
        times = times[times["wall_time_ns"].notna()]
        if times.empty:
            return no_data(job, "wall-clock times on its records")
        job_end, until = _reference_end(job, float(times["wall_time_ns"].max()) / 1e9)
        findings: list[Finding] = []
        for worker, g in times.groupby("worker_label", sort=True):
            g = g.sort_values("wall_time_ns")
            t = g["wall_time_ns"].astype(float).to_numpy() / 1e9
            steps = g["step"].astype(int).to_numpy()
            gaps = list(zip(t[1:] - t[:-1], range(1, len(t)), strict=True))
            gaps.append((job_end - t[-1], len(t)))
            gap, i = max(gaps)
            if gap <= params.threshold:
                continue
            after = int(steps[i]) if i < len(steps) else None
            findings.append(
                self.finding(
                    title=(
                        f"{worker}: no training record for {gap / 60:.0f} "
                        f"min after step {int(steps[i - 1])}"
                    ),
                    message=(
                        f"{gap:.0f} s without a record after step "
                        f"{int(steps[i - 1])} ({iso(float(t[i - 1]))})"
                        + (
                            f", next at step {after}"
                            if after is not None
                            else f", none until {until}"
                        )
                    ),
                    evidence={
                        "worker": worker,
                        "gap_s": round(float(gap), 1),
                        "threshold_s": params.threshold,
                        "step_range": [
                            int(steps[i - 1]),
                            after if after is not None else int(steps[i - 1]),
                        ],
                        "last_record": iso(float(t[i - 1])),
                        "judged_until": until if after is None else "the next record",
                    },
                    where=worker,
                )
            )
        return findings


#: a SageMaker job status that says the training has ended
ENDED_STATUSES = ("Completed", "Failed", "Stopped")
#: SageMaker's longest training run (MaxRuntimeInSeconds may be at most 28 days): a job with
#: no end marker and no status whose last record is older than this has ended, not hung
MAX_RUNTIME_S = 28 * 24 * 3600


def _reference_end(job: Job, last_record_s: float) -> tuple[float, str]:
    """Up to when a worker's silence after its last record counts, and how to say it: the
    job's end when it has ended, else now (Debugger's rule runs during the job: no new
    record for `threshold` seconds is a stall, whenever it is judged)."""
    import time

    meta = job.summary.get("job") or {}
    status = meta.get("status")
    if status in ENDED_STATUSES:
        end = meta.get("training_end_time")
        end_s = _epoch(end) if end else None
        if end_s is not None:
            return max(end_s, last_record_s), f"the job's end ({status}, {end})"
        return last_record_s, f"the job's last record (the job is {status})"
    if job.summary.get("end_markers"):
        return last_record_s, "the job's last record (Debugger's end marker is there)"
    if not job.process_exits().empty:
        return last_record_s, "the job's last record (its processes wrote exit records)"
    now = time.time()
    if status:  # a SageMaker job that has not ended (InProgress, Stopping)
        return max(now, last_record_s), f"now: the job is {status}"
    if now - last_record_s > MAX_RUNTIME_S:
        # silent for longer than any SageMaker job may run: over, not hung
        return last_record_s, "the job's last record (older than SageMaker's longest run)"
    return max(now, last_record_s), (
        "now: no end marker (Debugger's training_job_end.ts), no exit record, no job status"
    )


def _epoch(text: str) -> float | None:
    import pandas as pd

    try:
        return float(pd.Timestamp(text).timestamp())
    except (ValueError, TypeError):
        return None
