"""PyTorch profiler (Kineto) traces → ``kineto_events``, ``kineto_traces`` and ``steps``.

One file per rank, ``.json`` or ``.json.gz``. Decoding goes through msgspec into typed
structs, which reads only the fields analyses need and skips the rest without building
Python dicts for them: big traces are GBs, and this is where ingest spends its time.
A trace whose fields have unexpected types falls back to a generic (slower) decode, and a
truncated one to line salvage, so odd writers still ingest.
"""

from __future__ import annotations

import contextlib
import gc
import re
import threading
from collections.abc import Iterator
from typing import Any

import msgspec
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from analyzer.ingest.chrome_trace import load_events, maybe_gunzip
from analyzer.ingest.keys import is_kineto_name
from analyzer.ingest.parsed import NotAProfilerFile, ParsedFile, UnreadableFile
from analyzer.ingest.schemas import KINETO_EVENTS, KINETO_TRACES, STEPS

Num = int | float


# gc=False: the structs hold only scalars (and _Args), so they cannot form cycles; leaving
# them out of the garbage collector's tracking halves the decode time of a trace.
class _Args(msgspec.Struct, omit_defaults=True, gc=False):
    external_id: Num | str | None = msgspec.field(default=None, name="External id")
    correlation: Num | None = None
    device: Num | None = None
    stream: Num | None = None
    collective: str | None = msgspec.field(default=None, name="Collective name")
    in_nelems: Num | None = msgspec.field(default=None, name="In msg nelems")
    out_nelems: Num | None = msgspec.field(default=None, name="Out msg nelems")
    group_size: Num | None = msgspec.field(default=None, name="Group size")
    dtype: str | None = None
    pg_name: str | None = msgspec.field(default=None, name="Process Group Name")
    mem_bytes: Num | None = msgspec.field(default=None, name="Bytes")
    total_allocated: Num | None = msgspec.field(default=None, name="Total Allocated")
    total_reserved: Num | None = msgspec.field(default=None, name="Total Reserved")
    device_id: Num | None = msgspec.field(default=None, name="Device Id")
    # CUDA synchronisation rows (cat cuda_sync): the stream and the cudaEventRecord call
    # (by correlation) an Event Sync / Stream Wait Event waits on (the critical path's edges)
    wait_on_stream: Num | None = None
    wait_on_correlation: Num | None = msgspec.field(
        default=None, name="wait_on_cuda_event_record_corr_id"
    )


class _Event(msgspec.Struct, gc=False):
    ph: str = ""
    cat: str | None = None
    name: str = ""
    pid: int | str | None = None
    tid: int | str | None = None
    ts: float | None = None
    dur: float | None = None
    args: _Args | None = None


class _Trace(msgspec.Struct):
    traceEvents: list[_Event]
    distributedInfo: dict[str, Any] | None = None
    deviceProperties: list[dict[str, Any]] | None = None
    baseTimeNanoseconds: int | None = None
    schemaVersion: Any = None


_DECODER = msgspec.json.Decoder(_Trace)
_EVENT_CONVERT = msgspec.convert

# Bytes per element for the dtype names PyTorch writes in collective args.
DTYPE_BYTES = {
    "Float": 4,
    "float": 4,
    "Double": 8,
    "double": 8,
    "Half": 2,
    "half": 2,
    "BFloat16": 2,
    "Int": 4,
    "int": 4,
    "Long": 8,
    "long": 8,
    "Short": 2,
    "Char": 1,
    "Byte": 1,
    "Bool": 1,
    "Float8_e4m3fn": 1,
    "Float8_e5m2": 1,
    "ComplexFloat": 8,
    "ComplexDouble": 16,
}

