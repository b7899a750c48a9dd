"""Escaping for strings that come from traces (kernel names hold ``<``, ``>``, ``&``, ``|``)."""

from __future__ import annotations

import html
import re

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|~>])")


def md(text: object) -> str:
    """Safe inside a Markdown paragraph or table cell: HTML-escaped, Markdown specials escaped,
    newlines flattened (a newline would end a table row)."""
    s = html.escape(str(text), quote=False).replace("\r", " ").replace("\n", " ")
    return _MD_SPECIAL.sub(r"\\\1", s)


def md_code(text: object) -> str:
    """An inline code span that survives backticks and pipes inside the text."""
    s = str(text).replace("\n", " ").replace("|", "\\|")
    fence = "``" if "`" in s else "`"
    return f"{fence} {s} {fence}" if fence == "``" else f"`{s}`"


def h(text: object) -> str:
    return html.escape(str(text), quote=True)
