"""Collectives matched across ranks: who arrived last at each one, who waited, and why.

Why: every other analysis judges a rank on its own, so it sees symptoms (rank 0 "spends
135 ms in communication"). In synchronous training a collective ends only when its last
rank arrives, so the cause of the others' wait is whatever made that rank late. This module
pairs each collective call with the same call on the other ranks of its process group and
names, step by step, the rank the others waited for and what it did differently.

It is a map and a small reduce, like :mod:`analyzer.analyses.rank_map`:

* the map, :func:`collective_arrivals`, runs on one rank's events: one row per collective
  call (its group, the step it belongs to, its position in that step and group, op and
  size, CPU enqueue, arrival, end) and the *lead-in* before it, the time since the rank's
  previous call in the group ended, split by what the rank was doing (:data:`CAUSES`);
* the reduce, :func:`match_collectives`, joins those rows on (group, step, position), never
  reading an event: memory grows with the calls, not with the trace.

Definitions:

* **Group**: the call's ``Process Group Name`` (``record_param_comms`` / NCCL kernel
  arguments); where the trace has none and its ``distributedInfo.pg_config`` lists a single
  group, that group; else ``"?:<op>"``: the calls of one op matched by their order (different
  ops usually belong to different groups), said so in ``group_source``, and a mismatch of
  ops cannot be seen there, only one of sizes. Where ``stepscope run`` wrote its Flight
  Recorder record beside the trace, a call without a group in the trace (gloo's) takes
  its group and sequence number from there, and the ranks are matched on (group, sequence
  number): ``group_source`` "flight_recorder".
* **Arrival**: when the rank is ready to exchange: the collective kernel's start on the GPU
  (NCCL), or the host collective's start on its worker thread (gloo ``gloo:all_reduce``,
  MPI). **Enqueue**: the CPU launch call of a GPU collective (by correlation id).
* **Clock offsets**: ranks on other hosts have other clocks. A matched call completes on
  every rank at nearly the same moment (the last data arrives), so each clock's offset is
  the median, over the matched calls of its ranks, of their end minus the call's median end
  over the ranks (iterated a few times so that groups of different ranks agree). The ranks
  of one host (the trace's node) share one clock and one offset; a rank whose host is
  unknown has its own. Every time is corrected by it before the comparison; ``skew`` is the
  largest minus the smallest offset.
* **Wait**: on each rank, the last (corrected) arrival minus the rank's own arrival; the
  **last rank** is the one that arrived last; **transfer** is the last end minus the last
  arrival, the time the exchange itself took once everyone was there.
* **Point-to-point** calls (send/recv, a pipeline's) are kept in the map's rows but not
  matched: they pair two ranks, not a group (:mod:`analyzer.analyses.parallelism` reads
  them for the pipeline's bubbles).
* **Mismatch**: ranks that disagree at one position (another op, or another message size
  where both are known). Mismatched and single-rank positions are reported, never paired.
* **Culprit of a step**: the rank whose late arrivals cost the others the most wait in that
  step (rank-milliseconds summed over the step's matched calls).
* **Cause**: the culprit's lead-in minus the median lead-in of the other ranks at the same
  calls, category by category (negative differences count as zero). The lead-in is split by
  priority: GPU compute kernels, then GPU memory copies / sets, then data-loader waits, then
  other host work (CPU ops, CUDA runtime calls), then other communication, and the rest is
  time with no profiled event (Python work the profiler does not record, a ``sleep``).
  Comparing lead-ins, not the moments of waiting, keeps the cause right when a late batch
  pushes the whole step later: the late rank *computes* while the others wait, but what it
  did more than them was *loading data*.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from analyzer.analyses.communication import P2P_OPS, collective_calls, normalize_collective
from analyzer.analyses.gpu_kernels import gpu_events, kineto_events_table
from analyzer.analyses.intervals import covered_in_windows, merge_intervals
from analyzer.analyses.kernel_classes import COMMUNICATION, COMPUTATION, MEMORY, classify

__all__ = [
    "ARRIVAL_COLUMNS",
    "CAUSES",
    "CAUSE_LABELS",
    "CAUSE_SHORT",
    "CrossRank",
    "collective_arrivals",
    "culprit_summary",
    "match_collectives",
    "step_culprits",
]

#: what a rank can be doing before it arrives at a collective, in the priority order in
#: which overlapping activity is counted (module docstring)
CAUSES = ("gpu_compute", "gpu_memory", "dataloader", "host", "communication", "unrecorded")
CAUSE_LABELS = {
    "gpu_compute": "GPU compute kernels",
    "gpu_memory": "GPU memory copies",
    "dataloader": "the data loader",
    "host": "host work (CPU ops, CUDA runtime calls)",
    "communication": "other collectives",
    "unrecorded": "time no profiled op covers (Python code, sleeping)",
}
#: the same, in a few words (titles, table cells)
CAUSE_SHORT = {
    "gpu_compute": "GPU compute",
    "gpu_memory": "GPU copies",
    "dataloader": "data loader",
    "host": "host work",
    "communication": "other collectives",
    "unrecorded": "unprofiled time",
}
_LEAD = [f"lead_{c}_ns" for c in CAUSES]
_EXCESS = [f"excess_{c}_ns" for c in CAUSES]

ARRIVAL_COLUMNS = [
    "rank",
    "node",
    "group",
    "group_source",
    "step",
    "position",
    "seq",
    "op",
    "msg_bytes",
    "device",
    "enqueue_ns",
    "arrival_ns",
    "end_ns",
    "lead_start_ns",
    *_LEAD,
]

#: the event categories counted as host work (annotations only wrap these; Python function
#: events, where recorded, wrap everything and would hide the rest)
_HOST_CATS = frozenset({"cpu_op", "cuda_runtime", "cuda_driver"})
_UNKNOWN_GROUP = "?"


def _empty_arrivals() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series([], dtype=object) for c in ARRIVAL_COLUMNS})


# -- the map ------------------------------------------------------------------------------


def _nodes(traces: pa.Table | None) -> dict[int, str | None]:
    """Per rank: the host its trace was written on (from the file name), where known."""
    if traces is None or "node" not in traces.column_names:
        return {}
    return {int(r["rank"]): r["node"] for r in traces.select(["rank", "node"]).to_pylist()}


def _default_groups(traces: pa.Table | None) -> dict[int, str | None]:
    """Per rank: the one group its trace names in ``pg_config``, when it names exactly one."""
    out: dict[int, str | None] = {}
    if traces is None or "process_groups" not in traces.column_names:
        return out
    for row in traces.select(["rank", "process_groups"]).to_pylist():
        groups = json.loads(row["process_groups"]) if row["process_groups"] else []
        names = [g.get("pg_name") for g in groups if isinstance(g, dict)]
        out[int(row["rank"])] = str(names[0]) if len(names) == 1 and names[0] is not None else None
    return out


def _lead_in(
    spans: dict[str, tuple[np.ndarray, np.ndarray]], a: np.ndarray, b: np.ndarray
) -> dict[str, np.ndarray]:
    """Each window ``[a, b)`` split into :data:`CAUSES` by priority: a category gets the time
    that no earlier category covers (so overlapping activity is counted once)."""
    out: dict[str, np.ndarray] = {}
    starts: list[np.ndarray] = []
    ends: list[np.ndarray] = []
    covered_before = np.zeros(len(a), dtype=np.int64)
    for cause in CAUSES[:-1]:
        s, e = spans[cause]
        starts.append(s)
        ends.append(e)
        lo, hi = merge_intervals(np.concatenate(starts), np.concatenate(ends))
        covered = covered_in_windows(lo, hi, a, b)
        out[cause] = covered - covered_before
        covered_before = covered
    out["unrecorded"] = np.clip(b - a, 0, None) - covered_before
    return out


def _activity(table: pa.Table, rank: int, gpu: pd.DataFrame) -> dict[str, Any]:
    """One rank's activity intervals by category (the inputs of :func:`_lead_in`)."""
    from analyzer.analyses.steps import DATALOADER_EVENT_RE, _matching

    rt = table.filter(pc.equal(table.column("rank"), rank))
    starts = rt.column("start_ns").to_numpy(zero_copy_only=False)
    ends = starts + np.nan_to_num(
        rt.column("dur_ns").to_numpy(zero_copy_only=False).astype(float)
    ).astype(np.int64)
    is_comm = (classify(rt.column("name"))["kernel_class"] == COMMUNICATION).to_numpy()
    is_loader = _matching(rt.column("name"), lambda n: bool(DATALOADER_EVENT_RE.match(n)))
    is_host = _matching(rt.column("cat"), lambda c: c in _HOST_CATS)
    g = gpu[gpu["rank"] == rank]

    def of(frame: pd.DataFrame, cls: str) -> tuple[np.ndarray, np.ndarray]:
        sel = frame[frame["kernel_class"] == cls]
        return sel["start_ns"].to_numpy(np.int64), sel["end_ns"].to_numpy(np.int64)

    comp, mem = of(g, COMPUTATION), of(g, MEMORY)
    gcomm = of(g, COMMUNICATION)
    return {
        "gpu_compute": comp,
        "gpu_memory": mem,
        "dataloader": (starts[is_loader], ends[is_loader]),
        "host": (starts[is_host & ~is_comm], ends[is_host & ~is_comm]),
        "communication": (
            np.concatenate([starts[is_comm], gcomm[0]]),
            np.concatenate([ends[is_comm], gcomm[1]]),
        ),
    }


