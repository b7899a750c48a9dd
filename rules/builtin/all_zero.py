"""AllZero — SageMaker Debugger built-in: a tensor that is entirely zeros.

Debugger's page: ``collection_names`` and ``tensor_regex`` (no defaults), ``threshold`` 100;
"you must specify either ``collection_names`` or ``tensor_regex``" (the union when both).
Without either the rule cannot judge, and is not attached to Debugger (whose container
would reject it); stepscope's rule file names the collections the other rules save.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from rules.base import Finding
from rules.builtin._training import (
    ROLE_CHART,
    TrainingRule,
    has_selection,
    no_selected_data,
    select_tensors,
    steps_text,
)
from rules.params import RuleParams

if TYPE_CHECKING:
    from analyzer.job import Job

NEEDS_SELECTION = (
    "AllZero needs collection_names or tensor_regex (as in SageMaker "
    "Debugger, which has no default for either): set one in the rule file"
)


class AllZeroParams(RuleParams):
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
    threshold: float = Field(
        100.0,
        ge=0,
        le=100,
        description="Share (%) of zero elements at or above which a tensor counts as all zero.",
    )


class AllZero(TrainingRule):
    id: ClassVar[str] = "AllZero"
    title: ClassVar[str] = "All-zero tensors"
    checks: ClassVar[str] = (
        "SageMaker Debugger's built-in, per worker and tensor of "
        "`collection_names` / `tensor_regex` (their union; one is required): the "
        "share of zero elements at or above `threshold` % at a recorded step."
    )
    why: ClassVar[str] = (
        "A weight, gradient or activation of only zeros carries no "
        "signal: a dead layer, a detached graph or an unused parameter."
    )
    recommendation: ClassVar[str] = (
        "Check that the tensor is connected to the loss (no detach, no unused "
        "branch), its initialisation, and for dead activations before it."
    )
    params_model: ClassVar[type[RuleParams]] = AllZeroParams
    rule_file_values: ClassVar[dict[str, Any]] = {
        "collection_names": "gradients, weights, relu_output"
    }
    rule_file_note: ClassVar[str] = (
        "Debugger requires collection_names or tensor_regex "
        "and has no default for either; these are\n"
        "the collections the other rules already make the hook save."
    )

    @classmethod
    def chart_for(cls, finding: Finding) -> str | None:
        """The chart of the role of the first all-zero tensor."""
        if "loss" in str(finding.evidence.get("tensor") or "").lower():
            return "loss"
        tensors = finding.evidence.get("tensors") or []
        if tensors and isinstance(tensors[0], dict):
            return ROLE_CHART.get(str(tensors[0].get("role")), cls.chart)
        return cls.chart

    chart: ClassVar[str | None] = "activations"

    def debugger_rule_parameters(self, params: RuleParams) -> dict[str, Any] | None:
        """Not attached without a selection: Debugger's container requires one."""
        assert isinstance(params, AllZeroParams)
        if not has_selection(params.collection_names, params.tensor_regex):
            return None
        return super().debugger_rule_parameters(params)

    def evaluate(self, job: Job, params: AllZeroParams) -> list[Finding] | str:
        if not job.has_training_data():
            return no_selected_data(job, "", None, None)
        if not has_selection(params.collection_names, params.tensor_regex):
            return NEEDS_SELECTION
        t = select_tensors(job.training_tensors(), params.collection_names, params.tensor_regex)
        t = t[t["zero_fraction"].notna()] if not t.empty else t
        if t.empty:
            return no_selected_data(
                job,
                "tensor statistics with a zero fraction",
                params.collection_names,
                params.tensor_regex,
            )
        findings: list[Finding] = []
        for worker, wg in t.groupby("worker_label", sort=True):
            hit = wg[wg["zero_fraction"].astype(float) * 100 >= params.threshold]
            if hit.empty:
                continue
            tensors = []
            for (role, name), g in hit.groupby(["role", "name"], sort=False):
                tensors.append(
                    {
                        "tensor": name,
                        "role": role,
                        "steps": steps_text(g["step"].astype(int).tolist()),
                        "step_range": [int(g["step"].min()), int(g["step"].max())],
                    }
                )
            findings.append(
                self.finding(
                    title=(
                        f"{worker}: {len(tensors)} all-zero "
                        f"tensor{'s' if len(tensors) != 1 else ''} "
                        f"({tensors[0]['role']} {tensors[0]['tensor']})"
                    ),
                    message="; ".join(
                        f"{x['role']} {x['tensor']} at steps {x['steps']}" for x in tensors[:5]
                    ),
                    evidence={
                        "worker": worker,
                        "threshold": params.threshold,
                        "tensors": tensors[:20],
                        "count": len(tensors),
                        "step_range": [int(hit["step"].min()), int(hit["step"].max())],
                    },
                    where=f"{worker} {tensors[0]['tensor']}",
                )
            )
        return findings
