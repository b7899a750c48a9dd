"""Overtraining — SageMaker Debugger built-in: the training or validation loss stopped improving.

Debugger's names and defaults (AWS's "List of Debugger built-in rules" page, Overtraining):
``patience_train`` 5, ``patience_validation`` 10, ``delta`` 0.1 (the page's value; the SDK's
rule config sets none; stepscope had 0.01 before it was checked against the page).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, ClassVar

from pydantic import Field

from rules.base import Finding
from rules.builtin._training import TrainingRule, no_data
from rules.params import RuleParams

if TYPE_CHECKING:
    import pandas as pd

    from analyzer.job import Job


class OvertrainingParams(RuleParams):
    patience_train: int = Field(
        5,
        ge=1,
        description=(
            "Recorded training-loss steps in a row without a new "
            "optimum after which training counts as no longer improving."
        ),
    )
    patience_validation: int = Field(
        10,
        ge=1,
        description=(
            "Recorded validation-loss steps in a row without a new "
            "optimum after which validation counts as no longer improving."
        ),
    )
    delta: float = Field(
        0.1,
        ge=0,
        description=(
            "How much (absolute) a loss must fall below "
            "the best one so far to count as a new optimum."
        ),
    )


class Overtraining(TrainingRule):
    id: ClassVar[str] = "Overtraining"
    title: ClassVar[str] = "Training past the optimum"
    checks: ClassVar[str] = (
        "SageMaker Debugger's built-in, per worker and loss series: the training "
        "loss (validation loss) has not fallen more than `delta` below its best "
        "value for `patience_train` (`patience_validation`) recorded steps in a row."
    )
    why: ClassVar[str] = (
        "Steps after the loss stopped improving cost money "
        "and, on the validation loss, start overfitting."
    )
    recommendation: ClassVar[str] = (
        "Stop at the optimum (early stopping on the validation loss, keep the "
        "best checkpoint), or lower the learning rate when the loss plateaus."
    )
    params_model: ClassVar[type[RuleParams]] = OvertrainingParams
    debugger_collections: ClassVar[tuple[str, ...]] = ("losses",)

    def evaluate(self, job: Job, params: OvertrainingParams) -> list[Finding] | str:
        losses = job.loss_series()
        if losses.empty:
            return no_data(job, "loss scalars")
        findings: list[Finding] = []
        for (worker, tag), g in losses.groupby(["worker_label", "tag"], sort=True):
            phase = str(g["phase"].iloc[0])
            patience = params.patience_validation if phase == "eval" else params.patience_train
            stale = _stale(g.sort_values("step"), patience, params.delta)
            if stale is None:
                continue
            best_step, best, until = stale
            what = "validation" if phase == "eval" else "training"
            findings.append(
                self.finding(
                    title=f"{worker}: {what} loss {tag} stopped improving after step {best_step}",
                    message=(
                        f"{tag} has not fallen {params.delta:g} below its best {best:.6g} "
                        f"(step {best_step}) for {patience} recorded steps, up to step {until}"
                    ),
                    evidence={
                        "worker": worker,
                        "tensor": tag,
                        "phase": phase,
                        "best_step": best_step,
                        "best_loss": round(best, 6),
                        "patience": patience,
                        "step_range": [best_step, until],
                    },
                    where=f"{worker} {tag}",
                )
            )
        return findings


def _stale(g: pd.DataFrame, patience: int, delta: float) -> tuple[int, float, int] | None:
    """(step of the best loss, best loss, step where patience ran out), or None. Non-finite
    losses are ExplodingTensor's to report and are skipped."""
    best_step, best, waited = -1, math.inf, 0
    for step, value in zip(g["step"].astype(int), g["value"].astype(float), strict=True):
        if not math.isfinite(value):
            continue
        if best - value > delta or best_step < 0:
            best_step, best, waited = int(step), value, 0
            continue
        waited += 1
        if waited >= patience:
            return best_step, best, int(step)
    return None
