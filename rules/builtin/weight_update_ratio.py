"""WeightUpdateRatio — SageMaker Debugger built-in: updates far too large or too small for the
weights.

Debugger's page: ``num_steps`` (default None: the current step against the previous saved
one; else a step >= s - ``num_steps``), ``large_threshold`` 10.0, ``small_threshold`` 1e-8,
``epsilon`` 1e-9 (in the ratio's denominator). Two kinds of data:

* update ratios ‖w_s − w_(s−1)‖/‖w_(s−1)‖ of one optimizer step, as the hooks and a
  TensorBoard ``update_ratio/<param>`` record them: the step before is always within
  ``num_steps``; ``epsilon`` is applied where the weight's norm at the step is recorded
  (‖Δw‖ = ratio·‖w‖, so the ratio becomes ‖Δw‖/(‖w‖+ε));
* only weight norms at saved steps (Debugger tensors, TensorBoard ``weights/<p>/norm``):
  step s against the newest earlier saved step p (p >= s − ``num_steps`` when set), where
  |‖w_s‖ − ‖w_p‖|/(‖w_p‖+ε) bounds the ratio from below — so a "too large" verdict is sound
  and a "too small" one cannot be made (the evidence says so).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from rules.base import Finding
from rules.builtin._training import TrainingRule, no_data, steps_text
from rules.params import RuleParams

if TYPE_CHECKING:
    import pandas as pd

    from analyzer.job import Job

SMALL_NOT_APPLIED = (
    "from weight norms alone the update ratio is only bounded from below "
    "(|‖w_s‖−‖w_p‖| ≤ ‖w_s−w_p‖), so too small updates cannot be judged"
)


class WeightUpdateRatioParams(RuleParams):
    num_steps: int | None = Field(
        None,
        ge=1,
        description=(
            "Compare the weights at step s with a saved step >= s − num_steps "
            "(unset: the immediately previous saved step, however far back)."
        ),
    )
    large_threshold: float = Field(
        10.0, ge=0, description="An update ratio ‖Δw‖/(‖w‖+ε) above this is too large."
    )
    small_threshold: float = Field(
        0.00000001,
        ge=0,
        description="An update ratio below this is too small (the weight does not move).",
    )
    epsilon: float = Field(
        0.000000001,
        ge=0,
        description=(
            "Added to ‖w‖ in the ratio's denominator, so a zero weight does not divide by zero."
        ),
    )


class WeightUpdateRatio(TrainingRule):
    id: ClassVar[str] = "WeightUpdateRatio"
    title: ClassVar[str] = "Weight updates out of scale"
    checks: ClassVar[str] = (
        "SageMaker Debugger's built-in, per worker and parameter: the update ratio "
        "‖Δw‖/(‖w‖+`epsilon`) between a step and the previous saved one (within "
        "`num_steps` when set) above `large_threshold` or below `small_threshold`. "
        "Recorded one-step ratios are judged both ways; from weight norms alone "
        "only `large_threshold` (their difference bounds ‖Δw‖ from below)."
    )
    why: ClassVar[str] = (
        "Very large updates throw weights away from any optimum; "
        "updates near zero mean the weights do not learn."
    )
    recommendation: ClassVar[str] = (
        "Tune the learning rate (updates of about 1e-3 of the weights are typical), check "
        "for a zero learning rate or frozen parameters, and clip gradients against spikes."
    )
    params_model: ClassVar[type[RuleParams]] = WeightUpdateRatioParams
    chart: ClassVar[str | None] = "update_ratios"
    debugger_collections: ClassVar[tuple[str, ...]] = ("weights",)

    def evaluate(self, job: Job, params: WeightUpdateRatioParams) -> list[Finding] | str:
        recorded = _recorded_ratios(job.update_ratios(), job.training_tensors(), params.epsilon)
        bounds = _norm_bounds(job.training_tensors(), recorded, params)
        if recorded.empty and bounds.empty:
            if params.num_steps is not None and _has_weight_norms(job.training_tensors()):
                return f"no weight has two saved steps within num_steps {params.num_steps}"
            return no_data(
                job,
                "update ratios or weight norms at two saved steps (recorded by `stepscope "
                "run --health`, as `update_ratio/<param>` scalars, or as weights)",
            )
        findings: list[Finding] = []
        workers = sorted({*recorded["worker_label"], *bounds["worker_label"]})
        for worker in workers:
            wr = recorded[recorded["worker_label"] == worker]
            wb = bounds[bounds["worker_label"] == worker]
            large = _hits(
                wr, wb, wr["ratio"] > params.large_threshold, wb["ratio"] > params.large_threshold
            )
            small = wr[wr["ratio"] < params.small_threshold]
            for kind, hit, limit in (
                ("large", large, params.large_threshold),
                ("small", small, params.small_threshold),
            ):
                if hit.empty:
                    continue
                findings.append(
                    self._finding(worker, kind, hit, limit, params, judged_by_norms=not wb.empty)
                )
        norm_only = [w for w in workers if not (recorded["worker_label"] == w).any()]
        if not findings and norm_only:
            # no verdict without data: a check that could not be made is not a pass
            shown = ", ".join(norm_only[:3]) + (" ..." if len(norm_only) > 3 else "")
            return (
                f"too small updates cannot be judged for {len(norm_only)} worker(s) ({shown}): "
                f"{SMALL_NOT_APPLIED}; no update above large_threshold "
                f"{params.large_threshold:g} was found"
            )
        return findings

    def _finding(
        self,
        worker: str,
        kind: str,
        hit: pd.DataFrame,
        limit: float,
        params: WeightUpdateRatioParams,
        judged_by_norms: bool,
    ) -> Finding:
        names = list(dict.fromkeys(hit["name"].astype(str)))
        steps = sorted({int(s) for s in hit["step"]})
        evidence: dict[str, Any] = {
            "worker": worker,
            "kind": kind,
            "threshold": limit,
            "tensors": names[:20],
            "step_range": [steps[0], steps[-1]],
            "steps": len(steps),
            "extreme_ratio": float(hit["ratio"].max() if kind == "large" else hit["ratio"].min()),
            "compared_with": sorted({int(s) for s in hit["prev_step"]})[:20],
            "epsilon": params.epsilon,
            "num_steps": params.num_steps,
        }
        if judged_by_norms:
            evidence["not_applied"] = {"small_threshold": SMALL_NOT_APPLIED}
        return self.finding(
            title=(
                f"{worker}: update ratio too {kind} for {len(names)} "
                f"parameter{'s' if len(names) != 1 else ''} ({names[0]})"
            ),
            message=(
                f"‖Δw‖/(‖w‖+ε) {'above' if kind == 'large' else 'below'} {limit:g} at steps "
                f"{steps_text(steps)} for {', '.join(names[:5])}{' ...' if len(names) > 5 else ''}"
            ),
            evidence=evidence,
            where=f"{worker} {names[0]}",
        )


def _has_weight_norms(tensors: pd.DataFrame) -> bool:
    return not tensors.empty and bool(
        ((tensors["role"] == "weight") & tensors["norm"].notna()).any()
    )


def _hits(
    recorded: pd.DataFrame, bounds: pd.DataFrame, rmask: pd.Series, bmask: pd.Series
) -> pd.DataFrame:
    import pandas as pd

    parts = [f for f in (recorded[rmask], bounds[bmask]) if not f.empty]
    return pd.concat(parts) if parts else recorded.iloc[:0]


def _recorded_ratios(u: pd.DataFrame, tensors: pd.DataFrame, epsilon: float) -> pd.DataFrame:
    """The recorded one-step ratios with ``epsilon`` in the denominator where the weight's
    norm at the step is known (‖Δw‖ = ratio·‖w‖); compared with the step before."""
    import pandas as pd

    cols = ["worker_label", "name", "step", "prev_step", "ratio"]
    u = u[u["ratio"].notna()] if not u.empty else u
    if u.empty:
        return pd.DataFrame(columns=cols)
    w = (
        tensors[(tensors["role"] == "weight") & tensors["norm"].notna()]
        if not tensors.empty
        else tensors
    )
    if not w.empty:
        norms = w.drop_duplicates(["worker_label", "name", "step"], keep="last")[
            ["worker_label", "name", "step", "norm"]
        ]
        u = u.merge(norms, on=["worker_label", "name", "step"], how="left")
        norm = u["norm"].astype(float)
        scaled = u["ratio"] * norm / (norm + epsilon)
        u = u.assign(ratio=scaled.where(norm.notna() & (norm > 0), u["ratio"]))
    return u.assign(prev_step=u["step"].astype(int) - 1)[cols]


def _norm_bounds(
    tensors: pd.DataFrame, recorded: pd.DataFrame, params: WeightUpdateRatioParams
) -> pd.DataFrame:
    """|‖w_s‖ − ‖w_p‖| / (‖w_p‖ + ε) per parameter without recorded ratios, p the newest
    saved step before s (and >= s − num_steps when set)."""
    import pandas as pd

    cols = ["worker_label", "name", "step", "prev_step", "ratio"]
    w = (
        tensors[(tensors["role"] == "weight") & tensors["norm"].notna()]
        if not tensors.empty
        else tensors
    )
    if w.empty:
        return pd.DataFrame(columns=cols)
    have = set(zip(recorded["worker_label"], recorded["name"], strict=True))
    rows = []
    for (worker, name), g in w.groupby(["worker_label", "name"], sort=True):
        if (worker, name) in have:
            continue
        g = g.drop_duplicates("step", keep="last").sort_values("step")
        steps = g["step"].astype(int).tolist()
        norms = g["norm"].astype(float).tolist()
        for i in range(1, len(steps)):
            denominator = norms[i - 1] + params.epsilon
            if denominator <= 0 or (
                params.num_steps is not None and steps[i - 1] < steps[i] - params.num_steps
            ):
                continue
            ratio = abs(norms[i] - norms[i - 1]) / denominator
            rows.append(
                {
                    "worker_label": worker,
                    "name": name,
                    "step": steps[i],
                    "prev_step": steps[i - 1],
                    "ratio": ratio,
                }
            )
    return pd.DataFrame(rows, columns=cols)
