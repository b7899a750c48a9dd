"""LossNotDecreasing — SageMaker Debugger built-in: the loss stops going down, per worker.

Debugger's page: ``collection_names``, ``tensor_regex`` (None), ``use_losses_collection``
True, ``num_steps`` 10, ``diff_percent`` (unset: the loss only has to decrease; 0.0 here),
``mode`` (None: EVAL, then TRAIN, then GLOBAL); one of the first three must select
something. ``increase_threshold_percent`` (5, "how much % the loss may increase") is not
on the page checked (docs/training-health.md, "Checked against"): here a failed check where
the loss rose by more than it is an increase, counted and named as such in the finding.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, ClassVar

from pydantic import Field

from rules.base import Finding
from rules.builtin._training import (
    TrainingRule,
    has_selection,
    no_data,
    no_selected_data,
    regex_matcher,
    split_list,
)
from rules.params import RuleParams

if TYPE_CHECKING:
    import pandas as pd

    from analyzer.job import Job


NEEDS_SELECTION = (
    "LossNotDecreasing with use_losses_collection = false needs collection_names or tensor_regex "
    "(as in SageMaker Debugger): set one in the rule file"
)


class LossNotDecreasingParams(RuleParams):
    collection_names: str | None = Field(
        None,
        description=(
            "Comma-separated collections whose scalars are "
            "inspected (Debugger's `losses` is the loss tags)."
        ),
    )
    tensor_regex: str | None = Field(
        None, description="Comma-separated regexes of further scalar tags to inspect."
    )
    use_losses_collection: bool = Field(
        True,
        description=(
            "Inspect the loss scalars (every tag naming a loss: `loss`, "
            "`train/loss`, `eval/loss`, `CrossEntropyLoss_output_0`)."
        ),
    )
    num_steps: int = Field(
        10,
        ge=1,
        description=(
            "Minimum steps between two checks: each check compares the "
            "loss with the newest one at least this many steps before."
        ),
    )
    diff_percent: float = Field(
        0.0,
        ge=0,
        le=100,
        description="How much lower (%) the loss must be at each check than at the previous one.",
    )
    increase_threshold_percent: float = Field(
        5.0,
        ge=0,
        le=100,
        description=(
            "A failed check where the loss rose by more than this % over the previous check is "
            'reported as an increase (counted in `increased_checks`; the title says "rose").'
        ),
    )
    mode: str | None = Field(
        None,
        description=(
            "`TRAIN` or `EVAL` (or `GLOBAL`, all steps): which losses to judge; unset: "
            "the evaluation losses where a worker has them, else the training losses."
        ),
    )


class LossNotDecreasing(TrainingRule):
    id: ClassVar[str] = "LossNotDecreasing"
    title: ClassVar[str] = "Loss not decreasing"
    checks: ClassVar[str] = (
        "SageMaker Debugger's built-in, per worker and loss series: at steps "
        "at least `num_steps` apart, the loss must be lower than at the "
        "previous check by `diff_percent` %; fires on a check where it is not."
    )
    why: ClassVar[str] = (
        "A loss that stays flat means the model is not learning: a "
        "learning rate of 0, frozen weights or a broken input pipeline."
    )
    recommendation: ClassVar[str] = (
        "Check the learning rate and its schedule, that the optimizer holds the model's parameters "
        "and that they require grad, and that labels match inputs; compare with a run that learned."
    )
    params_model: ClassVar[type[RuleParams]] = LossNotDecreasingParams
    debugger_collections: ClassVar[tuple[str, ...]] = ("losses",)

    def evaluate(self, job: Job, params: LossNotDecreasingParams) -> list[Finding] | str:
        if job.has_training_data() and not (
            params.use_losses_collection
            or has_selection(params.collection_names, params.tensor_regex)
        ):
            return NEEDS_SELECTION
        series = _series(job, params)
        if series.empty:
            if params.use_losses_collection:
                return no_data(job, "loss scalars")
            return no_selected_data(job, "scalar", params.collection_names, params.tensor_regex)
        mode = (params.mode or "").upper()
        findings: list[Finding] = []
        for worker, wg in series.groupby("worker_label", sort=True):
            if mode == "EVAL":
                wg = wg[wg["phase"] == "eval"]
            elif mode == "TRAIN":
                wg = wg[wg["phase"] == "train"]
            elif mode != "GLOBAL" and (wg["phase"] == "eval").any():
                wg = wg[wg["phase"] == "eval"]  # Debugger's order: EVAL, then TRAIN
            for tag, g in wg.groupby("tag", sort=True):
                failed, checks = _checks(g, params)
                if not failed:
                    continue
                first = failed[0]
                rises = [_rise_pct(f[2], f[3]) for f in failed]
                increased = [r for r in rises if r > params.increase_threshold_percent]
                verb = (
                    "did not decrease"
                    if rises[0] <= params.increase_threshold_percent
                    else f"rose {rises[0]:.0f}%"
                    if math.isfinite(rises[0])
                    else "rose from 0"
                )
                findings.append(
                    self.finding(
                        title=f"{worker}: {tag} {verb} over steps {first[0]}-{first[1]}",
                        message=(
                            f"{tag} went from {first[2]:.6g} at step {first[0]} to "
                            f"{first[3]:.6g} at step {first[1]} (needed "
                            f"{params.diff_percent}% lower); {len(failed)} of {checks} checks "
                            f"{params.num_steps}+ steps apart failed, {len(increased)} of "
                            f"them rising more than {params.increase_threshold_percent:g}%"
                        ),
                        evidence={
                            "worker": worker,
                            "tensor": tag,
                            "step_range": [first[0], first[1]],
                            "loss_before": round(first[2], 6),
                            "loss_after": round(first[3], 6),
                            "failed_checks": len(failed),
                            "checks": checks,
                            "increased_checks": len(increased),
                            # None when the loss rose from 0 (no finite percentage)
                            "largest_increase_pct": round(max(rises), 3)
                            if math.isfinite(max(rises))
                            else None,
                            "first_step": int(g["step"].min()),
                            "last_step": int(g["step"].max()),
                        },
                        where=f"{worker} {tag}",
                    )
                )
        return findings


def _series(job: Job, params: LossNotDecreasingParams) -> pd.DataFrame:
    from analyzer.analyses.training import EVAL_TAG_RE

    scalars = job.training_scalars()
    losses = (
        job.loss_series()
        if params.use_losses_collection or "losses" in split_list(params.collection_names)
        else None
    )
    rx = regex_matcher(split_list(params.tensor_regex))
    if rx is not None and not scalars.empty:
        import pandas as pd

        extra = scalars[scalars["tag"].map(lambda t: rx.search(str(t)) is not None)]
        extra = extra.assign(
            phase=extra["tag"].map(lambda t: "eval" if EVAL_TAG_RE.search(str(t)) else "train")
        )
        extra = extra[["worker_label", "tag", "phase", "step", "value"]]
        losses = (
            extra
            if losses is None
            else pd.concat([losses, extra]).drop_duplicates(["worker_label", "tag", "step"])
        )
    if losses is None:
        import pandas as pd

        return pd.DataFrame(columns=["worker_label", "tag", "phase", "step", "value"])
    return losses.sort_values(["worker_label", "tag", "step"])


def _rise_pct(before: float, after: float) -> float:
    """How much (%) the loss rose from one check to the next (negative: it fell)."""
    if before == 0:
        return 0.0 if after == 0 else math.copysign(math.inf, after)
    return (after - before) / abs(before) * 100


def _checks(
    g: pd.DataFrame, params: LossNotDecreasingParams
) -> tuple[list[tuple[int, int, float, float]], int]:
    """Debugger's schedule: from the first step, the next check is the first step at least
    ``num_steps`` later; each compares with the previous check. Non-finite losses are
    ExplodingTensor's to report and are not checked."""
    points = [
        (int(s), float(v))
        for s, v in zip(g["step"], g["value"], strict=True)
        if math.isfinite(float(v))
    ]
    failed: list[tuple[int, int, float, float]] = []
    checks = 0
    if not points:
        return failed, checks
    prev_step, prev = points[0]
    for step, value in points[1:]:
        if step < prev_step + params.num_steps:
            continue
        checks += 1
        if not value < prev * (1 - params.diff_percent / 100):
            failed.append((prev_step, step, prev, value))
        prev_step, prev = step, value
    return failed, checks