def collective_arrivals(
    source: Any,
    *,
    traces: pa.Table | None = None,
    steps: pd.DataFrame | None = None,
    flight_recorder: pa.Table | None = None,
) -> pd.DataFrame:
    """The map: one row per collective call of each rank in ``source``, ready to match.

    Columns (:data:`ARRIVAL_COLUMNS`): ``rank, group, group_source ("trace" | "pg_config" |
    "order"), step, position, op, msg_bytes, device, enqueue_ns, arrival_ns, end_ns,
    lead_start_ns`` and ``lead_<cause>_ns`` for each of :data:`CAUSES`. ``traces``: the
    ranks' ``kineto_traces`` rows (their ``pg_config``); ``steps``: the ranks' Kineto steps
    (rank, step, start_ns, dur_ns), to place each call in a step; ``flight_recorder``: the
    ranks' ``window_fr_entries`` (the Flight Recorder record ``stepscope run`` writes beside
    each trace), which give a call the trace names no group for its group and its sequence
    number in that group (``seq``; group_source "flight_recorder").
    """
    table = kineto_events_table(source)
    if table.num_rows == 0:
        return _empty_arrivals()
    calls = collective_calls(source, scope="all")
    calls = calls[calls["start_ns"].notna()]
    if calls.empty:
        return _empty_arrivals()
    gpu = gpu_events(source, scope="all")
    out = pd.DataFrame(
        {
            "rank": calls["rank"].astype(np.int64).to_numpy(),
            "op": calls["collective"].astype(object).to_numpy(),
            "msg_bytes": calls["msg_bytes"].to_numpy(),
            "device": calls["device"].to_numpy(),
            "arrival_ns": calls["start_ns"].astype(np.int64).to_numpy(),
            "end_ns": (calls["start_ns"] + calls["dur_ns"].fillna(0)).astype(np.int64).to_numpy(),
        }
    )
    nodes = _nodes(traces)
    out["node"] = out["rank"].map(lambda r: nodes.get(int(r))).astype(object)
    pg = calls["process_group"].astype(object).to_numpy()
    defaults = _default_groups(traces)
    fallback = out["rank"].map(lambda r: defaults.get(int(r))).to_numpy(dtype=object)
    has_pg = pd.notna(pg)
    has_default = pd.notna(fallback)
    out["group"] = np.where(has_pg, pg, np.where(has_default, fallback, _UNKNOWN_GROUP))
    out["group"] = out["group"].astype(str)
    out["group_source"] = np.where(has_pg, "trace", np.where(has_default, "pg_config", "order"))
    # a group the trace does not name: one sequence per op (different ops are usually
    # different groups: a data-parallel all-reduce, an expert-parallel all-to-all)
    unknown = out["group_source"] == "order"
    out.loc[unknown, "group"] = _UNKNOWN_GROUP + ":" + out.loc[unknown, "op"].fillna("?")
    out["seq"] = pd.array([pd.NA] * len(out), dtype="Int64")
    _from_flight_recorder(out, flight_recorder, traces)
    out["enqueue_ns"] = _enqueue(table, calls)
    out["step"], out["step_start_ns"] = _steps_of(out, steps)
    out = out.sort_values(["rank", "group", "arrival_ns"], kind="stable", ignore_index=True)
    # the call's place in its group's sequence: within its step where it has one (so ranks
    # whose profiled windows differ still line up), else in the whole trace
    step_key = out["step"].fillna(-1)
    out["position"] = out.groupby(["rank", "group", step_key]).cumcount().astype(np.int64)
    # nullable integers throughout: epoch nanoseconds lose precision as float64
    prev_end = out["end_ns"].astype("Int64").groupby([out["rank"], out["group"]]).shift(1)
    lead_start = prev_end.fillna(out["step_start_ns"]).fillna(out["arrival_ns"])
    out["lead_start_ns"] = np.minimum(lead_start.astype(np.int64), out["arrival_ns"])
    leads = {c: np.zeros(len(out), dtype=np.int64) for c in CAUSES}
    for rank, idx in out.groupby("rank").indices.items():
        spans = _activity(table, int(rank), gpu)
        part = _lead_in(
            spans,
            out["lead_start_ns"].to_numpy(np.int64)[idx],
            out["arrival_ns"].to_numpy(np.int64)[idx],
        )
        for c in CAUSES:
            leads[c][idx] = part[c]
    for c in CAUSES:
        out[f"lead_{c}_ns"] = leads[c]
    return out[ARRIVAL_COLUMNS]


