"""Which parser reads which object: one table, looked up by logical key.

Each row names a format, how to recognise its keys (``analyzer.ingest.keys``), and its
parser as ``module:function``, imported the first time a file of that format is parsed:
a refresh that finds nothing new never imports the parsing stack. Objects that match no
row are *ignored* (counted, not errors); JSON files whose name says nothing are sniffed as
Kineto traces, since PyTorch's trace handler lets users name them anything.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from analyzer.ingest import keys

if TYPE_CHECKING:
    from analyzer.ingest.parsed import ParsedFile


@cache
def _resolve(target: str) -> Callable[..., Any]:
    module, attr = target.split(":")
    fn: Callable[..., Any] = getattr(importlib.import_module(module), attr)
    return fn


@dataclass(frozen=True)
class Format:
    id: str
    matches: Callable[[str], bool]
    parser: str  # "module:function"
    description: str
    takes_hint: bool = False  # parser(data, key, hint) rather than parser(data, key)

    def parse(self, data: bytes, key: str, hint: int | None = None) -> ParsedFile:
        fn = _resolve(self.parser)
        result: ParsedFile = fn(data, key, hint) if self.takes_hint else fn(data, key)
        return result


FORMATS: tuple[Format, ...] = (
    Format(
        "sagemaker_system_metrics",
        keys.is_system_metrics,
        "analyzer.ingest.system_metrics:parse_system_metrics",
        "SageMaker Debugger system metrics (JSON lines)",
    ),
    Format(
        "cloudwatch_instance_metrics",
        keys.is_cloudwatch_metrics,
        "analyzer.ingest.cloudwatch_metrics:parse_cloudwatch_metrics",
        "SageMaker's CloudWatch instance metrics of a training job (read by the job source)",
    ),
    Format(
        "sagemaker_framework_trace",
        lambda k: keys.framework_trace_kind(k) is not None,
        "analyzer.ingest.framework_trace:parse_framework_trace",
        "SageMaker Debugger framework timelines, Horovod timelines, TF profiler traces",
        takes_hint=True,
    ),
    Format(
        "cloudwatch_job_logs",
        keys.is_job_logs,
        "analyzer.ingest.job_logs:parse_job_logs",
        "the tail of each host's CloudWatch log stream of a training job (read by the job source)",
    ),
    Format(
        "sagemaker_rule_report",
        keys.is_rule_report,
        "analyzer.ingest.rule_output:parse_rule_report",
        "SageMaker profiler rule outputs (profiler-reports/*.json)",
    ),
    Format(
        "sagemaker_debugger_tensors",
        keys.is_debugger_tensors,
        "analyzer.ingest.debugger_tensors:parse_debugger_tensors",
        "SageMaker Debugger tensor output (debug-output/events/<step>/<step>_<worker>.tfevents)",
    ),
    Format(
        "tensorboard_events",
        keys.is_tensorboard_events,
        "analyzer.ingest.tensorboard_events:parse_tensorboard_events",
        "TensorBoard event files (events.out.tfevents.*): scalars and histograms",
    ),
    Format(
        "stepscope_health",
        keys.is_health_hooks,
        "analyzer.ingest.health_hooks:parse_health_hooks",
        "stepscope run --health: loss, gradient/weight/activation statistics (JSON lines)",
    ),
    Format(
        "stepscope_exit",
        keys.is_exit_record,
        "analyzer.ingest.exit_records:parse_exit_record",
        "stepscope run's exit records and fault dumps (exits/<node>_rank<R>.json / .fault)",
    ),
    Format(
        "stepscope_hang",
        keys.is_hang_dump,
        "analyzer.ingest.hang_dumps:parse_hang_dump",
        "stall watchdog dumps (hangs/<node>_rank<R>.<ns>.json) and PyTorch's Flight Recorder "
        "pickles (nccl_trace_rank_<R>), read without running any code",
    ),
    Format(
        "stepscope_fr_window",
        keys.is_window_fr,
        "analyzer.ingest.hang_dumps:parse_window_record",
        "the Flight Recorder record beside each trace of stepscope run (<trace stem>.fr.json): "
        "each collective's process group and sequence number",
    ),
    Format(
        "kineto_trace",
        keys.is_kineto_name,
        "analyzer.ingest.kineto:parse_kineto",
        "PyTorch profiler (Kineto) traces, *.pt.trace.json[.gz]",
    ),
    Format(
        "json_trace_candidate",
        keys.is_json_name,
        "analyzer.ingest.kineto:parse_kineto",
        "other JSON files, read as Kineto traces when they are traces",
    ),
)


def classify(key: str) -> Format | None:
    for fmt in FORMATS:
        if fmt.matches(key):
            return fmt
    return None


def format_by_id(fmt_id: str) -> Format:
    for fmt in FORMATS:
        if fmt.id == fmt_id:
            return fmt
    raise KeyError(f"unknown format {fmt_id!r}")
