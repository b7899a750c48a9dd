"""TensorVariance — SageMaker Debugger built-in: a tensor's variance beyond set bounds.

Debugger's names and defaults (docs.aws.amazon.com/sagemaker/latest/dg/debugger-built-in-rules.html,
TensorVariance): ``collection_names``, ``tensor_regex``, ``max_threshold`` and ``min_threshold``,
all without a default; "you must specify either ``collection_names`` or ``tensor_regex``"
(the union when both). With neither bound, or neither selection, the rule cannot judge,
says so, and is not attached to Debugger.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from rules.base import Finding
from rules.builtin._training import (
    TrainingRule,
    has_selection,
    no_data,
    no_selected_data,
    select_tensors,
    steps_text,
)
from rules.params import RuleParams

if TYPE_CHECKING:
    from analyzer.job import Job

NO_BOUNDS = (
    "TensorVariance has no default bounds (as in SageMaker "
    "Debugger): set max_threshold and/or min_threshold"
)
NEEDS_SELECTION = (
    "TensorVariance needs collection_names or tensor_regex (as in SageMaker "
    "Debugger, which has no default for either): set one in the rule file"
)


class TensorVarianceParams(RuleParams):
    collection_names: str | None = Field(
        None,
        description=(
            "Comma-separated collections to inspect (`gradients`, "
            "`weights`, `biases`, `relu_output`, `relu_input`, `all`); "
            "this or `tensor_regex` is required (Debugger has no default)."
        ),
    )
    tensor_regex: str | None = Field(
        None,
        description=(
            "Comma-separated regexes of tensor names to inspect (an activation of the hooks or "
            "TensorBoard also under the name Debugger would give it, `net.1_relu_output_0`)."
        ),
    )
    max_threshold: float | None = Field(
        None, ge=0, description="A variance above this is too high (no default: Debugger has none)."
    )
    min_threshold: float | None = Field(
        None, ge=0, description="A variance below this is too low (no default: Debugger has none)."
    )


class TensorVariance(TrainingRule):
    id: ClassVar[str] = "TensorVariance"
    title: ClassVar[str] = "Tensor variance out of bounds"
    checks: ClassVar[str] = (
        "SageMaker Debugger's built-in, per worker and tensor of `collection_names` / "
        "`tensor_regex` (their union; one is required): the variance (std²) of a "
        "recorded step above `max_threshold` or below `min_threshold`. Neither bound has "
        "a default (nor in Debugger): without one the rule reports that it cannot judge."
    )
    why: ClassVar[str] = (
        "A weight or gradient whose variance explodes or collapses "
        "to zero is diverging or no longer carrying information."
    )
    recommendation: ClassVar[str] = (
        "Check the learning rate and initialisation of the layer named, clip "
        "gradients against spikes, and add normalisation where activations drift."
    )
    params_model: ClassVar[type[RuleParams]] = TensorVarianceParams
    rule_file_values: ClassVar[dict[str, Any]] = {"collection_names": "gradients, weights"}
    rule_file_note: ClassVar[str] = (
        "No default bounds (nor in Debugger): set "
        "max_threshold and/or min_threshold to judge it. Like\n"
        "AllZero it needs collection_names or tensor_regex."
    )
    chart: ClassVar[str | None] = "gradient_norms"

    def debugger_rule_parameters(self, params: RuleParams) -> dict[str, Any] | None:
        """Not attached without a bound or a selection: Debugger's container has no default for
        them either."""
        assert isinstance(params, TensorVarianceParams)
        if params.max_threshold is None and params.min_threshold is None:
            return None
        if not has_selection(params.collection_names, params.tensor_regex):
            return None
        return super().debugger_rule_parameters(params)

    def evaluate(self, job: Job, params: TensorVarianceParams) -> list[Finding] | str:
        if not job.has_training_data():
            return no_data(job, "")
        if params.max_threshold is None and params.min_threshold is None:
            return NO_BOUNDS
        if not has_selection(params.collection_names, params.tensor_regex):
            return NEEDS_SELECTION
        t = select_tensors(job.training_tensors(), params.collection_names, params.tensor_regex)
        t = t[t["std"].notna()] if not t.empty else t
        if t.empty:
            return no_selected_data(
                job,
                "tensor statistics with a standard deviation",
                params.collection_names,
                params.tensor_regex,
            )
        var = t["std"].astype(float) ** 2
        t = t.assign(variance=var)
        findings: list[Finding] = []
        for worker, wg in t.groupby("worker_label", sort=True):
            for kind, limit in (("high", params.max_threshold), ("low", params.min_threshold)):
                if limit is None:
                    continue
                hit = wg[wg["variance"] > limit] if kind == "high" else wg[wg["variance"] < limit]
                if hit.empty:
                    continue
                tensors = []
                for (role, name), g in hit.groupby(["role", "name"], sort=False):
                    extreme = float(g["variance"].max() if kind == "high" else g["variance"].min())
                    tensors.append(
                        {
                            "tensor": name,
                            "role": role,
                            "steps": steps_text(g["step"].astype(int).tolist()),
                            "step_range": [int(g["step"].min()), int(g["step"].max())],
                            "variance": extreme,
                        }
                    )
                first = tensors[0]
                findings.append(
                    self.finding(
                        title=(
                            f"{worker}: variance too {kind} in {len(tensors)} "
                            f"tensor{'s' if len(tensors) != 1 else ''} ({first['tensor']})"
                        ),
                        message="; ".join(
                            f"{x['role']} {x['tensor']} variance {x['variance']:.3g} "
                            f"{'>' if kind == 'high' else '<'} {limit:g} at steps {x['steps']}"
                            for x in tensors[:5]
                        ),
                        evidence={
                            "worker": worker,
                            "kind": kind,
                            "threshold": limit,
                            "tensors": tensors[:20],
                            "count": len(tensors),
                            "step_range": [int(hit["step"].min()), int(hit["step"].max())],
                        },
                        where=f"{worker} {first['tensor']}",
                    )
                )
        return findings
