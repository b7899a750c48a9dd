"""What smdebug 1.0.34's own readers get from a SageMaker Debugger profiler-output folder.

Runs INSIDE the peers env (bench/setup_peers.sh), never the project venv::

    .venv-peers/bin/python bench/peers/smdebug_reference.py <root> [--parts ...] [--summary]

``<root>`` is what smdebug's readers are given: the folder holding ``system/`` and/or
``framework/`` (a job's ``profiler-output``, or a fixture folder such as
``sagemaker-debugger/test_traces``). Prints one JSON object on stdout:

* ``system.reader``  -- ``LocalSystemMetricsReader(root).get_events(0, far future)``
* ``system.pandas``  -- ``PandasFrame(root).get_all_system_metrics()`` (de-duplicated frame)
* ``framework.reader`` -- ``LocalAlgorithmMetricsReader(root).get_events(0, far future)``
* ``framework.pandas`` -- the PandasFrame framework frame (see ``_framework_pandas``)

each with row count, min/max times (epoch microseconds, computed as smdebug does), distinct
nodes and per-file counts (the rows each file added during that very read). A reader that
raises is reported with ``error`` instead of crashing the run. ``wall_s`` is each part's
own time, in this process. smdebug's logging goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

# Far enough in the future for any real job; smdebug compares in microseconds.
END_US = 2**53
PARTS = ("sys-reader", "sys-pandas", "fw-reader", "fw-pandas")


def _rel(root: str, path: str) -> str:
    return os.path.relpath(path, root)


def _count_per_file(parsers: list[Any], attr: str, root: str) -> dict[str, int]:
    """Wrap each parser's read_events_from_file to record how many events each file added."""
    per_file: dict[str, int] = {}

    def wrap(parser: Any, inner: Callable[[str], Any]) -> Callable[[str], Any]:
        def read(path: str) -> Any:
            before = len(getattr(parser, attr))
            try:
                return inner(path)
            finally:
                per_file[_rel(root, path)] = len(getattr(parser, attr)) - before

        return read

    for p in parsers:
        p.read_events_from_file = wrap(p, p.read_events_from_file)
    return per_file


def system_reader(root: str) -> dict[str, Any]:
    from smdebug.profiler.system_metrics_reader import LocalSystemMetricsReader

    t0 = time.perf_counter()
    reader = LocalSystemMetricsReader(root)
    listed = sorted(f for fs in reader._timestamp_to_filename.values() for f in fs)
    per_file = _count_per_file(reader.get_all_event_parsers(), "_events", root)
    out: dict[str, Any] = {"files_listed": [_rel(root, f) for f in listed]}
    try:
        events = reader.get_events(0, END_US)
    except Exception as e:  # smdebug raises on a corrupt line that is not the last one
        out.update(error=f"{type(e).__name__}: {str(e).splitlines()[0]}", per_file=per_file)
        out["wall_s"] = round(time.perf_counter() - t0, 4)
        return out
    wall = time.perf_counter() - t0
    ts = [e.timestamp for e in events]
    out.update(
        rows=len(events),
        # as PandasFrame computes timestamp_us: int(seconds * 1e6), float64 arithmetic
        min_ts_us=int(min(ts) * 1_000_000) if ts else None,
        max_ts_us=int(max(ts) * 1_000_000) if ts else None,
        min_ts_s=repr(min(ts)) if ts else None,
        max_ts_s=repr(max(ts)) if ts else None,
        nodes=sorted({str(e.node_id) for e in events}),
        by_type=dict(sorted(Counter(str(e.type) for e in events).items())),
        by_dimension=dict(sorted(Counter(str(e.dimension) for e in events).items())),
        per_file=per_file,
        wall_s=round(wall, 4),
    )
    out["n_nodes"] = len(out["nodes"])
    return out


