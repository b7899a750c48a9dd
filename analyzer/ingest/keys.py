"""Which kind of profiler file a key names, from the key alone (no read, no pyarrow).

Kept apart from the parsers so that listing a job and checking its cache (all that a
refresh of an unchanged job does) imports none of the parsing stack.
"""

from __future__ import annotations

import re

#: SageMaker system metrics: ``system/incremental/[<YYYYMMDDHH>/]<epoch>.<node>.json``.
SYSTEM_METRICS_RE = re.compile(
    r"(?:^|/)system/incremental/(?:\d{10}/)?(?P<epoch>\d+)\.(?P<node>[^/]+)\.json$"
)
#: SageMaker framework timelines: ``<start>_<pid>-<host>_<kind>.json``.
FRAMEWORK_KIND_RE = re.compile(r"_(pythontimeline|model_timeline|horovod_timeline)\.json(\.gz)?$")
#: SageMaker profiler rule outputs: ``.../profiler-reports/<Rule>.json``.
RULE_REPORT_RE = re.compile(r"(?:^|/)profiler-reports/(?P<rule>[^/]+)\.json$")
#: CloudWatch instance metrics of a SageMaker job: ``cloudwatch/<host>/<YYYY-MM-DD>.json``,
#: the objects ``analyzer.sources.cloudwatch`` makes (one per host and UTC day).
CLOUDWATCH_RE = re.compile(r"^cloudwatch/(?P<host>[^/]+)/(?P<name>[^/]+)\.json$")
#: TensorBoard event files: ``[<run>/]events.out.tfevents.<time>.<host>[.<pid>.<n>][suffix]``.
TENSORBOARD_RE = re.compile(r"(?:^|/)events\.out\.tfevents\.(?P<time>\d+)(?:\.(?P<host>[^/]*))?$")
#: SageMaker Debugger tensor output: ``events/<step:012d>/<step:012d>_<worker>.tfevents``.
DEBUGGER_EVENTS_RE = re.compile(
    r"(?:^|/)events/(?P<dir>\d{12})/(?P<step>\d{12})_(?P<worker>[^/]+)\.tfevents$"
)
#: stepscope's health hooks: ``health/<node>_rank<R>.<pid>.health.jsonl``.
HEALTH_HOOKS_RE = re.compile(
    r"(?:^|/)health/(?P<node>[^/]+)_rank(?P<rank>\d+)\.(?P<pid>\d+)\.health\.jsonl$"
)
#: stepscope's exit records and fault dumps: ``exits/<node>_rank<R>.json`` / ``.fault``.
EXIT_RECORD_RE = re.compile(r"(?:^|/)exits/(?P<node>[^/]+)_rank(?P<rank>\d+)\.(?P<ext>json|fault)$")
#: a SageMaker job's CloudWatch log stream tails (``analyzer.sources.job_logs``):
#: ``cloudwatch-logs/<algo-N-epoch>.json``
JOB_LOGS_RE = re.compile(r"^cloudwatch-logs/(?P<stream>[^/]+)\.json$")
#: the Flight Recorder record ``stepscope run`` writes beside each trace:
#: ``<node>_rank<R>.<time_ns>.fr.json``
WINDOW_FR_RE = re.compile(r"(?:^|/)(?P<node>[^/]+)_rank(?P<rank>\d+)\.(?P<ns>\d+)\.fr\.json$")
#: stepscope's stall watchdog dumps: ``hangs/<node>_rank<R>.<time_ns>.json``.
HANG_DUMP_RE = re.compile(r"(?:^|/)hangs/(?P<node>[^/]+)_rank(?P<rank>\d+|X)\.(?P<ns>\d+)\.json$")
#: PyTorch's own Flight Recorder dumps (pickles written on a collective timeout, at
#: ``TORCH_FR_DUMP_TEMP_FILE`` / ``TORCH_NCCL_DEBUG_INFO_TEMP_FILE`` + rank; default
#: ``/tmp/nccl_trace_rank_<R>``), gathered into the job's folder.
FR_PICKLE_RE = re.compile(r"(?:^|/)(?:nccl|fr)_trace_rank_(?P<rank>\d+)(?:\.pkl|\.pickle)?$")


def is_system_metrics(key: str) -> bool:
    return SYSTEM_METRICS_RE.search(key) is not None


def framework_trace_kind(key: str) -> str | None:
    """pythontimeline | model_timeline | horovod_timeline | tf_trace, or None."""
    m = FRAMEWORK_KIND_RE.search(key)
    if m:
        return m.group(1)
    if key.endswith((".trace.json.gz", ".trace.json")) and "/detailed_profiling/" in key:
        return "tf_trace"
    base = key.rsplit("/", 1)[-1]
    if "horovod_timeline" in base and base.endswith((".json", ".json.gz")):
        return "horovod_timeline"
    return None


def is_rule_report(key: str) -> bool:
    return RULE_REPORT_RE.search(key) is not None


def is_kineto_name(key: str) -> bool:
    return key.endswith((".pt.trace.json", ".pt.trace.json.gz"))


def is_json_name(key: str) -> bool:
    return key.endswith((".json", ".json.gz"))


def is_cloudwatch_metrics(key: str) -> bool:
    return CLOUDWATCH_RE.match(key) is not None


def is_tensorboard_events(key: str) -> bool:
    return TENSORBOARD_RE.search(key) is not None


def is_debugger_tensors(key: str) -> bool:
    return DEBUGGER_EVENTS_RE.search(key) is not None


def is_health_hooks(key: str) -> bool:
    return HEALTH_HOOKS_RE.search(key) is not None


def is_exit_record(key: str) -> bool:
    return EXIT_RECORD_RE.search(key) is not None


def is_job_logs(key: str) -> bool:
    return JOB_LOGS_RE.search(key) is not None


def is_window_fr(key: str) -> bool:
    return WINDOW_FR_RE.search(key) is not None


def is_hang_dump(key: str) -> bool:
    return HANG_DUMP_RE.search(key) is not None or FR_PICKLE_RE.search(key) is not None
