"""What SageMaker Debugger's training rules share: the base class, tensor selection by
Debugger's ``collection_names`` / ``tensor_regex`` parameters, and the "no data" answer.

Debugger's parameters travel as strings (``rule_parameters`` are a string map), lists as
comma-separated strings, so the rule file takes them the same way. Debugger's default
collections map onto the training tables' roles: ``losses`` → loss scalars, ``gradients``
→ gradient rows, ``weights`` / ``biases`` → weight rows, ``relu_output`` / ``relu_input``
→ activation rows of ReLU modules, ``all`` → everything.

Debugger's regexes are written for Debugger's tensor names (``relu1_output_0``,
``tanh1_input_0``); stepscope's hooks and TensorBoard name an activation by its module
(``net.1``, class ``ReLU``), so such a row is also matched under the name Debugger would
give it (``net.1_relu_output_0``), and ``.*relu_output`` finds it.

The parameters were checked against AWS's "List of Debugger built-in rules" page
(docs/training-health.md, "Checked against"); one a rule cannot honour from per-layer
statistics is accepted, passed to Debugger, and named under ``not_applied`` in the
rule's evidence.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, ClassVar

from rules.base import Finding, Rule
from rules.params import RuleParams

if TYPE_CHECKING:
    import pandas as pd

    from analyzer.job import Job

NO_TRAINING_DATA = (
    "no training-health data in this job (TensorBoard event files, SageMaker Debugger tensors, "
    "or `stepscope run --health`)"
)
COLLECTION_ROLES = {
    "gradients": ("gradient",),
    "weights": ("weight",),
    "biases": ("weight",),
    "relu_output": ("activation",),
    "relu_input": ("activation_input",),
    "all": ("gradient", "weight", "activation", "activation_input", "update_ratio"),
}
#: a name that already says which side of its module it is (Debugger's own names)
DEBUGGER_ACTIVATION_NAME = re.compile(r"_(?:output|input)_\d+$")


class TrainingRule(Rule):
    """A SageMaker Debugger built-in training rule, judged by ``stepscope report`` from the
    job's training tables; ``stepscope attach --debugger`` also puts its rule container on
    the job (``DebugRuleConfigurations``) when the rule file turns the Debugger hook on."""

    debugger_builtin: ClassVar[bool] = True
    severity: ClassVar[str] = "warning"
    #: the Debugger hook collections the rule reads, as smdebug_rulesconfig's
    #: ``ruleConfigs.json`` lists them (plus the loss/gradient ones its checks need); the
    #: rule's own ``collection_names`` parameter adds to them at attach time
    debugger_collections: ClassVar[tuple[str, ...]] = ()
    page: ClassVar[str] = "training"
    chart: ClassVar[str | None] = "loss"

    @classmethod
    def chart_for(cls, finding: Finding) -> str | None:
        """The chart that shows ``finding``: a finding about the loss is on the loss chart,
        otherwise the rule's own."""
        if "loss" in str(finding.evidence.get("tensor") or "").lower():
            return "loss"
        return cls.chart

    def debugger_rule_parameters(self, params: RuleParams) -> dict[str, Any] | None:
        """The parameters Debugger's container gets (unset ones left out), or None when the
        rule cannot run there as configured."""
        return {k: v for k, v in params.model_dump().items() if v is not None}


#: the Training health chart of each tensor role
ROLE_CHART = {
    "gradient": "gradient_norms",
    "update_ratio": "update_ratios",
    "activation": "activations",
}


def split_list(value: str | None) -> list[str]:
    """Debugger's list parameters: a comma-separated string (None or empty: no entries)."""
    if not value:
        return []
    return [v.strip() for v in value.split(",") if v.strip()]


def regex_matcher(patterns: list[str]) -> re.Pattern[str] | None:
    """One pattern for Debugger's ``tensor_regex`` list (searched in the name, not anchored:
    TensorBoard and hook names carry prefixes Debugger's names do not)."""
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{p})" for p in patterns))


