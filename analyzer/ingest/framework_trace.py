"""SageMaker Debugger framework traces → ``framework_events`` (+ ``steps``).

Covers ``framework/pevents/<hour>/<start>_<node-id>_{pythontimeline,model_timeline,
horovod_timeline}.json`` and TensorFlow's ``detailed_profiling/.../*.trace.json.gz``.
Event ``ts`` values are relative; the absolute origin is the ``start_time_since_epoch_in_micros``
metadata event when present, else the start time in the file name, so events line up with
the system metrics' clock. ``B``/``E`` pairs become one complete event.
"""

from __future__ import annotations

import contextlib
import re
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from analyzer.ingest.chrome_trace import load_events, maybe_gunzip
from analyzer.ingest.keys import framework_trace_kind
from analyzer.ingest.parsed import ParsedFile, UnreadableFile
from analyzer.ingest.schemas import FRAMEWORK_EVENTS, STEPS

PEVENT_NAME_RE = re.compile(
    r"(?:^|/)(?P<start>\d{13,19})_(?P<node_id>.+?)_"
    r"(?P<kind>pythontimeline|model_timeline|horovod_timeline)\.json(\.gz)?$"
)
TF_PROFILE_DIR_RE = re.compile(
    r"/plugins/profile/(?P<stamp>\d{4}_\d\d_\d\d_\d\d_\d\d_\d\d)/[^/]+\.trace\.json(\.gz)?$"
)
STEP_MODE_RE = re.compile(r"^Step:ModeKeys\.(?P<mode>\w+)$")


def _start_from_name(token: str) -> int:
    """File-name start time → epoch ns (SageMaker writes µs; some writers ns)."""
    v = int(token)
    return v if v >= 10**17 else v * 1000


def parse_node_id(node_id: str) -> tuple[str | None, int | None, int | None]:
    """(host, os_pid, rank) from the node-id part of a trace file name.

    Seen: ``4487_0000`` (pid_rank), ``905-b88ab1bb8259`` (pid-host),
    ``88359-host.example.com`` (pid-host), ``151-algo-1_3`` (pid-host_rank), ``0001``.
    """
    m = re.fullmatch(r"(\d+)_(\d+)", node_id)
    if m:
        return None, int(m.group(1)), int(m.group(2))
    m = re.fullmatch(r"(\d+)-(.+?)(?:_(\d+))?", node_id)
    if m:
        return m.group(2), int(m.group(1)), int(m.group(3)) if m.group(3) else None
    if node_id.isdigit():
        return None, None, int(node_id)
    return node_id, None, None


