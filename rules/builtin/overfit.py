"""Overfit — SageMaker Debugger built-in: the evaluation loss pulls away from the training loss."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from pydantic import Field

from rules.base import Finding
from rules.builtin._training import TrainingRule, no_data, regex_matcher, split_list
from rules.params import RuleParams

if TYPE_CHECKING:
    from analyzer.job import Job


class OverfitParams(RuleParams):
    tensor_regex: str | None = Field(
        None, description="Comma-separated regexes restricting which loss tags are compared."
    )
    start_step: int = Field(
        0, ge=0, description="The step from which the training and evaluation losses are compared."
    )
    patience: int = Field(
        1,
        ge=0,
        description=(
            "Evaluation steps in a row the ratio may exceed "
            "`ratio_threshold` before the model counts as overfit."
        ),
    )
    ratio_threshold: float = Field(
        0.1,
        ge=0,
        description="Largest allowed (mean eval loss - mean training loss) / mean training loss.",
    )


class Overfit(TrainingRule):
    id: ClassVar[str] = "Overfit"
    title: ClassVar[str] = "Model overfitting"
    checks: ClassVar[str] = (
        "SageMaker Debugger's built-in, per worker: at each evaluation step "
        "from `start_step`, the mean evaluation loss against the mean training "
        "loss since `start_step`; fires when their relative difference exceeds "
        "`ratio_threshold` on more than `patience` evaluation steps in a row."
    )
    why: ClassVar[str] = (
        "A model that fits its training data ever better while its "
        "evaluation loss does not is memorising, not generalising."
    )
    recommendation: ClassVar[str] = (
        "Regularise (weight decay, dropout, augmentation), get more "
        "data, or stop earlier (early stopping on the evaluation loss)."
    )
    params_model: ClassVar[type[RuleParams]] = OverfitParams
    debugger_collections: ClassVar[tuple[str, ...]] = ("losses",)

    def evaluate(self, job: Job, params: OverfitParams) -> list[Finding] | str:
        import numpy as np

        losses = job.loss_series()
        rx = regex_matcher(split_list(params.tensor_regex))
        if rx is not None and not losses.empty:
            losses = losses[losses["tag"].map(lambda t: rx.search(str(t)) is not None)]
        if (
            losses.empty
            or not (losses["phase"] == "eval").any()
            or not (losses["phase"] == "train").any()
        ):
            return no_data(job, "training and evaluation losses to compare")
        losses = losses[
            (losses["step"] >= params.start_step) & np.isfinite(losses["value"].astype(float))
        ]
        findings: list[Finding] = []
        for worker, g in losses.groupby("worker_label", sort=True):
            train = g[g["phase"] == "train"].sort_values("step")
            ev = g[g["phase"] == "eval"].sort_values("step")
            if train.empty or ev.empty:
                continue
            run = 0
            fired = None
            for i, step in enumerate(ev["step"].astype(int)):
                tr = train[train["step"] <= step]["value"]
                if tr.empty:
                    continue
                mean_train = float(tr.mean())
                mean_eval = float(ev["value"].iloc[: i + 1].mean())
                ratio = (mean_eval - mean_train) / mean_train if mean_train else float("inf")
                run = run + 1 if ratio > params.ratio_threshold else 0
                if run > params.patience:
                    fired = (step, ratio, mean_eval, mean_train, run)
                    break
            if fired is None:
                continue
            step, ratio, mean_eval, mean_train, run = fired
            tags = f"{ev['tag'].iloc[0]} vs {train['tag'].iloc[0]}"
            findings.append(
                self.finding(
                    title=(
                        f"{worker}: evaluation loss {ratio * 100:.0f}% "
                        f"above training loss by step {step}"
                    ),
                    message=(
                        f"mean {ev['tag'].iloc[0]} {mean_eval:.6g} vs mean "
                        f"{train['tag'].iloc[0]} {mean_train:.6g} (ratio {ratio:.3f} > "
                        f"{params.ratio_threshold}) on {run} evaluation steps in a row"
                    ),
                    evidence={
                        "worker": worker,
                        "tensor": tags,
                        "step": int(step),
                        "ratio": round(ratio, 4),
                        "mean_eval_loss": round(mean_eval, 6),
                        "mean_train_loss": round(mean_train, 6),
                        "step_range": [max(params.start_step, int(train["step"].min())), int(step)],
                    },
                    where=f"{worker} {tags}",
                )
            )
        return findings
