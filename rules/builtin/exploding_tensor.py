"""ExplodingTensor — SageMaker Debugger built-in: a loss, gradient or weight became NaN/Inf."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from pydantic import Field

from rules.base import Finding
from rules.builtin._training import (
    COLLECTION_ROLES,
    TrainingRule,
    no_data,
    regex_matcher,
    split_list,
    steps_text,
)
from rules.params import RuleParams

if TYPE_CHECKING:
    import pandas as pd

    from analyzer.job import Job


class ExplodingTensorParams(RuleParams):
    collection_names: str | None = Field(
        None,
        description=(
            "Comma-separated collections to inspect (`losses`, `gradients`, "
            "`weights`, `relu_output`...); unset with no regex: everything recorded."
        ),
    )
    tensor_regex: str | None = Field(
        None, description="Comma-separated regexes of tensor names or scalar tags to inspect."
    )
    only_nan: bool = Field(False, description="Only NaN counts; Inf does not.")


class ExplodingTensor(TrainingRule):
    id: ClassVar[str] = "ExplodingTensor"
    title: ClassVar[str] = "NaN or Inf in training"
    checks: ClassVar[str] = (
        "SageMaker Debugger's built-in, per worker: any recorded scalar (loss, grad norm) "
        "or tensor statistic that is NaN or Inf (Inf only when `only_nan` is false)."
    )
    why: ClassVar[str] = (
        "Once a loss or gradient is NaN/Inf every later step is wasted: the weights are garbage."
    )
    recommendation: ClassVar[str] = (
        "Lower the learning rate (or warm it up), clip gradients (clip_grad_norm_), check "
        "the loss for log(0) or division by zero, and use loss scaling with mixed precision."
    )
    severity: ClassVar[str] = "error"
    params_model: ClassVar[type[RuleParams]] = ExplodingTensorParams

    @classmethod
    def chart_for(cls, finding: Finding) -> str | None:
        """A tensor, not the loss, that stopped being a number first is on the gradient
        heatmap, not the loss chart."""
        chart = super().chart_for(finding)
        names = finding.evidence.get("tensors_at_first_step") or []
        if chart == "loss" and names and not any("loss" in str(n).lower() for n in names):
            return "gradient_norms"
        return chart

    def evaluate(self, job: Job, params: ExplodingTensorParams) -> list[Finding] | str:
        if not job.has_training_data():
            return no_data(job, "")
        bad = job.nonfinite_steps()
        if bad.empty:
            return []
        if params.only_nan:
            bad = bad[bad["nan"].astype(bool)]
        collections = split_list(params.collection_names)
        rx = regex_matcher(split_list(params.tensor_regex))
        if collections or rx is not None:
            from analyzer.analyses.training import LOSS_TAG_RE

            roles = {r for c in collections for r in COLLECTION_ROLES.get(c, ())}
            keep = bad["role"].isin(roles)
            if "losses" in collections:
                keep |= (bad["kind"] == "scalar") & bad["name"].map(
                    lambda n: bool(LOSS_TAG_RE.search(str(n)))
                )
            if rx is not None:  # Debugger's regexes name tensors as it does (gradient/fc1.weight)
                keep |= bad["name"].map(lambda n: rx.search(str(n)) is not None)
                keep |= bad["tensor"].map(lambda n: rx.search(str(n)) is not None)
            bad = bad[keep]
        findings: list[Finding] = []
        for worker, g in bad.groupby("worker_label", sort=True):
            first = int(g["step"].min())
            at_first = g[g["step"] == first]
            names = sorted({str(n) for n in at_first["tensor"]})
            steps = sorted({int(s) for s in g["step"]})
            nan = bool(g["nan"].astype(bool).any())
            what = nonfinite_words(g)
            findings.append(
                self.finding(
                    title=f"{worker}: {what} from step {first} ({names[0]})",
                    message=(
                        f"first non-finite values ({what}) at step {first} in "
                        f"{', '.join(names[:5])}{' ...' if len(names) > 5 else ''}; "
                        f"{g['tensor'].nunique()} "
                        f"tensors/scalars over steps {steps_text(steps)}"
                    ),
                    evidence={
                        "worker": worker,
                        "first_step": first,
                        "step_range": [steps[0], steps[-1]],
                        "steps": len(steps),
                        "tensors_at_first_step": names[:20],
                        "tensors": int(g["tensor"].nunique()),
                        "nan": nan,
                        "pos_inf": bool(g["pos_inf"].astype(bool).any()),
                        "neg_inf": bool(g["neg_inf"].astype(bool).any()),
                        "inf": bool(g["inf"].astype(bool).any()),
                    },
                    where=f"{worker} {names[0]}",
                )
            )
        return findings


def nonfinite_words(rows: pd.DataFrame) -> str:
    """What is there, in words: "NaN", "+Inf and -Inf", "NaN, +Inf and -Inf", "Inf" (sign
    unknown)."""
    parts = [
        word
        for word, column in (("NaN", "nan"), ("+Inf", "pos_inf"), ("-Inf", "neg_inf"))
        if bool(rows[column].astype(bool).any())
    ]
    signed = bool(rows["pos_inf"].astype(bool).any() or rows["neg_inf"].astype(bool).any())
    if bool(rows["inf"].astype(bool).any()) and not signed:
        parts.append("Inf")
    if len(parts) <= 1:
        return parts[0] if parts else "non-finite values"
    return ", ".join(parts[:-1]) + " and " + parts[-1]
