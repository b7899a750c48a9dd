"""Hang dumps → ``hang_dumps``, ``fr_entries``, ``fr_groups`` and ``hang_stacks``.

Two writers:

* stepscope's stall watchdog (``stepscope.collectors.hang``): ``hangs/<node>_rank<R>.<ns>.json``
  with the rank, how long it had stalled, its process groups, PyTorch's Flight Recorder
  buffer (as ``_dump_fr_trace_json`` gives it) and every thread's Python stack;
* PyTorch itself, which pickles the Flight Recorder buffer when a collective times out
  (``nccl_trace_rank_<R>``). A pickle can run code when loaded, and these files come from
  S3 and other hosts, so they are read by :class:`PlainUnpickler`, which builds only plain
  containers and scalars and refuses every import a pickle asks for: never ``pickle.load``.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

import orjson

from analyzer.ingest.keys import FR_PICKLE_RE, HANG_DUMP_RE, WINDOW_FR_RE
from analyzer.ingest.parsed import ParsedFile, UnreadableFile, json_object


class PlainUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, tuples, sets, strings, bytes, numbers, booleans and None only:
    any class or function a pickle names (the way a pickle runs code) is refused."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(
            f"refused: the pickle asks for {module}.{name} (only plain data is read)"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refused: the pickle refers to persistent objects")


def plain_unpickle(data: bytes) -> Any:
    """The object in ``data`` if it is plain data (:class:`PlainUnpickler`), else
    ``pickle.UnpicklingError``."""
    return PlainUnpickler(io.BytesIO(data)).load()


def parse_hang_dump(data: bytes, key: str) -> ParsedFile:
    m = HANG_DUMP_RE.search(key)
    if m is not None:
        doc = json_object(data, "hang dump")
        rank = doc.get("rank")
        if rank is None and m.group("rank") != "X":
            rank = int(m.group("rank"))
        node = str(doc.get("node") or m.group("node"))
        return _tables(doc, node, _int(rank), key, "stepscope_watchdog")
    m = FR_PICKLE_RE.search(key)
    if m is None:
        raise UnreadableFile(f"not a hang dump name: {key}")
    try:
        doc = plain_unpickle(data)
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise UnreadableFile(f"Flight Recorder pickle not read: {exc}") from None
    if not isinstance(doc, dict) or "entries" not in doc:
        raise UnreadableFile("not a Flight Recorder dump (no entries)")
    fr = {k.decode() if isinstance(k, bytes) else k: v for k, v in doc.items()}
    shell = {"flight_recorder": fr, "rank": int(m.group("rank"))}
    return _tables(shell, None, int(m.group("rank")), key, "pytorch_flight_recorder")


def parse_window_record(data: bytes, key: str) -> ParsedFile:
    """The Flight Recorder record ``stepscope run`` writes beside each trace: its entries and
    groups as ``window_fr_entries`` / ``window_fr_groups`` (the hang tables stay the hangs')."""
    m = WINDOW_FR_RE.search(key)
    if m is None:
        raise UnreadableFile(f"not a Flight Recorder record name: {key}")
    doc = json_object(data, "Flight Recorder record")
    rank = _int(doc.get("rank"))
    rank = int(m.group("rank")) if rank is None else rank
    node = str(doc.get("node") or m.group("node"))
    parsed = _tables(doc, node, rank, key, "stepscope_window")
    return ParsedFile(
        tables={
            "window_fr_entries": parsed.tables["fr_entries"],
            "window_fr_groups": parsed.tables["fr_groups"],
        }
    )


def _int(v: Any) -> int | None:
    try:
        return None if v is None else int(v)
    except (TypeError, ValueError):
        return None


def _json(v: Any) -> str | None:
    return None if v is None else orjson.dumps(v, default=str).decode()


def _tables(
    doc: dict[str, Any], node: str | None, rank: int | None, key: str, source: str
) -> ParsedFile:
    fr = doc.get("flight_recorder")
    fr = fr if isinstance(fr, dict) else {}
    dump = {
        "node": node,
        "rank": rank,
        "pid": _int(doc.get("pid")),
        "time_ns": _int(doc.get("time_ns")),
        "reason": doc.get("reason") or ("timeout" if source != "stepscope_watchdog" else "stall"),
        "stalled_s": doc.get("stalled_s"),
        "timeout_s": doc.get("timeout_s"),
        "steps_seen": _int(doc.get("steps_seen")),
        "source": source,
        "fr_error": doc.get("flight_recorder_error")
        or (None if fr else "no Flight Recorder buffer in the dump"),
        "file": key,
    }
    entries = []
    for e in fr.get("entries") or []:
        if not isinstance(e, dict):
            continue
        pg = e.get("process_group") or [None, None]
        is_p2p = bool(e.get("is_p2p"))
        entries.append(
            {
                "node": node,
                "rank": rank,
                "group": None if pg[0] is None else str(pg[0]),
                "group_desc": None if len(pg) < 2 or pg[1] is None else str(pg[1]),
                "record_id": _int(e.get("record_id")),
                "seq": _int(e.get("p2p_seq_id") if is_p2p else e.get("collective_seq_id")),
                "is_p2p": is_p2p,
                "op": e.get("profiling_name"),
                "input_sizes": _json(e.get("input_sizes")),
                "output_sizes": _json(e.get("output_sizes")),
                "dtypes": _json(e.get("input_dtypes")),
                "state": e.get("state"),
                "time_created_ns": _int(e.get("time_created_ns")),
                "started_ns": _int(e.get("time_discovered_started_ns")) or None,
                "completed_ns": _int(e.get("time_discovered_completed_ns")) or None,
                "timeout_ms": _int(e.get("timeout_ms")),
            }
        )
    groups = _groups(doc, fr, node, rank)
    stacks = []
    for t in doc.get("threads") or []:
        if not isinstance(t, dict):
            continue
        for depth, f in enumerate(t.get("frames") or []):
            if isinstance(f, dict):
                stacks.append(
                    {
                        "node": node,
                        "rank": rank,
                        "thread": str(t.get("thread")),
                        "main": bool(t.get("main")),
                        "depth": depth,
                        "file": f.get("file"),
                        "line": _int(f.get("line")),
                        "function": f.get("function"),
                        "code": f.get("code"),
                    }
                )
    from analyzer.ingest.schemas import (
        FR_ENTRIES,
        FR_GROUPS,
        HANG_DUMPS,
        HANG_STACKS,
        rows_table,
    )

    return ParsedFile(
        tables={
            "hang_dumps": rows_table([dump], HANG_DUMPS),
            "fr_entries": rows_table(entries, FR_ENTRIES),
            "fr_groups": rows_table(groups, FR_GROUPS),
            "hang_stacks": rows_table(stacks, HANG_STACKS),
        }
    )


def _groups(
    doc: dict[str, Any], fr: dict[str, Any], node: str | None, rank: int | None
) -> list[dict[str, Any]]:
    """Each group's progress (``pg_status``) with its description and ranks: from the
    watchdog's own list of the rank's groups, else Flight Recorder's ``pg_config``."""
    known: dict[str, dict[str, Any]] = {}
    for g in doc.get("process_groups") or []:
        if isinstance(g, dict) and g.get("name") is not None:
            known[str(g["name"])] = {"desc": g.get("desc"), "ranks": g.get("ranks")}
    for name, cfg in (fr.get("pg_config") or {}).items():
        if not name or not isinstance(cfg, dict):
            continue
        ranks = cfg.get("ranks")
        if isinstance(ranks, str):
            try:
                ranks = orjson.loads(ranks)
            except orjson.JSONDecodeError:
                ranks = None
        have = known.setdefault(str(name), {"desc": None, "ranks": None})
        have["desc"] = have["desc"] or cfg.get("desc")
        have["ranks"] = have["ranks"] or ranks or None
    rows = []
    status = fr.get("pg_status") or {}
    for name in sorted(set(known) | {str(k) for k in status}):
        st = status.get(name) or {}
        info = known.get(name, {})
        rows.append(
            {
                "node": node,
                "rank": rank,
                "group": name,
                "group_desc": info.get("desc"),
                "ranks": _json(info.get("ranks")),
                "last_enqueued": _int(st.get("last_enqueued_collective")),
                "last_started": _int(st.get("last_started_collective")),
                "last_completed": _int(st.get("last_completed_collective")),
            }
        )
    return rows
