"""One colour per rank, the same in report.html and in every dashboard chart.

Why fixed by rank id rather than by trace order: a chart draws the ranks a filter left, so
"the third trace" is rank 2 in one chart and rank 5 in the next; rank 5 is always
``rank_color(5)``. The colours are Vega's category10 (tableau10), the set the dashboard's step
timeline already draws with.
"""

from __future__ import annotations

import re

__all__ = ["RANK_COLORS", "rank_color", "rank_of_label"]

RANK_COLORS = (
    "#4c78a8",
    "#f58518",
    "#e45756",
    "#72b7b2",
    "#54a24b",
    "#eeca3b",
    "#b279a2",
    "#ff9da6",
    "#9d755d",
    "#bab0ac",
)

_LABEL = re.compile(r"^rank (\d+)\b")


def rank_color(rank: int) -> str:
    return RANK_COLORS[int(rank) % len(RANK_COLORS)]


def rank_of_label(label: object) -> int | None:
    """The rank a chart label names ("rank 3", "rank 3 gpu0", "rank 3 ⚠ straggler"), else None."""
    m = _LABEL.match(label) if isinstance(label, str) else None
    return int(m.group(1)) if m else None
