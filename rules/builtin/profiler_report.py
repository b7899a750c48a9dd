"""ProfilerReport — SageMaker built-in rule that runs the others and writes SageMaker's report
(SageMaker only)."""

from __future__ import annotations

from typing import ClassVar

from rules.base import SageMakerOnlyRule
from rules.params import RuleParams


class ProfilerReportParams(RuleParams):
    """ProfilerReport runs every built-in rule; its parameters are ``<Rule>_<param>`` overrides,
    which stepscope fills in from the rule file rather than asking for them twice."""


class ProfilerReport(SageMakerOnlyRule):
    id: ClassVar[str] = "ProfilerReport"
    title: ClassVar[str] = "SageMaker's profiler report"
    checks: ClassVar[str] = (
        "Nothing of its own: in SageMaker's rule container it runs every built-in "
        "rule above, with this file's values for them as its `<Rule>_<param>` "
        "parameters, and writes SageMaker's profiler report (HTML and notebook) and "
        "one verdict file per rule under the job's `rule-output/ProfilerReport/`."
    )
    why: ClassVar[str] = (
        "SageMaker pools all nodes' samples; with its verdict files in the "
        "job's output, `stepscope report` puts each beside its own per-node "
        "verdict (`sagemaker_rule_reports`), so the two can be compared."
    )
    recommendation: ClassVar[str] = (
        "Open `rule-output/ProfilerReport/profiler-output/profiler-report.html` "
        "in the job's output; where SageMaker and stepscope disagree, the "
        "evidence names the node or GPU SageMaker's pooled view missed."
    )
    params_model: ClassVar[type[RuleParams]] = ProfilerReportParams
