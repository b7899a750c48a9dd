"""What every rule's parameters share: pydantic validation, and SageMaker's scan interval.

Each rule's own parameter model lives in the rule's module (``rules/builtin/<rule>.py``)
beside its thresholds' use. The SageMaker Debugger built-in rules keep SageMaker's own
parameter names and the SDK's defaults (``smdebug_rulesconfig.profiler_rules.rules``, as
shipped with the SageMaker Python SDK), so one rule file configures both SageMaker's rule
containers and ``stepscope report``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

SCAN_INTERVAL_US = 60 * 1000 * 1000


class RuleParams(BaseModel):
    """Common base: unknown keys are errors (a typo must not silently keep a default)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, strict=True)


class BuiltinParams(RuleParams):
    """Base of SageMaker's built-in rules: they all run on SageMaker's scan schedule."""

    scan_interval_us: int = Field(
        SCAN_INTERVAL_US,
        gt=0,
        description="How often SageMaker's rule container scans new data (µs).",
    )
