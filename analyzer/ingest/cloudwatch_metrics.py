"""SageMaker's CloudWatch instance metrics → ``system_metrics`` rows, and which source wins.

An object is the JSON document ``analyzer.sources.cloudwatch`` makes from GetMetricData
(one host, one UTC day, per-period averages). Rows use SageMaker Debugger's names, so every
reader of the table works unchanged, and carry ``source = "cloudwatch"`` and
``resolution_s`` (the period, 60 s while CloudWatch keeps one-minute data):

==========================  ======  ==================  ======================  ===============
CloudWatch metric           type    device (Name)       dimension               value
==========================  ======  ==================  ======================  ===============
``GPUUtilization``          gpu     ``gpu-mean``        GPUUtilization          sum / GPUs
``GPUMemoryUtilization``    gpu     ``gpu-mean``        GPUMemoryUtilization    sum / GPUs
``CPUUtilization``          cpu     ``cpu-mean``        CPUUtilization          sum / vCPUs
``MemoryUtilization``       memory  MemoryUsedPercent   ``""``                  as published
``DiskUtilization``         disk    DiskUtilization     ``""``                  as published
==========================  ======  ==================  ======================  ===============

Why divide: SageMaker publishes GPU and CPU utilization *summed* over the node's GPUs / cores
(0-800 % on 8 GPUs), so the only per-node figure on the rules' 0-100 scale is the mean: the
share of the node's GPUs (cores) in use. One idle GPU among eight shows as 87.5 %, not as an
idle GPU: CloudWatch has no per-GPU figure. Where the instance type's count is not known the
summed metric is left out, with a warning, rather than guessed.

Where a node has both (the job's system-metrics files *and* CloudWatch), the files win for
the whole node (:func:`prefer_files`): they are per GPU and per core at 0.5 s, and mixing the
two on one node would put one-minute averages into the rules' 20 ms snapshots.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from analyzer.ingest.parsed import NotAProfilerFile, ParsedFile, UnreadableFile
from analyzer.ingest.schemas import SYSTEM_METRICS

log = logging.getLogger("stepscope.ingest")

SOURCE = "cloudwatch"
#: CloudWatch metric -> (type, device, dimension, what it is summed over: "gpus" | "vcpus" | None)
MAPPING: dict[str, tuple[str, str, str, str | None]] = {
    "CPUUtilization": ("cpu", "cpu-mean", "CPUUtilization", "vcpus"),
    "MemoryUtilization": ("memory", "MemoryUsedPercent", "", None),
    "GPUUtilization": ("gpu", "gpu-mean", "GPUUtilization", "gpus"),
    "GPUMemoryUtilization": ("gpu", "gpu-mean", "GPUMemoryUtilization", "gpus"),
    "DiskUtilization": ("disk", "DiskUtilization", "", None),
}


def parse_cloudwatch_metrics(data: bytes, key: str) -> ParsedFile:
    """One host-day of CloudWatch metrics as ``system_metrics`` rows, in time order."""
    from analyzer.sources.cloudwatch import DOC_FORMAT  # here: merging a local job needs no boto3

    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise NotAProfilerFile("not a CloudWatch metrics document (not JSON)") from None
    if not isinstance(doc, dict) or doc.get("format") != DOC_FORMAT:
        raise NotAProfilerFile("not a CloudWatch metrics document")
    try:
        host = str(doc["host"])
        period = float(doc["period_s"])
        metrics: dict[str, Any] = doc["metrics"]
        counts = {"gpus": doc.get("gpus"), "vcpus": doc.get("vcpus")}
        series = [
            (
                name,
                [float(t) for t in m["timestamps"]],
                [None if v is None else float(v) for v in m["values"]],
            )
            for name, m in metrics.items()
        ]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UnreadableFile(
            f"damaged CloudWatch metrics document ({type(exc).__name__}: {exc})"
        ) from None
    warnings = [f"CloudWatch: {m}" for m in doc.get("messages") or []]
    rows: list[tuple[float, int, str, str, str, float | None]] = []
    for order, (name, ts, values) in enumerate(series):
        if name not in MAPPING or not ts:
            continue
        if len(ts) != len(values):
            raise UnreadableFile(
                f"damaged CloudWatch metrics document ({name}: {len(ts)} times, "
                f"{len(values)} values)"
            )
        type_, device, dimension, summed_over = MAPPING[name]
        divisor = 1
        if summed_over is not None:
            n = counts[summed_over]
            if not isinstance(n, int) or n <= 0:
                warnings.append(
                    f"{name} left out: CloudWatch sums it over the node's "
                    f"{summed_over[:-1].upper()}s, and the number of them of "
                    f"{doc.get('instance_type') or 'this instance type'} is not known"
                )
                continue
            divisor = n
        rows += [
            (t, order, type_, device, dimension, None if v is None else v / divisor)
            for t, v in zip(ts, values, strict=True)
        ]
    rows.sort(key=lambda r: (r[0], r[1]))
    table = pa.Table.from_arrays(
        [
            pc.dictionary_encode(pa.array([host] * len(rows), pa.string())),
            pc.dictionary_encode(pa.array([r[2] for r in rows], pa.string())),
            pc.dictionary_encode(pa.array([r[3] for r in rows], pa.string())),
            pc.dictionary_encode(pa.array([r[4] for r in rows], pa.string())),
            pa.array([round(r[0] * 1_000_000) for r in rows], pa.int64()).cast(
                pa.timestamp("us", tz="UTC")
            ),
            pa.array([r[5] for r in rows], pa.float64()),
            pc.dictionary_encode(pa.array([SOURCE] * len(rows), pa.string())),
            pa.array([period] * len(rows), pa.float64()),
        ],
        schema=SYSTEM_METRICS,
    )
    return ParsedFile(tables={"system_metrics": table}, warnings=warnings)


def prefer_files(table: pa.Table) -> pa.Table:
    """Drop the CloudWatch rows of every node that also has rows from the job's files.

    Free for a job without CloudWatch rows (the common case, and every job that is no
    SageMaker job name): the null count of the ``source`` column says so.
    """
    if "source" not in table.column_names or table.num_rows == 0:
        return table
    src = table.column("source")
    if src.null_count in (0, table.num_rows):  # one source only
        return table
    from_files = pc.is_null(src)
    nodes = pc.unique(pc.filter(table.column("node"), from_files).cast(pa.string()))
    drop = pc.and_(
        pc.invert(from_files), pc.is_in(table.column("node").cast(pa.string()), value_set=nodes)
    )
    dropped = pc.sum(drop.cast(pa.int64())).as_py() or 0
    if not dropped:
        return table
    log.info(
        "CloudWatch metrics of %s not used: the job's own system-metrics files cover them "
        "(%d rows)",
        ", ".join(sorted(nodes.to_pylist())),
        dropped,
    )
    return table.filter(pc.invert(drop))


def node_sources(table: pa.Table) -> dict[str, tuple[str, float | None]]:
    """Node -> (source, coarsest resolution in s) for the nodes whose metrics are not the
    job's files; empty for a job whose metrics all are (no row of it is read)."""
    if "source" not in table.column_names or table.num_rows == 0:
        return {}
    src = table.column("source")
    if src.null_count == table.num_rows:
        return {}
    sub = table.filter(pc.is_valid(src)).select(["node", "source", "resolution_s"])
    sub = pa.table(
        {
            "node": sub.column("node").cast(pa.string()),
            "source": sub.column("source").cast(pa.string()),
            "resolution_s": sub.column("resolution_s"),
        }
    )
    grouped = sub.group_by(["node", "source"]).aggregate([("resolution_s", "max")])
    return {str(r["node"]): (str(r["source"]), r["resolution_s_max"]) for r in grouped.to_pylist()}
