"""Why the GPU sat idle: each rank's idle time per CUDA stream, split into host wait, kernel
wait and other (HTA's ``get_idle_time_breakdown``).

Definition, per rank and stream, over the kernels, memory copies and memory sets in the
analysis scope (see :mod:`analyzer.analyses.gpu_kernels`; synchronisation records are left
out), in start order: the *idle interval* before an event is its start minus the end of
the event before it on that stream (negative when they overlap; none for the first one).
Each interval is

* ``host_wait`` — the CPU had not yet launched the event when the one before it ended
  (its correlated runtime call, e.g. ``cudaLaunchKernel``, starts after that end): the
  host did not enqueue work fast enough;
* ``kernel_wait`` — otherwise, a gap shorter than ``consecutive_kernel_delay_ns`` (HTA's
  default, 30 µs): the cost of launching back-to-back kernels;
* ``other`` — every other gap (waiting on another stream, an event, a synchronisation...).

``idle_time_ratio`` is the category's share of the stream's idle time (NaN when the stream
never idles). A rank without GPU events has no rows (HTA raises there).

Times are the trace's exact nanoseconds by default. HTA first rounds every event inward to
whole microseconds, which lengthens each gap by up to 2 µs: on traces of many short
kernels it reports noticeably more kernel wait. ``rounding="hta"`` reproduces its numbers
to the microsecond (tests/test_analyses_kineto.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from analyzer.analyses.gpu_kernels import Rounding, Scope, cpu_correlated_events, gpu_events
from analyzer.analyses.kernel_classes import GPU_WORK_CATEGORIES

__all__ = [
    "IDLE_CATEGORIES",
    "IDLE_COLUMNS",
    "idle_time_breakdown",
    "idle_time_by_rank",
    "stream_idle_summary",
]

IDLE_CATEGORIES = ("host_wait", "kernel_wait", "other")
IDLE_COLUMNS = [
    "rank",
    "stream",
    "idle_category",
    "idle_time_ns",
    "idle_intervals",
    "idle_time_ratio",
]
#: the GPU event categories HTA breaks idle time down over (no ``cuda_sync``)
_WORK_CATS = GPU_WORK_CATEGORIES


def _launch_starts(source: Any, rounding: Rounding) -> pd.DataFrame:
    """Start of the CPU-side event correlated with each GPU event: rank, correlation, launch_ns."""
    df = cpu_correlated_events(source, rounding=rounding)
    df = df.sort_values("start_ns", kind="stable").drop_duplicates(
        ["rank", "correlation"], keep="first"
    )
    return df.rename(columns={"start_ns": "launch_ns"})[["rank", "correlation", "launch_ns"]]


def _stream_gaps(
    source: Any, consecutive_kernel_delay_ns: int, scope: Scope, rounding: Rounding
) -> pd.DataFrame:
    """The GPU work events of each stream in order, each with the gap before it and its
    category: rank, stream, start_ns, end_ns, idle_category, interval (Int64, NA first)."""
    ev = gpu_events(source, scope=scope, rounding=rounding)
    ev = ev[ev["cat"].astype(object).isin(_WORK_CATS) & ev["stream"].notna() & (ev["stream"] != -1)]
    if ev.empty:
        return pd.DataFrame(
            columns=["rank", "stream", "start_ns", "end_ns", "idle_category", "interval"]
        )
    ev = ev[["rank", "stream", "start_ns", "end_ns", "correlation"]].copy()
    ev["stream"] = ev["stream"].astype(np.int64)
    launches = _launch_starts(source, rounding)
    ev["correlation"] = ev["correlation"].astype("Int64")
    launches["correlation"] = launches["correlation"].astype("Int64")
    ev = ev.merge(launches, on=["rank", "correlation"], how="left")
    ev = ev.sort_values(["rank", "stream", "start_ns"], kind="stable", ignore_index=True)
    # integer nanoseconds throughout: epoch ns in float64 would be off by up to 256 ns
    rank = ev["rank"].to_numpy(dtype=np.int64)
    stream = ev["stream"].to_numpy(dtype=np.int64)
    start = ev["start_ns"].to_numpy(dtype=np.int64)
    end = ev["end_ns"].to_numpy(dtype=np.int64)
    has_prev = np.zeros(len(ev), dtype=bool)
    has_prev[1:] = (rank[1:] == rank[:-1]) & (stream[1:] == stream[:-1])
    prev_end = np.zeros(len(ev), dtype=np.int64)
    prev_end[1:] = end[:-1]
    interval = start - prev_end
    launch_known = ev["launch_ns"].notna().to_numpy()
    launch = ev["launch_ns"].fillna(0).to_numpy(dtype=np.int64)
    host_wait = has_prev & launch_known & (launch > prev_end)
    kernel_wait = has_prev & ~host_wait & (interval < consecutive_kernel_delay_ns)
    ev["idle_category"] = np.select([host_wait, kernel_wait], ["host_wait", "kernel_wait"], "other")
    ev["interval"] = pd.array(np.where(has_prev, interval, 0), dtype="Int64")
    ev.loc[~has_prev, "interval"] = pd.NA  # each stream's first event has no gap before it
    return ev.drop(columns=["correlation", "launch_ns"])


def idle_time_breakdown(
    source: Any,
    *,
    consecutive_kernel_delay_ns: int = 30_000,
    scope: Scope = "hta",
    rounding: Rounding = "none",
) -> pd.DataFrame:
    """Idle time per rank, stream and category (see the module docstring).

    Columns: rank, stream, idle_category (every category, zero where none), idle_time_ns,
    idle_intervals (how many gaps fell in the category), idle_time_ratio (0-1).
    """
    ev = _stream_gaps(source, consecutive_kernel_delay_ns, scope, rounding)
    if ev.empty:
        return pd.DataFrame(
            {c: pd.Series(dtype=object if c == "idle_category" else float) for c in IDLE_COLUMNS}
        )
    keys = ev[["rank", "stream"]].drop_duplicates()
    full = keys.merge(pd.DataFrame({"idle_category": list(IDLE_CATEGORIES)}), how="cross")
    sums = (
        ev.groupby(["rank", "stream", "idle_category"], sort=False)["interval"]
        .agg(idle_time_ns="sum", idle_intervals="count")
        .reset_index()
    )
    out = full.merge(sums, on=["rank", "stream", "idle_category"], how="left")
    out["idle_time_ns"] = out["idle_time_ns"].fillna(0).astype(np.int64)
    out["idle_intervals"] = out["idle_intervals"].fillna(0).astype(np.int64)
    total = out.groupby(["rank", "stream"], sort=False)["idle_time_ns"].transform("sum")
    out["idle_time_ratio"] = (out["idle_time_ns"] / total.where(total != 0).astype(float)).astype(
        float
    )
    out["rank"] = out["rank"].astype(np.int32)
    return out.sort_values(["rank", "stream"], kind="stable", ignore_index=True)[IDLE_COLUMNS]


def idle_time_by_rank(breakdown: pd.DataFrame) -> pd.DataFrame:
    """Per rank, the idle time of all its streams by category: rank, host_wait_ns,
    kernel_wait_ns, other_ns, idle_ns, and each category's share of it (``*_pct``)."""
    cols = [
        "rank",
        *(f"{c}_ns" for c in IDLE_CATEGORIES),
        "idle_ns",
        *(f"{c}_pct" for c in IDLE_CATEGORIES),
    ]
    if breakdown.empty:
        return pd.DataFrame(columns=cols)
    wide = breakdown.pivot_table(
        index="rank", columns="idle_category", values="idle_time_ns", aggfunc="sum", fill_value=0.0
    )
    wide = wide.reindex(columns=list(IDLE_CATEGORIES), fill_value=0.0)
    out = pd.DataFrame({"rank": wide.index.astype(np.int32)})
    for c in IDLE_CATEGORIES:
        out[f"{c}_ns"] = wide[c].to_numpy()
    out["idle_ns"] = out[[f"{c}_ns" for c in IDLE_CATEGORIES]].sum(axis=1)
    for c in IDLE_CATEGORIES:
        out[f"{c}_pct"] = (out[f"{c}_ns"] / out["idle_ns"].where(out["idle_ns"] != 0) * 100).astype(
            float
        )
    return out[cols]