def _from_flight_recorder(out: pd.DataFrame, fr: pa.Table | None, traces: pa.Table | None) -> None:
    """Give the calls the trace names no group for (gloo's, an old trace's) their process
    group, sequence number and size from the rank's Flight Recorder record: per rank and op,
    the entries created inside the trace's span, in order, each to the first call that
    starts after it was created (an entry is created when the call is enqueued, before the
    collective starts)."""
    if fr is None or fr.num_rows == 0:
        return
    entries = fr.to_pandas()
    for c in ("group", "group_desc", "op"):
        entries[c] = entries[c].astype(object)
    entries = entries.dropna(subset=["time_created_ns", "op", "seq"])
    entries = entries[~entries["is_p2p"].fillna(False).astype(bool)]
    entries["norm"] = entries["op"].map(lambda n: normalize_collective(str(n).split(":")[-1]))
    starts = _trace_starts(traces)
    need = out["group_source"] != "trace"
    for (rank, op), idx in out[need].groupby(["rank", "op"]).groups.items():
        mine = entries[(entries["rank"] == rank) & (entries["norm"] == op)]
        if rank in starts:
            mine = mine[mine["time_created_ns"] >= starts[rank]]
        mine = mine.sort_values("time_created_ns")
        created = mine["time_created_ns"].to_numpy(np.int64)
        used = 0
        for i in out.loc[idx].sort_values("arrival_ns").index:
            if used >= len(created) or created[used] > out.at[i, "arrival_ns"]:
                continue
            e = mine.iloc[used]
            used += 1
            out.at[i, "group"] = str(e["group"])
            out.at[i, "group_source"] = "flight_recorder"
            out.at[i, "seq"] = int(e["seq"])
            size = _fr_bytes(e.get("input_sizes"), e.get("dtypes"))
            if size is not None and pd.isna(out.at[i, "msg_bytes"]):
                out.at[i, "msg_bytes"] = size


