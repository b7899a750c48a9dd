"""Every rank of a job on one timeline, as Chrome trace JSON that Perfetto's UI opens.

Why: a question about *when* (which rank was late at step 7, what it was doing while the
others waited) is answered by looking at all ranks side by side, and no one opens 512 trace
files at once, each on its own host's clock. This turns the job into one file: one process
per rank, its threads and CUDA streams as threads, every time moved onto one clock by the
cross-rank analysis' clock offsets, and stepscope's own conclusions as tracks beside them
(who held the others back in each step, each rank's wait, the findings as markers).

Why here, in the presentation layer: it reads the measurements (the :class:`~analyzer.job.Job`)
and the report's findings and lays them out for a viewer, like the figure builders beside it;
two outputs use it, ``stepscope export`` and the dashboard's download, and outputs never
import each other.

Memory: one rank's events at a time (:meth:`Job.rank_events`), encoded and written in
chunks, so a 512-rank export needs what one rank needs plus the cross-rank tables.

What the file holds, and how it reads back (docs/cli-export.md):

* each event keeps its name, category, phase, duration and the arguments stepscope's cache
  keeps (correlation, External id, device, stream, the collective's arguments, the
  allocator's); ``pid`` is the rank, ``tid`` a thread id unique in the file (``rank * 10000
  + n``), named after the original thread or ``GPU d · stream s``;
* ``ts`` is in µs from ``baseTimeNanoseconds`` (the export's earliest time, on the clock of
  the reference rank), so stepscope's Kineto ingest and HTA's parser read the times back;
* it is one trace, not a job: stepscope reads it as one file of rank ``distributedInfo.rank``
  (the lowest rank exported) whose ``pid`` column says each event's real rank.
"""

from __future__ import annotations

import datetime as dt
import functools
import gzip
import io
import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import msgspec
import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from analyzer import __version__
from analyzer.analyses.cross_rank import CAUSE_LABELS, CAUSE_SHORT, CAUSES
from analyzer.errors import StepscopeError

if TYPE_CHECKING:
    from analyzer.job import Job
    from rules.base import Finding

#: the processes of stepscope's own tracks (far above any rank, so never a rank's pid)
CULPRIT_PID = 1_000_000_000
FINDINGS_PID = 1_000_000_001
CRITICAL_PATH_PID = 1_000_000_002
#: thread ids of those processes' tracks (above every rank's ``rank * 10000 + n``)
_TRACK_TID = 1_500_000_000
CULPRIT_TID = _TRACK_TID
FINDINGS_TID = _TRACK_TID + 1
CRITICAL_PATH_TID = _TRACK_TID + 2
_WAIT_TID0 = _TRACK_TID + 10  # + rank: that rank's waits
#: threads per rank at most (a rank's thread ids are ``rank * THREADS_PER_RANK + n``)
THREADS_PER_RANK = 10_000
#: events encoded per write
CHUNK = 20_000
#: categories of the events a GPU runs (their pid is the device, their tid the stream)
GPU_CATS = frozenset(
    {"kernel", "gpu_memcpy", "gpu_memset", "gpu_user_annotation", "cuda_profiler_range"}
)
#: the event table's argument columns and the names Kineto gives them (what the ingest reads)
ARG_NAMES = {
    "correlation": "correlation",
    "external_id": "External id",
    "device": "device",
    "stream": "stream",
    "collective": "Collective name",
    "in_msg_nelems": "In msg nelems",
    "out_msg_nelems": "Out msg nelems",
    "group_size": "Group size",
    "dtype": "dtype",
    "process_group": "Process Group Name",
    "mem_bytes": "Bytes",
    "mem_total_allocated": "Total Allocated",
    "mem_total_reserved": "Total Reserved",
    # cuda_sync rows, where the cache has them (what HTA's critical path reads)
    "wait_on_stream": "wait_on_stream",
    "wait_on_correlation": "wait_on_cuda_event_record_corr_id",
}
#: finding evidence keys that name a step, and a time (ISO), in the order they are tried
_STEP_KEYS = ("step", "worst_step", "first_step", "step_range", "last_in_steps")
_TIME_KEYS = ("worst_window_start", "window_start")

ProgressFn = Callable[[str, int, int], None]


