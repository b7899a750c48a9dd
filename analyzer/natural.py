"""The one natural sort key: names with numbers in them sort by the numbers' values.

Why one: nodes (``algo-2`` before ``algo-10``), ranks, GPUs, CloudWatch hosts and report
places are all sorted this way, and three copies of the key had drifted (one compared
text with numbers when two names split differently).
"""

from __future__ import annotations

import re

__all__ = ["natural_key"]

_DIGITS = re.compile(r"(\d+)")


def natural_key(text: str) -> tuple[str | int, ...]:
    """Sort key reading numbers as numbers: "rank 9" before "rank 10", "algo-2" before
    "algo-10". The parts alternate text and number (``re.split`` with a group puts the
    numbers at odd positions), so any two keys compare."""
    return tuple(int(p) if i % 2 else p for i, p in enumerate(_DIGITS.split(text)))
