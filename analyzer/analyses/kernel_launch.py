"""What launching each GPU kernel cost: the CPU-side launch call, the kernel, and the delay
between them (HTA's ``get_cuda_kernel_launch_stats``).

Definition, per rank: each GPU event in the analysis scope (see
:mod:`analyzer.analyses.gpu_kernels`) whose correlation id matches a CPU-side launch call
(``cudaLaunchKernel``, ``cudaLaunchKernelExC``, ``cudaMemcpyAsync``, ``cudaMemsetAsync``,
with CUDA's versioned ``_v<N>`` names, the driver's ``cuLaunchKernel[Ex]``, CUDA graph
launches, and ROCm's HIP equivalents, from the one table
``kernel_classes.LAUNCH_CALLS``; HTA matches the first four exactly) is paired with that
call:

* ``cpu_duration_ns`` — how long the launch call ran on the CPU;
* ``gpu_duration_ns`` — how long the kernel (or copy / set) ran on the GPU;
* ``launch_delay_ns`` — from the end of the launch call to the start of the kernel, 0 when
  the kernel started before the call returned: the time the work sat in the stream's queue.

:func:`kernel_launch_summary` counts, per rank, HTA's three kinds of outliers: *short
kernels* (the GPU ran the kernel faster than the CPU launched it, with a launch call of at
most ``runtime_cutoff_ns``: launch-bound work, candidates for fusion or CUDA graphs),
*runtime outliers* (launch calls longer than ``runtime_cutoff_ns``) and *launch-delay
outliers* (queued longer than ``launch_delay_cutoff_ns``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from analyzer.analyses.gpu_kernels import Rounding, Scope, cpu_correlated_events, gpu_events
from analyzer.analyses.kernel_classes import launch_call_pattern

__all__ = [
    "LAUNCH_CALL_PATTERN",
    "LAUNCH_COLUMNS",
    "SUMMARY_COLUMNS",
    "kernel_launch_stats",
    "kernel_launch_summary",
]

#: CPU-side calls that put work on a GPU stream (kernel_classes.LAUNCH_CALLS: CUDA and HIP)
LAUNCH_CALL_PATTERN = launch_call_pattern()
LAUNCH_COLUMNS = [
    "rank",
    "correlation",
    "name",
    "stream",
    "cpu_duration_ns",
    "gpu_duration_ns",
    "launch_delay_ns",
]
SUMMARY_COLUMNS = [
    "rank", "kernels", "cpu_duration_mean_ns", "gpu_duration_mean_ns", "launch_delay_mean_ns",
    "launch_delay_max_ns", "short_kernels", "runtime_outliers", "launch_delay_outliers",
]  # fmt: skip


def kernel_launch_stats(
    source: Any, *, scope: Scope = "hta", rounding: Rounding = "none"
) -> pd.DataFrame:
    """One row per GPU event and its launch call (see the module docstring), by rank and
    GPU start. Columns: rank, correlation, name, stream, cpu_duration_ns, gpu_duration_ns,
    launch_delay_ns. Empty (same columns) for traces without GPU events."""
    ev = gpu_events(source, scope=scope, rounding=rounding)
    ev = ev[ev["correlation"].notna()]
    if ev.empty:
        return pd.DataFrame(
            {c: pd.Series(dtype=object if c == "name" else np.int64) for c in LAUNCH_COLUMNS}
        )
    calls = cpu_correlated_events(source, rounding=rounding, name_pattern=LAUNCH_CALL_PATTERN)
    ev = ev[["rank", "correlation", "name", "stream", "start_ns", "end_ns"]].astype(
        {"correlation": np.int64}
    )
    calls = calls.astype({"correlation": np.int64})
    joined = ev.merge(calls, on=["rank", "correlation"], how="inner", suffixes=("_gpu", "_cpu"))
    out = pd.DataFrame(
        {
            "rank": joined["rank"].astype(np.int32),
            "correlation": joined["correlation"],
            "name": joined["name"].astype(object),
            "stream": joined["stream"].astype(np.int64),
            "cpu_duration_ns": (joined["end_ns_cpu"] - joined["start_ns_cpu"]).astype(np.int64),
            "gpu_duration_ns": (joined["end_ns_gpu"] - joined["start_ns_gpu"]).astype(np.int64),
            "launch_delay_ns": (joined["start_ns_gpu"] - joined["end_ns_cpu"])
            .clip(lower=0)
            .astype(np.int64),
            "_start": joined["start_ns_gpu"],
        }
    )
    return out.sort_values(["rank", "_start"], kind="stable", ignore_index=True)[LAUNCH_COLUMNS]


def kernel_launch_summary(
    stats: pd.DataFrame, *, runtime_cutoff_ns: int = 50_000, launch_delay_cutoff_ns: int = 100_000
) -> pd.DataFrame:
    """Per rank: how many launches, mean launch-call / kernel / queue times, the longest queue
    time, and HTA's outlier counts (defaults: HTA's 50 µs and 100 µs cutoffs)."""
    if stats.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    s = stats.assign(
        short=(stats["gpu_duration_ns"] < stats["cpu_duration_ns"])
        & (stats["cpu_duration_ns"] <= runtime_cutoff_ns),
        runtime_outlier=stats["cpu_duration_ns"] > runtime_cutoff_ns,
        delay_outlier=stats["launch_delay_ns"] > launch_delay_cutoff_ns,
    )
    out = s.groupby("rank", sort=True).agg(
        kernels=("correlation", "size"),
        cpu_duration_mean_ns=("cpu_duration_ns", "mean"),
        gpu_duration_mean_ns=("gpu_duration_ns", "mean"),
        launch_delay_mean_ns=("launch_delay_ns", "mean"),
        launch_delay_max_ns=("launch_delay_ns", "max"),
        short_kernels=("short", "sum"),
        runtime_outliers=("runtime_outlier", "sum"),
        launch_delay_outliers=("delay_outlier", "sum"),
    )
    return out.reset_index()[SUMMARY_COLUMNS]
