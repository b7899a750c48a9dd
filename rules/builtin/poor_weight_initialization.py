"""PoorWeightInitialization — SageMaker Debugger built-in: the first steps show a bad
initialisation.

Debugger's names and defaults (docs.aws.amazon.com/sagemaker/latest/dg/debugger-built-in-rules.html,
PoorWeightInitialization): ``activation_inputs_regex`` ``.*relu_input``, ``threshold`` 10.0,
``distribution_range`` 0.001, ``patience`` 5, ``steps`` 10. Its three checks over the first
``steps`` steps: the spread of activation-input variances across layers, the width of the
gradient distribution, and whether the loss moves at all.

The activation inputs are Debugger's ``relu_input`` tensors or the ones ``stepscope run
--health`` records (role ``activation_input``, named by their module: ``net.1`` of class
ReLU is matched as ``net.1_relu_input_0``); TensorBoard scalars carry none, so from them
only the gradient and loss checks judge.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from rules.base import Finding
from rules.builtin._training import TrainingRule, no_data, regex_mask, regex_matcher, split_list
from rules.params import RuleParams

if TYPE_CHECKING:
    import pandas as pd

    from analyzer.job import Job

_RELU = re.compile(r"relu", re.IGNORECASE)


class PoorWeightInitializationParams(RuleParams):
    activation_inputs_regex: str = Field(
        ".*relu_input",
        description=(
            "Comma-separated regexes of the activation inputs whose variances are compared "
            "across layers (Debugger's names; a hook layer `net.1` of class ReLU is matched "
            "as `net.1_relu_input_0`), besides the inputs of every ReLU-family module."
        ),
    )
    threshold: float = Field(
        10.0,
        gt=0,
        description=(
            "Largest allowed ratio of the highest to the lowest "
            "activation-input variance across layers at a step."
        ),
    )
    distribution_range: float = Field(
        0.001,
        ge=0,
        description=(
            "Smallest allowed width of the gradient distribution at a step "
            "(Debugger: its 5th-95th percentile range; here bounded by min..max "
            "over every gradient, so it fires only where Debugger's would)."
        ),
    )
    patience: int = Field(
        5,
        ge=1,
        description=(
            "Recorded steps in a row without a new lowest loss "
            "after which the loss counts as not decreasing."
        ),
    )
    steps: int = Field(
        10,
        ge=1,
        description=(
            "How many steps from the worker's first recorded one are "
            "inspected (an initialisation shows in the first steps)."
        ),
    )


class PoorWeightInitialization(TrainingRule):
    id: ClassVar[str] = "PoorWeightInitialization"
    title: ClassVar[str] = "Poor weight initialisation"
    checks: ClassVar[str] = (
        "SageMaker Debugger's built-in, per worker, over its first `steps` steps: the "
        "ratio of the largest to the smallest activation-input variance across layers "
        "above `threshold`, all gradient values within less than `distribution_range` "
        "of each other, or the loss without a new minimum for `patience` recorded steps."
    )
    why: ClassVar[str] = (
        "A bad initialisation makes activations' variances drift apart layer by layer "
        "(vanishing or exploding signals), and the network then learns slowly or not at all."
    )
    recommendation: ClassVar[str] = (
        "Use an initialiser matched to the activation (Kaiming for ReLU, Xavier for tanh/sigmoid), "
        "add normalisation layers, and check the learning rate of the first steps (warm-up)."
    )
    params_model: ClassVar[type[RuleParams]] = PoorWeightInitializationParams
    chart: ClassVar[str | None] = "activations"
    debugger_collections: ClassVar[tuple[str, ...]] = ("relu_input", "gradients", "losses")

    def evaluate(self, job: Job, params: PoorWeightInitializationParams) -> list[Finding] | str:
        tensors = job.training_tensors()
        losses = job.loss_series()
        if tensors.empty and losses.empty:
            return no_data(job, "loss scalars or tensor statistics")
        rx = regex_matcher(split_list(params.activation_inputs_regex))
        workers = sorted(
            {
                *(tensors["worker_label"] if not tensors.empty else []),
                *(losses["worker_label"] if not losses.empty else []),
            }
        )
        findings: list[Finding] = []
        for worker in workers:
            wt = tensors[tensors["worker_label"] == worker] if not tensors.empty else tensors
            wl = (
                losses[(losses["worker_label"] == worker) & (losses["phase"] == "train")]
                if not losses.empty
                else losses
            )
            first = min([int(x["step"].min()) for x in (wt, wl) if not x.empty])
            last = first + params.steps - 1
            wt = wt[wt["step"] <= last] if not wt.empty else wt
            wl = wl[wl["step"] <= last] if not wl.empty else wl
            for check in (
                _variance_spread(wt, rx, params),
                _narrow_gradients(wt, params),
                _flat_loss(wl, params),
            ):
                if check is None:
                    continue
                title, message, evidence = check
                findings.append(
                    self.finding(
                        title=f"{worker}: {title}",
                        message=message,
                        evidence={"worker": worker, "steps_inspected": [first, last], **evidence},
                        where=f"{worker} {evidence['tensor']}",
                    )
                )
        return findings


def _variance_spread(
    t: pd.DataFrame, rx: re.Pattern[str] | None, params: PoorWeightInitializationParams
) -> tuple[str, str, dict[str, Any]] | None:
    if t.empty:
        return None
    inputs = t[(t["role"] == "activation_input") & t["std"].notna()]
    if inputs.empty:
        return None
    keep = inputs["module"].map(lambda m: isinstance(m, str) and _RELU.search(m) is not None)
    if rx is not None:
        keep |= regex_mask(inputs, rx)
    inputs = inputs[keep]
    for step, g in inputs.groupby("step", sort=True):
        if g["name"].nunique() < 2:
            continue
        var = (g["std"].astype(float) ** 2).groupby(g["name"]).max()
        hi, lo = float(var.max()), float(var.min())
        ratio = hi / lo if lo > 0 else math.inf
        if ratio > params.threshold:
            high, low = str(var.idxmax()), str(var.idxmin())
            return (
                f"activation-input variances {ratio:.3g}x apart across layers at step {int(step)}",
                f"variance {hi:.3g} in {high} vs {lo:.3g} in {low} (ratio > {params.threshold:g})",
                {
                    "tensor": f"{high} vs {low}",
                    "step_range": [int(step), int(step)],
                    "ratio": ratio,
                    "layers": len(var),
                },
            )
    return None


def _narrow_gradients(
    t: pd.DataFrame, params: PoorWeightInitializationParams
) -> tuple[str, str, dict[str, Any]] | None:
    if t.empty:
        return None
    grads = t[(t["role"] == "gradient") & t["min"].notna() & t["max"].notna()]
    for step, g in grads.groupby("step", sort=True):
        width = float(g["max"].astype(float).max()) - float(g["min"].astype(float).min())
        if math.isfinite(width) and width < params.distribution_range:
            names = sorted({str(n) for n in g["name"]})
            return (
                f"every gradient within {width:.3g} at step {int(step)}",
                f"all {len(names)} gradients' values lie within "
                f"{width:.3g} (< {params.distribution_range:g})",
                {
                    "tensor": names[0],
                    "tensors": names[:20],
                    "step_range": [int(step), int(step)],
                    "width": width,
                },
            )
    return None


def _flat_loss(
    losses: pd.DataFrame, params: PoorWeightInitializationParams
) -> tuple[str, str, dict[str, Any]] | None:
    for tag, g in losses.groupby("tag", sort=True):
        best_step, best, waited = -1, math.inf, 0
        for step, value in zip(g["step"].astype(int), g["value"].astype(float), strict=True):
            if not math.isfinite(value):
                continue
            if value < best:
                best_step, best, waited = int(step), value, 0
                continue
            waited += 1
            if waited >= params.patience:
                return (
                    f"{tag} did not decrease in the first steps ({best_step}-{int(step)})",
                    f"{tag} stayed at or above {best:.6g} (step "
                    f"{best_step}) for {waited} recorded steps",
                    {
                        "tensor": str(tag),
                        "step_range": [best_step, int(step)],
                        "best_loss": round(best, 6),
                    },
                )
    return None
