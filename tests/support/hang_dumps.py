"""Hang dumps with known answers, as ``stepscope run``'s stall watchdog writes them: for the
hang analysis's tests and the rule known-answer suite."""

from __future__ import annotations

import json
from pathlib import Path

T0 = 1_800_000_000_000_000_000


def entry(rid: int, group: str, seq: int, op: str = "gloo:all_reduce", size: int = 4) -> dict:
    return {
        "record_id": rid,
        "pg_id": int(group),
        "process_group": [group, "default_pg" if group == "0" else "undefined"],
        "collective_seq_id": seq,
        "p2p_seq_id": 0,
        "op_id": seq,
        "profiling_name": op,
        "input_sizes": [[size]],
        "output_sizes": [[size]],
        "input_dtypes": ["Float"],
        "state": "scheduled",
        "time_created_ns": T0 + rid * 1000,
        "time_discovered_started_ns": 0,
        "time_discovered_completed_ns": 0,
        "timeout_ms": 1800000,
        "is_p2p": False,
    }


def dump(root: Path, rank: int, entries: list[dict], status: dict, line: int, code: str) -> None:
    """A dump as the watchdog writes it: two groups of ranks 0-1, the main thread at
    ``train.py:line`` under torch's collective."""
    doc = {
        "stepscope_hang": 1,
        "node": "algo-1",
        "rank": rank,
        "pid": 100 + rank,
        "time_ns": T0 + 5_000_000_000,
        "stalled_s": 5.0,
        "timeout_s": 3.0,
        "steps_seen": 7,
        "process_groups": [
            {"name": "0", "desc": "default_pg", "ranks": [0, 1]},
            {"name": "1", "desc": "undefined", "ranks": [0, 1]},
        ],
        "flight_recorder": {
            "version": "2.10",
            "pg_config": {"": {"desc": "", "name": "", "ranks": "[]"}},
            "pg_status": {
                g: {
                    "last_enqueued_collective": str(e),
                    "last_started_collective": "-1",
                    "last_completed_collective": str(c),
                }
                for g, (e, c) in status.items()
            },
            "entries": entries,
        },
        "flight_recorder_error": None,
        "threads": [
            {
                "thread": "MainThread",
                "ident": 1,
                "main": True,
                "daemon": False,
                "frames": [
                    {"file": "/job/train.py", "line": 99, "function": "<module>", "code": "main()"},
                    {"file": "/job/train.py", "line": line, "function": "main", "code": code},
                    {
                        "file": "/venv/lib/python3.11/site-packages/torch/distributed/c10d.py",
                        "line": 3252,
                        "function": "all_reduce",
                        "code": "work.wait()",
                    },
                ],
            }
        ],
    }
    folder = root / "hangs"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"algo-1_rank{rank}.{doc['time_ns']}.json").write_text(json.dumps(doc))


def history() -> list[dict]:
    """Six steps of: the gradient all-reduce (group 0), then the metric's (group 1)."""
    out, rid = [], 0
    for step in range(1, 7):
        out += [entry(rid, "0", step), entry(rid + 1, "1", step)]
        rid += 2
    return out