def _trace_starts(traces: pa.Table | None) -> dict[int, int]:
    if traces is None or "start_ns" not in traces.column_names:
        return {}
    return {
        int(r["rank"]): int(r["start_ns"])
        for r in traces.select(["rank", "start_ns"]).to_pylist()
        if r["start_ns"] is not None
    }


def _fr_bytes(sizes: Any, dtypes: Any) -> int | None:
    """Bytes of a Flight Recorder entry's inputs (its sizes and dtypes are JSON lists)."""
    from analyzer.ingest.kineto import DTYPE_BYTES

    try:
        shapes, types = json.loads(sizes), json.loads(dtypes)
    except (TypeError, ValueError):
        return None
    total = 0
    for shape, dtype in zip(shapes, types, strict=False):
        width = DTYPE_BYTES.get(str(dtype))
        if width is None:
            return None
        total += int(np.prod(shape or [1])) * width
    return total


def _enqueue(table: pa.Table, calls: pd.DataFrame) -> pd.arrays.IntegerArray:
    """Start of the CPU launch call of each GPU collective (null for host collectives)."""
    out = pd.array([pd.NA] * len(calls), dtype="Int64")
    corr = calls["correlation"]
    want = (calls["device"] == "gpu").to_numpy() & corr.notna().to_numpy()
    if not want.any():
        return out
    cats = table.column("cat").cast(pa.string())
    launch = table.filter(
        pc.and_(
            pc.is_valid(table.column("correlation")),
            pc.is_in(cats, value_set=pa.array(["cuda_runtime", "cuda_driver"])),
        )
    ).select(["rank", "correlation", "start_ns"])
    if launch.num_rows == 0:
        return out
    lf = launch.to_pandas().drop_duplicates(["rank", "correlation"])
    key = pd.MultiIndex.from_frame(lf[["rank", "correlation"]].astype(np.int64))
    found = pd.Series(lf["start_ns"].to_numpy(), index=key).reindex(
        pd.MultiIndex.from_arrays(
            [
                calls["rank"].astype(np.int64).to_numpy(),
                corr.fillna(-1).astype(np.int64).to_numpy(),
            ]
        )
    )
    vals = pd.array(found.to_numpy(), dtype="Int64")
    out[want] = vals[want]
    return out