def debugger_names(name: object, role: object, module: object) -> tuple[str, ...]:
    """The names a Debugger regex is matched against: the row's own, and for an activation
    named by its module (hooks, TensorBoard: ``net.1``, class ``ReLU``) the one Debugger
    would give it (``net.1_relu_output_0``; an input: ``_input_0``)."""
    own = str(name)
    if role not in ("activation", "activation_input") or not isinstance(module, str) or not module:
        return (own,)
    if DEBUGGER_ACTIVATION_NAME.search(own):
        return (own,)
    side = "output" if role == "activation" else "input"
    return own, f"{own}_{module.lower()}_{side}_0"


def regex_mask(tensors: pd.DataFrame, rx: re.Pattern[str]) -> pd.Series:
    """Rows whose name, or the name Debugger would give them, the regex finds."""
    import pandas as pd

    modules = tensors["module"] if "module" in tensors else [None] * len(tensors)
    hits = [
        any(rx.search(n) for n in debugger_names(name, role, module))
        for name, role, module in zip(tensors["name"], tensors["role"], modules, strict=True)
    ]
    return pd.Series(hits, index=tensors.index, dtype=bool)


def has_selection(collection_names: str | None, tensor_regex: str | None) -> bool:
    """Whether the rule was told which tensors to read (Debugger's AllZero, TensorVariance
    and LossNotDecreasing need one of the two)."""
    return bool(split_list(collection_names) or split_list(tensor_regex))


def selection_text(collection_names: str | None, tensor_regex: str | None) -> str:
    """``collection_names "weights" / tensor_regex ".*relu_output"``, as messages say it."""
    parts = []
    if split_list(collection_names):
        parts.append(f"collection_names {collection_names!r}")
    if split_list(tensor_regex):
        parts.append(f"tensor_regex {tensor_regex!r}")
    return " / ".join(parts) or "the default tensors"


def select_tensors(
    tensors: pd.DataFrame,
    collection_names: str | None,
    tensor_regex: str | None,
    default_roles: tuple[str, ...] | None = None,
) -> pd.DataFrame:
    """The tensor rows a Debugger rule inspects: the union of its collections' roles and its
    regex; neither given → ``default_roles`` (every row when None)."""
    collections = split_list(collection_names)
    rx = regex_matcher(split_list(tensor_regex))
    if tensors.empty:
        return tensors
    if not collections and rx is None:
        return tensors if default_roles is None else tensors[tensors["role"].isin(default_roles)]
    roles: set[str] = set()
    for c in collections:
        roles.update(COLLECTION_ROLES.get(c, ()))
    mask = tensors["role"].isin(roles)
    if rx is not None:
        mask |= regex_mask(tensors, rx)
    return tensors[mask]


def parse_limits(text: str) -> tuple[float, float]:
    """Debugger's ``(min_threshold, max_threshold)`` pair, as its page writes it
    (``"(-9.4999, 9.4999)"``, brackets optional); ValueError unless two numbers, min < max."""
    inner = text.strip().strip("()[]")
    parts = [p.strip() for p in inner.split(",")]
    if len(parts) != 2:
        raise ValueError(f'expected "(min, max)", got {text!r}')
    try:
        lo, hi = float(parts[0]), float(parts[1])
    except ValueError:
        raise ValueError(f'expected two numbers "(min, max)", got {text!r}') from None
    if not lo < hi:
        raise ValueError(f"expected min < max, got {text!r}")
    return lo, hi


def no_selected_data(
    job: Job, what: str, collection_names: str | None, tensor_regex: str | None
) -> str:
    """No data: none at all, none of the kind, or none the rule's selection matches (a
    regex that matches nothing is not a pass)."""
    if not job.has_training_data() or not has_selection(collection_names, tensor_regex):
        return no_data(job, what)
    return f"no {what} matches {selection_text(collection_names, tensor_regex)}"


def no_data(job: Job, what: str) -> str:
    """Why a training rule cannot judge: no training data at all, or not the kind it needs."""
    if not job.has_training_data():
        return NO_TRAINING_DATA
    return f"the job's training data has no {what}"


def steps_text(steps: list[int]) -> str:
    """``12`` or ``12-340 (7 steps)``: a step range as evidence and messages say it."""
    if not steps:
        return "-"
    lo, hi = min(steps), max(steps)
    return str(lo) if lo == hi else f"{lo}-{hi} ({len(steps)} steps)"