class Sink(Protocol):
    """Where the timeline goes: a binary file, a gzip file, a buffer."""

    def write(self, data: bytes, /) -> object: ...


PROGRESS_PHASE = "writing the timeline (ranks)"


@dataclass
class ExportSummary:
    """What was written: the caller's one line, the tests' checks."""

    ranks: list[int]
    events: int = 0
    #: bytes of JSON written (before any compression)
    json_bytes: int = 0
    #: per rank, the clock offset subtracted (ns; 0 where none was estimated)
    offsets_ns: dict[int, int] = field(default_factory=dict)
    steps: tuple[int, int] | None = None
    culprit_steps: int = 0
    waits: int = 0
    findings: int = 0
    critical_path_segments: int = 0
    base_time_ns: int = 0

    @property
    def skew_ns(self) -> int:
        vals = list(self.offsets_ns.values())
        return max(vals) - min(vals) if vals else 0


@dataclass(frozen=True)
class _Plan:
    """What is decided before the first byte: ranks, clocks, the window and the time base."""

    ranks: list[int]
    nodes: dict[int, str | None]
    offsets: dict[int, int]
    estimated: bool
    #: per rank, the window on its own clock (inclusive start, end); None: everything
    windows: dict[int, tuple[int, int]] | None
    steps: tuple[int, int] | None
    #: per step in the window, its extent on the common clock (earliest start, latest end)
    step_extents: dict[int, tuple[int, int]]
    #: per (rank, step), its start on the common clock
    rank_step_starts: dict[tuple[int, int], int]
    base_ns: int


# -- the plan ---------------------------------------------------------------------------


def _step_bounds(steps: pd.DataFrame, window: tuple[int | None, int | None]) -> tuple[int, int]:
    """``A:B`` with open ends closed at the job's first and last profiled step."""
    if steps.empty:
        raise StepscopeError(
            "--steps: the traces have no step annotations (ProfilerStep#N) to pick a window by"
        )
    first, last = int(steps["step"].min()), int(steps["step"].max())
    lo = first if window[0] is None else window[0]
    hi = last if window[1] is None else window[1]
    if lo > hi:
        raise StepscopeError(f"--steps {lo}:{hi}: the first step is after the last")
    have = steps[(steps["step"] >= lo) & (steps["step"] <= hi)]
    if have.empty:
        raise StepscopeError(
            f"--steps {lo}:{hi}: no profiled step in that window (the traces have steps "
            f"{first}-{last})"
        )
    return lo, hi


def plan(
    job: Job,
    *,
    ranks: Sequence[int] | None = None,
    steps: tuple[int | None, int | None] | None = None,
) -> _Plan:
    """The ranks, the clock offsets, the window on each rank's clock and the time base
    (:class:`StepscopeError` for a rank the job does not have or a window with no step)."""
    have = job.kineto_ranks
    if not have:
        raise StepscopeError(
            "no PyTorch profiler (Kineto) traces in the source: nothing to put on a timeline"
        )
    if ranks:
        missing = sorted(set(ranks) - set(have))
        if missing:
            raise StepscopeError(
                f"--ranks: no trace of rank{'s' if len(missing) > 1 else ''} "
                f"{', '.join(map(str, missing[:10]))}{', ...' if len(missing) > 10 else ''} "
                f"(the traces are of ranks {_ranges(have)})"
            )
        chosen = sorted(set(ranks))
    else:
        chosen = list(have)
    traces = job.dataset.table("kineto_traces")
    info = traces.to_pandas() if traces.num_rows else pd.DataFrame(columns=["rank"])
    nodes = {
        int(r): (None if pd.isna(n) else str(n))
        for r, n in zip(info["rank"], info.get("node", [None] * len(info)), strict=True)
    }
    cross = job.cross_rank()
    pairs = zip(cross.offsets["rank"], cross.offsets["offset_ns"], strict=True)
    known = {int(r): int(o) for r, o in pairs}
    offsets = {r: known.get(r, 0) for r in chosen}
    all_steps = job.kineto_steps()
    all_steps = all_steps.assign(
        start_c=all_steps["start_ns"] - all_steps["rank"].map(lambda r: known.get(int(r), 0)),
    )
    all_steps["end_c"] = all_steps["start_c"] + all_steps["dur_ns"].fillna(0).astype(np.int64)
    windows: dict[int, tuple[int, int]] | None = None
    bounds: tuple[int, int] | None = None
    in_window = all_steps
    if steps is not None:
        bounds = _step_bounds(all_steps, steps)
        in_window = all_steps[(all_steps["step"] >= bounds[0]) & (all_steps["step"] <= bounds[1])]
        lo_c, hi_c = int(in_window["start_c"].min()), int(in_window["end_c"].max())
        windows = {}
        for r in chosen:
            mine = in_window[in_window["rank"] == r]
            if mine.empty:  # a rank without those steps: the others' window, on its clock
                windows[r] = (lo_c + offsets[r], hi_c + offsets[r])
            else:
                windows[r] = (int(mine["start_ns"].min()), int(mine["end_c"].max() + offsets[r]))
    extents = {
        int(s): (int(g["start_c"].min()), int(g["end_c"].max()))
        for s, g in in_window.groupby("step")
    }
    rank_starts = {
        (int(r), int(s)): int(c)
        for r, s, c in zip(in_window["rank"], in_window["step"], in_window["start_c"], strict=True)
    }
    if windows is not None:
        base = min(lo - offsets[r] for r, (lo, _) in windows.items())
    else:
        starts = dict(zip(info["rank"].astype(int), info.get("start_ns", []), strict=True))
        known_starts = [
            int(starts[r]) - offsets[r] for r in chosen if r in starts and pd.notna(starts[r])
        ]
        base = min(known_starts) if known_starts else 0
    return _Plan(
        ranks=chosen,
        nodes=nodes,
        offsets=offsets,
        estimated=bool(known),
        windows=windows,
        steps=bounds,
        step_extents=extents,
        rank_step_starts=rank_starts,
        base_ns=base,
    )


