"""The rule engine: rules are small units (id, docs, thresholds) judging a shared context.

Like ruff's rules, each rule lives in its own module under ``rules/builtin/`` with its id
(the SageMaker name for SageMaker's built-in rules), what it checks, why it matters and
what to do. Like HTA's analyzers, they all read one :class:`RuleContext`, which computes
each analysis once and hands the same result to every rule that needs it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any, ClassVar, Protocol

import pandas as pd

from analyzer.analyses import steps as steps_analyses
from analyzer.analyses import system as system_analyses
from analyzer.ingest.dataset import JobDataset
from rules import params as p
from rules.ruleset import RuleSet

log = logging.getLogger("smprof.rules")

SEVERITIES = ("error", "warning", "info")
SEVERITY_RANK = {"error": 3, "warning": 2, "info": 1}


@dataclass
class Finding:
    """One verdict: which rule, how bad, where, the numbers behind it, and what to do."""

    rule: str
    severity: str
    title: str
    message: str
    evidence: dict[str, Any]
    recommendation: str
    where: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RuleResult:
    """A rule's outcome: its findings, or why it could not judge (no data for it)."""

    rule: str
    title: str
    findings: list[Finding] = field(default_factory=list)
    skipped_reason: str | None = None
    error: str | None = None

    @property
    def fired(self) -> bool:
        return bool(self.findings)


class RuleContext:
    """The job dataset plus memoised analyses shared by all rules."""

    def __init__(self, dataset: JobDataset) -> None:
        self.dataset = dataset
        self._memo: dict[tuple[Any, ...], Any] = {}

    def memo(self, key: tuple[Any, ...], compute: Callable[[], Any]) -> Any:
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    @property
    def system_metrics(self) -> Any:
        return self.dataset.table("system_metrics")

    @cached_property
    def steps(self) -> pd.DataFrame:
        return steps_analyses.step_durations(self.dataset)

    @cached_property
    def gpu_summary(self) -> pd.DataFrame:
        return system_analyses.gpu_summary(self.system_metrics)

    @cached_property
    def dataloader_waits(self) -> pd.DataFrame:
        return steps_analyses.dataloader_waits(self.dataset, self.steps)

    def has_dimension(self, dimension: str) -> bool:
        sm = self.system_metrics
        if sm.num_rows == 0:
            return False
        return dimension in sm.column("dimension").combine_chunks().dictionary.to_pylist()


class Rule(Protocol):
    id: ClassVar[str]
    title: ClassVar[str]
    checks: ClassVar[str]
    why: ClassVar[str]
    recommendation: ClassVar[str]
    severity: ClassVar[str]
    params_model: ClassVar[type[p.RuleParams]]

    def evaluate(self, ctx: RuleContext, params: Any) -> list[Finding] | str:
        """Findings (empty when clean), or a string saying why the rule cannot judge."""
        ...


class NotApplicable(Exception):
    """Raised by a rule when the job has no data it can judge."""


def registry() -> dict[str, Rule]:
    from rules.builtin import ALL_RULES

    return {r.id: r for r in ALL_RULES}


def evaluate(dataset: JobDataset, ruleset: RuleSet, ctx: RuleContext | None = None) -> list[RuleResult]:
    """Run every enabled rule; a rule that breaks is reported, never fatal to the others.

    Pass the ``ctx`` the report is built with, so the analyses the rules computed are not
    computed again for the report's metrics."""
    ctx = RuleContext(dataset) if ctx is None else ctx
    results: list[RuleResult] = []
    for rule_id, rule in registry().items():
        if not ruleset.enabled(rule_id):
            continue
        res = RuleResult(rule=rule_id, title=rule.title)
        try:
            out = rule.evaluate(ctx, ruleset.params(rule_id))
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


def iso(t: float | None) -> str | None:
    """Epoch seconds → ISO 8601 UTC (evidence is read by people and by JSON consumers)."""
    if t is None or t != t:
        return None
    return pd.Timestamp(t, unit="s", tz="UTC").isoformat()
