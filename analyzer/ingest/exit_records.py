"""stepscope run's exit records and fault dumps → the ``process_exits`` table.

Why two files per rank: the exit record (``exits/<node>_rank<R>.json``) is written while
Python is still alive, right after the script's own code ended (with the exception that
ended it, if one did); what happens after that,
in interpreter finalization, only ``faulthandler`` can write, into the ``.fault`` file the
collector pointed it at (``stepscope.collectors.exits``). The record says "the training
finished", the dump says "then the process died of this signal": together they tell a
teardown abort at exit from a failed training.
"""

from __future__ import annotations

from typing import Any

import orjson

from analyzer.ingest.keys import EXIT_RECORD_RE
from analyzer.ingest.parsed import ParsedFile, UnreadableFile

#: how much of a fault dump is kept (its first lines name the signal and the threads)
FAULT_DETAIL_BYTES = 4096


def parse_exit_record(data: bytes, key: str) -> ParsedFile:
    m = EXIT_RECORD_RE.search(key)
    if m is None:
        raise UnreadableFile(f"not an exit record name: {key}")
    row: dict[str, Any] = {
        "node": m.group("node"),
        "rank": int(m.group("rank")),
        "pid": None,
        "script_ended_ns": None,
        "optimizer_steps": None,
        "fatal": None,
        "fault_detail": None,
        "exception": None,
        "exception_frames": None,
    }
    if m.group("ext") == "json":
        try:
            rec = orjson.loads(data)
            if not isinstance(rec, dict):
                raise TypeError("not an object")
            row.update(
                kind="record",
                pid=_int(rec.get("pid")),
                script_ended_ns=_int(rec.get("script_ended_ns")),
                optimizer_steps=_int(rec.get("optimizer_steps")),
            )
            row["node"] = str(rec.get("node") or row["node"])
            exc = rec.get("exception")
            if isinstance(exc, dict) and exc.get("type"):
                message = str(exc.get("message") or "")
                row["exception"] = f"{exc['type']}: {message}" if message else str(exc["type"])
                frames = exc.get("frames")
                row["exception_frames"] = (
                    orjson.dumps(frames).decode() if isinstance(frames, list) else None
                )
            if rec.get("rank") is not None:
                row["rank"] = int(rec["rank"])
        except (orjson.JSONDecodeError, TypeError, ValueError) as exc:
            raise UnreadableFile(f"exit record is not a JSON object ({exc})") from None
    else:
        text = data[:FAULT_DETAIL_BYTES].decode("utf-8", "replace")
        first = next((line.strip() for line in text.splitlines() if line.strip()), None)
        row.update(kind="fault", fatal=first, fault_detail=text if first else None)
    return ParsedFile(tables={"process_exits": _table([row])})


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _table(rows: list[dict[str, Any]]) -> Any:
    from analyzer.ingest.schemas import PROCESS_EXITS, rows_table

    return rows_table(rows, PROCESS_EXITS)
