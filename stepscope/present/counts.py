"""How many findings a report has, in the same words on every surface.

A finding that several places share (one rule, one pattern, "all 64 ranks") is one line in
every output; its places are counted beside it: "2 findings (3 places)". The CLI, report.md,
report.html, the JUnit file and the Overview all say it this way."""

from __future__ import annotations

__all__ = ["findings_text"]


def _n(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def findings_text(findings: int, places: int) -> str:
    """``"2 findings (3 places)"``; ``"1 finding"`` when each finding is one place."""
    head = _n(findings, "finding")
    return head if places == findings else f"{head} ({_n(places, 'place')})"
