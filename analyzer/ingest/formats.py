"""Which parser reads which object: one table, looked up by logical key.

Each row names a format, how to recognise its keys, and its parser. Objects that match no
row are *ignored* (counted, not errors); JSON files whose name says nothing are sniffed as
Kineto traces, since PyTorch's trace handler lets users name them anything.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from analyzer.ingest import framework_trace, kineto, rule_output, system_metrics
from analyzer.ingest.parsed import ParsedFile

Parser = Callable[[bytes, str, "int | None"], ParsedFile]


@dataclass(frozen=True)
class Format:
    id: str
    matches: Callable[[str], bool]
    parse: Parser
    description: str


def _is_json_name(key: str) -> bool:
    return key.endswith((".json", ".json.gz"))


FORMATS: tuple[Format, ...] = (
    Format(
        "sagemaker_system_metrics",
        lambda k: system_metrics.FILE_RE.search(k) is not None,
        lambda d, k, h: system_metrics.parse_system_metrics(d, k),
        "SageMaker Debugger system metrics (JSON lines)",
    ),
    Format(
        "sagemaker_framework_trace",
        lambda k: framework_trace.trace_kind(k) is not None,
        framework_trace.parse_framework_trace,
        "SageMaker Debugger framework timelines, Horovod timelines, TF profiler traces",
    ),
    Format(
        "sagemaker_rule_report",
        rule_output.is_rule_report,
        lambda d, k, h: rule_output.parse_rule_report(d, k),
        "SageMaker profiler rule outputs (profiler-reports/*.json)",
    ),
    Format(
        "kineto_trace",
        kineto.looks_like_kineto_name,
        lambda d, k, h: kineto.parse_kineto(d, k),
        "PyTorch profiler (Kineto) traces, *.pt.trace.json[.gz]",
    ),
    Format(
        "json_trace_candidate",
        _is_json_name,
        lambda d, k, h: kineto.parse_kineto(d, k),
        "other JSON files, read as Kineto traces when they are traces",
    ),
)


def classify(key: str) -> Format | None:
    for fmt in FORMATS:
        if fmt.matches(key):
            return fmt
    return None