def _steps_of(out: pd.DataFrame, steps: pd.DataFrame | None) -> tuple[pd.Series, pd.Series]:
    """The rank's step whose window holds each call's enqueue (else its arrival), and that
    step's start (the lead-in of a rank's first call in the trace starts there)."""
    step = pd.Series(pd.NA, index=out.index, dtype="Int64")
    start = pd.Series(pd.NA, index=out.index, dtype="Int64")
    if steps is None or steps.empty:
        return step, start
    t = out["enqueue_ns"].fillna(out["arrival_ns"]).astype(np.int64)
    for rank, idx in out.groupby("rank").indices.items():
        st = steps[steps["rank"] == rank].sort_values("start_ns")
        if st.empty:
            continue
        s0 = st["start_ns"].to_numpy(np.int64)
        s1 = s0 + st["dur_ns"].fillna(0).to_numpy(np.int64)
        tt = t.to_numpy()[idx]
        j = np.searchsorted(s0, tt, side="right") - 1
        jj = np.clip(j, 0, None)
        ok = (j >= 0) & (tt < s1[jj])
        for target, values in ((step, st["step"].to_numpy(np.int64)[jj]), (start, s0[jj])):
            found = pd.array(values, dtype="Int64")
            found[~ok] = pd.NA
            target.iloc[idx] = found
    return step, start


# -- the reduce ---------------------------------------------------------------------------

