"""Allocator memory from the PyTorch profiler's memory events (``profile_memory=True``, which
``stepscope.collectors.profiling.profile_training`` turns on): what each rank's caching
allocator held, per device, over time and step by step.

Each ``[memory]`` instant event carries the allocator's totals right after one allocation or
free: ``mem_total_allocated`` (bytes in live tensors) and ``mem_total_reserved`` (bytes the
caching allocator holds from the device). Device -1 is host memory, 0.. are GPUs. Unlike
SageMaker's GPUMemoryUtilization system metric (sampled by the node, all processes), this is
one process's own tensors, so it also works for jobs without SageMaker's system monitor.

*Allocated at a step's start* is the total after the last memory event before the step
starts (before the first event: unknown). In steady-state training it is the same every
step; if it grows step after step, tensors outlive the step (a leak).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow.compute as pc

from analyzer.analyses.gpu_kernels import _col, kineto_events_table
from analyzer.ingest.dataset import JobDataset

__all__ = [
    "MEMORY_COLUMNS",
    "STEP_MEMORY_COLUMNS",
    "allocator_memory",
    "allocator_memory_by_step",
    "allocator_memory_summary",
]

MEMORY_COLUMNS = ["rank", "device", "t_ns", "allocated_bytes", "reserved_bytes"]
STEP_MEMORY_COLUMNS = [
    "rank",
    "device",
    "step",
    "start_ns",
    "allocated_at_start_bytes",
    "peak_allocated_bytes",
]


def allocator_memory(source: Any) -> pd.DataFrame:
    """Every memory event: rank, device, t_ns, allocated_bytes, reserved_bytes (by rank,
    device, time)."""
    table = kineto_events_table(source)
    empty = pd.DataFrame({c: pd.Series(dtype=np.int64) for c in MEMORY_COLUMNS})
    if table.num_rows == 0:
        return empty
    keep = pc.and_(
        pc.is_valid(_col(table, "mem_total_allocated")), pc.is_valid(_col(table, "start_ns"))
    )
    sub = table.filter(pc.fill_null(keep, False))
    if sub.num_rows == 0:
        return empty
    df = pd.DataFrame(
        {
            "rank": _col(sub, "rank").to_numpy().astype(np.int32),
            "device": pc.fill_null(_col(sub, "device"), -1).to_numpy().astype(np.int32),
            "t_ns": _col(sub, "start_ns").to_numpy().astype(np.int64),
            "allocated_bytes": _col(sub, "mem_total_allocated").to_numpy().astype(np.int64),
            "reserved_bytes": pc.fill_null(_col(sub, "mem_total_reserved"), 0)
            .to_numpy()
            .astype(np.int64),
        }
    )
    return df.sort_values(["rank", "device", "t_ns"], kind="stable", ignore_index=True)


def allocator_memory_by_step(ds: JobDataset, memory: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per rank, device and profiled step (``ProfilerStep#N``): allocated bytes at the step's
    start (see the module docstring) and the peak allocated during the step."""
    mem = allocator_memory(ds) if memory is None else memory
    steps = ds.to_pandas("steps")
    if mem.empty or steps.empty:
        return pd.DataFrame({c: pd.Series(dtype=np.int64) for c in STEP_MEMORY_COLUMNS})
    steps = steps[steps["source"].astype(object) == "kineto"][
        ["rank", "step", "start_ns", "dur_ns"]
    ].dropna()
    out = []
    for (rank, device), m in mem.groupby(["rank", "device"], sort=True):
        st = steps[steps["rank"] == rank].sort_values("start_ns")
        if st.empty:
            continue
        t = m["t_ns"].to_numpy()
        alloc = m["allocated_bytes"].to_numpy()
        starts = st["start_ns"].to_numpy(dtype=np.int64)
        ends = starts + st["dur_ns"].to_numpy(dtype=np.int64)
        before = np.searchsorted(t, starts, side="left") - 1  # last event before the start
        at_start = np.where(before >= 0, alloc[np.maximum(before, 0)], -1)
        lo = np.searchsorted(t, starts, side="left")
        hi = np.searchsorted(t, ends, side="left")
        peak = np.array(
            [alloc[a:b].max() if b > a else -1 for a, b in zip(lo, hi, strict=True)], dtype=np.int64
        )
        out.append(
            pd.DataFrame(
                {
                    "rank": np.int32(rank),
                    "device": np.int32(device),
                    "step": st["step"].to_numpy(dtype=np.int64),
                    "start_ns": starts,
                    "allocated_at_start_bytes": pd.array(
                        [v if v >= 0 else None for v in at_start.tolist()], dtype="Int64"
                    ),
                    "peak_allocated_bytes": pd.array(
                        [v if v >= 0 else None for v in peak.tolist()], dtype="Int64"
                    ),
                }
            )
        )
    if not out:
        return pd.DataFrame({c: pd.Series(dtype=np.int64) for c in STEP_MEMORY_COLUMNS})
    return pd.concat(out, ignore_index=True)[STEP_MEMORY_COLUMNS]


def allocator_memory_summary(ds: JobDataset, memory: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per rank and device: peak allocated and reserved bytes, and over the profiled steps
    whose start is known, the first and last allocation at a step's start, how many steps
    grew (``growing_steps``: start-to-start increases) and the least-squares growth per step.

    Columns: rank, device, peak_allocated_bytes, peak_reserved_bytes, steps,
    first_step_bytes, last_step_bytes, growing_steps, growth_per_step_bytes.
    """
    cols = ["rank", "device", "peak_allocated_bytes", "peak_reserved_bytes", "steps",
            "first_step_bytes", "last_step_bytes", "growing_steps",
            "growth_per_step_bytes"]  # fmt: skip
    mem = allocator_memory(ds) if memory is None else memory
    if mem.empty:
        return pd.DataFrame(columns=cols)
    by_step = allocator_memory_by_step(ds, mem)
    rows = []
    for (rank, device), m in mem.groupby(["rank", "device"], sort=True):
        s = by_step[(by_step["rank"] == rank) & (by_step["device"] == device)].dropna(
            subset=["allocated_at_start_bytes"]
        )
        a = s["allocated_at_start_bytes"].to_numpy(dtype=np.float64)
        slope = float(np.polyfit(np.arange(len(a)), a, 1)[0]) if len(a) >= 2 else float("nan")
        rows.append(
            {
                "rank": int(rank), "device": int(device),
                "peak_allocated_bytes": int(m["allocated_bytes"].max()),
                "peak_reserved_bytes": int(m["reserved_bytes"].max()),
                "steps": len(a), "first_step_bytes": int(a[0]) if len(a) else None,
                "last_step_bytes": int(a[-1]) if len(a) else None,
                "growing_steps": int((np.diff(a) > 0).sum()) if len(a) >= 2 else 0,
                "growth_per_step_bytes": slope,
            }
        )  # fmt: skip
    return pd.DataFrame(rows, columns=cols)