RANK_IN_NAME_RE = re.compile(r"rank[-_]?(\d+)", re.IGNORECASE)
STEP_RE = re.compile(r"^ProfilerStep#(\d+)$")
#: a step marker of the script's own, for traces with no ``ProfilerStep`` (custom loops, a
#: profiler started without a schedule, serving loops): a CPU-side ``record_function`` whose
#: name is a step, e.g. ``step``, ``train_step``, ``training_step 12``, ``Step#3``,
#: ``step[DECODE bs=32]``; numbered by the number after "step" when every marker has one,
#: else by their order
STEP_LIKE_RE = re.compile(
    r"^(?:train(?:ing)?[_ ]?)?step(?:\s*#?\s*(?P<n>\d+))?(?=$|[\s#_\[(:.-])",
    re.IGNORECASE,
)
#: the same names' start, as a prefilter Arrow runs (RE2 has no look-ahead)
_STEP_LIKE_PREFIX = r"(?i)^(train(ing)?[_ ]?)?step"
KEEP_PHASES = ("X", "i")


#: whether this process pauses the collector during a parse: only processes that exist to
#: parse (ingest's worker processes, Dask tasks; :func:`pause_gc_while_parsing`), never a
#: caller's own process (a dashboard server's other threads keep their collector)
_PAUSE_GC = False


