"""The rule engine: rules are small units (id, docs, thresholds) judging a shared context.

Like ruff's rules, each rule lives in its own module under ``rules/builtin/`` with its id
(the SageMaker name for SageMaker's built-in rules), what it checks, why it matters and
what to do; ``rules.registry`` lists them. Like HTA's analyzers, they all read one
:class:`~analyzer.job.Job`, which computes each measurement once and hands the same result
to every rule that needs it.
"""

from __future__ import annotations

import logging

from analyzer.job import Job
from rules.base import SEVERITY_RANK, Finding, Rule, RuleResult
from rules.registry import RULES
from rules.ruleset import RuleSet

__all__ = [
    "SEVERITY_RANK",
    "Finding",
    "Rule",
    "RuleResult",
    "at_or_above",
    "evaluate",
    "registry",
    "worst",
]

log = logging.getLogger("stepscope.rules")


def registry() -> dict[str, Rule]:
    """The rules ``stepscope report`` evaluates, by id, in report order (one instance each)."""
    return {r.id: r() for r in RULES if r.evaluated}


def evaluate(job: Job, ruleset: RuleSet) -> list[RuleResult]:
    """Run every enabled rule on ``job``; a rule that breaks is reported, never fatal to the
    others. The analyses they compute stay memoised on ``job`` for the report."""
    results: list[RuleResult] = []
    for rule_id, rule in registry().items():
        if not ruleset.enabled(rule_id):
            continue
        if rule.needs_baseline and job.baseline is None:
            continue  # nothing to compare with: not a rule of this report
        res = RuleResult(rule=rule_id, title=rule.title)
        try:
            out = rule.evaluate(job, ruleset.params(rule_id))
        except Exception as exc:  # one broken rule must not hide the others' verdicts
            log.exception("rule %s failed", rule_id)
            res.error = f"{type(exc).__name__}: {exc}"
        else:
            if isinstance(out, str):
                res.skipped_reason = out
            else:
                severity = ruleset.severity_overrides.get(rule_id)
                for f in out:
                    if severity:
                        f.severity = severity
                res.findings = out
        res.details = dict(rule.details)
        results.append(res)
    return results


def worst(findings: list[Finding]) -> str | None:
    if not findings:
        return None
    return max(findings, key=lambda f: SEVERITY_RANK[f.severity]).severity


def at_or_above(severity: str, fail_on: str) -> bool:
    if fail_on == "never":
        return False
    return SEVERITY_RANK[severity] >= SEVERITY_RANK[fail_on]
