"""VanishingGradient — SageMaker Debugger built-in: a layer's gradients are all but zero."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from pydantic import Field

from rules.base import Finding
from rules.builtin._training import TrainingRule, no_data, steps_text
from rules.params import RuleParams

if TYPE_CHECKING:
    from analyzer.job import Job


class VanishingGradientParams(RuleParams):
    threshold: float = Field(
        0.0000001,
        ge=0,
        description=(
            "A gradient whose elements' mean absolute value is below this has vanished "
            "(judged by their root mean square, norm/sqrt(numel), which bounds it from above)."
        ),
    )


class VanishingGradient(TrainingRule):
    id: ClassVar[str] = "VanishingGradient"
    title: ClassVar[str] = "Vanishing gradients"
    checks: ClassVar[str] = (
        "SageMaker Debugger's built-in, per worker and parameter: the gradient's root mean square "
        "(norm / sqrt(numel)) below `threshold` at a recorded step."
    )
    why: ClassVar[str] = (
        "Layers whose gradients vanish stop learning: typically "
        "the early layers of a deep sigmoid/tanh network."
    )
    recommendation: ClassVar[str] = (
        "Use ReLU-family activations, residual connections or normalisation layers, a better "
        "initialisation (Kaiming/Xavier), or a shallower network."
    )
    params_model: ClassVar[type[RuleParams]] = VanishingGradientParams
    chart: ClassVar[str | None] = "gradient_norms"
    debugger_collections: ClassVar[tuple[str, ...]] = ("gradients",)

    def evaluate(self, job: Job, params: VanishingGradientParams) -> list[Finding] | str:
        g = job.gradient_norms()
        g = g[g["rms"].notna()] if not g.empty else g
        if g.empty:
            return no_data(job, "gradient statistics with a norm and a size")
        findings: list[Finding] = []
        for worker, wg in g.groupby("worker_label", sort=True):
            layers = []
            for name, lg in wg.groupby("name", sort=False):
                low = lg[lg["rms"] < params.threshold]
                if low.empty:
                    continue
                layers.append(
                    {
                        "tensor": name,
                        "steps": steps_text(low["step"].astype(int).tolist()),
                        "step_range": [int(low["step"].min()), int(low["step"].max())],
                        "max_rms": float(low["rms"].max()),
                        "recorded_steps": len(lg),
                    }
                )
            if not layers:
                continue
            names = ", ".join(layer["tensor"] for layer in layers[:5]) + (
                " ..." if len(layers) > 5 else ""
            )
            findings.append(
                self.finding(
                    title=(
                        f"{worker}: gradients vanish in {len(layers)} "
                        f"of {wg['name'].nunique()} parameters"
                    ),
                    message=f"gradient RMS below {params.threshold:g} for {names}",
                    evidence={
                        "worker": worker,
                        "threshold": params.threshold,
                        "layers": layers,
                        "step_range": [
                            min(layer["step_range"][0] for layer in layers),
                            max(layer["step_range"][1] for layer in layers),
                        ],
                    },
                    where=f"{worker} {layers[0]['tensor']}",
                )
            )
        return findings
