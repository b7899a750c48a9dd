"""The job dataset: every table of one job plus its metadata. Later layers only read it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from analyzer.ingest.tables import TABLE_NAMES
from analyzer.sources.base import JobMetadata

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

# Starts before 2000-01-01 come from traces without an absolute clock (relative times).
_EPOCH_2000_NS = 946_684_800 * 10**9


def iso_ns(ns: int) -> str:
    """Epoch ns → ISO 8601 UTC with nanosecond digits when they are not zero."""
    secs, rem = divmod(ns, 1_000_000_000)
    base = datetime.fromtimestamp(secs, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if rem == 0:
        return base + "+00:00"
    frac = f"{rem:09d}"
    frac = frac[:6] if frac.endswith("000") else frac
    return f"{base}.{frac}+00:00"


def distinct_strings(col: pa.ChunkedArray) -> list[str]:
    """Distinct values of a string column; for dictionary columns straight from the
    dictionaries (ingest builds them from values that occur), without touching every row."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_dictionary(col.type):
        seen: set[str] = set()
        for chunk in col.chunks:
            seen.update(v for v in chunk.dictionary.to_pylist() if v is not None)
        return sorted(seen)
    return sorted(v for v in pc.unique(col.combine_chunks()).to_pylist() if v is not None)


@dataclass
class JobDataset:
    """``tables`` may open lazily (the cache memory-maps a table when it is first read).

    ``stats`` (rows, nodes, ranks, time span) are what :meth:`compute_stats` gave when the
    tables were merged, kept beside them in the cache: a summary of an unchanged job then
    reads no table. Without them they are computed from the tables.
    """

    meta: JobMetadata
    tables: Mapping[str, pa.Table] = field(default_factory=dict)
    stats: dict[str, Any] | None = None

    def table(self, name: str) -> pa.Table:
        """The named table, or an empty one with its schema (never a KeyError for known names)."""
        if name in self.tables:
            return self.tables[name]
        if name in TABLE_NAMES:
            from analyzer.ingest.schemas import empty_table

            return empty_table(name)
        raise KeyError(f"unknown table {name!r}; known: {', '.join(sorted(TABLE_NAMES))}")

    def to_pandas(self, name: str) -> pd.DataFrame:
        return self.table(name).to_pandas()  # pandas is imported by Arrow on demand

    @property
    def row_counts(self) -> dict[str, int]:
        known = (self.stats or {}).get("rows", {})
        return {
            name: known[name] if name in known else self.tables[name].num_rows if name in self.tables else 0
            for name in TABLE_NAMES
        }

    @property
    def nodes(self) -> list[str]:
        if self.stats is not None:
            return list(self.stats["nodes"])
        found: set[str] = set()
        for name, col in (("system_metrics", "node"), ("framework_events", "node"), ("kineto_traces", "node")):
            t = self.table(name)
            if t.num_rows:
                found.update(v for v in distinct_strings(t.column(col)) if v)
        return sorted(found)

    @property
    def ranks(self) -> list[int]:
        if self.stats is not None:
            return list(self.stats["ranks"])
        import pyarrow.compute as pc

        found: set[int] = set()
        for name in ("kineto_traces", "framework_events"):
            t = self.table(name)
            if t.num_rows:
                found.update(v for v in pc.unique(t.column("rank")).to_pylist() if v is not None)
        return sorted(found)

    def time_span(self) -> dict[str, Any] | None:
        """Earliest and latest absolute time seen in any table (epoch ns, ISO, seconds)."""
        if self.stats is not None:
            span: dict[str, Any] | None = self.stats["time_span"]
            return None if span is None else dict(span)
        import pyarrow as pa
        import pyarrow.compute as pc

        lows: list[int] = []
        highs: list[int] = []
        sm = self.table("system_metrics")
        if sm.num_rows:
            ts = sm.column("timestamp").cast(pa.int64())
            lows.append(pc.min(ts).as_py() * 1000)
            highs.append(pc.max(ts).as_py() * 1000)
        for name in ("kineto_events", "framework_events"):
            t = self.table(name)
            if not t.num_rows:
                continue
            start = t.column("start_ns")
            start = pc.filter(start, pc.greater_equal(start, _EPOCH_2000_NS))
            if len(start) == 0:
                continue
            end = pc.add(t.column("start_ns"), pc.fill_null(t.column("dur_ns"), 0))
            end = pc.filter(end, pc.greater_equal(t.column("start_ns"), _EPOCH_2000_NS))
            lows.append(pc.min(start).as_py())
            highs.append(pc.max(end).as_py())
        if not lows:
            return None
        lo, hi = min(lows), max(highs)
        return {
            "start_ns": lo,
            "end_ns": hi,
            "start": iso_ns(lo),
            "end": iso_ns(hi),
            "seconds": round((hi - lo) / 1e9, 6),
        }

    def compute_stats(self) -> dict[str, Any]:
        """Rows per table, nodes, ranks and time span, from the tables themselves."""
        bare = JobDataset(self.meta, self.tables)
        return {
            "rows": {name: t.num_rows for name, t in self.tables.items()},
            "nodes": bare.nodes,
            "ranks": bare.ranks,
            "time_span": bare.time_span(),
        }
