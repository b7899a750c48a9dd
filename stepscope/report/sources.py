"""Where each node's system metrics came from: stepscope's collector, files in SageMaker
Debugger's format, or CloudWatch's one-minute instance metrics.

Why the report says it: a verdict on 0.5 s samples and one on one-minute averages are not the
same evidence (CloudWatch cannot show a short stall or one idle GPU among eight), so a reader
must see, per node, which kind the rules judged. ``system_metrics`` marks CloudWatch rows
(``source``, ``resolution_s``); the job's own files carry no mark, since the collector writes
them exactly as SageMaker Debugger does. What tells them apart is what only the collector
samples: NVML's power, clock and temperature per GPU and the EFA port counters. A node with
neither (a CPU-only host without EFA) is "Debugger-format files": SageMaker Debugger's, or
the collector's, which cannot be told apart, and need not be (same samples, same rules).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from analyzer.ingest.cloudwatch_metrics import node_sources
from stepscope.collectors.nvml import GPU_DIMENSIONS
from stepscope.report.model import MetricsSource

if TYPE_CHECKING:
    from analyzer.job import Job

#: what SageMaker Debugger's profiler agent samples per GPU; the collector adds the rest of NVML's
DEBUGGER_GPU_DIMENSIONS = ("GPUUtilization", "GPUMemoryUtilization")
#: dimensions only stepscope's collector writes (SageMaker Debugger never does)
COLLECTOR_ONLY = (
    *(d for d in GPU_DIMENSIONS if d not in DEBUGGER_GPU_DIMENSIONS),
    "EFAReceiveBytesPerSecond",
    "EFATransmitBytesPerSecond",
)
#: the series whose spacing is a node's sampling interval (one per core / GPU in either format)
INTERVAL_DIMENSIONS = ("CPUUtilization", "GPUUtilization")
#: names of the sources ``system_metrics.source`` may name
LABELS = {
    "collector": "stepscope collector",
    "debugger-format": "Debugger-format files",
    "cloudwatch": "CloudWatch",
}


def node_metrics_sources(job: Job) -> dict[str, MetricsSource]:
    """Node -> where its system metrics came from and how far apart their samples are.

    Reads the dictionary codes of ``node``, ``device`` and ``dimension``, never their strings:
    a few vector passes, well under a second on ten million rows."""
    table = job.system_metrics
    if table.num_rows == 0:
        return {}
    marked = node_sources(table)
    nodes, node_names = _codes(table.column("node"))
    dims, dim_names = _codes(table.column("dimension"))
    wanted = [i for i, d in enumerate(dim_names) if d in COLLECTOR_ONLY]
    collector = (
        {node_names[c] for c in _present(nodes[np.isin(dims, wanted)], len(node_names))}
        if wanted
        else set()
    )
    intervals = sampling_intervals(table, nodes, node_names, dims, dim_names)
    out: dict[str, MetricsSource] = {}
    for node in sorted({node_names[c] for c in _present(nodes, len(node_names))}):
        if node in marked:
            source, resolution = marked[node]
            out[node] = MetricsSource(
                source=source,
                label=LABELS.get(source, source),
                resolution_s=resolution if resolution is not None else intervals.get(node),
            )
        else:
            kind = "collector" if node in collector else "debugger-format"
            out[node] = MetricsSource(
                source=kind, label=LABELS[kind], resolution_s=intervals.get(node)
            )
    return out


def _present(codes: np.ndarray, n: int) -> np.ndarray:
    """The codes (0..n-1) that occur in ``codes``: one counting pass, no sort."""
    return np.flatnonzero(np.bincount(codes[codes >= 0], minlength=n))


def _codes(column: pa.ChunkedArray) -> tuple[np.ndarray, list[str]]:
    """A dictionary-encoded column as (codes, names); a null is code -1."""
    if not pa.types.is_dictionary(column.type):
        column = pc.dictionary_encode(column)
    arr = (
        column.unify_dictionaries().combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    )
    names = [str(x) for x in arr.dictionary.to_pylist()]
    return pc.fill_null(arr.indices, -1).to_numpy(zero_copy_only=False), names


def sampling_intervals(
    table: pa.Table,
    nodes: np.ndarray,
    node_names: list[str],
    dims: np.ndarray,
    dim_names: list[str],
) -> dict[str, float]:
    """Node -> median spacing (s) of one of its series (the first core's utilization, else the
    first GPU's): every dimension of a sample is read in the same pass, so one series tells."""
    out: dict[str, float] = {}
    if not any(d in dim_names for d in INTERVAL_DIMENSIONS):
        return out
    devices, _ = _codes(table.column("device"))
    t = pc.fill_null(table.column("timestamp").cast(pa.int64()), 0).to_numpy()
    for dim in INTERVAL_DIMENSIONS:
        if dim not in dim_names:
            continue
        rows = np.flatnonzero(dims == dim_names.index(dim))
        node, dev = nodes[rows], devices[rows] + 1  # a null device: 0
        # each node's series of its lowest device code (which one does not matter: one series)
        n_dev = int(dev.max()) + 1 if len(dev) else 1
        has = (
            np.bincount(node * n_dev + dev, minlength=len(node_names) * n_dev).reshape(
                len(node_names), n_dev
            )
            > 0
        )
        first_dev = np.where(has.any(axis=1), has.argmax(axis=1), -1)
        keep = (node >= 0) & (dev == first_dev[np.maximum(node, 0)])
        rows = rows[keep]
        order = np.lexsort((t[rows], nodes[rows]))
        node, ts = nodes[rows][order], t[rows][order]
        gaps = np.diff(ts)
        same = (node[1:] == node[:-1]) & (gaps > 0)
        for code in np.unique(node[1:][same]):
            name = node_names[code]
            if code >= 0 and name not in out:  # a node without cores' series: its GPUs'
                out[name] = round(float(np.median(gaps[same & (node[1:] == code)])) / 1e6, 3)
    return out