def parse_framework_trace(data: bytes, key: str, origin_hint_ns: int | None = None) -> ParsedFile:
    """Parse one timeline; ``origin_hint_ns`` is the start time the pipeline found beside
    the file (TensorFlow's ``.metadata`` file name), used when the file itself has none."""
    kind = framework_trace_kind(key)
    if kind is None:
        raise UnreadableFile("not a framework trace file name")
    events, _top, bad = load_events(maybe_gunzip(data, key))
    warnings = [f"{bad} malformed line{'s' if bad != 1 else ''} skipped"] if bad else []

    host: str | None = None
    os_pid: int | None = None
    rank: int | None = None
    origin_ns: int | None = None
    m = PEVENT_NAME_RE.search(key)
    if m:
        host, os_pid, rank = parse_node_id(m.group("node_id"))
        origin_ns = _start_from_name(m.group("start"))
    if kind == "tf_trace" and origin_hint_ns is not None:
        origin_ns = origin_hint_ns
    elif kind == "tf_trace":
        # No .metadata beside it: the profile folder's name is the capture time. It is the
        # host's local time, so it can be off by the host's UTC offset; a warning says so.
        tm = TF_PROFILE_DIR_RE.search("/" + key)
        if tm:
            warnings.append(
                "no TensorFlow .metadata file: start time taken from the profile folder name"
            )
            stamp = datetime.strptime(tm.group("stamp"), "%Y_%m_%d_%H_%M_%S").replace(tzinfo=UTC)
            origin_ns = int(stamp.timestamp()) * 1_000_000_000

    process_names: dict[Any, str] = {}
    for ev in events:
        if ev.get("ph") == "M" and ev.get("name") == "process_name":
            args = ev.get("args") or {}
            if "start_time_since_epoch_in_micros" in args:
                with contextlib.suppress(TypeError, ValueError):
                    origin_ns = int(args["start_time_since_epoch_in_micros"]) * 1000
            elif "name" in args:
                process_names[ev.get("pid")] = str(args["name"])
    time_known = origin_ns is not None
    origin = origin_ns or 0

    cols: dict[str, list[Any]] = {f.name: [] for f in FRAMEWORK_EVENTS}
    open_b: dict[tuple[Any, Any], list[dict[str, Any]]] = {}

    def emit(ev: dict[str, Any], phase: str, start_us: float, dur_us: float | None) -> None:
        args = ev.get("args") or {}
        step = args.get("step_num") if isinstance(args, dict) else None
        cols["node"].append(host)
        cols["rank"].append(rank)
        cols["os_pid"].append(os_pid)
        cols["trace_kind"].append(kind)
        cols["process"].append(process_names.get(ev.get("pid")))
        cols["name"].append(str(ev.get("name", "")))
        cols["phase"].append(phase)
        cols["start_ns"].append(origin + round(start_us * 1000))
        cols["dur_ns"].append(None if dur_us is None else round(dur_us * 1000))
        cols["step"].append(_int_or_none(step))
        cols["tid"].append(_int_or_none(ev.get("tid")))
        cols["file"].append(key)

    skipped_events = 0
    for ev in events:
        ph = ev.get("ph")
        if ph == "M" or ph is None:
            continue
        ts = ev.get("ts")
        if not isinstance(ts, int | float):
            skipped_events += 1
            continue
        if ph == "X":
            dur = ev.get("dur")
            emit(ev, "X", ts, dur if isinstance(dur, int | float) else None)
        elif ph == "B":
            open_b.setdefault((ev.get("pid"), ev.get("tid")), []).append(ev)
        elif ph == "E":
            stack = open_b.get((ev.get("pid"), ev.get("tid")))
            if stack:
                b = stack.pop()
                emit(b, "X", b["ts"], ts - b["ts"])
            else:
                skipped_events += 1
        elif ph in ("i", "I", "n"):
            emit(ev, "i", ts, 0)
    for stack in open_b.values():
        for b in stack:  # a begin without its end: the job stopped or the file was cut
            emit(b, "B", b["ts"], None)
    if skipped_events:
        warnings.append(f"{skipped_events} events without a usable timestamp or begin skipped")

    table = pa.table(cols, schema=_plain(FRAMEWORK_EVENTS)).cast(FRAMEWORK_EVENTS)
    tables = {"framework_events": table}
    if not time_known:
        warnings.append("no start time in file name or metadata: times are relative")
    steps = _steps(cols, host, rank)
    if steps.num_rows:
        tables["steps"] = steps
    return ParsedFile(tables=tables, warnings=warnings)


def _steps(cols: dict[str, list[Any]], host: str | None, rank: int | None) -> pa.Table:
    out: dict[str, list[Any]] = {f.name: [] for f in STEPS}
    for name, start, dur, step in zip(
        cols["name"], cols["start_ns"], cols["dur_ns"], cols["step"], strict=True
    ):
        m = STEP_MODE_RE.match(name)
        if not m or step is None or dur is None:
            continue
        out["source"].append("framework")
        out["node"].append(host)
        out["rank"].append(rank)
        out["step"].append(step)
        out["mode"].append(m.group("mode"))
        out["start_ns"].append(start)
        out["dur_ns"].append(dur)
    return pa.table(out, schema=_plain(STEPS)).cast(STEPS)


def _int_or_none(v: Any) -> int | None:
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        return int(v)
    if isinstance(v, str):
        try:
            return int(v)
        except ValueError:
            return None
    return None


def _plain(schema: pa.Schema) -> pa.Schema:
    """The schema with dictionary columns as plain strings (to build from Python lists)."""
    return pa.schema(
        [
            pa.field(f.name, pa.string() if pa.types.is_dictionary(f.type) else f.type)
            for f in schema
        ]
    )
