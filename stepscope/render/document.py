"""report.json: the report's document (docs/report-schema.md) with the verdict in its summary."""

from __future__ import annotations

import orjson

from stepscope.render.verdict import Verdict
from stepscope.report.model import Report


def render(report: Report, verdict: Verdict) -> str:
    doc = report.document()
    doc["summary"] = {
        "verdict": verdict.verdict,
        "fail_on": verdict.fail_on,
        **doc["summary"],
        "failing_findings": verdict.failing_findings,
    }
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n"
