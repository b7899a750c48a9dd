"""The columnar tables every parser produces: one schema per table, the public contract.

Times: ``timestamp`` columns are UTC; ``*_ns`` columns are integers in nanoseconds since the
Unix epoch (starts) or nanoseconds (durations), so interval arithmetic stays exact.
Repeated strings (node, device, kernel names) are dictionary-encoded.
See docs/tables.md for the meaning of each column.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

DICT_STR = pa.dictionary(pa.int32(), pa.string())

SYSTEM_METRICS = pa.schema(
    [
        pa.field("node", DICT_STR, nullable=False),  # NodeId, e.g. algo-1
        pa.field("type", DICT_STR),  # Type: cpu | gpu | memory | io | ...
        pa.field("device", DICT_STR),  # Name: cpu0, gpu3, ...
        pa.field("dimension", DICT_STR),  # Dimension: CPUUtilization, GPUMemoryUtilization, ...
        pa.field("timestamp", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("value", pa.float64()),
        # Where the sample came from: null for the job's system-metrics files (SageMaker
        # Debugger's or stepscope's collector), "cloudwatch" for SageMaker's CloudWatch
        # instance metrics; resolution_s is then their period (null for the files).
        pa.field("source", DICT_STR),
        pa.field("resolution_s", pa.float64()),
    ]
)

FRAMEWORK_EVENTS = pa.schema(
    [
        pa.field("node", DICT_STR),  # host from the file name (or NodeId), may be null
        pa.field("rank", pa.int32()),  # rank from the file name, null when unknown
        pa.field("os_pid", pa.int64()),  # process id from the file name
        pa.field(
            "trace_kind", DICT_STR
        ),  # pythontimeline | model_timeline | horovod_timeline | tf_trace
        pa.field("process", DICT_STR),  # Chrome-trace process name (the "pid" row label)
        pa.field("name", DICT_STR),
        pa.field("phase", DICT_STR),  # X (complete), B/E paired into X, i (instant)
        pa.field("start_ns", pa.int64()),  # absolute, epoch ns
        pa.field("dur_ns", pa.int64()),
        pa.field("step", pa.int64()),  # args.step_num when present
        pa.field("tid", pa.int64()),
        pa.field("file", DICT_STR),  # logical key of the file the event came from
    ]
)

KINETO_EVENTS = pa.schema(
    [
        pa.field("rank", pa.int32(), nullable=False),
        pa.field("cat", DICT_STR),  # kernel, gpu_memcpy, cpu_op, user_annotation, ...
        pa.field("name", DICT_STR),
        pa.field("phase", DICT_STR),  # X or i
        pa.field("pid", pa.int64()),  # numeric pid (device index for GPU rows); -1 if not numeric
        pa.field("tid", pa.int64()),  # numeric tid (stream for GPU rows); -1 if not numeric
        pa.field("start_ns", pa.int64()),  # absolute, epoch ns (baseTimeNanoseconds honoured)
        pa.field("dur_ns", pa.int64()),
        pa.field("correlation", pa.int64()),
        pa.field("external_id", pa.int64()),
        pa.field("device", pa.int32()),
        pa.field("stream", pa.int64()),
        pa.field("collective", DICT_STR),  # args "Collective name" (NCCL, gloo record functions)
        pa.field("in_msg_nelems", pa.int64()),
        pa.field("out_msg_nelems", pa.int64()),
        pa.field("group_size", pa.int32()),
        pa.field("dtype", DICT_STR),
        pa.field("msg_bytes", pa.int64()),  # max(in, out) nelems x dtype size, when both known
        pa.field("process_group", DICT_STR),  # args "Process Group Name"
        pa.field("mem_bytes", pa.int64()),  # [memory] instant events: allocation delta
        pa.field("mem_total_allocated", pa.int64()),
        pa.field("mem_total_reserved", pa.int64()),
        # cuda_sync rows: args wait_on_stream, wait_on_cuda_event_record_corr_id
        pa.field("wait_on_stream", pa.int64()),
        pa.field("wait_on_correlation", pa.int64()),
    ]
)

KINETO_TRACES = pa.schema(
    [
        pa.field("rank", pa.int32(), nullable=False),
        pa.field("world_size", pa.int32()),
        pa.field("backend", pa.string()),
        pa.field("base_time_ns", pa.int64()),
        pa.field("file", pa.string()),
        pa.field("node", pa.string()),
        pa.field("events", pa.int64()),
        pa.field("gpu_name", pa.string()),
        pa.field("device_properties", pa.string()),  # JSON
        #: JSON of distributedInfo.pg_config: the process groups (name, desc, ranks) the rank
        #: belonged to, for matching collectives across ranks (null in older traces)
        pa.field("process_groups", pa.string()),
        pa.field("start_ns", pa.int64()),
        pa.field("end_ns", pa.int64()),
    ]
)

STEPS = pa.schema(
    [
        pa.field("source", DICT_STR),  # kineto | framework
        pa.field("node", DICT_STR),
        pa.field("rank", pa.int32()),
        pa.field("step", pa.int64()),
        pa.field("mode", DICT_STR),  # TRAIN / EVAL / ... when known
        pa.field("start_ns", pa.int64()),
        pa.field("dur_ns", pa.int64()),
    ]
)

RULE_REPORTS = pa.schema(
    [
        pa.field("rule", pa.string()),
        pa.field("file", pa.string()),
        pa.field("triggered", pa.int64()),  # RuleTriggered
        pa.field("violations", pa.int64()),  # Violations
        pa.field("datapoints", pa.int64()),  # Datapoints
        pa.field("rule_parameters", pa.string()),  # RuleParameters, as given
        pa.field("details", pa.string()),  # JSON of Details
    ]
)

RULE_STATUSES = pa.schema(
    [
        pa.field("rule", pa.string()),
        pa.field("kind", pa.string()),  # profiler | debug
        pa.field("status", pa.string()),
        pa.field("details", pa.string()),
        pa.field("last_modified", pa.string()),
    ]
)

# How each traced process ended (docs/collect.md, "Exit records"): one row per exit record
# (``kind`` record: the script's code ended, at a normal interpreter exit) and one per fault
# dump (``kind`` fault: what faulthandler wrote during finalization; ``fatal`` null when the
# process finalized without a fatal signal).
PROCESS_EXITS = pa.schema(
    [
        pa.field("node", DICT_STR),
        pa.field("rank", pa.int32()),
        pa.field("kind", DICT_STR, nullable=False),  # record | fault
        pa.field("pid", pa.int64()),
        pa.field("script_ended_ns", pa.int64()),  # wall clock when the script's code ended
        pa.field("optimizer_steps", pa.int64()),  # steps the recorder saw (until its window ended)
        pa.field(
            "fatal", pa.string()
        ),  # faulthandler's first line, e.g. "Fatal Python error: Aborted"
        pa.field("fault_detail", pa.string()),  # the dump's start (threads, frames), at most 4 KB
        # the uncaught exception that ended the script (``Type: message``) and its frames
        # (JSON: file, line, function, code; innermost last), where one did
        pa.field("exception", pa.string()),
        pa.field("exception_frames", pa.string()),
    ]
)

# Hangs (docs/collect.md, "Hangs"): what each rank wrote when the stall watchdog fired, or
# PyTorch's own Flight Recorder dumps. One row per dump; its Flight Recorder entries; each
# process group's progress as the rank saw it; every thread's Python stack.
HANG_DUMPS = pa.schema(
    [
        pa.field("node", DICT_STR),
        pa.field("rank", pa.int32()),
        pa.field("pid", pa.int64()),
        pa.field("time_ns", pa.int64()),  # wall clock of the dump
        pa.field("reason", DICT_STR),  # stall (the watchdog's timeout) | SIGTERM (a stop)
        pa.field("stalled_s", pa.float64()),  # seconds since the rank's last optimizer step
        pa.field("timeout_s", pa.float64()),
        pa.field("steps_seen", pa.int64()),
        pa.field("source", DICT_STR),  # stepscope_watchdog | pytorch_flight_recorder
        pa.field("fr_error", pa.string()),  # why the dump has no Flight Recorder buffer
        pa.field("file", pa.string()),
    ]
)
FR_ENTRIES = pa.schema(
    [
        pa.field("node", DICT_STR),
        pa.field("rank", pa.int32()),
        pa.field("group", DICT_STR),  # the process group's name (Flight Recorder's pg name)
        pa.field("group_desc", DICT_STR),
        pa.field("record_id", pa.int64()),  # the rank's own count of entries, all groups
        pa.field("seq", pa.int64()),  # collective_seq_id (p2p_seq_id for point-to-point)
        pa.field("is_p2p", pa.bool_()),
        pa.field("op", DICT_STR),  # profiling_name, e.g. nccl:all_reduce, gloo:broadcast
        pa.field("input_sizes", pa.string()),  # JSON
        pa.field("output_sizes", pa.string()),  # JSON
        pa.field("dtypes", pa.string()),  # JSON of input_dtypes
        pa.field("state", DICT_STR),  # scheduled | started | completed
        pa.field("time_created_ns", pa.int64()),
        pa.field("started_ns", pa.int64()),
        pa.field("completed_ns", pa.int64()),
        pa.field("timeout_ms", pa.int64()),
    ]
)
FR_GROUPS = pa.schema(
    [
        pa.field("node", DICT_STR),
        pa.field("rank", pa.int32()),
        pa.field("group", DICT_STR),
        pa.field("group_desc", DICT_STR),
        pa.field("ranks", pa.string()),  # JSON list of the group's global ranks, when known
        pa.field("last_enqueued", pa.int64()),  # Flight Recorder's pg_status
        pa.field("last_started", pa.int64()),
        pa.field("last_completed", pa.int64()),
    ]
)
HANG_STACKS = pa.schema(
    [
        pa.field("node", DICT_STR),
        pa.field("rank", pa.int32()),
        pa.field("thread", pa.string()),
        pa.field("main", pa.bool_()),
        pa.field("depth", pa.int32()),  # 0 = outermost frame
        pa.field("file", pa.string()),
        pa.field("line", pa.int64()),
        pa.field("function", pa.string()),
        pa.field("code", pa.string()),  # the source line, as the dump read it
    ]
)

# The tail of each host's log stream of a SageMaker job (CloudWatch Logs), one row a line.
JOB_LOGS = pa.schema(
    [
        pa.field("host", DICT_STR),  # algo-N
        pa.field("stream", DICT_STR),
        pa.field("seq", pa.int64()),  # the line's place in the tail
        pa.field("time_ms", pa.int64()),  # CloudWatch's event timestamp (epoch ms)
        pa.field("message", pa.string()),
    ]
)

# Training health (docs/training-health.md): the debugging half's inputs -- TensorBoard event
# files, SageMaker Debugger tensor output and stepscope's health hooks -- as one long table
# of scalars and one of per-tensor statistics. ``source`` says which input a row came from.
TRAINING_SCALARS = pa.schema(
    [
        pa.field("node", DICT_STR),  # host (hooks: the node; TensorBoard: the file name's host)
        pa.field("rank", pa.int32()),  # null when the input does not say
        pa.field("worker", DICT_STR),  # Debugger's worker name (worker_0), null otherwise
        pa.field("step", pa.int64(), nullable=False),
        pa.field("tag", DICT_STR, nullable=False),  # loss | train/loss | eval/loss | lr | ...
        pa.field("value", pa.float64()),  # NaN / Inf kept: they are what ExplodingTensor finds
        pa.field("wall_time_ns", pa.int64()),
        pa.field("source", DICT_STR, nullable=False),  # tensorboard | debugger | stepscope
        pa.field("run", DICT_STR),  # TensorBoard run: the event file's folder in the job
    ]
)

TRAINING_TENSORS = pa.schema(
    [
        pa.field("node", DICT_STR),
        pa.field("rank", pa.int32()),
        pa.field("worker", DICT_STR),
        pa.field("step", pa.int64(), nullable=False),
        pa.field("name", DICT_STR, nullable=False),  # parameter name or module path
        pa.field(
            "role", DICT_STR, nullable=False
        ),  # gradient | weight | update_ratio | activation | ...
        pa.field("module", DICT_STR),  # activation rows: the module class (ReLU, Sigmoid, ...)
        pa.field("norm", pa.float64()),  # L2 norm
        pa.field("mean", pa.float64()),
        pa.field("std", pa.float64()),
        pa.field("min", pa.float64()),
        pa.field("max", pa.float64()),
        pa.field("zero_fraction", pa.float64()),  # share of elements exactly 0
        pa.field("value", pa.float64()),  # update_ratio rows: ||dw||/||w||
        pa.field("nan_count", pa.int64()),
        pa.field("inf_count", pa.int64()),
        # of those, -Inf (null where the input does not say the sign: the hooks' records)
        pa.field("neg_inf_count", pa.int64()),
        pa.field("numel", pa.int64()),
        pa.field("source", DICT_STR, nullable=False),
        pa.field("wall_time_ns", pa.int64()),
    ]
)

SCHEMAS: dict[str, pa.Schema] = {
    "system_metrics": SYSTEM_METRICS,
    "framework_events": FRAMEWORK_EVENTS,
    "kineto_events": KINETO_EVENTS,
    "kineto_traces": KINETO_TRACES,
    "steps": STEPS,
    "rule_reports": RULE_REPORTS,
    "rule_statuses": RULE_STATUSES,
    "training_scalars": TRAINING_SCALARS,
    "training_tensors": TRAINING_TENSORS,
    "process_exits": PROCESS_EXITS,
    "hang_dumps": HANG_DUMPS,
    "fr_entries": FR_ENTRIES,
    "fr_groups": FR_GROUPS,
    "hang_stacks": HANG_STACKS,
    "job_logs": JOB_LOGS,
    "window_fr_entries": FR_ENTRIES,
    "window_fr_groups": FR_GROUPS,
}


def rows_table(rows: list[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    """Row dicts → a table of ``schema`` (a missing key is null; dictionary columns take
    any value as its string)."""
    arrays = []
    for f in schema:
        values = [r.get(f.name) for r in rows]
        if pa.types.is_dictionary(f.type):
            strings = [None if v is None else str(v) for v in values]
            arrays.append(pa.array(strings, pa.string()).dictionary_encode().cast(f.type))
        else:
            arrays.append(pa.array(values, f.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def empty_table(name: str) -> pa.Table:
    return SCHEMAS[name].empty_table()


def _check_names() -> None:
    from analyzer.ingest.tables import TABLE_NAMES

    if tuple(SCHEMAS) != TABLE_NAMES:
        raise RuntimeError(
            f"schemas.SCHEMAS and tables.TABLE_NAMES disagree: {tuple(SCHEMAS)} vs {TABLE_NAMES}"
        )


_check_names()
