"""The pass/fail verdict: the caller's ``--fail-on`` policy applied to a report.

Why not a field of the report: the report says what fired and how badly; whether that fails
a CI run is the caller's choice (``stepscope report --fail-on``), and the same evaluated
report (the dashboard's cached one, say) serves every choice.

Why three states in words where report.json has two: ``report.json``'s ``summary.verdict``
answers "does this fail the run" (``pass`` with ``--fail-on never``, whatever fired), but a
person reading "PASS" beside "3 errors" takes it for a clean job. So every output a person
reads (:meth:`Verdict.line`) says PASS only when nothing fired, FAIL when the run fails, and
otherwise what was found and why it does not fail the run.
"""

from __future__ import annotations

from dataclasses import dataclass

from rules.base import SEVERITIES, SEVERITY_RANK
from stepscope.present.counts import findings_text
from stepscope.report.grouping import groups_of
from stepscope.report.model import Counts, Report

FAIL_ON = ("error", "warning", "info", "never")


@dataclass(frozen=True)
class Verdict:
    fail_on: str
    #: findings at or above ``fail_on``
    failing_findings: int
    #: the report's findings by severity, one per place
    counts: Counts
    #: the same as the outputs list them: a rule's findings that share a pattern are one
    #: (``report.finding_groups``); None: each finding is its own
    groups: Counts | None = None

    @classmethod
    def of(cls, report: Report, fail_on: str) -> Verdict:
        if fail_on not in FAIL_ON:
            raise ValueError(f"fail_on must be one of {', '.join(FAIL_ON)} (got {fail_on!r})")
        listed = groups_of(report)
        return cls(
            fail_on,
            sum(1 for f in report.findings if fails(f.severity, fail_on)),
            report.summary.counts,
            Counts(**{s: sum(1 for g in listed if g.severity == s) for s in SEVERITIES}),
        )

    @property
    def verdict(self) -> str:
        """``fail`` | ``pass``: report.json's ``summary.verdict`` (the exit code's view)."""
        return "fail" if self.failing_findings else "pass"

    @property
    def state(self) -> str:
        """``fail`` | ``pass`` (nothing fired) | ``not-failing`` (findings below ``--fail-on``)."""
        if self.failing_findings:
            return "fail"
        return "not-failing" if self.total else "pass"

    @property
    def total(self) -> int:
        return self.counts.error + self.counts.warning + self.counts.info

    def counted(self) -> str:
        """``"2 findings (3 places): 2 errors, 0 warnings, 0 info"``: the findings as every
        output lists them (one line per pattern), their places, then per severity."""
        g = self.groups or self.counts
        listed = g.error + g.warning + g.info
        return (
            f"{findings_text(listed, self.total)}: "
            f"{_n(g.error, 'error')}, {_n(g.warning, 'warning')}, {g.info} info"
        )

    def line(self) -> str:
        """The verdict as a person reads it, the same in every output:
        ``FAIL: 2 findings (3 places): 2 errors, 0 warnings, 0 info (--fail-on error)``,
        ``3 findings: 3 errors, 0 warnings, 0 info (not failing: --fail-on never)``,
        ``PASS: no findings``."""
        if self.state == "fail":
            return f"FAIL: {self.counted()} (--fail-on {self.fail_on})"
        if self.state == "not-failing":
            return f"{self.counted()} (not failing: --fail-on {self.fail_on})"
        return "PASS: no findings"

    def fails(self, severity: str) -> bool:
        """Whether a finding of ``severity`` fails the run."""
        return fails(severity, self.fail_on)


def fails(severity: str, fail_on: str) -> bool:
    return fail_on != "never" and SEVERITY_RANK[severity] >= SEVERITY_RANK[fail_on]


def _n(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