_KEY = ["group", "step_key", "position"]


@dataclass
class CrossRank:
    """What the reduce finds (all times in ns, corrected for the clock offsets).

    ``calls``: one row per rank and matched call (``wait_ns`` its wait, ``last_rank``,
    ``lead_*``); ``matches``: one row per matched call (``ranks``, ``last_rank``,
    ``spread_ns``, ``total_wait_ns``, ``transfer_ns``); ``offsets``: per rank
    (``offset_ns``, ``calls``); ``mismatches``: positions the ranks disagree on;
    ``unpaired``: positions only one rank holds (a rank's window longer than the others').
    """

    calls: pd.DataFrame
    matches: pd.DataFrame
    offsets: pd.DataFrame
    mismatches: pd.DataFrame
    unpaired: int = 0
    groups: dict[str, str] = field(default_factory=dict)

    @property
    def skew_ns(self) -> int:
        o = self.offsets["offset_ns"]
        return int(o.max() - o.min()) if len(o) else 0

    @property
    def matched(self) -> bool:
        return not self.matches.empty


_MATCH_COLUMNS = [
    "group", "step", "position", "op", "msg_bytes", "ranks", "last_rank", "first_arrival_ns",
    "last_arrival_ns", "spread_ns", "total_wait_ns", "transfer_ns",
]  # fmt: skip


def _empty_cross_rank() -> CrossRank:
    return CrossRank(
        calls=pd.DataFrame(columns=[*ARRIVAL_COLUMNS, "wait_ns", "last_rank"]),
        matches=pd.DataFrame(columns=_MATCH_COLUMNS),
        offsets=pd.DataFrame(columns=["rank", "offset_ns", "calls"]),
        mismatches=pd.DataFrame(columns=["group", "step", "position", "detail"]),
    )


def _clocks(calls: pd.DataFrame) -> pd.Series:
    """Each row's clock: its host where the trace names one (the ranks of one host read one
    clock), else its rank alone."""
    node = calls["node"].astype(object)
    own = "rank " + calls["rank"].astype(str)
    return pd.Series(np.where(node.notna(), "node " + node.astype(str), own), index=calls.index)


def _offsets(calls: pd.DataFrame, rounds: int = 6) -> pd.Series:
    """Per rank clock offset (module docstring): one per clock, the clock of the lowest rank
    (its host's) the reference, at 0."""
    clock = _clocks(calls)
    clocks = np.sort(clock.unique())
    reference = clock.loc[calls["rank"].idxmin()]
    offset = pd.Series(0.0, index=clocks)
    key = calls["_key"]
    # relative to the first end, in float: epoch nanoseconds lose precision as float64
    end = (calls["end_ns"] - int(calls["end_ns"].min())).astype(float)
    for _ in range(rounds):
        corrected = end - clock.map(offset).to_numpy()
        centre = corrected.groupby(key).transform("median")
        new = (end - centre).groupby(clock).median().reindex(clocks).fillna(0.0)
        new -= new[reference]
        done = np.allclose(new.to_numpy(), offset.to_numpy(), atol=1.0)
        offset = new
        if done:
            break
    per_rank = clock.groupby(calls["rank"]).first().map(offset)
    return per_rank.round()


