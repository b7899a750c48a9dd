"""SaturatedActivation — SageMaker Debugger built-in: tanh/sigmoid layers stuck at their limits.

Debugger judges the layers' *inputs* (``*_tanh_input`` / ``*_sigmoid_input``); so does this
rule wherever they are recorded: Debugger's tensors and ``stepscope run --health`` (role
``activation_input``). A layer recorded only by its outputs (TensorBoard) is judged through
them, against the activation's value at the limits.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, ClassVar

from pydantic import Field, field_validator

from rules.base import Finding
from rules.builtin._training import (
    DEBUGGER_ACTIVATION_NAME,
    TrainingRule,
    debugger_names,
    no_selected_data,
    parse_limits,
    regex_matcher,
    select_tensors,
    split_list,
    steps_text,
)
from rules.params import RuleParams

if TYPE_CHECKING:
    import pandas as pd

    from analyzer.job import Job

_KIND = {
    "tanh": re.compile(r"tanh", re.IGNORECASE),
    "sigmoid": re.compile(r"sigmoid", re.IGNORECASE),
}
#: what per-layer statistics cannot tell (the rule's evidence says so when it fires)
INACTIVITY_NOT_APPLIED = (
    "needs each unit's activity over steps; per-layer statistics (min/max) "
    "only show a layer all of whose units are saturated at a step"
)


#: the Debugger hook collection the rule's container reads: smdebug_rulesconfig has none for
#: tanh/sigmoid inputs, so ``attach --debugger`` adds this one, named and matched as in AWS's
#: page's example of the rule (the default ``tensor_regex`` as one include regex)
SATURATED_INPUTS_COLLECTION = "custom_activations_collection"
SATURATED_INPUTS_REGEX = ".*tanh_input|.*sigmoid_input"


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


class SaturatedActivationParams(RuleParams):
    """Debugger's names and defaults (AWS's "List of Debugger built-in rules" page,
    SaturatedActivation): the limits are two ``(min_threshold, max_threshold)`` pairs,
    ``threshold_tanh`` and ``threshold_sigmoid``, and the layers are chosen by
    ``collection_names`` / ``tensor_regex`` (default ``.*tanh_input, .*sigmoid_input``)."""

    collection_names: str | None = Field(
        None,
        description=(
            "Comma-separated collections whose tanh/sigmoid tensors are "
            "inspected (`all`; `relu_output` / `relu_input` mean the "
            "activations' outputs / inputs); with `tensor_regex`, their union."
        ),
    )
    tensor_regex: str | None = Field(
        ".*tanh_input, .*sigmoid_input",
        description=(
            "Comma-separated regexes of the tanh/sigmoid *inputs* to inspect "
            "(Debugger's names); a hook layer `net.3` of class Sigmoid is matched as "
            "`net.3_sigmoid_input_0`, and a layer with only its outputs recorded "
            "(TensorBoard) under the same name through them: they are beyond the "
            "activation's value at a limit exactly when its inputs are beyond the limit."
        ),
    )
    threshold_tanh: str = Field(
        "(-9.4999, 9.4999)",
        description=(
            "`(min_threshold, max_threshold)`: a tanh input "
            "outside them is saturated (its gradient below 1e-7)."
        ),
    )
    threshold_sigmoid: str = Field(
        "(-23, 16.99999)",
        description="`(min_threshold, max_threshold)`: a sigmoid input outside them is saturated.",
    )
    threshold_inactivity: float = Field(
        1.0,
        ge=0,
        le=100,
        description=(
            "A unit active less than this % of the time is saturated. Accepted and passed "
            "to Debugger; not applicable to per-layer statistics (the evidence says so)."
        ),
    )
    threshold_layer: float = Field(
        50.0,
        ge=0,
        le=100,
        description="A layer with more than this % of saturated units is saturated.",
    )

    @field_validator("threshold_tanh", "threshold_sigmoid")
    @classmethod
    def _two_limits(cls, value: str) -> str:
        parse_limits(value)
        return value


class SaturatedActivation(TrainingRule):
    id: ClassVar[str] = "SaturatedActivation"
    title: ClassVar[str] = "Saturated tanh/sigmoid layers"
    checks: ClassVar[str] = (
        "SageMaker Debugger's built-in, per worker and tanh/sigmoid layer of `collection_names` "
        "/ `tensor_regex`: inputs beyond `threshold_tanh` / `threshold_sigmoid` (where only "
        "outputs are recorded, outputs beyond the activation's value there). From per-layer "
        "statistics only a layer whose values all lie beyond one limit (min or max past it) is "
        "known to exceed `threshold_layer` %; `threshold_inactivity` cannot be applied."
    )
    why: ClassVar[str] = (
        "A saturated tanh or sigmoid passes (almost) no "
        "gradient: the layers before it stop learning."
    )
    recommendation: ClassVar[str] = (
        "Normalise the layer's inputs (BatchNorm/LayerNorm), scale the initialisation "
        "down, lower the learning rate, or use a non-saturating activation."
    )
    params_model: ClassVar[type[RuleParams]] = SaturatedActivationParams
    chart: ClassVar[str | None] = "activations"
    debugger_collections: ClassVar[tuple[str, ...]] = (SATURATED_INPUTS_COLLECTION,)

    def evaluate(self, job: Job, params: SaturatedActivationParams) -> list[Finding] | str:
        acts = _selected(job.training_tensors(), params)
        if acts.empty:
            return no_selected_data(
                job,
                "tanh or sigmoid activation statistics",
                params.collection_names,
                params.tensor_regex,
            )
        limits = {
            "tanh": parse_limits(params.threshold_tanh),
            "sigmoid": parse_limits(params.threshold_sigmoid),
        }
        through = {"tanh": math.tanh, "sigmoid": _sigmoid}
        findings: list[Finding] = []
        for worker, wg in acts.groupby("worker_label", sort=True):
            layers = []
            for (name, role), lg in wg.groupby(["name", "role"], sort=False):
                kind = str(lg["kind"].iloc[0])
                lo, hi = limits[kind]
                if role == "activation":  # outputs: the limits seen through the activation
                    lo, hi = through[kind](lo), through[kind](hi)
                sat = lg[(lg["max"] <= lo) | (lg["min"] >= hi)]
                if sat.empty or params.threshold_layer >= 100:
                    continue
                layers.append(
                    {
                        "layer": name,
                        "activation": kind,
                        "side": "input" if role == "activation_input" else "output",
                        "steps": steps_text(sat["step"].astype(int).tolist()),
                        "step_range": [int(sat["step"].min()), int(sat["step"].max())],
                    }
                )
            if not layers:
                continue
            findings.append(
                self.finding(
                    title=(
                        f"{worker}: {len(layers)} saturated {layers[0]['activation']} "
                        f"layer{'s' if len(layers) != 1 else ''} ({layers[0]['layer']})"
                    ),
                    message="; ".join(
                        f"{layer['layer']} saturated at steps {layer['steps']}"
                        for layer in layers[:5]
                    ),
                    evidence={
                        "worker": worker,
                        "layers": layers,
                        "step_range": [
                            min(layer["step_range"][0] for layer in layers),
                            max(layer["step_range"][1] for layer in layers),
                        ],
                        "not_applied": {"threshold_inactivity": INACTIVITY_NOT_APPLIED},
                    },
                    where=f"{worker} {layers[0]['layer']}",
                )
            )
        return findings


def _kind(name: object, module: object) -> str | None:
    label = f"{module if isinstance(module, str) else ''} {name}"
    return next((k for k, rx in _KIND.items() if rx.search(label)), None)


def _selected(tensors: pd.DataFrame, params: SaturatedActivationParams) -> pd.DataFrame:
    """The tanh/sigmoid rows the selection names, with their ``kind``: inputs
    (``activation_input``: Debugger's, the hooks'), and module outputs (``activation``)
    matched as their inputs where a layer has no input rows."""
    if tensors.empty:
        return tensors
    acts = tensors[
        tensors["role"].isin(("activation", "activation_input"))
        & tensors["min"].notna()
        & tensors["max"].notna()
    ]
    if acts.empty:
        return acts
    acts = acts.assign(
        kind=[_kind(n, m) for n, m in zip(acts["name"], acts["module"], strict=True)]
    )
    acts = acts[acts["kind"].notna()]
    if acts.empty:
        return acts
    chosen = (
        select_tensors(acts, params.collection_names, None).index
        if split_list(params.collection_names)
        else acts.index[:0]
    )
    rx = regex_matcher(split_list(params.tensor_regex))
    hits = []
    for idx, name, role, module, kind in zip(
        acts.index, acts["name"], acts["role"], acts["module"], acts["kind"], strict=True
    ):
        names = list(debugger_names(name, role, module))
        if role == "activation" and not DEBUGGER_ACTIVATION_NAME.search(str(name)):
            names.append(f"{name}_{kind}_input_0")  # the layer's input, seen through its outputs
        if rx is not None and any(rx.search(n) for n in names):
            hits.append(idx)
    acts = acts.loc[acts.index.isin(chosen) | acts.index.isin(hits)]
    return _inputs_first(acts)


def _inputs_first(acts: pd.DataFrame) -> pd.DataFrame:
    """A layer whose inputs are recorded (Debugger's ``*_input`` tensors, the hooks'
    ``activation_input`` rows) is judged on them, as Debugger judges it; its outputs only
    stand in for the inputs of a layer that has none (TensorBoard, older hook files)."""
    if acts.empty:
        return acts
    with_inputs = set(
        zip(
            acts.loc[acts["role"] == "activation_input", "worker_label"],
            acts.loc[acts["role"] == "activation_input", "name"],
            strict=True,
        )
    )
    if not with_inputs:
        return acts
    shadowed = [
        role == "activation" and (worker, name) in with_inputs
        for worker, name, role in zip(acts["worker_label"], acts["name"], acts["role"], strict=True)
    ]
    return acts.loc[[not s for s in shadowed]]
