"""Analyses over a job's tables: pure functions of a :class:`~analyzer.ingest.JobDataset` (or
its ``kineto_events`` as a pyarrow Table / pandas DataFrame) returning pandas DataFrames.

Their definitions follow Holistic Trace Analysis (HTA) so that the numbers compare with it:

* :mod:`~analyzer.analyses.kernel_classes` — the table that classifies kernel / op names as
  COMMUNICATION (NCCL, RCCL, HCCL, SageMaker smddp, gloo, Horovod, MPI, c10d), MEMORY
  (Memcpy / Memset), OTHER (GPU synchronisation records) or COMPUTATION.
* :mod:`~analyzer.analyses.gpu_kernels` — the GPU events in scope (HTA's trimming of the last
  ProfilerStep), kernel-type shares with overlap rows, per-class totals, top kernels.
* :mod:`~analyzer.analyses.temporal` — compute / non-compute / idle GPU time per rank.
* :mod:`~analyzer.analyses.idle_time` — why the GPU idled: host wait / kernel wait / other,
  per rank and CUDA stream.
* :mod:`~analyzer.analyses.kernel_launch` — each kernel's launch call, run time and queue
  delay, and HTA's launch outliers per rank.
* :mod:`~analyzer.analyses.annotations` — GPU time per ``record_function`` label.
* :mod:`~analyzer.analyses.memory` — the caching allocator's memory per rank and device,
  over time and at each step's start.
* :mod:`~analyzer.analyses.timeline` — one step's CPU threads and CUDA streams, every rank.
* :mod:`~analyzer.analyses.communication` — communication time, exposed communication,
  communication/computation overlap, per-collective sizes and bandwidth.
* :mod:`~analyzer.analyses.cross_rank` — collectives matched across ranks: clock offsets,
  each call's last rank and waits, per step the rank the others waited for and why.
* :mod:`~analyzer.analyses.intervals` — vectorised interval union / intersection helpers.

Times are integer nanoseconds (``*_ns``), shares are percent (``*_pct``, 0-100).
``rounding="hta"`` reproduces HTA's whole-microsecond rounding of event times, for exact
comparisons; the default keeps the tables' nanoseconds.
"""

from analyzer.analyses.annotations import gpu_annotation_breakdown
from analyzer.analyses.communication import (
    collective_calls,
    collective_summary,
    communication_summary,
    normalize_collective,
)
from analyzer.analyses.gpu_kernels import (
    gpu_events,
    kernel_class_totals,
    kernel_type_breakdown,
    last_step_starts,
    top_kernels,
)
from analyzer.analyses.idle_time import idle_time_breakdown, idle_time_by_rank
from analyzer.analyses.intervals import (
    intersection_length,
    merge_intervals,
    merge_intervals_grouped,
    state_durations,
    subtract_length,
    union_length,
    union_length_grouped,
)
from analyzer.analyses.kernel_classes import (
    COMMUNICATION,
    COMPUTATION,
    KERNEL_CLASS_TABLE,
    KERNEL_CLASSES,
    MEMORY,
    OTHER,
    KernelClassRule,
    classify,
    kernel_class,
)
from analyzer.analyses.kernel_launch import kernel_launch_stats, kernel_launch_summary
from analyzer.analyses.temporal import temporal_breakdown

__all__ = [
    "COMMUNICATION",
    "COMPUTATION",
    "KERNEL_CLASSES",
    "KERNEL_CLASS_TABLE",
    "MEMORY",
    "OTHER",
    "KernelClassRule",
    "classify",
    "collective_calls",
    "collective_summary",
    "communication_summary",
    "gpu_annotation_breakdown",
    "gpu_events",
    "idle_time_breakdown",
    "idle_time_by_rank",
    "intersection_length",
    "kernel_class",
    "kernel_class_totals",
    "kernel_launch_stats",
    "kernel_launch_summary",
    "kernel_type_breakdown",
    "last_step_starts",
    "merge_intervals",
    "merge_intervals_grouped",
    "normalize_collective",
    "state_durations",
    "subtract_length",
    "temporal_breakdown",
    "top_kernels",
    "union_length",
    "union_length_grouped",
]