def pause_gc_while_parsing() -> None:
    """Let this process switch the cyclic collector off while it parses a trace: called in
    the processes that do nothing else (a worker process's initializer, a Dask task)."""
    global _PAUSE_GC
    _PAUSE_GC = True


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off while a trace is decoded and built.

    Why: a trace is 10^5 short-lived objects (strings, tuples, lists) and no cycles; each
    700 allocations the collector would walk the young objects, and every few of those the
    whole heap: about 40 % of a parse. Reference counting still frees everything. The
    switch is process-wide, hence only in processes that parse and nothing else
    (:func:`pause_gc_while_parsing`). A count, not a flag, because parses run in threads
    there too (a Dask worker's): the collector is back on (if it was on) when the last one ends.
    """
    global _gc_pauses, _gc_was_enabled
    if not _PAUSE_GC:
        yield
        return
    with _gc_lock:
        if _gc_pauses == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pauses += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pauses -= 1
            if _gc_pauses == 0 and _gc_was_enabled:
                gc.enable()


_gc_lock = threading.Lock()
_gc_pauses = 0
_gc_was_enabled = True


def parse_kineto(data: bytes, key: str) -> ParsedFile:
    with _gc_paused():
        try:
            return _parse(data, key)
        except NotAProfilerFile as exc:
            if is_kineto_name(key):
                # named as PyTorch's trace handler names its traces, yet no trace in it: a
                # damaged (truncated, overwritten) trace, a counted skip, not an ignored file
                detail = str(exc).removeprefix("JSON, but ")
                raise UnreadableFile(f"named as a PyTorch trace, but {detail}") from None
            raise


def _parse(data: bytes, key: str) -> ParsedFile:
    raw = maybe_gunzip(data, key)
    warnings: list[str] = []
    trace: _Trace | None
    try:
        trace = _DECODER.decode(raw)
    except msgspec.ValidationError:
        trace = _generic_decode(raw, warnings)
    except msgspec.DecodeError:
        if not raw.lstrip().startswith((b"{", b"[")):
            # named like JSON, yet no JSON at all: a damaged or misnamed file, counted as a
            # skip with its reason (a JSON file that is no trace is only ignored)
            raise UnreadableFile(_not_json_reason(raw)) from None
        trace = _generic_decode(raw, warnings)
    if trace is None:
        raise NotAProfilerFile("JSON, but not a Chrome/Kineto trace")
    return _build(trace, key, warnings)


def _not_json_reason(raw: bytes) -> str:
    head = raw[:512]
    if not head.strip():
        return "not JSON: the file is empty"
    if b"\x00" in head or sum(c < 9 or 13 < c < 32 for c in head) > len(head) // 10:
        return "not JSON: binary content"
    return "not JSON: text that is neither a JSON object nor an array"


def _generic_decode(raw: bytes, warnings: list[str]) -> _Trace | None:
    """Slow path: orjson (or line salvage) then per-event conversion, dropping bad events."""
    stripped = raw.lstrip()
    if stripped.startswith(b"{") and b'"traceEvents"' not in raw:
        raise NotAProfilerFile("JSON, but not a Chrome/Kineto trace (no traceEvents)")
    events, top, bad = load_events(raw)
    if bad:
        warnings.append(f"{bad} malformed line{'s' if bad != 1 else ''} skipped")
    good: list[_Event] = []
    dropped = 0
    for ev in events:
        try:
            good.append(_EVENT_CONVERT(ev, _Event))
        except msgspec.ValidationError:
            args = ev.get("args")
            try:
                ev2 = {k: v for k, v in ev.items() if k != "args"}
                e = _EVENT_CONVERT(ev2, _Event)
                if isinstance(args, dict):
                    e.args = _lenient_args(args)
                good.append(e)
            except msgspec.ValidationError:
                dropped += 1
    if dropped:
        warnings.append(f"{dropped} events with unusable fields skipped")
    if not top and not good:
        return None

    def _get(name: str, typ: Any) -> Any:
        v = top.get(name)
        return v if isinstance(v, typ) else None

    return _Trace(
        traceEvents=good,
        distributedInfo=_get("distributedInfo", dict),
        deviceProperties=_get("deviceProperties", list),
        baseTimeNanoseconds=_get("baseTimeNanoseconds", int),
        schemaVersion=top.get("schemaVersion"),
    )


def _lenient_args(args: dict[str, Any]) -> _Args:
    out = _Args()
    for f in msgspec.structs.fields(_Args):
        if f.encode_name in args:
            with contextlib.suppress(msgspec.ValidationError):
                setattr(out, f.name, msgspec.convert(args[f.encode_name], f.type))
    return out


def _us_to_ns(ts_us: np.ndarray) -> np.ndarray:
    """Microseconds (float, epoch-sized) → integer ns without float64's rounding at 1e18.

    The integer part is exact in float64 (< 2**53 µs); only the fraction is scaled.
    """
    whole = np.floor(ts_us)
    return whole.astype(np.int64) * 1000 + np.round((ts_us - whole) * 1000.0).astype(np.int64)


def _round_ns(us: pa.Array) -> pa.Array:
    """µs (float, nullable) → ns int64, rounded; numpy because Arrow's round kernel is
    slow to initialise (over a second on first use)."""
    vals = us.to_numpy(zero_copy_only=False)
    mask = np.isnan(vals)
    out = np.round(np.nan_to_num(vals) * 1000.0).astype(np.int64)
    return pa.array(out, mask=mask)


def _as_int(v: Any) -> int | None:
    if v is None or isinstance(v, str):
        try:
            return int(v) if v is not None else None
        except ValueError:
            return None
    return int(v)


_ARG_FIELDS = tuple(f.name for f in msgspec.structs.fields(_Args))
_NO_ARGS = (None,) * len(_ARG_FIELDS)


def _columns(rows: list[tuple[Any, ...]], width: int) -> list[tuple[Any, ...]]:
    """Rows of ``width`` fields → one tuple per field (``zip(*rows)``, but also for no rows)."""
    return list(zip(*rows, strict=True)) if rows else [()] * width


def _int_or_neg(vals: list[int | str | None]) -> pa.Array:
    """pid / tid: the number, or -1 where it is not one (a name such as "Spans", or absent)."""
    return pa.array([v if isinstance(v, int) else -1 for v in vals], pa.int64())


def _dtype_bytes(dtype: pa.DictionaryArray) -> pa.Array:
    """Bytes per element of each row's dtype (null where unknown), from the few distinct names."""
    sizes = pa.array([DTYPE_BYTES.get(d) for d in dtype.dictionary.to_pylist()], pa.int64())
    return sizes.take(dtype.indices)


def _build(trace: _Trace, key: str, warnings: list[str]) -> ParsedFile:
    info = trace.distributedInfo or {}
    is_trace_doc = (
        bool(trace.traceEvents) or info or trace.deviceProperties or trace.schemaVersion is not None
    )
    if not is_trace_doc:
        raise NotAProfilerFile("JSON, but not a Chrome/Kineto trace")
    rank = _as_int(info.get("rank"))
    if rank is None:
        m = RANK_IN_NAME_RE.search(key.rsplit("/", 1)[-1])
        if m:
            rank = int(m.group(1))
        else:
            rank = 0
            warnings.append("no rank in distributedInfo or file name: assumed rank 0")
    base_ns = trace.baseTimeNanoseconds or 0

    evs = [e for e in trace.traceEvents if e.ph in KEEP_PHASES and e.ts is not None]
    n = len(evs)
    # Column by column: a list comprehension reading one attribute is the cheapest loop.
    ph, cat, name = [e.ph for e in evs], [e.cat for e in evs], [e.name for e in evs]
    ts, dur, args = [e.ts for e in evs], [e.dur for e in evs], [e.args for e in evs]
    names = pa.array(name, pa.string())
    start_ns = pa.array(_us_to_ns(np.array(ts, dtype=np.float64)) + base_ns)
    dur_ns = _round_ns(pa.array(dur, pa.float64()))
    has_args = any(a is not None for a in args)
    # the 16 args fields: each struct to a tuple (in C), zip(*) transposes them into columns
    arg_vals = dict(
        zip(
            _ARG_FIELDS,
            _columns(
                [_NO_ARGS if a is None else msgspec.structs.astuple(a) for a in args]
                if has_args
                else [],
                len(_ARG_FIELDS),
            ),
            strict=True,
        )
    )

    def arg_col(attr: str, typ: pa.DataType) -> pa.Array:
        if not has_args:
            return pa.nulls(n, typ)
        vals = arg_vals[attr]
        if pa.types.is_integer(typ):
            try:
                return pa.array(vals, pa.float64()).cast(typ, safe=False)
            except (pa.ArrowInvalid, pa.ArrowTypeError):  # an id written as a string
                return pa.array([_as_int(v) if v is not None else None for v in vals], typ)
        return pa.array(vals, typ)

    in_n = arg_col("in_nelems", pa.int64())
    out_n = arg_col("out_nelems", pa.int64())
    dtype = arg_col("dtype", pa.string()).dictionary_encode()
    msg_bytes = pc.multiply(pc.max_element_wise(in_n, out_n), _dtype_bytes(dtype))

    device = arg_col("device", pa.int32())
    if has_args:
        dev_id = arg_col("device_id", pa.int32())
        device = pc.coalesce(device, dev_id)

    events = pa.Table.from_arrays(
        [
            pa.array(np.full(n, rank, dtype=np.int32)),
            pa.array(cat, pa.string()).dictionary_encode(),
            names.dictionary_encode(),
            pa.array(ph, pa.string()).dictionary_encode(),
            _int_or_neg([e.pid for e in evs]),
            _int_or_neg([e.tid for e in evs]),
            start_ns,
            dur_ns,
            arg_col("correlation", pa.int64()),
            arg_col("external_id", pa.int64()),
            device,
            arg_col("stream", pa.int64()),
            arg_col("collective", pa.string()).dictionary_encode(),
            in_n,
            out_n,
            arg_col("group_size", pa.int32()),
            dtype,
            msg_bytes,
            arg_col("pg_name", pa.string()).dictionary_encode(),
            arg_col("mem_bytes", pa.int64()),
            arg_col("total_allocated", pa.int64()),
            arg_col("total_reserved", pa.int64()),
            arg_col("wait_on_stream", pa.int64()),
            arg_col("wait_on_correlation", pa.int64()),
        ],
        schema=KINETO_EVENTS,
    )
    tables: dict[str, pa.Table] = {
        "kineto_events": events,
        "kineto_traces": _trace_row(trace, key, rank, base_ns, events),
    }
    steps = _steps(ph, names, cat, rank, start_ns, dur_ns)
    if steps.num_rows:
        tables["steps"] = steps
    return ParsedFile(tables=tables, warnings=warnings)


def _trace_row(trace: _Trace, key: str, rank: int, base_ns: int, events: pa.Table) -> pa.Table:
    info = trace.distributedInfo or {}
    props = trace.deviceProperties or []
    gpu_name = next((p.get("name") for p in props if isinstance(p, dict) and p.get("name")), None)
    base = key.rsplit("/", 1)[-1]
    # torch's tensorboard_trace_handler names files <worker>.<ms>.pt.trace.json[.gz], the
    # default worker being <host>_<pid> (stepscope's helper: <host>_rank<R>).
    m = re.match(r"^(?P<host>.+)_(?:rank)?\d+\.\d{10,}\.pt\.trace\.json", base)
    starts = events.column("start_ns")
    ends = pc.add(starts, pc.fill_null(events.column("dur_ns"), 0))
    return pa.Table.from_pylist(
        [
            {
                "rank": rank,
                "world_size": _as_int(info.get("world_size")),
                "backend": info.get("backend"),
                "base_time_ns": trace.baseTimeNanoseconds,
                "file": key,
                "node": m.group("host") if m else None,
                "events": events.num_rows,
                "gpu_name": gpu_name,
                "device_properties": orjson.dumps(props).decode() if props else None,
                "process_groups": _process_groups(info),
                "start_ns": pc.min(starts).as_py() if events.num_rows else None,
                "end_ns": pc.max(ends).as_py() if events.num_rows else None,
            }
        ],
        schema=KINETO_TRACES,
    )


def _process_groups(info: dict[str, Any]) -> str | None:
    """``distributedInfo.pg_config`` as JSON (a list of groups with ``pg_name``,
    ``pg_desc``, ``ranks``), or None where the trace has none or it is not a list."""
    groups = info.get("pg_config")
    if not isinstance(groups, list):
        return None
    kept = [
        {k: g.get(k) for k in ("pg_name", "pg_desc", "pg_size", "ranks") if k in g}
        for g in groups
        if isinstance(g, dict)
    ]
    return orjson.dumps(kept).decode() if kept else None


def _steps(
    ph: list[str],
    names: pa.Array,
    cat: list[str | None],
    rank: int,
    start_ns: pa.Array,
    dur_ns: pa.Array,
) -> pa.Table:
    rows: dict[str, list[Any]] = {f.name: [] for f in STEPS}

    def add(i: int, step: int) -> None:
        rows["source"].append("kineto")
        rows["node"].append(None)
        rows["rank"].append(rank)
        rows["step"].append(step)
        rows["mode"].append(None)
        rows["start_ns"].append(start_ns[i].as_py())
        rows["dur_ns"].append(dur_ns[i].as_py())

    for i in _step_candidates(names):
        if ph[i] != "X" or cat[i] == "gpu_user_annotation":
            continue
        m = STEP_RE.match(names[i].as_py())
        if m:
            add(i, int(m.group(1)))
    if not rows["step"]:  # no ProfilerStep: the script's own step markers, if it has them
        marked = [
            i
            for i in _step_like_candidates(names)
            if ph[i] == "X" and cat[i] == "user_annotation" and start_ns[i].is_valid
        ]
        marked.sort(key=lambda i: start_ns[i].as_py())
        matches = [(i, STEP_LIKE_RE.match(names[i].as_py())) for i in marked]
        found = [(i, m) for i, m in matches if m is not None]
        numbered = all(m.group("n") for _, m in found)
        for order, (i, m) in enumerate(found, start=1):
            add(i, int(m.group("n")) if numbered else order)
    plain = pa.schema(
        [pa.field(f.name, pa.string() if pa.types.is_dictionary(f.type) else f.type) for f in STEPS]
    )
    return pa.table(rows, schema=plain).cast(STEPS)


def _step_like_candidates(names: pa.Array) -> list[int]:
    """Rows whose name is a step marker of the script's own (:data:`STEP_LIKE_RE`)."""
    hits = pc.fill_null(pc.match_substring_regex(names, _STEP_LIKE_PREFIX), False)
    return np.flatnonzero(hits.to_numpy(zero_copy_only=False)).tolist()


def _step_candidates(names: pa.Array) -> list[int]:
    """Rows whose name starts with ``ProfilerStep#``, found by Arrow, in row order."""
    hits = pc.fill_null(pc.starts_with(names, "ProfilerStep#"), False)
    return np.flatnonzero(hits.to_numpy(zero_copy_only=False)).tolist()
