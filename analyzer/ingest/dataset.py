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


@dataclass(frozen=True)
class RankParts:
    """Where each rank's Kineto events are: the cache's Parquet parts, never one merged table.

    Why: a job's events grow with its rank count (tens of MB per rank), so ingest keeps them
    per rank and the analyses map over ranks (:mod:`analyzer.analyses.rank_map`), reading one
    rank at a time. ``parts`` maps a rank to its ``kineto_events`` parts (absolute paths or
    ``s3://`` URLs, in the order of their objects' keys); ``rows`` (also per rank) and
    ``span`` (earliest start and latest end of the events with an absolute clock, epoch ns)
    are what the dataset's statistics need.
    ``processes`` / ``jobs``: how many worker processes the map may use (the command line
    allows them; a library caller such as the dashboard keeps the map in its own process).
    """

    parts: Mapping[int, tuple[str, ...]]
    rows: int = 0
    #: events per rank (how the map batches ranks)
    rows_by_rank: Mapping[int, int] = field(default_factory=dict)
    span: tuple[int, int] | None = None
    processes: bool = False
    jobs: int = 4

    @property
    def ranks(self) -> list[int]:
        return sorted(self.parts)

    def read(self, rank: int) -> pa.Table:
        """One rank's events (its parts concatenated), empty for a rank without any."""
        return self.read_parts(self.parts.get(rank, ()))

    @staticmethod
    def read_parts(locations: tuple[str, ...]) -> pa.Table:
        """``kineto_events`` parts by location (local paths or ``s3://`` URLs, as the cache
        gives them) in one table: what any process that maps ranks reads them with."""
        import pyarrow as pa

        from analyzer.ingest.cache import read_parquet_at
        from analyzer.ingest.schemas import KINETO_EVENTS

        pieces = [read_parquet_at(p) for p in locations]
        pieces = [p.cast(KINETO_EVENTS) if p.schema != KINETO_EVENTS else p for p in pieces]
        if not pieces:
            return KINETO_EVENTS.empty_table()
        return pieces[0] if len(pieces) == 1 else pa.concat_tables(pieces).unify_dictionaries()


@dataclass
class JobDataset:
    """``tables`` may open lazily (the cache memory-maps a table when it is first read).

    ``stats`` (rows, nodes, ranks, time span) are what :meth:`compute_stats` gave when the
    tables were merged, kept beside them in the cache: a summary of an unchanged job then
    reads no table. Without them they are computed from the tables.

    ``rank_parts``: set by ingest, the Kineto events stay in per-rank parts and
    ``kineto_events`` is in no merged table; :meth:`table` still gives all of it (for callers
    that need every rank at once), counted in ``merged_reads``: the report path never asks.
    """

    meta: JobMetadata
    tables: Mapping[str, pa.Table] = field(default_factory=dict)
    stats: dict[str, Any] | None = None
    rank_parts: RankParts | None = None
    #: how many times every rank's events were concatenated into one table
    merged_reads: int = 0

    def table(self, name: str) -> pa.Table:
        """The named table, or an empty one with its schema (never a KeyError for known names)."""
        if name in self.tables:
            return self.tables[name]
        if name == "kineto_events" and self.rank_parts is not None and self.rank_parts.parts:
            return self._all_rank_events()
        if name in TABLE_NAMES:
            from analyzer.ingest.schemas import empty_table

            return empty_table(name)
        raise KeyError(f"unknown table {name!r}; known: {', '.join(sorted(TABLE_NAMES))}")

    def _all_rank_events(self) -> pa.Table:
        """Every rank's events in one table: memory grows with the ranks, so it is not kept."""
        import pyarrow as pa

        assert self.rank_parts is not None
        self.merged_reads += 1
        pieces = [self.rank_parts.read(r) for r in self.rank_parts.ranks]
        return pa.concat_tables(pieces).unify_dictionaries()

    def rank_events(self, rank: int) -> pa.Table:
        """One rank's Kineto events, read from that rank's parts alone."""
        if "kineto_events" not in self.tables and self.rank_parts is not None:
            return self.rank_parts.read(rank)
        import pyarrow.compute as pc

        t = self.table("kineto_events")
        return t.filter(pc.equal(t.column("rank"), rank))

    @property
    def kineto_ranks(self) -> list[int]:
        """The ranks with Kineto events (without reading any event)."""
        if "kineto_events" not in self.tables and self.rank_parts is not None:
            return self.rank_parts.ranks
        import pyarrow.compute as pc

        t = self.table("kineto_events")
        return (
            sorted(int(r) for r in pc.unique(t.column("rank")).to_pylist() if r is not None)
            if t.num_rows
            else []
        )

    def to_pandas(self, name: str) -> pd.DataFrame:
        return self.table(name).to_pandas()  # pandas is imported by Arrow on demand

    @property
    def row_counts(self) -> dict[str, int]:
        known = dict((self.stats or {}).get("rows", {}))
        if (
            "kineto_events" not in known
            and "kineto_events" not in self.tables
            and self.rank_parts is not None
        ):
            known["kineto_events"] = self.rank_parts.rows
        return {
            name: known[name]
            if name in known
            else self.tables[name].num_rows
            if name in self.tables
            else 0
            for name in TABLE_NAMES
        }

    @property
    def nodes(self) -> list[str]:
        if self.stats is not None:
            return list(self.stats["nodes"])
        found: set[str] = set()
        for name, col in (
            ("system_metrics", "node"),
            ("framework_events", "node"),
            ("kineto_traces", "node"),
        ):
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
        if (
            "kineto_events" not in self.tables
            and self.rank_parts is not None
            and self.rank_parts.span is not None
        ):
            lows.append(self.rank_parts.span[0])
            highs.append(self.rank_parts.span[1])
        for name in ("kineto_events", "framework_events"):
            if name == "kineto_events" and name not in self.tables and self.rank_parts is not None:
                continue  # its span came with the parts
            t = self.table(name)
            if not t.num_rows:
                continue
            found = event_span(t)
            if found is not None:
                lows.append(found[0])
                highs.append(found[1])
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
        """Rows per table, nodes, ranks and time span, from the tables themselves (and the
        rank parts' own counts: no event is read for them)."""
        bare = JobDataset(self.meta, self.tables, rank_parts=self.rank_parts)
        rows = {name: t.num_rows for name, t in self.tables.items()}
        if self.rank_parts is not None and "kineto_events" not in rows:
            rows["kineto_events"] = self.rank_parts.rows
        return {
            "rows": rows,
            "nodes": bare.nodes,
            "ranks": bare.ranks,
            "time_span": bare.time_span(),
        }


def event_span(t: pa.Table) -> tuple[int, int] | None:
    """Earliest start and latest end (epoch ns) of the events of ``t`` that have an absolute
    clock (start after 2000-01-01); None when none has."""
    import pyarrow.compute as pc

    if t.num_rows == 0:
        return None
    start = t.column("start_ns")
    absolute = pc.fill_null(pc.greater_equal(start, _EPOCH_2000_NS), False)
    start = pc.filter(start, absolute)
    if len(start) == 0:
        return None
    end = pc.filter(pc.add(t.column("start_ns"), pc.fill_null(t.column("dur_ns"), 0)), absolute)
    return int(pc.min(start).as_py()), int(pc.max(end).as_py())
