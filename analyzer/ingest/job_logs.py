"""A SageMaker job's CloudWatch log stream tails (``analyzer.sources.job_logs``) → ``job_logs``.

One row per log line: the host (``algo-N``), the stream, the line's place in the tail, its
CloudWatch timestamp and text. Multi-line events (a traceback written at once) are split
into their lines, each with the event's timestamp.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from analyzer.ingest.parsed import ParsedFile, UnreadableFile, json_object


def parse_job_logs(data: bytes, key: str) -> ParsedFile:
    from analyzer.sources.job_logs import DOC_FORMAT  # here: merging a local job needs no boto3

    doc = json_object(data, "log tail")
    if doc.get("format") != DOC_FORMAT:
        raise UnreadableFile(f"not a log tail document ({DOC_FORMAT})")
    rows: dict[str, list[Any]] = {f.name: [] for f in _schema()}
    seq = 0
    for event in doc.get("events") or []:
        if not isinstance(event, list) or len(event) != 2:
            continue
        stamp, message = event
        for line in str(message).splitlines() or [""]:
            rows["host"].append(doc.get("host"))
            rows["stream"].append(doc.get("stream"))
            rows["seq"].append(seq)
            rows["time_ms"].append(int(stamp) if isinstance(stamp, int | float) else None)
            rows["message"].append(line)
            seq += 1
    plain = pa.schema(
        [
            pa.field(f.name, pa.string() if pa.types.is_dictionary(f.type) else f.type)
            for f in _schema()
        ]
    )
    return ParsedFile(tables={"job_logs": pa.table(rows, schema=plain).cast(_schema())})


def _schema() -> pa.Schema:
    from analyzer.ingest.schemas import JOB_LOGS

    return JOB_LOGS
