"""Which words of a finding's text are code: one answer for every output that shows it.

Why here, in the report layer: report.md, report.html and the dashboard all show the same
messages and recommendations ("raise DataLoader num_workers ... out of __getitem__").
Rendered as Markdown, ``__getitem__`` turns into a bold "getitem"; escaped instead, it reads
``\\_\\_getitem\\_\\_`` in a plain-text viewer. In a code span it is neither. The outputs
must not import one another, so the split lives below them all.
"""

from __future__ import annotations

import re

__all__ = ["code_segments", "with_code_spans"]

_PART = r"[A-Za-z_]\w*"
#: a code span the text already has (`enabled = false`)
_SPAN = r"`[^`\n]+`"
#: a name: parts joined by ``.``, ``:`` or ``::`` (torch.compile, at::native::kernel),
#: optionally called (``.item()``) or set (``pin_memory=True``)
_NAME = (
    rf"\.?{_PART}(?:(?:\.|::?){_PART})*"
    r"(?P<call>\(\))?"
    r"(?P<value>=(?:True|False|None|\d+(?:\.\d+)?)(?![\w.]))?"
)
#: an absolute or S3 path (/opt/ml/output/tensorboard, s3://bucket/prefix)
_PATH = r"(?:s3://|/)(?=[\w-])[\w.\-/]*[\w/]"
_TOKEN = re.compile(
    rf"(?P<span>{_SPAN})"
    rf"|(?<![\w.`\\:/-])(?P<path>{_PATH})(?![\w`])"
    rf"|(?<![\w.`\\:-])(?P<name>{_NAME})(?![\w`]|[.:]\w)"
)


def _is_code(m: re.Match[str]) -> bool:
    """Whether a matched name reads as code rather than as a word of the sentence: a call, a
    snake_case or dunder name, a C++ ``::`` name, or a dotted name of real words
    (``torch.compile``; not ``e.g``)."""
    name = m.group("name")
    if m.group("call"):
        return True
    bare = name.lstrip(".")
    if "_" in bare and re.search(r"[A-Za-z]", bare):
        return True
    if "::" in bare:
        return True
    parts = bare.split(".")
    return len(parts) > 1 and all(len(p) > 1 and re.search(r"[a-z_]", p) for p in parts)


def code_segments(text: str) -> list[tuple[str, bool]]:
    """``text`` as (piece, is_code) in order; code pieces carry no backticks. Code is what
    the text already put in backticks, names (``num_workers``, ``__getitem__``,
    ``pin_memory=True``, ``.item()``, ``torch.cuda.memory_summary()``) and paths."""
    out: list[tuple[str, bool]] = []
    pos = 0
    for m in _TOKEN.finditer(text):
        if m.group("span"):
            code = m.group("span")[1:-1]
        elif m.group("path") or _is_code(m):
            code = m.group(0)
        else:
            continue
        if m.start() > pos:
            out.append((text[pos : m.start()], False))
        out.append((code, True))
        pos = m.end()
    if pos < len(text):
        out.append((text[pos:], False))
    return out


def with_code_spans(text: str) -> str:
    """``text`` with its code in backticks and nothing else changed: for an output that
    renders the rest as Markdown itself (the dashboard's ``st.markdown``)."""
    return "".join(f"`{piece}`" if code else piece for piece, code in code_segments(text))
