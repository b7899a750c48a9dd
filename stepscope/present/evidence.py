"""A finding's evidence as a person reads it: one row per figure, the value in words.

Why: the evidence dict is report.json's contract (numbers, lists, nested records); on a
page it should read as a small table of what the rule measured, not as raw JSON."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["evidence_rows"]

#: items of a list shown before "… and N more"
MAX_ITEMS = 8


def _text(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, Mapping):
        return "; ".join(f"{k}: {_text(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        shown = ", ".join(_text(v) for v in value[:MAX_ITEMS])
        more = len(value) - MAX_ITEMS
        return shown + (f" … and {more} more" if more > 0 else "")
    return str(value)


def evidence_rows(evidence: Mapping[str, Any]) -> list[dict[str, str]]:
    """``[{"figure": "mean wait ms", "value": "50.2"}, ...]`` in the evidence's order."""
    return [{"figure": key.replace("_", " "), "value": _text(v)} for key, v in evidence.items()]
