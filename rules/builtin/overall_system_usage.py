"""OverallSystemUsage — SageMaker built-in rule that summarises and never fires (SageMaker only)."""

from __future__ import annotations

from typing import ClassVar

from rules.base import SageMakerOnlyRule
from rules.params import BuiltinParams, RuleParams


class OverallSystemUsageParams(BuiltinParams):
    """Only the scan interval: SageMaker's rule has no threshold to set."""


class OverallSystemUsage(SageMakerOnlyRule):
    id: ClassVar[str] = "OverallSystemUsage"
    page: ClassVar[str] = "system"
    title: ClassVar[str] = "System usage per node (SageMaker's summary)"
    checks: ClassVar[str] = (
        "Nothing it could fail on: in SageMaker's rule container it "
        "summarises each node's CPU, GPU, GPU memory, I/O wait and network "
        "usage (percentiles per node) for SageMaker's profiler report."
    )
    why: ClassVar[str] = (
        "SageMaker's profiler report and Studio's Debugger insights read that summary; "
        "`stepscope report` computes the same figures per node and GPU itself (`metrics.nodes`)."
    )
    recommendation: ClassVar[str] = (
        "Read it in SageMaker's profiler report next to the rules that fired; disable "
        "it in the rule file (`enabled = false`) to run one rule container fewer."
    )
    params_model: ClassVar[type[RuleParams]] = OverallSystemUsageParams