def stream_idle_summary(
    source: Any,
    *,
    consecutive_kernel_delay_ns: int = 30_000,
    scope: Scope = "hta",
    rounding: Rounding = "none",
) -> pd.DataFrame:
    """Per rank and stream: its span (first start to last end), busy time (sum of its
    events' durations: work on one stream runs one event at a time) and idle time by
    category. Columns: rank, stream, events, span_ns, busy_ns, host_wait_ns, kernel_wait_ns,
    other_ns."""
    cols = ["rank", "stream", "events", "span_ns", "busy_ns", *(f"{c}_ns" for c in IDLE_CATEGORIES)]
    ev = _stream_gaps(source, consecutive_kernel_delay_ns, scope, rounding)
    if ev.empty:
        return pd.DataFrame(columns=cols)
    ev = ev.assign(dur=ev["end_ns"] - ev["start_ns"])
    g = ev.groupby(["rank", "stream"], sort=True)
    out = g.agg(
        events=("start_ns", "size"),
        first=("start_ns", "min"),
        last=("end_ns", "max"),
        busy_ns=("dur", "sum"),
    )
    out["span_ns"] = out["last"] - out["first"]
    gaps = ev.pivot_table(
        index=["rank", "stream"],
        columns="idle_category",
        values="interval",
        aggfunc="sum",
        fill_value=0,
    )
    for c in IDLE_CATEGORIES:
        out[f"{c}_ns"] = (
            gaps[c].reindex(out.index, fill_value=0).astype(np.int64) if c in gaps else 0
        )
    return out.reset_index()[cols]
