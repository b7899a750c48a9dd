"""Write the default rule file (``rules/default-rules.toml``) from the rule registry.

Why generated: every rule's parameters and their defaults live on its class (its pydantic
params model); a hand-kept file repeated each default, and a new rule needed its section
typed in. The file is what users copy and edit, so it is committed; ``python -m
rules.rule_file > rules/default-rules.toml`` writes it, and a test checks that the committed
file is what the registry gives (tests/test_rules_registry.py).

What goes in: the ``[profiler]`` settings' defaults, then one section per registered rule,
in report order, with every parameter whose default is set (SageMaker's ``scan_interval_us``
stays out: it is the rule container's, not a threshold) and the values a rule's class asks
the file to set beyond its defaults (``Rule.rule_file_values``), under the comment of its
group and its own (``Rule.rule_file_note``).
"""

from __future__ import annotations

import json
from typing import Any

from rules.base import Rule
from rules.builtin._training import TrainingRule
from rules.registry import RULES
from rules.ruleset import ProfilerSettings

#: parameters no rule file needs to set (SageMaker's scan period of its rule containers)
NOT_WRITTEN = frozenset({"scan_interval_us"})

HEADER = """\
# stepscope's rule file: the thresholds `stepscope report` judges a job by, and the rules and
# profiler settings `stepscope attach` puts on a SageMaker training job. Copy it, change what
# you need, and pass it with --rules FILE; anything left out keeps the default below.
# SageMaker built-in rules keep SageMaker's names, parameter names and SDK defaults.
# Written by `python -m rules.rule_file` from the rule registry (rules/registry.py)."""

#: the comment above the first rule of each group
GROUP_NOTES = {
    "stepscope": (
        "# stepscope's own rules (judged by `stepscope report`; SageMaker has no container for "
        "them)."
    ),
    "training": (
        "# SageMaker Debugger's training rules (its names, parameter names and defaults, "
        "checked against\n"
        "# AWS's \"List of Debugger built-in rules\" page), judged from the job's "
        "TensorBoard event files,\n"
        "# Debugger tensors or `stepscope run --health` records (docs/training-health.md). List\n"
        "# parameters are comma-separated strings, as in Debugger. Unset ones (collection_names,\n"
        "# tensor_regex, mode, num_steps...) have no default there either."
    ),
}


def _group(rule: type[Rule]) -> str:
    if issubclass(rule, TrainingRule):
        return "training"
    if rule.sagemaker_builtin:
        return "sagemaker"
    return "baseline" if rule.needs_baseline else "stepscope"


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value and abs(value) < 1e-4:
        return f"{value:.15f}".rstrip("0")  # 0.0000001, as people write it, not 1e-07
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def section(rule: type[Rule]) -> str:
    """One rule's ``[rules.<id>]`` section, with its note when it has one."""
    lines = (
        [f"# {line}".rstrip() for line in rule.rule_file_note.splitlines()]
        if rule.rule_file_note
        else []
    )
    lines.append(f"[rules.{rule.id}]")
    values: dict[str, Any] = {}
    for name, field in rule.params_model.model_fields.items():
        if name in NOT_WRITTEN or field.default is None:
            continue
        values[name] = field.default
    values.update(rule.rule_file_values)
    lines += [f"{k} = {_toml(v)}" for k, v in values.items()]
    return "\n".join(lines)


#: the [parallelism] section: empty by default (the analysis classifies the groups itself)
PARALLELISM_SECTION = (
    "# Process groups the analysis cannot classify from their names and ops: a group's name\n"
    '# (as the trace\'s pg_config gives it, e.g. "3") or description (e.g. "mesh_tp") and\n'
    "# its dimension: data, fsdp, tensor, pipeline, expert, context or other.\n"
    "[parallelism]\n"
    "groups = {}"
)


def render() -> str:
    """The whole default rule file."""
    profiler = ProfilerSettings.model_validate({})
    parts = [
        HEADER,
        "[profiler]\n"
        + "\n".join(f"{k} = {_toml(v)}" for k, v in profiler.model_dump().items() if v is not None),
        PARALLELISM_SECTION,
    ]
    group = None
    for rule in RULES:
        text = section(rule)
        if _group(rule) != group:
            group = _group(rule)
            if group in GROUP_NOTES:
                text = GROUP_NOTES[group] + "\n" + text
        parts.append(text)
    return "\n\n".join(parts) + "\n"


if __name__ == "__main__":
    print(render(), end="")
