"""Errors meant for the user: each carries a one-line message and never a traceback.

The CLI catches :class:`StepscopeError` and prints ``stepscope: error: <message>``; anything
else that escapes is a bug. Exit code 2 follows the CLI contract (bad usage or unreadable
input).
"""

from __future__ import annotations


class StepscopeError(Exception):
    """A failure the user can act on, explained in one line."""

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message.strip().splitlines()[0] if message.strip() else "unknown error"
        self.hint = hint
        super().__init__(self.message)

    def one_line(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class SourceError(StepscopeError):
    """The source could not be opened or listed (missing folder, job, bucket, credentials)."""


class UnsafePathError(StepscopeError):
    """A key or file name would resolve outside the folder it must stay in."""
