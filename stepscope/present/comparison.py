"""How a baseline comparison reads, in every output: the move as its tolerance counts it
(points for shares, % for times and rates) and the tolerance in words, never the rule's
internal codes (``pct_up``, ``points_down``)."""

from __future__ import annotations

from stepscope.report.model import Comparison

__all__ = ["change", "tolerance_text"]


def change(c: Comparison) -> str:
    """``+12.0 points`` for a share, ``+3.4%`` otherwise; ``–`` where unknown."""
    if c.tolerance_kind.startswith("points"):
        return "–" if c.change_points is None else f"{c.change_points:+.1f} points"
    return "–" if c.change_pct is None else f"{c.change_pct:+.1f}%"


def tolerance_text(c: Comparison) -> str:
    """``at most +10 %`` / ``at most -5 points``: how far the metric may move the worse way."""
    unit = " points" if c.tolerance_kind.startswith("points") else " %"
    sign = "+" if c.tolerance_kind.endswith("_up") else "-"
    return f"at most {sign}{c.tolerance:g}{unit}"
