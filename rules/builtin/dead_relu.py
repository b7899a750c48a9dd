"""DeadRelu — SageMaker Debugger built-in: a ReLU layer's outputs are (almost) all zero.

Debugger's page: ``tensor_regex`` (default None), ``threshold_inactivity`` 1.0,
``threshold_layer`` 50.0. smdebug_rulesconfig's hook collection for it (``relu_output``)
saves ``.*relu_output``; the rule's own regex has no default on the page, so unset means
every ReLU-family layer's outputs, and a regex means only the tensors it matches.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, ClassVar

from pydantic import Field

from rules.base import Finding
from rules.builtin._training import (
    TrainingRule,
    no_selected_data,
    regex_mask,
    regex_matcher,
    split_list,
    steps_text,
)
from rules.params import RuleParams

if TYPE_CHECKING:
    from analyzer.job import Job

_RELU = re.compile(r"relu", re.IGNORECASE)


class DeadReluParams(RuleParams):
    tensor_regex: str | None = Field(
        None,
        description=(
            "Comma-separated regexes of the activations to inspect (Debugger's names, e.g. "
            "`.*relu_output`; a hook or TensorBoard layer `net.1` of class ReLU is also matched "
            "as `net.1_relu_output_0`); unset: every layer whose module class or name is a ReLU."
        ),
    )
    threshold_inactivity: float = Field(
        1.0,
        ge=0,
        le=100,
        description="A layer whose share (%) of non-zero outputs is below this is inactive.",
    )
    threshold_layer: float = Field(
        50.0,
        ge=0,
        le=100,
        description=(
            "A layer whose share (%) of zero outputs is above this "
            "(and active share below `threshold_inactivity`) is dead."
        ),
    )


class DeadRelu(TrainingRule):
    id: ClassVar[str] = "DeadRelu"
    title: ClassVar[str] = "Dead ReLU layers"
    checks: ClassVar[str] = (
        "SageMaker Debugger's built-in, per worker and ReLU layer: at a recorded step the share of "
        "non-zero outputs is below `threshold_inactivity` % and the "
        "share of zeros above `threshold_layer` %. From per-layer "
        "statistics, the layer's outputs are judged as one population."
    )
    why: ClassVar[str] = (
        "A ReLU that outputs only zeros passes no gradient: "
        "the units behind it stop learning for good."
    )
    recommendation: ClassVar[str] = (
        "Lower the learning rate, check the biases' initialisation (a large negative bias "
        "kills ReLUs), or use LeakyReLU/GELU; normalisation before the activation helps."
    )
    params_model: ClassVar[type[RuleParams]] = DeadReluParams
    chart: ClassVar[str | None] = "activations"
    debugger_collections: ClassVar[tuple[str, ...]] = ("relu_output",)

    def evaluate(self, job: Job, params: DeadReluParams) -> list[Finding] | str:
        acts = job.activation_stats()
        if not acts.empty:
            rx = regex_matcher(split_list(params.tensor_regex))
            if rx is not None:
                chosen = regex_mask(acts.assign(role="activation"), rx)
            else:
                chosen = acts["module"].map(
                    lambda m: isinstance(m, str) and _RELU.search(m) is not None
                )
                chosen |= acts["name"].map(lambda n: _RELU.search(str(n)) is not None)
            acts = acts[chosen & acts["zero_fraction"].notna()]
        if acts.empty:
            return no_selected_data(
                job, "ReLU activation statistics with a zero fraction", None, params.tensor_regex
            )
        findings: list[Finding] = []
        for worker, wg in acts.groupby("worker_label", sort=True):
            layers = []
            for name, lg in wg.groupby("name", sort=False):
                zero = lg["zero_fraction"].astype(float) * 100
                dead = lg[
                    (100 - zero < params.threshold_inactivity) & (zero > params.threshold_layer)
                ]
                if dead.empty:
                    continue
                layers.append(
                    {
                        "layer": name,
                        "steps": steps_text(dead["step"].astype(int).tolist()),
                        "step_range": [int(dead["step"].min()), int(dead["step"].max())],
                        "dead_steps": len(dead),
                        "recorded_steps": len(lg),
                        "min_zero_pct": round(float(dead["zero_fraction"].min()) * 100, 3),
                    }
                )
            if not layers:
                continue
            findings.append(
                self.finding(
                    title=(
                        f"{worker}: {len(layers)} ReLU "
                        f"layer{'s' if len(layers) != 1 else ''} dead ({layers[0]['layer']})"
                    ),
                    message="; ".join(
                        f"{layer['layer']}: ≥{layer['min_zero_pct']}% "
                        f"zeros at steps {layer['steps']}"
                        for layer in layers[:5]
                    ),
                    evidence={
                        "worker": worker,
                        "layers": layers,
                        "step_range": [
                            min(layer["step_range"][0] for layer in layers),
                            max(layer["step_range"][1] for layer in layers),
                        ],
                    },
                    where=f"{worker} {layers[0]['layer']}",
                )
            )
        return findings
