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
        "two of its training records, or between its last record and the job's last one."
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
        job_end = float(times["wall_time_ns"].max()) / 1e9
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
                            else ", none until the job's last record"
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
                    },
                    where=worker,
                )
            )
        return findings
