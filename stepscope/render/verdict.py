"""The pass/fail verdict: the caller's ``--fail-on`` policy applied to a report.

Why not a field of the report: the report says what fired and how badly; whether that fails
a CI run is the caller's choice (``stepscope report --fail-on``), and the same evaluated
report (the dashboard's cached one, say) serves every choice.
"""

from __future__ import annotations

from dataclasses import dataclass

from rules.base import SEVERITY_RANK
from stepscope.report.model import Report

FAIL_ON = ("error", "warning", "info", "never")


@dataclass(frozen=True)
class Verdict:
    fail_on: str
    #: findings at or above ``fail_on``
    failing_findings: int

    @classmethod
    def of(cls, report: Report, fail_on: str) -> Verdict:
        if fail_on not in FAIL_ON:
            raise ValueError(f"fail_on must be one of {', '.join(FAIL_ON)} (got {fail_on!r})")
        return cls(fail_on, sum(1 for f in report.findings if fails(f.severity, fail_on)))

    @property
    def verdict(self) -> str:
        return "fail" if self.failing_findings else "pass"

    def fails(self, severity: str) -> bool:
        """Whether a finding of ``severity`` fails the run."""
        return fails(severity, self.fail_on)


def fails(severity: str, fail_on: str) -> bool:
    return fail_on != "never" and SEVERITY_RANK[severity] >= SEVERITY_RANK[fail_on]
