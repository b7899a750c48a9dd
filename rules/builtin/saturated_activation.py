"""SaturatedActivation — SageMaker Debugger built-in: tanh/sigmoid layers stuck at their limits."""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, ClassVar

from pydantic import Field

from rules.base import Finding
from rules.builtin._training import TrainingRule, no_data, steps_text
from rules.params import RuleParams

if TYPE_CHECKING:
    from analyzer.job import Job

_KIND = {"tanh": re.compile(r"tanh", re.IGNORECASE), "sigmoid": re.compile(r"sigmoid", re.IGNORECASE)}


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


class SaturatedActivationParams(RuleParams):
    """Debugger's names and defaults (docs.aws.amazon.com/sagemaker/latest/dg/debugger-built-in-rules.html,
    SaturatedActivation): four scalar limits, not two pairs. Its ``collection_names`` /
    ``tensor_regex`` are not taken: every tanh/sigmoid layer is inspected."""

    threshold_tanh_min: float = Field(-9.4999, description="A tanh's input below this saturates it (its gradient below 1e-7).")
    threshold_tanh_max: float = Field(9.4999, description="A tanh's input above this saturates it.")
    threshold_sigmoid_min: float = Field(-23.0, description="A sigmoid's input below this saturates it.")
    threshold_sigmoid_max: float = Field(16.99999, description="A sigmoid's input above this saturates it.")
    threshold_layer: float = Field(50.0, ge=0, le=100, description="A layer with more than this % of saturated units is saturated.")


class SaturatedActivation(TrainingRule):
    id: ClassVar[str] = "SaturatedActivation"
    title: ClassVar[str] = "Saturated tanh/sigmoid layers"
    checks: ClassVar[str] = (
        "SageMaker Debugger's built-in, per worker and tanh/sigmoid layer: outputs beyond the activation's "
        "value at `threshold_tanh_min`/`_max` and `threshold_sigmoid_min`/`_max`. From per-layer statistics only a layer whose "
        "outputs all lie beyond one limit (min or max past it) is known to exceed `threshold_layer` %."
    )
    why: ClassVar[str] = "A saturated tanh or sigmoid passes (almost) no gradient: the layers before it stop learning."
    recommendation: ClassVar[str] = (
        "Normalise the layer's inputs (BatchNorm/LayerNorm), scale the initialisation down, lower the "
        "learning rate, or use a non-saturating activation."
    )
    params_model: ClassVar[type[RuleParams]] = SaturatedActivationParams

    def evaluate(self, job: Job, params: SaturatedActivationParams) -> list[Finding] | str:
        acts = job.activation_stats()
        if not acts.empty:
            label = (acts["module"].fillna("").astype(str) + " " + acts["name"].astype(str))
            acts = acts.assign(kind=label.map(lambda s: next((k for k, rx in _KIND.items() if rx.search(s)), None)))
            acts = acts[acts["kind"].notna() & acts["min"].notna() & acts["max"].notna()]
        if acts.empty:
            return no_data(job, "tanh or sigmoid activation statistics")
        limits = {"tanh": (math.tanh(params.threshold_tanh_min), math.tanh(params.threshold_tanh_max)),
                  "sigmoid": (_sigmoid(params.threshold_sigmoid_min), _sigmoid(params.threshold_sigmoid_max))}
        findings: list[Finding] = []
        for worker, wg in acts.groupby("worker_label", sort=True):
            layers = []
            for name, lg in wg.groupby("name", sort=False):
                lo, hi = limits[str(lg["kind"].iloc[0])]
                sat = lg[(lg["max"] <= lo) | (lg["min"] >= hi)]
                if sat.empty or params.threshold_layer >= 100:
                    continue
                layers.append({"layer": name, "activation": str(lg["kind"].iloc[0]),
                               "steps": steps_text(sat["step"].astype(int).tolist()),
                               "step_range": [int(sat["step"].min()), int(sat["step"].max())]})
            if not layers:
                continue
            findings.append(self.finding(
                title=f"{worker}: {len(layers)} saturated {layers[0]['activation']} layer{'s' if len(layers) != 1 else ''} ({layers[0]['layer']})",
                message="; ".join(f"{layer['layer']} saturated at steps {layer['steps']}" for layer in layers[:5]),
                evidence={"worker": worker, "layers": layers,
                          "step_range": [min(layer["step_range"][0] for layer in layers), max(layer["step_range"][1] for layer in layers)]},
                where=f"{worker} {layers[0]['layer']}",
            ))
        return findings
