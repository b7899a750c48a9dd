"""WeightUpdateRatio — SageMaker Debugger built-in: updates far too large or too small for the weights."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from pydantic import Field

from rules.base import Finding
from rules.builtin._training import TrainingRule, no_data, steps_text
from rules.params import RuleParams

if TYPE_CHECKING:
    from analyzer.job import Job


class WeightUpdateRatioParams(RuleParams):
    large_threshold: float = Field(10.0, ge=0, description="An update ratio ||Δw||/||w|| above this is too large.")
    small_threshold: float = Field(0.00000001, ge=0, description="An update ratio below this is too small (the weight does not move).")


class WeightUpdateRatio(TrainingRule):
    id: ClassVar[str] = "WeightUpdateRatio"
    title: ClassVar[str] = "Weight updates out of scale"
    checks: ClassVar[str] = (
        "SageMaker Debugger's built-in, per worker and parameter: the update ratio ||Δw||/||w|| of a "
        "recorded optimizer step above `large_threshold` or below `small_threshold`."
    )
    why: ClassVar[str] = "Very large updates throw weights away from any optimum; updates near zero mean the weights do not learn."
    recommendation: ClassVar[str] = (
        "Tune the learning rate (updates of about 1e-3 of the weights are typical), check for a zero "
        "learning rate or frozen parameters, and clip gradients against spikes."
    )
    params_model: ClassVar[type[RuleParams]] = WeightUpdateRatioParams
    debugger_collections: ClassVar[tuple[str, ...]] = ("weights",)

    def evaluate(self, job: Job, params: WeightUpdateRatioParams) -> list[Finding] | str:
        u = job.update_ratios()
        u = u[u["ratio"].notna()] if not u.empty else u
        if u.empty:
            return no_data(job, "update ratios (recorded by `stepscope run --health` or as `update_ratio/<param>` scalars)")
        findings: list[Finding] = []
        for worker, wg in u.groupby("worker_label", sort=True):
            for kind, mask in (("large", wg["ratio"] > params.large_threshold), ("small", wg["ratio"] < params.small_threshold)):
                hit = wg[mask]
                if hit.empty:
                    continue
                names = list(dict.fromkeys(hit["name"].astype(str)))
                steps = sorted({int(s) for s in hit["step"]})
                limit = params.large_threshold if kind == "large" else params.small_threshold
                findings.append(self.finding(
                    title=f"{worker}: update ratio too {kind} for {len(names)} parameter{'s' if len(names) != 1 else ''} ({names[0]})",
                    message=(
                        f"||Δw||/||w|| {'above' if kind == 'large' else 'below'} {limit:g} at steps {steps_text(steps)} "
                        f"for {', '.join(names[:5])}{' ...' if len(names) > 5 else ''}"
                    ),
                    evidence={"worker": worker, "kind": kind, "threshold": limit, "tensors": names[:20],
                              "step_range": [steps[0], steps[-1]], "steps": len(steps),
                              "extreme_ratio": float(hit["ratio"].max() if kind == "large" else hit["ratio"].min())},
                    where=f"{worker} {names[0]}",
                ))
        return findings
