"""What SageMaker Debugger's training rules share: the base class, tensor selection by
Debugger's ``collection_names`` / ``tensor_regex`` parameters, and the "no data" answer.

Debugger's parameters travel as strings (``rule_parameters`` are a string map), lists as
comma-separated strings, so the rule file takes them the same way. Debugger's default
collections map onto the training tables' roles: ``losses`` → loss scalars, ``gradients``
→ gradient rows, ``weights`` / ``biases`` → weight rows, ``relu_output`` / ``relu_input``
→ activation rows of ReLU modules, ``all`` → everything.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, ClassVar

from rules.base import Rule
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

    def debugger_rule_parameters(self, params: RuleParams) -> dict[str, Any] | None:
        """The parameters Debugger's container gets (unset ones left out), or None when the
        rule cannot run there as configured."""
        return {k: v for k, v in params.model_dump().items() if v is not None}


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


def select_tensors(tensors: pd.DataFrame, collection_names: str | None, tensor_regex: str | None,
                   default_roles: tuple[str, ...] | None = None) -> pd.DataFrame:
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
        mask |= tensors["name"].map(lambda n: rx.search(str(n)) is not None)
    return tensors[mask]


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
