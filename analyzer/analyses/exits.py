"""How each traced process ended: the exit records and fault dumps of ``stepscope run``.

Measures, does not judge (``rules.builtin.abort_at_exit`` judges): for every rank that left
an exit record or a fault dump, whether its script's code ended (the record, written at a
normal interpreter exit), and which fatal signal faulthandler then caught during
interpreter finalization, if any.
"""

from __future__ import annotations

import re

import pandas as pd

from analyzer.ingest.dataset import JobDataset

#: faulthandler's first line names the signal (Python/faulthandler.c's handler names)
_SIGNALS = (
    ("Aborted", "SIGABRT"),
    ("Segmentation fault", "SIGSEGV"),
    ("Bus error", "SIGBUS"),
    ("Floating-point exception", "SIGFPE"),
    ("Illegal instruction", "SIGILL"),
)
#: faulthandler writes this for a thread that runs no Python code: a C++ thread, or the main
#: thread inside finalization
_NO_PYTHON_FRAME = re.compile(r"<no Python frame>")

COLUMNS = (
    "node",
    "rank",
    "script_ended",
    "script_ended_ns",
    "optimizer_steps",
    "exception",
    "exception_frames",
    "fatal",
    "signal",
    "no_python_frame",
    "fault_detail",
)


def process_exits(ds: JobDataset) -> pd.DataFrame:
    """One row per (node, rank): ``script_ended`` (an exit record exists), its time and the
    optimizer steps the recorder saw, the exception that ended the script (``exception``,
    ``exception_frames`` as JSON) where one did, and ``fatal`` / ``signal`` when a fault
    dump holds a fatal error (``no_python_frame``: a thread of the dump ran no Python code)."""
    t = ds.table("process_exits")
    if t.num_rows == 0:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in COLUMNS})
    df = t.to_pandas()
    for col in ("node", "kind"):
        df[col] = df[col].astype(object)
    rows = []
    for (node, rank), g in df.groupby(["node", "rank"], sort=True, dropna=False):
        records = g[g["kind"] == "record"]
        faults = g[(g["kind"] == "fault") & g["fatal"].notna()]
        fatal = str(faults["fatal"].iloc[0]) if len(faults) else None
        detail = str(faults["fault_detail"].iloc[0]) if len(faults) else None
        rows.append(
            {
                "node": node,
                "rank": int(rank),
                "script_ended": bool(len(records)),
                "script_ended_ns": _first(records["script_ended_ns"]),
                "optimizer_steps": _first(records["optimizer_steps"]),
                "exception": _first_text(records["exception"]),
                "exception_frames": _first_text(records["exception_frames"]),
                "fatal": fatal,
                "signal": _signal(fatal),
                "no_python_frame": bool(detail and _NO_PYTHON_FRAME.search(detail)),
                "fault_detail": detail,
            }
        )
    out = pd.DataFrame(rows, columns=list(COLUMNS)).astype(object)
    return out.where(out.notna(), None)  # absent is None, never NaN, in every column


def _first_text(values: pd.Series) -> str | None:
    values = values.dropna()
    return str(values.iloc[0]) if len(values) else None


def _first(values: pd.Series) -> int | None:
    values = values.dropna()
    return int(values.iloc[0]) if len(values) else None


def _signal(fatal: str | None) -> str | None:
    if not fatal:
        return None
    for word, name in _SIGNALS:
        if word in fatal:
            return name
    return None
