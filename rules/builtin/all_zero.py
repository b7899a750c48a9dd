"""AllZero — SageMaker Debugger built-in: a tensor that is entirely zeros."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from pydantic import Field

from rules.base import Finding
from rules.builtin._training import TrainingRule, no_data, select_tensors, steps_text
from rules.params import RuleParams

if TYPE_CHECKING:
    from analyzer.job import Job


class AllZeroParams(RuleParams):
    collection_names: str | None = Field(None, description="Comma-separated collections to inspect (`gradients`, `weights`, `relu_output`...); unset with no regex: every tensor.")
    tensor_regex: str | None = Field(None, description="Comma-separated regexes of tensor names to inspect.")
    threshold: float = Field(100.0, ge=0, le=100, description="Share (%) of zero elements at or above which a tensor counts as all zero.")


class AllZero(TrainingRule):
    id: ClassVar[str] = "AllZero"
    title: ClassVar[str] = "All-zero tensors"
    checks: ClassVar[str] = (
        "SageMaker Debugger's built-in, per worker and tensor: the share of zero elements at or above "
        "`threshold` % at a recorded step."
    )
    why: ClassVar[str] = "A weight, gradient or activation of only zeros carries no signal: a dead layer, a detached graph or an unused parameter."
    recommendation: ClassVar[str] = (
        "Check that the tensor is connected to the loss (no detach, no unused branch), its initialisation, "
        "and for dead activations before it."
    )
    params_model: ClassVar[type[RuleParams]] = AllZeroParams

    def evaluate(self, job: Job, params: AllZeroParams) -> list[Finding] | str:
        t = select_tensors(job.training_tensors(), params.collection_names, params.tensor_regex)
        t = t[t["zero_fraction"].notna()] if not t.empty else t
        if t.empty:
            return no_data(job, "tensor statistics with a zero fraction")
        findings: list[Finding] = []
        for worker, wg in t.groupby("worker_label", sort=True):
            hit = wg[wg["zero_fraction"].astype(float) * 100 >= params.threshold]
            if hit.empty:
                continue
            tensors = []
            for (role, name), g in hit.groupby(["role", "name"], sort=False):
                tensors.append({"tensor": name, "role": role, "steps": steps_text(g["step"].astype(int).tolist()),
                                "step_range": [int(g["step"].min()), int(g["step"].max())]})
            findings.append(self.finding(
                title=f"{worker}: {len(tensors)} all-zero tensor{'s' if len(tensors) != 1 else ''} ({tensors[0]['role']} {tensors[0]['tensor']})",
                message="; ".join(f"{x['role']} {x['tensor']} at steps {x['steps']}" for x in tensors[:5]),
                evidence={"worker": worker, "threshold": params.threshold, "tensors": tensors[:20], "count": len(tensors),
                          "step_range": [int(hit["step"].min()), int(hit["step"].max())]},
                where=f"{worker} {tensors[0]['tensor']}",
            ))
        return findings