def system_pandas(root: str) -> dict[str, Any]:
    from smdebug.profiler.analysis.utils.profiler_data_to_pandas import PandasFrame

    t0 = time.perf_counter()
    try:
        pf = PandasFrame(root)
        df = pf.get_all_system_metrics()
    except Exception as e:
        return {
            "error": f"{type(e).__name__}: {str(e).splitlines()[0]}",
            "wall_s": round(time.perf_counter() - t0, 4),
        }
    wall = time.perf_counter() - t0
    out: dict[str, Any] = {
        "rows": len(df),
        "wall_s": round(wall, 4),
        "start_time_us": pf.start_time,
    }
    if len(df):
        # timestamp_us is relative to the first file's minute; make it absolute again
        out.update(
            min_ts_us=int(df["timestamp_us"].min()) + pf.start_time,
            max_ts_us=int(df["timestamp_us"].max()) + pf.start_time,
            nodes=sorted(df["nodeID"].astype(str).unique().tolist()),
        )
        out["n_nodes"] = len(out["nodes"])
    return out


def _fw_summary(events: list[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"rows": len(events)}
    if not events:
        return out
    out.update(
        min_start_us=min(e.start_time for e in events),
        max_start_us=max(e.start_time for e in events),
        max_end_us=max(e.end_time for e in events),
        nodes=sorted({str(e.node_id) for e in events}),
        by_parser=dict(sorted(Counter(e.file_type or "Horovod" for e in events).items())),
        by_phase=dict(sorted(Counter(str(e.event_phase) for e in events).items())),
    )
    out["n_nodes"] = len(out["nodes"])
    return out


def framework_reader(root: str) -> dict[str, Any]:
    from smdebug.profiler.algorithm_metrics_reader import LocalAlgorithmMetricsReader

    t0 = time.perf_counter()
    reader = LocalAlgorithmMetricsReader(root)
    listed = sorted(f for fs in reader._timestamp_to_filename.values() for f in fs)
    per_file = _count_per_file(reader.get_all_event_parsers(), "_trace_events", root)
    out: dict[str, Any] = {"files_listed": [_rel(root, f) for f in listed]}
    try:
        events = reader.get_events(0, END_US)
    except Exception as e:
        out.update(error=f"{type(e).__name__}: {str(e).splitlines()[0]}", per_file=per_file)
        out["wall_s"] = round(time.perf_counter() - t0, 4)
        return out
    wall = time.perf_counter() - t0
    out.update(_fw_summary(events))
    out["per_file"] = per_file
    out["unmatched_B"] = sum(
        len(stack) for p in reader.get_all_event_parsers() for stack in p._pid_stacks.values()
    )
    out["wall_s"] = round(wall, 4)
    return out


def _framework_pandas(root: str) -> dict[str, Any]:
    """PandasFrame's framework frame, as get_all_framework_metrics() builds it, in one chunk.

    get_all_framework_metrics() queries [first *system* file time, last framework file time]
    in 5000 s chunks; with no system files that start is 0 and the loop would run ~320k
    chunks (hours), so the chunk is widened to the whole range (scan_interval huge). Same
    events, de-duplicated the same way, minus duplicates a chunk boundary would add.
    """
    from smdebug.profiler.analysis.utils.profiler_data_to_pandas import PandasFrame

    t0 = time.perf_counter()
    try:
        pf = PandasFrame(root, scan_interval=2**62)
        start = pf.system_metrics_reader.get_timestamp_of_first_available_file()
        pf.framework_metrics_reader.refresh_event_file_list()
        end = pf.framework_metrics_reader.get_timestamp_of_latest_available_file()
        _, df = pf.get_profiler_data_by_time(start, end, get_system_metrics=False)
    except Exception as e:
        return {
            "error": f"{type(e).__name__}: {str(e).splitlines()[0]}",
            "wall_s": round(time.perf_counter() - t0, 4),
        }
    out: dict[str, Any] = {
        "rows": len(df),
        "query_start_us": start,
        "query_end_us": end,
        "wall_s": round(time.perf_counter() - t0, 4),
    }
    if len(df):
        out.update(
            min_start_us=int(df["start_time_us"].min()) + pf.start_time,
            max_end_us=int(df["end_time_us"].max()) + pf.start_time,
            nodes=sorted(df["nodeID"].astype(str).unique().tolist()),
        )
        out["n_nodes"] = len(out["nodes"])
    return out


def single_file(path: str) -> dict[str, Any]:
    """One file read by the parser smdebug picks for its name, outside any folder layout.

    How smdebug's own tests read loose files (e.g. horovod_timeline_small.json); the system
    parser is used for anything that is not a framework trace (the .corrupt fixture).
    """
    from smdebug.profiler.system_profiler_file_parser import ProfilerSystemEvents
    from smdebug.profiler.tf_profiler_parser import (
        HorovodProfilerEvents,
        SMDataParallelProfilerEvents,
        SMProfilerEvents,
        TensorboardProfilerEvents,
    )

    name = os.path.basename(path)
    parser: Any
    if "pythontimeline.json" in name:
        parser, kind = SMProfilerEvents(), "framework"
    elif "model_timeline.json" in name:
        parser, kind = SMProfilerEvents(type="DetailedframeworkMetrics"), "framework"
    elif "horovod_timeline" in name:
        parser, kind = HorovodProfilerEvents(), "framework"
    elif "smdataparallel_timeline" in name:
        parser, kind = SMDataParallelProfilerEvents(), "framework"
    elif name.endswith("trace.json.gz"):
        parser, kind = TensorboardProfilerEvents(), "framework"
    else:
        parser, kind = ProfilerSystemEvents(), "system"
    t0 = time.perf_counter()
    out: dict[str, Any] = {"file": os.path.abspath(path), "parser": type(parser).__name__}
    try:
        parser.read_events_from_file(path)
    except Exception as e:
        out["error"] = f"{type(e).__name__}: {str(e).splitlines()[0]}"
    events = parser.get_all_events()
    if kind == "system":
        ts = [e.timestamp for e in events]
        out.update(
            rows=len(events),
            min_ts_us=int(min(ts) * 1_000_000) if ts else None,
            max_ts_us=int(max(ts) * 1_000_000) if ts else None,
            nodes=sorted({str(e.node_id) for e in events}),
        )
    else:
        out.update(_fw_summary(events))
        out["unmatched_B"] = sum(len(s) for s in parser._pid_stacks.values())
    out["wall_s"] = round(time.perf_counter() - t0, 4)
    return out


def reference(root: str, parts: tuple[str, ...] = PARTS) -> dict[str, Any]:
    import smdebug

    root = os.path.abspath(root)
    out: dict[str, Any] = {"root": root, "smdebug": smdebug.__version__}
    system: dict[str, Any] = {}
    framework: dict[str, Any] = {}
    if "sys-reader" in parts:
        system["reader"] = system_reader(root)
    if "sys-pandas" in parts:
        system["pandas"] = system_pandas(root)
    if "fw-reader" in parts:
        framework["reader"] = framework_reader(root)
    if "fw-pandas" in parts:
        framework["pandas"] = _framework_pandas(root)
    if system:
        out["system"] = system
    if framework:
        out["framework"] = framework
    return out


def _summary(ref: dict[str, Any]) -> dict[str, Any]:
    """Drop the long per-file lists: counts and spans only."""
    slim = json.loads(json.dumps(ref))
    for kind in ("system", "framework"):
        for part in slim.get(kind, {}).values():
            part.pop("files_listed", None)
            part.pop("per_file", None)
            part.pop("by_dimension", None)
            part.pop("by_phase", None)
    return slim


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "root", help="profiler-output root (holds system/ and/or framework/), or a file with --file"
    )
    ap.add_argument("--file", action="store_true", help="root is one file: read it with its parser")
    ap.add_argument(
        "--parts",
        default=",".join(PARTS),
        help=f"comma list of {', '.join(PARTS)} (default: all)",
    )
    ap.add_argument("--summary", action="store_true", help="counts and spans only")
    args = ap.parse_args(argv)
    parts = tuple(p.strip() for p in args.parts.split(",") if p.strip())
    unknown = set(parts) - set(PARTS)
    if unknown:
        ap.error(f"unknown parts: {', '.join(sorted(unknown))}")
    if args.file:
        if not os.path.isfile(args.root):
            ap.error(f"not a file: {args.root}")
    elif not os.path.isdir(args.root):
        ap.error(f"not a folder: {args.root}")
    # smdebug logs to stdout by default and prints (TF reader); keep stdout pure JSON.
    os.environ.setdefault("SMDEBUG_LOG_ALL_TO_STDOUT", "false")
    os.environ.setdefault("SMDEBUG_LOG_LEVEL", "warning")
    real_stdout = sys.stdout
    sys.stdout = sys.stderr
    try:
        ref = single_file(args.root) if args.file else reference(args.root, parts)
    finally:
        sys.stdout = real_stdout
    if args.summary and not args.file:
        ref = _summary(ref)
    print(json.dumps(ref, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
