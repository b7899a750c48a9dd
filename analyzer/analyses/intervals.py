"""Vectorised interval arithmetic on half-open integer intervals ``[start, end)``.

Every function takes numpy-compatible arrays of starts and ends (integers, nanoseconds in
this project) and works with sorts, cumulative sums and ``bincount``-style reductions: no
Python loop runs per interval, so millions of kernels take well under a second.

Grouped variants take a ``group`` array (rank, stream, ...): intervals of different groups
never merge or overlap one another. Their results carry the group labels as given.

Definitions
-----------
* *union* of a set of intervals: the smallest set of disjoint intervals covering the same
  points; its *length* is the measure of that set (overlapping time counted once).
* *state* of an instant (with intervals labelled by class ``0..k-1``): the bit mask with bit
  ``c`` set when at least one interval of class ``c`` covers the instant.
  :func:`state_durations` measures, per group, how long each non-zero state lasts, which
  is how Holistic Trace Analysis attributes overlapping kernel types ("COMPUTATION
  overlapping COMMUNICATION" is the time where both bits are set).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "covered_in_windows",
    "intersection_length",
    "merge_intervals",
    "merge_intervals_grouped",
    "state_durations",
    "state_name",
    "subtract_length",
    "union_length",
    "union_length_grouped",
]


def _as_int64(a: Any) -> np.ndarray:
    arr = np.asarray(a)
    if arr.dtype.kind == "f":
        if np.isnan(arr).any():
            raise ValueError("interval bounds must not be NaN; drop rows with unknown times first")
        return arr.astype(np.int64)
    return arr.astype(np.int64, copy=False)


def _check(start: np.ndarray, end: np.ndarray) -> None:
    if start.shape != end.shape:
        raise ValueError(f"start and end differ in length: {start.shape} vs {end.shape}")


def merge_intervals(start: Any, end: Any) -> tuple[np.ndarray, np.ndarray]:
    """Union of ``[start, end)`` intervals as sorted, disjoint ``(starts, ends)`` arrays.

    Intervals that touch (one ends where the next starts) are merged, as HTA's
    ``merge_kernel_intervals`` does. Empty intervals (``end <= start``) contribute nothing
    but may be absorbed by a merged run; the union's length is unaffected either way.
    """
    s = _as_int64(start)
    e = _as_int64(end)
    _check(s, e)
    if s.size == 0:
        return s[:0].copy(), e[:0].copy()
    order = np.argsort(s, kind="stable")
    s, e = s[order], e[order]
    e = np.maximum(e, s)  # a negative duration counts as empty
    run_end = np.maximum.accumulate(e)
    new_run = np.empty(s.size, dtype=bool)
    new_run[0] = True
    new_run[1:] = s[1:] > run_end[:-1]
    first = np.flatnonzero(new_run)
    last = np.append(first[1:] - 1, s.size - 1)
    return s[first], run_end[last]


def covered_in_windows(run_lo: np.ndarray, run_hi: np.ndarray, a: Any, b: Any) -> np.ndarray:
    """Length of each window ``[a, b)`` covered by the sorted, disjoint runs
    ``[run_lo, run_hi)`` (as :func:`merge_intervals` returns them), for many windows at
    once: the covered length before ``b`` minus the covered length before ``a``."""
    lo, hi = _as_int64(run_lo), _as_int64(run_hi)
    a, b = np.atleast_1d(_as_int64(a)), np.atleast_1d(_as_int64(b))
    if lo.size == 0:
        return np.zeros(len(a), dtype=np.int64)
    before = np.concatenate([[0], np.cumsum(hi - lo)[:-1]])

    def upto(t: np.ndarray) -> np.ndarray:
        j = np.searchsorted(lo, t, side="right") - 1
        jj = np.clip(j, 0, None)
        inside = np.clip(t - lo[jj], 0, hi[jj] - lo[jj])
        return np.where(j >= 0, before[jj] + inside, 0)

    return np.clip(upto(b) - upto(a), 0, None)


def union_length(start: Any, end: Any) -> int:
    """Length of the union of the intervals (overlapping time counted once)."""
    ms, me = merge_intervals(start, end)
    return int((me - ms).sum())


def merge_intervals_grouped(group: Any, start: Any, end: Any) -> pd.DataFrame:
    """Union per group: a DataFrame ``group, start, end`` of disjoint runs, sorted."""
    g_codes, g_labels = pd.factorize(pd.Series(np.asarray(group)), sort=True)
    s = _as_int64(start)
    e = _as_int64(end)
    _check(s, e)
    if s.size == 0:
        return pd.DataFrame({"group": pd.Series([], dtype=object), "start": s[:0], "end": e[:0]})
    e = np.maximum(e, s)
    order = np.lexsort((s, g_codes))
    g, s, e = g_codes[order], s[order], e[order]
    run_end = pd.Series(e).groupby(g).cummax().to_numpy()
    new_run = np.empty(s.size, dtype=bool)
    new_run[0] = True
    new_run[1:] = (g[1:] != g[:-1]) | (s[1:] > run_end[:-1])
    first = np.flatnonzero(new_run)
    last = np.append(first[1:] - 1, s.size - 1)
    return pd.DataFrame(
        {
            "group": np.asarray(g_labels)[g[first]],
            "start": s[first],
            "end": run_end[last],
        }
    )


def union_length_grouped(group: Any, start: Any, end: Any) -> pd.Series:
    """Union length per group, as a Series indexed by group label."""
    merged = merge_intervals_grouped(group, start, end)
    return (merged["end"] - merged["start"]).groupby(merged["group"]).sum().astype(np.int64)


def state_durations(
    group: Any,
    start: Any,
    end: Any,
    cls: Any,
    n_classes: int | None = None,
) -> pd.DataFrame:
    """Time each class combination ("state") covers, per group.

    ``cls`` gives each interval's class as an integer ``0..n_classes-1``. The result has
    one row per (group, non-zero state) with columns ``group``, ``state`` (bit mask: bit
    ``c`` set when class ``c`` is active) and ``duration`` (total length of the instants in
    that state). Overlaps inside one class count once. Summing ``duration`` over a group's
    states gives the length of the union of all its intervals.
    """
    s = _as_int64(start)
    e = _as_int64(end)
    c = np.asarray(cls).astype(np.int64, copy=False)
    _check(s, e)
    if c.shape != s.shape:
        raise ValueError("cls must have one class per interval")
    empty = pd.DataFrame(
        {
            "group": pd.Series([], dtype=object),
            "state": np.zeros(0, np.int64),
            "duration": np.zeros(0, np.int64),
        }
    )
    if s.size == 0:
        return empty
    if (c < 0).any():
        raise ValueError("classes must be non-negative")
    k = int(c.max()) + 1 if n_classes is None else int(n_classes)
    if k > 62:
        raise ValueError("at most 62 classes")
    g_codes, g_labels = pd.factorize(pd.Series(np.asarray(group)), sort=True)
    e = np.maximum(e, s)
    n = s.size
    times = np.concatenate([s, e])
    grp = np.concatenate([g_codes, g_codes]).astype(np.int64)
    delta = np.concatenate([np.ones(n, np.int64), -np.ones(n, np.int64)])
    klass = np.concatenate([c, c])
    # Ends sort before starts at the same instant; any order gives the same durations
    # (ties only create zero-length segments), this one keeps counts non-negative.
    order = np.lexsort((delta, times, grp))
    times, grp, delta, klass = times[order], grp[order], delta[order], klass[order]
    state = np.zeros(2 * n, dtype=np.int64)
    for bit in range(k):
        active = np.cumsum(np.where(klass == bit, delta, 0))
        state |= (active > 0).astype(np.int64) << bit
    seg = times[1:] - times[:-1]
    keep = (grp[1:] == grp[:-1]) & (state[:-1] > 0) & (seg > 0)
    if not keep.any():
        return empty
    frame = pd.DataFrame(
        {"group": grp[:-1][keep], "state": state[:-1][keep], "duration": seg[keep]}
    )
    out = frame.groupby(["group", "state"], sort=True, as_index=False)["duration"].sum()
    out["group"] = np.asarray(g_labels)[out["group"].to_numpy()]
    return out


def state_name(state: int, class_names: Sequence[str], joiner: str = " overlapping ") -> str:
    """Name of a state bit mask, e.g. ``"COMPUTATION overlapping COMMUNICATION"``.

    Classes appear in the order of ``class_names`` (bit 0 first), as HTA names them.
    """
    return joiner.join(name for bit, name in enumerate(class_names) if state & (1 << bit))


def intersection_length(a_start: Any, a_end: Any, b_start: Any, b_end: Any) -> int:
    """Length of ``union(A) ∩ union(B)``."""
    a_s, a_e, b_s, b_e = (_as_int64(x) for x in (a_start, a_end, b_start, b_end))
    start = np.concatenate([a_s, b_s])
    end = np.concatenate([a_e, b_e])
    cls = np.concatenate([np.zeros(a_s.size, np.int64), np.ones(b_s.size, np.int64)])
    states = state_durations(np.zeros(start.size, np.int64), start, end, cls, n_classes=2)
    return int(states.loc[states["state"] == 3, "duration"].sum())


def subtract_length(a_start: Any, a_end: Any, b_start: Any, b_end: Any) -> int:
    """Length of ``union(A) \\ union(B)``: the part of A that no interval of B covers."""
    a_s, a_e, b_s, b_e = (_as_int64(x) for x in (a_start, a_end, b_start, b_end))
    start = np.concatenate([a_s, b_s])
    end = np.concatenate([a_e, b_e])
    cls = np.concatenate([np.zeros(a_s.size, np.int64), np.ones(b_s.size, np.int64)])
    states = state_durations(np.zeros(start.size, np.int64), start, end, cls, n_classes=2)
    return int(states.loc[states["state"] == 1, "duration"].sum())
