"""SageMaker profiler rule outputs → ``rule_reports``.

The ProfilerReport rule container writes one JSON per rule under
``rule-output/<RuleConfigurationName>/profiler-output/profiler-reports/<Rule>.json`` with
``RuleTriggered``, ``Violations``, ``Datapoints``, ``RuleParameters`` and ``Details``; the
summary files beside them (``OverallSystemUsage.json`` ...) carry only ``Details``.
"""

from __future__ import annotations

from typing import Any

import orjson
import pyarrow as pa

from analyzer.ingest.keys import RULE_REPORT_RE
from analyzer.ingest.parsed import ParsedFile, UnreadableFile
from analyzer.ingest.schemas import RULE_REPORTS


def parse_rule_report(data: bytes, key: str) -> ParsedFile:
    m = RULE_REPORT_RE.search(key)
    if not m:
        raise UnreadableFile("not a profiler-reports JSON file")
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise UnreadableFile(f"invalid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise UnreadableFile("rule report is not a JSON object")
    details = doc.get("Details")
    params = doc.get("RuleParameters")
    row: dict[str, Any] = {
        "rule": m.group("rule"),
        "file": key,
        "triggered": _int(doc.get("RuleTriggered")),
        "violations": _int(doc.get("Violations")),
        "datapoints": _int(doc.get("Datapoints")),
        "rule_parameters": params
        if isinstance(params, str) or params is None
        else orjson.dumps(params).decode(),
        "details": None if details is None else orjson.dumps(details).decode(),
    }
    return ParsedFile(tables={"rule_reports": pa.Table.from_pylist([row], schema=RULE_REPORTS)})


def _int(v: Any) -> int | None:
    try:
        return None if v is None else int(v)
    except (TypeError, ValueError):
        return None