def _ranges(ranks: Sequence[int]) -> str:
    """0, 1, 2, 5 → "0-2, 5"."""
    out: list[str] = []
    rs = sorted(ranks)
    i = 0
    while i < len(rs):
        j = i
        while j + 1 < len(rs) and rs[j + 1] == rs[j] + 1:
            j += 1
        out.append(str(rs[i]) if i == j else f"{rs[i]}-{rs[j]}")
        i = j + 1
    return ", ".join(out)


# -- the rank processes -----------------------------------------------------------------


def _column(table: pa.Table, name: str) -> list[Any]:
    """A column as a Python list, fast: a dictionary column by its few distinct values, an
    integer column through numpy (its nulls read as 0: callers look at valid rows only)."""
    col = table.column(name)
    if pa.types.is_dictionary(col.type):
        arr = col.unify_dictionaries().combine_chunks()
        values = np.array([*arr.dictionary.to_pylist(), None], dtype=object)
        idx = arr.indices.fill_null(len(values) - 1).to_numpy(zero_copy_only=False)
        return list(values[idx].tolist())
    if pa.types.is_integer(col.type):
        return list(col.fill_null(0).to_numpy().tolist())
    return list(col.to_pylist())


def _threads(table: pa.Table, rank: int) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Each event's new thread id, and the metadata events naming the rank's threads.

    A rank's (pid, tid) pairs (its process's threads; GPU devices and their streams) become
    the threads of one process, ids ``rank * THREADS_PER_RANK + n`` so that no two processes
    share one; CPU threads first, then the streams, each named after what it was."""
    pid = table.column("pid").to_numpy()
    tid = table.column("tid").to_numpy()
    # the distinct (pid, tid) pairs, through 1-D codes (a 2-D np.unique sorts rows: slow)
    pids, pid_code = np.unique(pid, return_inverse=True)
    tids, tid_code = np.unique(tid, return_inverse=True)
    keys, inverse = np.unique(pid_code * len(tids) + tid_code, return_inverse=True)
    pairs = np.stack([pids[keys // max(len(tids), 1)], tids[keys % max(len(tids), 1)]], axis=1)
    inverse = np.asarray(inverse).reshape(-1)
    on_gpu = np.zeros(len(pairs), dtype=bool)
    if table.num_rows:
        cats = table.column("cat")
        gpu_rows = pc.fill_null(pc.is_in(cats, value_set=pa.array(sorted(GPU_CATS))), False)
        on_gpu[np.unique(inverse[np.asarray(gpu_rows.to_numpy(zero_copy_only=False))])] = True
    cpu_pids = {int(p) for (p, _), g in zip(pairs, on_gpu, strict=True) if not g and p >= 0}

    def key(i: int) -> tuple[int, int, int, int]:
        p, t = int(pairs[i][0]), int(pairs[i][1])
        kind = 2 if p < 0 else (1 if on_gpu[i] else 0)
        return (kind, 0 if p == t else 1, p, t)  # a process's main thread first

    order = sorted(range(len(pairs)), key=key)
    if len(order) >= THREADS_PER_RANK:
        raise StepscopeError(
            f"rank {rank} has {len(order)} threads and streams; at most "
            f"{THREADS_PER_RANK - 1} fit the export's thread ids"
        )
    new_of_pair = np.empty(len(pairs), dtype=np.int64)
    meta: list[dict[str, Any]] = []
    for n, i in enumerate(order, start=1):
        new = rank * THREADS_PER_RANK + n
        new_of_pair[i] = new
        p, t = int(pairs[i][0]), int(pairs[i][1])
        if p < 0:
            label = "other (no numeric thread)"
        elif on_gpu[i]:
            label = f"GPU {p} · stream {t}"
        else:
            label = f"thread {t}" + (f" (pid {p})" if len(cpu_pids) > 1 else "")
        meta.append(_meta("thread_name", rank, new, {"name": label}))
        meta.append(_meta("thread_sort_index", rank, new, {"sort_index": n}))
    return new_of_pair[inverse] if len(pairs) else np.zeros(0, np.int64), meta


def _meta(name: str, pid: int, tid: int, args: dict[str, Any]) -> dict[str, Any]:
    return {"ph": "M", "name": name, "pid": pid, "tid": tid, "args": args}


def _process_meta(
    pid: int, name: str, sort_index: int, labels: str | None = None
) -> list[dict[str, Any]]:
    tid = pid * THREADS_PER_RANK + 1 if pid < CULPRIT_PID else _TRACK_TID
    out = [
        _meta("process_name", pid, tid, {"name": name}),
        _meta("process_sort_index", pid, tid, {"sort_index": sort_index}),
    ]
    if labels:
        out.append(_meta("process_labels", pid, tid, {"labels": labels}))
    return out


def _in_window(table: pa.Table, window: tuple[int, int] | None) -> pa.Table:
    """The events that overlap ``window`` (on the rank's own clock)."""
    if window is None or table.num_rows == 0:
        return table
    start = table.column("start_ns").to_numpy()
    dur = table.column("dur_ns").to_numpy(zero_copy_only=False)
    end = start + np.nan_to_num(dur.astype(float)).astype(np.int64)
    keep = (start <= window[1]) & (end >= window[0])
    return table.filter(pa.array(keep))


# A rank's events are encoded by msgspec from structs made in C (``itertools.starmap``): a
# Python loop that builds a dict per event, testing which fields it has, costs several times
# the encoding. ``omit_defaults``: a field left None (no category, no duration, no argument)
# is left out of the JSON, never written as null.
@functools.cache
def _args_struct(columns: tuple[str, ...]) -> Any:
    """The struct of one set of argument columns (a rank's that have any value)."""
    return msgspec.defstruct(
        "_KinetoArgs",
        [(c, Any, msgspec.field(default=None, name=ARG_NAMES[c])) for c in columns],
        omit_defaults=True,
    )


class _Event(msgspec.Struct, omit_defaults=True):
    ph: str
    name: str
    pid: int
    tid: int
    ts: float
    cat: str | None = None
    dur: float | None = None
    args: Any = None


_ENCODER = msgspec.json.Encoder()


def _objects(table: pa.Table, name: str) -> np.ndarray:
    """A column as an object array, None where null."""
    if name not in table.column_names:
        return np.full(table.num_rows, None, dtype=object)
    col = table.column(name)
    out = np.asarray(_column(table, name), dtype=object)
    if col.null_count and not pa.types.is_dictionary(col.type):
        out[~np.asarray(col.is_valid().to_numpy(zero_copy_only=False))] = None
    return out


def _args(table: pa.Table) -> np.ndarray:
    """Each event's arguments as Kineto names them (absent ones left out); None for an event
    without any."""
    n = table.num_rows
    out = np.full(n, None, dtype=object)
    present = [c for c in ARG_NAMES if c in table.column_names and table.column(c).null_count < n]
    if not present:
        return out
    has = np.zeros(n, dtype=bool)
    for c in present:
        has |= np.asarray(table.column(c).is_valid().to_numpy(zero_copy_only=False))
    rows = np.flatnonzero(has)
    cols = [_objects(table, c)[rows].tolist() for c in present]
    make = _args_struct(tuple(present))
    block = np.empty(len(rows), dtype=object)
    block[:] = list(itertools.starmap(make, zip(*cols, strict=True)))
    out[rows] = block
    return out


def _rank_events(table: pa.Table, rank: int, shift_ns: int, tids: np.ndarray) -> list[Any]:
    """One rank's events as Chrome trace events, times moved by ``shift_ns`` (the rank's
    clock offset plus the time base) and in µs."""
    n = table.num_rows
    if n == 0:
        return []
    start = table.column("start_ns").to_numpy()
    dur_ns = table.column("dur_ns").to_numpy(zero_copy_only=False).astype(float)
    phases = _objects(table, "phase")
    dur = np.full(n, None, dtype=object)
    timed = ~np.isnan(dur_ns) & (phases != "i")
    dur[timed] = (dur_ns[timed] / 1000.0).tolist()
    return list(
        itertools.starmap(
            _Event,
            zip(
                phases.tolist(),
                _column(table, "name"),
                itertools.repeat(rank, n),
                tids.tolist(),
                ((start - shift_ns) / 1000.0).tolist(),
                _column(table, "cat"),
                dur.tolist(),
                _args(table).tolist(),
                strict=False,
            ),
        )
    )


# -- stepscope's tracks -----------------------------------------------------------------


def _us(ns: float) -> float:
    return round(float(ns) / 1000.0, 3)


def culprit_events(job: Job, p: _Plan) -> Iterator[dict[str, Any]]:
    """The "who held the others back" process: per step, a slice on the step's extent naming
    the rank the others waited for and what it did more; per exported rank, its waits at
    the collectives (from its arrival to the last rank's)."""
    culprits = job.step_culprits()
    yield from _process_meta(CULPRIT_PID, "stepscope: who held the others back", -3)
    yield _meta("thread_name", CULPRIT_PID, CULPRIT_TID, {"name": "culprit per step"})
    yield _meta("thread_sort_index", CULPRIT_PID, CULPRIT_TID, {"sort_index": 0})
    cross = job.cross_rank()
    matches = cross.matches
    for row in culprits.itertuples(index=False):
        step = int(row.step)
        if p.steps is not None and not p.steps[0] <= step <= p.steps[1]:
            continue
        extent = p.step_extents.get(step)
        if extent is None:  # no step annotation for it: the span of its matched calls
            ms = matches[matches["step"] == step]
            if ms.empty:
                continue
            extent = (
                int(ms["first_arrival_ns"].min()),
                int((ms["last_arrival_ns"] + ms["transfer_ns"]).max()),
            )
        cause = row.cause if isinstance(row.cause, str) else None
        label = f"rank {int(row.culprit)}" + (f": {CAUSE_SHORT[cause]}" if cause else "")
        excess = {
            c: round(float(getattr(row, f"excess_{c}_ns")) / 1e6, 3)
            for c in CAUSES
            if float(getattr(row, f"excess_{c}_ns")) > 0
        }
        yield {
            "ph": "X",
            "cat": "stepscope.culprit",
            "name": label,
            "pid": CULPRIT_PID,
            "tid": CULPRIT_TID,
            "ts": _us(extent[0] - p.base_ns),
            "dur": _us(extent[1] - extent[0]),
            "args": {
                "step": step,
                "culprit_rank": int(row.culprit),
                "cause": cause,
                "what_it_did_more": CAUSE_LABELS.get(cause) if cause else None,
                "cause_share_pct": None
                if pd.isna(row.cause_share_pct)
                else round(float(row.cause_share_pct), 1),
                "others_wait_ms": round(float(row.others_wait_ns) / 1e6, 3),
                "calls_last": int(row.calls_last),
                "calls": int(row.calls),
                "ranks": int(row.ranks),
                "excess_ms_by_cause": excess,
            },
        }
    calls = cross.calls
    if calls.empty:
        return
    chosen = set(p.ranks)
    waits = calls[(calls["wait_ns"] > 0) & calls["rank"].isin(chosen)]
    if p.steps is not None:
        step = pd.to_numeric(waits["step"], errors="coerce")
        waits = waits[(step >= p.steps[0]) & (step <= p.steps[1])]
    for r in sorted(int(x) for x in waits["rank"].unique()):
        yield _meta("thread_name", CULPRIT_PID, _WAIT_TID0 + r, {"name": f"rank {r} waits"})
        yield _meta("thread_sort_index", CULPRIT_PID, _WAIT_TID0 + r, {"sort_index": r + 1})
    for w in waits.itertuples(index=False):
        yield {
            "ph": "X",
            "cat": "stepscope.wait",
            "name": f"waits for rank {int(w.last_rank)}",
            "pid": CULPRIT_PID,
            "tid": _WAIT_TID0 + int(w.rank),
            "ts": _us(int(w.arrival_ns) - p.base_ns),
            "dur": _us(int(w.wait_ns)),
            "args": {
                "rank": int(w.rank),
                "last_rank": int(w.last_rank),
                "step": None if pd.isna(w.step) else int(w.step),
                "op": None if pd.isna(w.op) else str(w.op),
                "group": str(w.group),
                "position": int(w.position),
                "wait_ms": round(float(w.wait_ns) / 1e6, 3),
            },
        }


def _iso_ns(value: Any) -> int | None:
    if not isinstance(value, str):
        return None
    try:
        t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return round(t.timestamp() * 1e6) * 1000


def _finding_place(f: Finding, p: _Plan) -> tuple[int, str]:
    """Where a finding's marker goes (ns on the common clock) and why there: the first step
    it names that the export holds (that rank's start of it where it names a rank), else
    the time it names, else the export's start."""
    ev = f.evidence or {}
    rank = ev.get("rank") if isinstance(ev.get("rank"), int) else None
    named: list[int] = []
    for k in _STEP_KEYS:
        v = ev.get(k)
        if isinstance(v, bool):
            continue
        if isinstance(v, int):
            named.append(v)
        elif isinstance(v, list):
            named += [x for x in v if isinstance(x, int) and not isinstance(x, bool)]
            if k == "step_range":
                break
    for s in named:
        if rank is not None and (rank, s) in p.rank_step_starts:
            return p.rank_step_starts[(rank, s)], f"step {s} of rank {rank}"
        if s in p.step_extents:
            return p.step_extents[s][0], f"step {s}"
    for k in _TIME_KEYS:
        t = _iso_ns(ev.get(k))
        if t is not None and t >= p.base_ns:
            return t, k
    reason = "the export's start"
    if named:
        reason += f" (its step{'s' if len(named) > 1 else ''} are not in the export)"
    return p.base_ns, reason


def finding_events(findings: Iterable[Finding], p: _Plan) -> Iterator[dict[str, Any]]:
    """The findings as global instant markers, each at the step or time it is about; of a
    rank subset, only the findings about those ranks and those about no rank."""
    chosen = set(p.ranks)
    listed = [
        f
        for f in findings
        if not isinstance((f.evidence or {}).get("rank"), int) or f.evidence["rank"] in chosen
    ]
    if not listed:
        return
    yield from _process_meta(FINDINGS_PID, "stepscope: findings", -2)
    yield _meta("thread_name", FINDINGS_PID, FINDINGS_TID, {"name": "findings"})
    for f in listed:
        at, why = _finding_place(f, p)
        yield {
            "ph": "i",
            "s": "g",
            "cat": "stepscope.finding",
            "name": f"{f.severity}: {f.title}",
            "pid": FINDINGS_PID,
            "tid": FINDINGS_TID,
            "ts": _us(at - p.base_ns),
            "args": {
                "rule": f.rule,
                "severity": f.severity,
                "where": f.where,
                "message": f.message,
                "recommendation": f.recommendation,
                "placed_at": why,
                "evidence": f.evidence,
            },
        }


def critical_path_events(
    segments: pd.DataFrame, p: _Plan, *, clock_corrected: bool = False
) -> Iterator[dict[str, Any]]:
    """A critical path as a track of its own: one slice per segment of ``segments``
    (columns ``rank, start_ns, end_ns, category``; a ``name`` column, where there is one,
    goes to the slice's args as the event the segment belongs to), named by its category.

    Kept apart so that a critical-path analysis plugs in without this module knowing it:
    ``write_timeline(..., critical_path=frame)``. ``clock_corrected``: the segments' times
    are on the common clock already (else each is moved by its rank's offset)."""
    if segments.empty:
        return
    yield from _process_meta(CRITICAL_PATH_PID, "stepscope: critical path", -1)
    yield _meta("thread_name", CRITICAL_PATH_PID, CRITICAL_PATH_TID, {"name": "critical path"})
    ranks = segments["rank"].astype(np.int64).to_numpy()
    shift = np.zeros(len(segments), dtype=np.int64)
    if not clock_corrected:
        shift = np.array([p.offsets.get(int(r), 0) for r in ranks], dtype=np.int64)
    start = segments["start_ns"].astype(np.int64).to_numpy() - shift
    end = segments["end_ns"].astype(np.int64).to_numpy() - shift
    lo, hi = _common_window(p)
    names = segments["name"] if "name" in segments else pd.Series([None] * len(segments))
    rows = zip(ranks, start, end, segments["category"].astype(str), names, strict=True)
    for r, s, e, cat, event in rows:
        if e < lo or s > hi:
            continue
        args: dict[str, Any] = {"rank": int(r), "category": cat}
        if isinstance(event, str):
            args["event"] = event
        yield {
            "ph": "X",
            "cat": "stepscope.critical_path",
            "name": cat,
            "pid": CRITICAL_PATH_PID,
            "tid": CRITICAL_PATH_TID,
            "ts": _us(int(s) - p.base_ns),
            "dur": _us(int(e - s)),
            "args": args,
        }


def _common_window(p: _Plan) -> tuple[int, int]:
    if p.windows is None:
        return (-(2**62), 2**62)
    return (
        min(lo - p.offsets[r] for r, (lo, _) in p.windows.items()),
        max(hi - p.offsets[r] for r, (_, hi) in p.windows.items()),
    )


# -- the file ---------------------------------------------------------------------------


class _Writer:
    """``traceEvents`` written as it comes: a comma between events, a chunk per write."""

    def __init__(self, out: Sink) -> None:
        self.out = out
        self.events = 0
        self.bytes = 0
        self._first = True

    def raw(self, data: bytes) -> None:
        self.out.write(data)
        self.bytes += len(data)

    def write(self, events: Iterable[dict[str, Any]]) -> None:
        """Events of stepscope's tracks and metadata (few): counted one by one."""
        batch = list(events)
        if batch:
            self._flush(batch)
            self.events += sum(1 for e in batch if e["ph"] != "M")

    def write_events(self, events: list[Any]) -> None:
        """A rank's events (many, none of them metadata; structs), a chunk per encoding."""
        for i in range(0, len(events), CHUNK):
            body = _ENCODER.encode(events[i : i + CHUNK])[1:-1]
            self.raw(body if self._first else b"," + body)
            self._first = False
        self.events += len(events)

    def _flush(self, batch: list[dict[str, Any]]) -> None:
        body = orjson.dumps(batch, default=str)[1:-1]
        self.raw(body if self._first else b"," + body)
        self._first = False


def _header(job: Job, p: _Plan) -> dict[str, Any]:
    traces = job.dataset.table("kineto_traces")
    info = traces.to_pandas() if traces.num_rows else pd.DataFrame()
    backend = world = props = None
    if not info.empty:
        first = info.sort_values("rank").iloc[0]
        backend = None if pd.isna(first.get("backend")) else str(first.get("backend"))
        world = None if pd.isna(first.get("world_size")) else int(first.get("world_size"))
        raw = first.get("device_properties")
        props = orjson.loads(raw) if isinstance(raw, str) and raw else None
    head: dict[str, Any] = {"schemaVersion": 1}
    if props:
        head["deviceProperties"] = props
    head["distributedInfo"] = {
        k: v
        for k, v in {"backend": backend, "rank": p.ranks[0], "world_size": world}.items()
        if v is not None
    }
    head["baseTimeNanoseconds"] = p.base_ns
    head["displayTimeUnit"] = "ms"
    head["otherData"] = {
        "stepscope_version": __version__,
        "what": (
            "every rank of a job on one clock (stepscope export --perfetto): pid = rank; "
            "ts in us from baseTimeNanoseconds, on the reference rank's clock"
        ),
        "source": str(job.dataset.meta.to_dict().get("source") or ""),
        "ranks": p.ranks,
        "steps": list(p.steps) if p.steps else None,
        "clock": {
            "method": (
                "cross-rank analysis: per host, the median of matched collectives' ends "
                "against their median over the ranks (docs/analyses.md, cross_rank)"
            )
            if p.estimated
            else "no collective matched across ranks: no offset applied",
            "reference_rank": min(p.offsets) if p.offsets else None,
            "applied_offsets_ns": {str(r): o for r, o in p.offsets.items()},
        },
    }
    return head


def write_timeline(
    job: Job,
    out: Sink,
    *,
    findings: Iterable[Finding] = (),
    ranks: Sequence[int] | None = None,
    steps: tuple[int | None, int | None] | None = None,
    critical_path: pd.DataFrame | None = None,
    critical_path_clock_corrected: bool = False,
    on_progress: ProgressFn | None = None,
) -> ExportSummary:
    """Write the job's timeline to ``out`` (a binary file; compress it by passing a gzip
    file): one rank at a time, never every rank's events at once.

    ``ranks``: only these (all when None); ``steps``: ``(A, B)`` only the events of steps A
    to B (either end None: open), on each rank by its own step annotations; ``findings``:
    the report's findings, as markers; ``critical_path``: segments for
    :func:`critical_path_events` (none: no such track), ``critical_path_clock_corrected``
    whether their times are on the common clock already."""
    p = plan(job, ranks=ranks, steps=steps)
    summary = ExportSummary(ranks=p.ranks, offsets_ns=dict(p.offsets), steps=p.steps)
    summary.base_time_ns = p.base_ns
    w = _Writer(out)
    head = orjson.dumps(_header(job, p))
    w.raw(head[:-1] + b',"traceEvents":[')
    before = w.events
    w.write(culprit_events(job, p))
    summary.culprit_steps = sum(1 for _ in _culprit_steps(job, p))
    summary.waits = w.events - before - summary.culprit_steps
    before = w.events
    w.write(finding_events(findings, p))
    summary.findings = w.events - before
    if critical_path is not None:
        before = w.events
        w.write(
            critical_path_events(critical_path, p, clock_corrected=critical_path_clock_corrected)
        )
        summary.critical_path_segments = w.events - before
    total = len(p.ranks)
    progress = on_progress or (lambda phase, done, n: None)
    progress(PROGRESS_PHASE, 0, total)
    before = w.events
    for k, rank in enumerate(p.ranks, start=1):
        table = _in_window(job.rank_events(rank), None if p.windows is None else p.windows[rank])
        tids, thread_meta = _threads(table, rank)
        node = p.nodes.get(rank)
        off = p.offsets.get(rank, 0)
        label = f"node {node}" if node else None
        if off:
            label = (label + ", " if label else "") + f"clock offset {off / 1e6:+.3f} ms corrected"
        w.write(_process_meta(rank, f"rank {rank}" + (f" ({node})" if node else ""), rank, label))
        w.write(thread_meta)
        w.write_events(_rank_events(table, rank, off + p.base_ns, tids))
        del table, tids
        progress(PROGRESS_PHASE, k, total)
    w.raw(b"]}")
    summary.events = w.events - before
    summary.json_bytes = w.bytes
    return summary


def _culprit_steps(job: Job, p: _Plan) -> Iterator[int]:
    culprits = job.step_culprits()
    for s in culprits["step"] if not culprits.empty else []:
        if p.steps is None or p.steps[0] <= int(s) <= p.steps[1]:
            yield int(s)


def timeline_bytes(
    job: Job,
    *,
    findings: Iterable[Finding] = (),
    ranks: Sequence[int] | None = None,
    steps: tuple[int | None, int | None] | None = None,
) -> bytes:
    """The gzipped timeline in memory: the dashboard's download of one step (small)."""
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=6, mtime=0) as gz:
        write_timeline(job, gz, findings=findings, ranks=ranks, steps=steps)
    return buf.getvalue()


__all__ = [
    "CULPRIT_PID",
    "FINDINGS_PID",
    "ExportSummary",
    "critical_path_events",
    "culprit_events",
    "finding_events",
    "plan",
    "timeline_bytes",
    "write_timeline",
]
