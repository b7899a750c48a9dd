"""What the outputs need to know about each rule, read from the rule classes themselves.

Why here: a rule's class is the single source of everything about it (``rules.base.Rule``:
its page, how its group line reads, which system chart its windows shade, what a page
looks for among its findings). The outputs read those through this module, so no page,
renderer or table names a rule id, and a new rule appears everywhere once it is in the
registry.
"""

from __future__ import annotations

from rules.base import Finding, GroupFigure
from rules.registry import BY_ID, RULES

__all__ = [
    "chart_of",
    "group_figure",
    "in_rule_configs",
    "leading_rules",
    "rule_chart",
    "rule_pages",
    "rules_marking",
    "shaded_metrics",
    "training_rule_ids",
    "window_colors",
]


def leading_rules() -> frozenset[str]:
    """The rules whose findings lead every output (``Rule.leads``)."""
    return frozenset(r.id for r in RULES if r.leads)


def rule_pages() -> dict[str, str]:
    """Rule id -> the dashboard page whose chart shows its findings."""
    return {r.id: r.page for r in RULES}


def window_colors() -> dict[str, str]:
    """Rule id -> the shade of its flagged windows (rules that shade a system chart)."""
    return {r.id: r.window_color for r in RULES if r.window_color}


def shaded_metrics() -> dict[str, tuple[str, ...]]:
    """System metric -> the rules whose flagged windows shade its chart, in report order."""
    out: dict[str, tuple[str, ...]] = {}
    for r in RULES:
        if r.shades_metric:
            out[r.shades_metric] = (*out.get(r.shades_metric, ()), r.id)
    return out


def rules_marking(what: str) -> tuple[str, ...]:
    """The rules whose findings a page looks for as ``what`` (``Rule.marks``)."""
    return tuple(r.id for r in RULES if r.marks == what)


def group_figure(finding: Finding) -> GroupFigure | None:
    """How a group of ``finding``'s rule reads, for its evidence ``kind`` (or any kind)."""
    rule = BY_ID.get(finding.rule)
    if rule is None:
        return None
    kind = finding.evidence.get("kind")
    figures = rule.group_figures
    return figures.get(kind if isinstance(kind, str) else None) or figures.get(None)


def training_rule_ids() -> tuple[str, ...]:
    """The registry's SageMaker Debugger training rules (new ones included)."""
    return tuple(r.id for r in RULES if r.debugger_builtin)


def chart_of(finding: Finding) -> str:
    """The Training health chart that shows ``finding`` (its rule decides; the loss chart
    for a rule that is not a training rule)."""
    rule = BY_ID.get(finding.rule)
    return (rule.chart_for(finding) if rule is not None else None) or "loss"


def rule_chart(rule_id: str) -> str:
    """The Training health chart of a training rule (the loss chart for any other)."""
    rule = BY_ID.get(rule_id)
    return (rule.chart if rule is not None else None) or "loss"


def in_rule_configs(rule_id: str) -> bool:
    """Whether smdebug_rulesconfig's ``rule_configs`` re-exports the SageMaker built-in."""
    rule = BY_ID.get(rule_id)
    return rule is None or rule.in_rule_configs
