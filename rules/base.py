"""What a rule produces: findings with evidence, and a per-rule result.

Kept apart from the engine so that rule modules import only this (and the engine imports
the rules): no import cycle between the engine and ``rules/builtin``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

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


class NotApplicable(Exception):
    """Raised by a rule when the job has no data it can judge."""


def iso(t: float | None) -> str | None:
    """Epoch seconds → ISO 8601 UTC (evidence is read by people and by JSON consumers)."""
    if t is None or t != t:
        return None
    import pandas as pd

    return pd.Timestamp(t, unit="s", tz="UTC").isoformat()
