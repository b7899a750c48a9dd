"""Escaping for strings that come from traces (kernel names hold ``<``, ``>``, ``&``, ``|``).

Why minimal: report.md is read as plain text as often as rendered (a CI log, ``cat``, a
diff), so it escapes only what Markdown would misread, where it would misread it: ``|``
(a table cell ends), ``<`` that would open an HTML tag, ``&`` that would spell an entity,
``*`` / ``_`` / ``~`` / ``$`` (emphasis, strikethrough, GitHub math), a backtick, a
backslash before punctuation, ``](`` (a link), and a line start Markdown reads as a heading,
quote or list. ``(54.3% > 20.0%)`` and ``+1458%`` stay as they are; names go in code spans
(:func:`md_prose`, split by :mod:`stepscope.report.text`, the dashboard's split too).
"""

from __future__ import annotations

import html
import re

from stepscope.report.text import code_segments

_MD_ESCAPE = re.compile(
    r"(?P<backslash>\\(?=[!-/:-@\[-`{-~]))"
    r"|(?P<lt><(?=[A-Za-z/!?]))"
    r"|(?P<amp>&(?=#?\w+;))"
    r"|(?P<underscore>(?<![A-Za-z0-9])_|_(?![A-Za-z0-9]))"
    r"|(?P<char>[`*~$|]|\[(?=\^)|\](?=[(\[:]))"
)
#: how a line may start that Markdown reads as a heading, a quote or a list item
_LINE_START = re.compile(r"^(?:[#>]|[-+=](?=\s|$)|\d+(?=[.)](?:\s|$)))")


def _escape_one(m: re.Match[str]) -> str:
    if m.group("lt"):
        return "&lt;"
    if m.group("amp"):
        return "&amp;"
    return "\\" + m.group(0)


def _flat(text: object) -> str:
    """One line: a newline would end a table row (or a list item)."""
    return str(text).replace("\r", " ").replace("\n", " ")


def _escape(s: str, *, at_line_start: bool) -> str:
    out = _MD_ESCAPE.sub(_escape_one, s)
    if at_line_start:
        m = _LINE_START.match(out)
        if m:
            # "1. x" -> "1\. x"; "# x" -> "\# x"
            out = out[: m.end()] + "\\" + out[m.end() :] if m.group(0)[0].isdigit() else "\\" + out
    return out


def md(text: object) -> str:
    """Safe inside a Markdown paragraph or table cell, as readable as the text allows
    (names, paths, kernel names: no code spans)."""
    return _escape(_flat(text), at_line_start=True)


def md_code(text: object, *, table: bool = True) -> str:
    """An inline code span that survives backticks inside the text, and pipes inside a
    table cell (GFM unescapes ``\\|`` in cells only: elsewhere it would show)."""
    s = _flat(text)
    if table:
        s = s.replace("|", "\\|")
    fence = "``" if "`" in s else "`"
    return f"{fence} {s} {fence}" if fence == "``" else f"`{s}`"


def md_prose(text: object, *, table: bool = True) -> str:
    """A finding's message, recommendation or reason: names in code spans
    (``num_workers``, ``__getitem__``), the rest as :func:`md`."""
    parts = []
    for i, (piece, code) in enumerate(code_segments(_flat(text))):
        parts.append(md_code(piece, table=table) if code else _escape(piece, at_line_start=i == 0))
    return "".join(parts)


def h(text: object) -> str:
    return html.escape(str(text), quote=True)


def h_prose(text: object) -> str:
    """:func:`md_prose` for HTML: names in ``<code>``, everything escaped."""
    return "".join(
        f"<code>{h(piece)}</code>" if code else h(piece) for piece, code in code_segments(str(text))
    )
