"""Temporal breakdown of each rank's GPU time into compute, non-compute and idle (HTA's
``get_temporal_breakdown``).

Definition, per rank, over the GPU events in the analysis scope (see
:mod:`analyzer.analyses.gpu_kernels`; every class, ``OTHER`` included):

* ``kernel_time_ns`` — from the start of the first GPU event to the end of the last one.
* ``idle_time_ns`` — the part of that span no GPU event covers
  (``kernel_time_ns - |union of all GPU events|``).
* ``compute_time_ns`` — length of the union of the COMPUTATION kernels.
* ``non_compute_time_ns`` — busy time no computation kernel covers: communication, memory
  copies/sets and synchronisation not hidden under computation
  (``|union of all| - compute_time_ns``).

The three add up to ``kernel_time_ns``; the ``*_pct`` columns are their shares of it.
A rank without GPU events has no row: a CPU-only trace gives an empty DataFrame with the
same columns (HTA raises an IndexError there).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from analyzer.analyses.gpu_kernels import Rounding, Scope, gpu_events
from analyzer.analyses.intervals import state_durations
from analyzer.analyses.kernel_classes import COMPUTATION

__all__ = ["TEMPORAL_COLUMNS", "temporal_breakdown"]

TEMPORAL_COLUMNS = [
    "rank",
    "kernel_time_ns",
    "compute_time_ns",
    "non_compute_time_ns",
    "idle_time_ns",
    "compute_time_pct",
    "non_compute_time_pct",
    "idle_time_pct",
]


def temporal_breakdown(
    source: Any, *, scope: Scope = "hta", rounding: Rounding = "none"
) -> pd.DataFrame:
    """Per rank compute / non-compute / idle GPU time and percentages (see module docstring).

    ``source`` is a JobDataset, or its ``kineto_events`` as a pyarrow Table or pandas
    DataFrame. Columns: :data:`TEMPORAL_COLUMNS`, one row per rank that has GPU events.
    """
    ev = gpu_events(source, scope=scope, rounding=rounding)
    if ev.empty:
        return pd.DataFrame(
            {
                c: pd.Series(
                    [],
                    dtype="int32" if c == "rank" else "float64" if c.endswith("pct") else "int64",
                )
                for c in TEMPORAL_COLUMNS
            }
        )
    rank = ev["rank"].to_numpy()
    start = ev["start_ns"].to_numpy()
    end = ev["end_ns"].to_numpy()
    is_comp = (ev["kernel_class"] == COMPUTATION).to_numpy().astype(np.int64)
    # bit 0: any GPU event, bit 1: computation kernel. Every instant with bit 1 has bit 0.
    cls = np.concatenate([np.zeros(len(ev), np.int64), np.ones(int(is_comp.sum()), np.int64)])
    comp = is_comp.astype(bool)
    states = state_durations(
        np.concatenate([rank, rank[comp]]),
        np.concatenate([start, start[comp]]),
        np.concatenate([end, end[comp]]),
        cls,
        n_classes=2,
    )
    busy = states.groupby("group")["duration"].sum()
    compute = states[states["state"] == 3].groupby("group")["duration"].sum()
    span = ev.groupby("rank").agg(first=("start_ns", "min"), last=("end_ns", "max"))
    out = pd.DataFrame(index=span.index)
    out["kernel_time_ns"] = (span["last"] - span["first"]).astype(np.int64)
    out["compute_time_ns"] = compute.reindex(out.index, fill_value=0).astype(np.int64)
    busy_ns = busy.reindex(out.index, fill_value=0).astype(np.int64)
    out["non_compute_time_ns"] = busy_ns - out["compute_time_ns"]
    out["idle_time_ns"] = out["kernel_time_ns"] - busy_ns
    denom = out["kernel_time_ns"].where(out["kernel_time_ns"] > 0)
    for part in ("compute", "non_compute", "idle"):
        out[f"{part}_time_pct"] = 100.0 * out[f"{part}_time_ns"] / denom
    out = out.reset_index().rename(columns={"index": "rank"})
    out["rank"] = out["rank"].astype(np.int32)
    return out[TEMPORAL_COLUMNS]