def match_collectives(arrivals: pd.DataFrame) -> CrossRank:
    """The reduce: the map's rows of every rank, matched on (group, step, position)."""
    # point-to-point calls pair two ranks, not a group: the parallelism analysis reads them
    a = arrivals[~arrivals["op"].isin(P2P_OPS)] if not arrivals.empty else arrivals
    if a.empty or a["rank"].nunique() < 2:
        return _empty_cross_rank()
    a = a.copy()
    a["step_key"] = a["step"].astype("Int64").fillna(-1).astype(np.int64)
    if "seq" in a:  # a Flight Recorder sequence number is the call's place in its group
        by_seq = a["seq"].notna()
        a.loc[by_seq, "step_key"] = -2
        a.loc[by_seq, "position"] = a.loc[by_seq, "seq"].astype(np.int64)
    a["_key"] = pd.MultiIndex.from_frame(a[_KEY]).factorize()[0] if len(a) else []
    per_key = a.groupby("_key")
    n_ranks = per_key["rank"].transform("nunique")
    ops = per_key["op"].transform(lambda s: s.dropna().nunique())
    sizes = per_key["msg_bytes"].transform(lambda s: pd.to_numeric(s, errors="coerce").nunique())
    bad = (ops > 1) | (sizes > 1)
    mismatches = (
        a[bad & (n_ranks > 1)]
        .groupby(_KEY, sort=True)
        .apply(_mismatch_detail, include_groups=False)
        .rename("detail")
        .reset_index()
        .rename(columns={"step_key": "step"})
        if (bad & (n_ranks > 1)).any()
        else _empty_cross_rank().mismatches
    )
    unpaired = int(a.loc[n_ranks == 1, "_key"].nunique())
    calls = a[(n_ranks > 1) & ~bad].copy()
    if calls.empty:
        out = _empty_cross_rank()
        out.mismatches, out.unpaired = mismatches, unpaired
        return out
    offset = _offsets(calls).astype(np.int64)
    shift = calls["rank"].map(offset).to_numpy(np.int64)
    for c in ("arrival_ns", "end_ns", "lead_start_ns"):
        calls[c] = calls[c].astype(np.int64) - shift
    calls["enqueue_ns"] = calls["enqueue_ns"].astype("Int64") - shift
    g = calls.groupby("_key")
    last = g["arrival_ns"].transform("max")
    calls["wait_ns"] = (last - calls["arrival_ns"]).clip(lower=0)
    last_idx = g["arrival_ns"].idxmax()
    calls["last_rank"] = calls["_key"].map(calls.loc[last_idx.to_numpy()].set_index("_key")["rank"])
    matches = g.agg(
        group=("group", "first"),
        step=("step", "first"),
        position=("position", "first"),
        op=("op", "first"),
        msg_bytes=("msg_bytes", "max"),
        ranks=("rank", "nunique"),
        last_rank=("last_rank", "first"),
        first_arrival_ns=("arrival_ns", "min"),
        last_arrival_ns=("arrival_ns", "max"),
        end_ns=("end_ns", "max"),
        total_wait_ns=("wait_ns", "sum"),
    )
    matches["spread_ns"] = matches["last_arrival_ns"] - matches["first_arrival_ns"]
    matches["transfer_ns"] = (matches["end_ns"] - matches["last_arrival_ns"]).clip(lower=0)
    matches = matches.drop(columns="end_ns").sort_values("first_arrival_ns", ignore_index=True)
    offsets = pd.DataFrame(
        {
            "rank": offset.index.astype(np.int64),
            "offset_ns": offset.to_numpy(np.int64),
            "calls": calls.groupby("rank").size().reindex(offset.index).to_numpy(np.int64),
        }
    )
    sources = a.groupby("group")["group_source"].first().to_dict()
    return CrossRank(
        calls=calls.drop(columns=["step_key"]),
        matches=matches,
        offsets=offsets,
        mismatches=mismatches,
        unpaired=unpaired,
        groups={str(k): str(v) for k, v in sources.items()},
    )


def _mismatch_detail(rows: pd.DataFrame) -> str:
    parts = []
    for (op, size), sub in rows.groupby(
        [rows["op"].fillna("?"), pd.to_numeric(rows["msg_bytes"], errors="coerce").fillna(-1)]
    ):
        ranks = ", ".join(str(int(r)) for r in sorted(sub["rank"]))
        what = f"{op}" + (f" ({int(size)} B)" if size >= 0 else "")
        parts.append(f"rank{'s' if len(sub) > 1 else ''} {ranks}: {what}")
    return "; ".join(parts)


