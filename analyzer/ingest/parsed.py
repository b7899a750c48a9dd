"""What one parser returns for one file: its tables plus anything it had to skip."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa


class UnreadableFile(Exception):
    """The whole file is unusable (nothing good in it): the pipeline records a skip."""


@dataclass
class ParsedFile:
    tables: dict[str, pa.Table] = field(default_factory=dict)
    # Partial damage that did not lose the good records, e.g. "2 malformed lines skipped".
    warnings: list[str] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(t.num_rows for t in self.tables.values())


class NotAProfilerFile(Exception):
    """Readable, but not a format stepscope ingests (e.g. a JSON file that is no trace)."""


def json_object(data: bytes, what: str) -> dict[str, Any]:
    """``data`` as a JSON object, else :class:`UnreadableFile` saying ``what`` it was not."""
    import orjson

    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise UnreadableFile(f"{what} is not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise UnreadableFile(f"{what} is not a JSON object")
    return doc
