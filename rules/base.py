"""What a rule is and what it produces: the rule base class, findings with evidence, and
a per-rule result.

Kept apart from the engine so that rule modules import only this (and the registry imports
the rules, the engine the registry): no import cycle between the engine and ``rules/builtin``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

from rules.params import RuleParams

if TYPE_CHECKING:
    from analyzer.job import Job

SEVERITIES = ("error", "warning", "info")
SEVERITY_RANK = {"error": 3, "warning": 2, "info": 1}
#: the dashboard's pages a rule's findings can point at (``Rule.page``)
PAGES = ("overview", "system", "steps", "communication", "kernels", "training", "compare")


@dataclass(frozen=True)
class GroupFigure:
    """How a group of one rule's findings that share a pattern reads: the evidence key that
    says how bad one is (the range of it over the group leads the group's line), how to word
    it, and which end is worse."""

    key: str
    text: str  # "{} ms per step waiting for the next batch": {} is the value or the range
    digits: int = 1
    worst: str = "max"  # max | min
    #: a second figure in parentheses: (key, text, digits)
    then: tuple[str, str, int] | None = None


@dataclass(frozen=True)
class Waste:
    """The time one finding loses, as GPUs' worth of time: lost GPU-seconds per second of the
    profiled window (0.43: one GPU waits 43% of the time; 1.4: seven GPUs wait 20% each).
    The report layer turns it into GPU-hours and dollars over the job's run."""

    gpus: float
    #: how it was counted, in words, from the finding's evidence
    basis: str


class Finding(BaseModel):
    """One verdict: which rule, how bad, where, the numbers behind it, and what to do.

    A pydantic model because the report carries findings as they are (its JSON round trip
    and ``report.json``'s ``findings`` rows); unknown fields are an error."""

    model_config = ConfigDict(extra="forbid")

    rule: str
    severity: str
    title: str
    message: str
    evidence: dict[str, Any]
    recommendation: str
    where: str = ""

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()


@dataclass
class RuleResult:
    """A rule's outcome: its findings, or why it could not judge (no data for it)."""

    rule: str
    title: str
    findings: list[Finding] = field(default_factory=list)
    skipped_reason: str | None = None
    error: str | None = None
    #: what the rule measured that the report carries beyond its findings (e.g. the
    #: baseline comparison's rows), so the report never calls a rule
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def fired(self) -> bool:
        return bool(self.findings)


class Rule(ABC):
    """A rule, defined once: the class holds everything the rule file, the docs page, the
    attach side and the engine know about it (``rules.registry`` lists the classes).

    ``evaluate`` judges a :class:`~analyzer.job.Job` by the rule's parameters: findings
    (empty when clean), or a string saying why it cannot judge. It reads the job's memoised
    measurements and applies the thresholds; :meth:`finding` fills in what every finding of
    the rule shares.
    """

    #: the rule's name in the rule file and the report (SageMaker's name for its built-ins)
    id: ClassVar[str]
    title: ClassVar[str]
    #: the docs page's three lines: what it checks, why it matters, what to do
    checks: ClassVar[str]
    why: ClassVar[str]
    recommendation: ClassVar[str]
    #: default severity of its findings; the rule file's ``severity`` overrides it
    severity: ClassVar[str]
    #: its ``[rules.<id>]`` table in the rule file
    params_model: ClassVar[type[RuleParams]]
    #: a SageMaker Debugger built-in: ``stepscope attach`` puts it on SageMaker jobs
    sagemaker_builtin: ClassVar[bool] = False
    #: ``stepscope report`` judges it (False: SageMaker-only, it reports but never fires)
    evaluated: ClassVar[bool] = True
    #: judged only when the job has a baseline run (``--baseline``): no row otherwise
    needs_baseline: ClassVar[bool] = False
    #: a SageMaker Debugger training rule (judged from training-health data; its Debugger
    #: rule container attached with ``stepscope attach --debugger``)
    debugger_builtin: ClassVar[bool] = False
    #: re-exported by smdebug_rulesconfig's ``rule_configs`` (False: only in ``profiler_rules``)
    in_rule_configs: ClassVar[bool] = True
    #: what the default rule file sets beyond the parameters' defaults, and the comment
    #: above its section (``rules.rule_file`` writes the file from these)
    rule_file_values: ClassVar[dict[str, Any]] = {}
    rule_file_note: ClassVar[str] = ""

    # -- how the outputs show it (read through ``stepscope.report.rule_info``) -------------
    #: the dashboard page whose chart shows its findings (one of ``PAGES``)
    page: ClassVar[str] = "overview"
    #: findings of this rule lead every output, ahead of every severity order (a hang:
    #: when the job hung, nothing else in the report matters as much)
    leads: ClassVar[bool] = False
    #: how a group of its findings reads, per evidence ``kind`` (None: any kind); a rule
    #: without one still groups, its line quoting its first finding
    group_figures: ClassVar[dict[str | None, GroupFigure]] = {}
    #: the system metric whose chart its flagged windows shade, and their colour
    shades_metric: ClassVar[str | None] = None
    window_color: ClassVar[str | None] = None
    #: what a page looks for among the findings (``straggler``: findings naming a rank that
    #: holds the others back; ``outlier_steps``: findings listing slow steps)
    marks: ClassVar[str | None] = None
    #: the Training health chart that shows its findings (training rules; ``chart_for``
    #: may move one finding to another chart)
    chart: ClassVar[str | None] = None

    #: how a finding's lost time is counted (the docs page's *Waste* line); empty: the
    #: rule's findings lose no time that can be measured, and :meth:`waste` says None
    waste_counts: ClassVar[str] = ""

    @classmethod
    def chart_for(cls, finding: Finding) -> str | None:
        return cls.chart

    @classmethod
    def waste(cls, finding: Finding) -> Waste | None:
        """The time ``finding`` loses, from its evidence (None: none measurable)."""
        return None

    def __init__(self) -> None:
        #: set by ``evaluate`` for the report (``RuleResult.details``); one instance per run
        self.details: dict[str, Any] = {}

    @abstractmethod
    def evaluate(self, job: Job, params: Any) -> list[Finding] | str:
        """Findings (empty when clean), or a string saying why the rule cannot judge."""

    def finding(
        self,
        *,
        title: str,
        message: str,
        evidence: dict[str, Any],
        where: str,
        severity: str | None = None,
    ) -> Finding:
        """A finding of this rule: its id, severity (the rule's default unless given) and
        recommendation filled in."""
        return Finding(
            rule=self.id,
            severity=severity or self.severity,
            title=title,
            message=message,
            evidence=evidence,
            recommendation=self.recommendation,
            where=where,
        )


class SageMakerOnlyRule(Rule):
    """A SageMaker built-in that summarises and never fires: ``stepscope attach`` puts it on
    SageMaker jobs so SageMaker's own report has it; ``stepscope report`` does not evaluate it."""

    sagemaker_builtin: ClassVar[bool] = True
    evaluated: ClassVar[bool] = False
    #: it raises no finding; the rule file still accepts a ``severity`` for it, like any rule
    severity: ClassVar[str] = "info"

    def evaluate(self, job: Job, params: Any) -> list[Finding] | str:
        return f"{self.id} runs only in SageMaker's rule container: it reports, it never fires"


class NotApplicable(Exception):
    """Raised by a rule when the job has no data it can judge."""


def iso(t: float | None) -> str | None:
    """Epoch seconds → ISO 8601 UTC (evidence is read by people and by JSON consumers)."""
    if t is None or t != t:
        return None
    import pandas as pd

    return pd.Timestamp(t, unit="s", tz="UTC").isoformat()