def step_culprits(cross: CrossRank) -> pd.DataFrame:
    """Per step: the rank the others waited for most, their wait, and what it did more.

    Columns: ``step, culprit, others_wait_ns`` (rank-ns the other ranks waited at calls
    where the culprit came last), ``calls_last`` (those calls), ``calls`` (the step's
    matched calls), ``ranks``, ``excess_<cause>_ns`` for each of :data:`CAUSES`, ``cause``
    (the largest) and ``cause_share_pct`` (its share of the positive excess).
    """
    cols = [
        "step", "culprit", "others_wait_ns", "calls_last", "calls", "ranks",
        *_EXCESS, "cause", "cause_share_pct",
    ]  # fmt: skip
    calls = cross.calls
    if calls.empty or calls["step"].isna().all():
        return pd.DataFrame(columns=cols)
    calls = calls[calls["step"].notna()]
    # per call: the last rank's lead-in minus the other ranks' median, by cause
    is_last = calls["rank"] == calls["last_rank"]
    others = calls[~is_last].groupby("_key")[_LEAD].median()
    mine = calls[is_last].drop_duplicates("_key").set_index("_key")
    excess = (mine[_LEAD] - others.reindex(mine.index).fillna(0)).clip(lower=0)
    excess.columns = _EXCESS
    per_call = mine[["step", "rank"]].join(excess)
    per_call["wait"] = calls.groupby("_key")["wait_ns"].sum().reindex(mine.index)
    rows = []
    for step, sub in per_call.groupby("step", sort=True):
        by_rank = sub.groupby("rank")["wait"].sum()
        culprit = int(by_rank.idxmax())
        mine_rows = sub[sub["rank"] == culprit]
        ex = mine_rows[_EXCESS].sum()
        total = float(ex.sum())
        top = str(ex.idxmax()).removeprefix("excess_").removesuffix("_ns") if total > 0 else None
        step_calls = calls[calls["step"] == step]
        rows.append(
            [
                int(step),
                culprit,
                float(by_rank.max()),
                len(mine_rows),
                int(step_calls["_key"].nunique()),
                int(step_calls["rank"].nunique()),
                *[float(v) for v in ex.to_numpy()],
                top,
                100.0 * float(ex.max()) / total if total > 0 else np.nan,
            ]
        )
    return pd.DataFrame(rows, columns=cols)


def culprit_summary(culprits: pd.DataFrame) -> pd.DataFrame:
    """Per rank that was a step's culprit at least once: how often, what it cost, and why.

    Columns: ``rank, steps_last, steps, others_wait_ns_per_step`` (mean over the steps it
    was the culprit), ``others_wait_ns`` (total), ``cause``, ``cause_share_pct``, and
    ``excess_<cause>_ns`` summed over those steps. Sorted by the total wait, worst first.
    """
    ex_cols = _EXCESS
    cols = [
        "rank", "steps_last", "steps", "others_wait_ns_per_step", "others_wait_ns", "cause",
        "cause_share_pct", *ex_cols,
    ]  # fmt: skip
    if culprits.empty:
        return pd.DataFrame(columns=cols)
    n_steps = int(culprits["step"].nunique())
    g = culprits.groupby("culprit")
    out = g.agg(
        steps_last=("step", "nunique"),
        others_wait_ns=("others_wait_ns", "sum"),
        **{c: (c, "sum") for c in ex_cols},
    )
    out["steps"] = n_steps
    out["others_wait_ns_per_step"] = out["others_wait_ns"] / out["steps_last"]
    total = out[ex_cols].sum(axis=1)
    top = out[ex_cols].idxmax(axis=1).str.removeprefix("excess_").str.removesuffix("_ns")
    out["cause"] = top.where(total > 0)
    out["cause_share_pct"] = (100.0 * out[ex_cols].max(axis=1) / total).where(total > 0)
    out = out.reset_index().rename(columns={"culprit": "rank"})
    return out.sort_values("others_wait_ns", ascending=False, ignore_index=True)[cols]
