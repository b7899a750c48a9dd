"""Why the job ended badly: its own status and the tail of each host's log, classified.

Measures, does not judge (``rules.builtin.job_failure`` judges). Inputs: DescribeTrainingJob's
``TrainingJobStatus``, ``SecondaryStatus``, ``FailureReason`` and secondary status
transitions (the job's metadata) and the ``job_logs`` table (the last lines of each host's
CloudWatch log stream, ``analyzer.sources.job_logs``).

Classes, each from the messages PyTorch, CUDA, the kernel and SageMaker write (the first
matching line of each host counts; :data:`PATTERNS` holds the expressions):

* ``collective_timeout``: the NCCL watchdog's "Watchdog caught collective operation
  timeout: WorkNCCL(SeqNum=N, OpType=OP, ... Timeout(ms)=T)" (the sequence number, the op
  and the rank from its ``[Rank R]`` prefix when present), gloo's "Timed out waiting Tms for
  recv operation";
* ``cuda_oom``: "CUDA out of memory. Tried to allocate 2.00 GiB" (the size);
* ``nonfinite_loss``: a loss reported as NaN or Inf ("loss is nan", "Loss: inf");
* ``oom_killer``: the kernel's OOM killer or a SIGKILL of a worker ("Out of memory: Killed
  process", "exitcode : -9", "Signal 9 (SIGKILL)");
* ``spot_interruption``: a secondary status ``Interrupted`` (a managed spot job's instance
  taken back);
* ``max_runtime``: a secondary status or failure reason ``MaxRuntimeExceeded``;
* ``user_exception``: the script's own exception: the first Python traceback in a host's
  tail, its last line (``ValueError: ...``) and its innermost frame outside the Python
  library, site-packages and stepscope's collectors (the script's file and line; the
  pattern is the one the hang analysis uses for stacks); and, without any log, each rank's
  exception as ``stepscope run``'s exit record kept it (``source`` "exit_record": which
  rank raised, what, and where, the same frame rule), earliest first;
* ``peer_lost``: a rank's exception that says another rank died (gloo's "Connection closed
  by peer", NCCL's remote error or abort): a consequence, not the cause.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pandas as pd

from analyzer.analyses.hangs import LIBRARY_FRAME_RE
from analyzer.ingest.dataset import JobDataset

__all__ = ["PATTERNS", "classify_line", "job_failures"]

#: class -> expressions over one log line (the first that matches names the class)
PATTERNS: dict[str, tuple[re.Pattern[str], ...]] = {
    "collective_timeout": (
        re.compile(
            r"(?:\[Rank (?P<rank>\d+)\].*)?Watchdog caught collective operation timeout: "
            r"WorkNCCL\(SeqNum=(?P<seq>\d+), OpType=(?P<op>\w+)"
            r"(?:.*?Timeout\(ms\)=(?P<timeout_ms>\d+))?"
        ),
        re.compile(
            r"(?:\[Rank (?P<rank>\d+)\].*)?Timed out waiting (?P<timeout_ms>\d+)ms for "
            r"(?P<op>send|recv) operation"
        ),
        re.compile(r"(?P<op>[Cc]ollective operation) timeout"),
    ),
    "cuda_oom": (
        re.compile(r"CUDA out of memory\. Tried to allocate (?P<size>[\d.]+ ?[KMGT]i?B)"),
        re.compile(r"torch\.(?:cuda\.)?OutOfMemoryError"),
    ),
    "nonfinite_loss": (
        re.compile(r"(?i)\bloss\b\s*(?:is|=|:)?\s*(?P<value>[-+]?(?:nan|inf(?:inity)?))\b"),
        re.compile(r"(?i)\b(?:nan|non-finite|inf) (?:loss|gradients?)\b"),
    ),
    "oom_killer": (
        re.compile(r"Out of memory: Kill(?:ed)? process"),
        re.compile(r"\boom[-_]kill"),
        re.compile(r"exitcode\s*:\s*-9\b"),
        re.compile(r"Signal 9 \(SIGKILL\)"),
    ),
}
_TRACEBACK = "Traceback (most recent call last):"
_FRAME_RE = re.compile(r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<function>.+)$')
_EXCEPTION_RE = re.compile(
    r"^(?P<type>[A-Za-z_][\w.]*(?:Error|Exception|Interrupt|Exit))"
    r"(?::\s*(?P<message>.*))?$"
)

COLUMNS = ["host", "kind", "detail", "line", "time_ms", "source", "fields"]


def classify_line(line: str) -> tuple[str, dict[str, str]] | None:
    """The class of one log line and what its pattern captured, or None."""
    for kind, patterns in PATTERNS.items():
        for pattern in patterns:
            m = pattern.search(line)
            if m:
                return kind, {k: v for k, v in m.groupdict().items() if v is not None}
    return None


def job_failures(ds: JobDataset) -> pd.DataFrame:
    """One row per (host, class) found, and one per class the job's status says: ``host``
    (None for the job's status), ``kind``, ``detail`` (a sentence), ``line`` (the log line
    or status text), ``time_ms``, ``source`` (log | status), ``fields`` (what was captured:
    seq, op, rank, size, file, line...)."""
    rows: list[dict[str, Any]] = []
    meta = ds.meta
    secondary = str(meta.secondary_status or "")
    reason = str(meta.failure_reason or "")
    transitions = (meta.extra or {}).get("secondary_status_transitions") or []
    statuses = {str(t.get("status")) for t in transitions if isinstance(t, dict)} | {secondary}
    if "MaxRuntimeExceeded" in statuses or "MaxRuntimeExceeded" in reason:
        rows.append(_status("max_runtime", "the job reached its MaxRuntimeInSeconds", reason))
    if "Interrupted" in statuses:
        rows.append(_status("spot_interruption", "a managed spot instance was taken back", reason))
    logs = ds.table("job_logs").to_pandas()
    if not logs.empty:
        for c in ("host", "stream"):
            logs[c] = logs[c].astype(object)
        for host, lines in logs.sort_values(["host", "seq"]).groupby("host", sort=True):
            rows.extend(_host_rows(str(host), lines))
    rows.extend(_raised(ds))
    if not rows and reason and str(meta.status) == "Failed":
        rows.append(_status("failed", "the job failed", reason))
    return pd.DataFrame(rows, columns=COLUMNS)


#: an exception a rank raises because another rank died (gloo's "Connection closed by
#: peer ... typically caused by a remote worker crashing", NCCL's remote error and abort)
PEER_LOST_RE = re.compile(
    r"(?i)connection (?:closed|reset) by peer|remote worker crash|remote process exited|"
    r"NCCL communicator was aborted|ncclRemoteError|process group .*abort"
)


def _raised(ds: JobDataset) -> list[dict[str, Any]]:
    """The exceptions ranks raised, from ``stepscope run``'s exit records: one row per rank,
    ``host`` its node, the innermost frame of the script's own code (as for a log tail).
    A rank that raised because another died (:data:`PEER_LOST_RE`) is ``peer_lost``, not
    ``user_exception``: the cause is the other rank's exception, the earliest of them."""
    from analyzer.analyses.exits import process_exits

    exits = process_exits(ds)
    if exits.empty:
        return []
    out = []
    raised = exits[exits["exception"].notna()]
    raised = raised.assign(_t=raised["script_ended_ns"].fillna(0)).sort_values(["_t", "rank"])
    for r in raised.itertuples(index=False):
        try:
            frames = json.loads(r.exception_frames) if r.exception_frames else []
        except ValueError:
            frames = []
        frames = [f for f in frames if isinstance(f, dict) and f.get("file")]
        own = [f for f in frames if not LIBRARY_FRAME_RE.search(str(f["file"]))]
        frame = (own or frames or [{}])[-1]
        kind_, _, message = str(r.exception).partition(": ")
        fields: dict[str, Any] = {"type": kind_, "message": message, "rank": int(r.rank)}
        if frame:
            fields |= {
                "file": frame.get("file"),
                "lineno": frame.get("line"),
                "function": frame.get("function"),
                "code": frame.get("code"),
            }
        lost = bool(PEER_LOST_RE.search(str(r.exception)))
        out.append(
            {
                "host": r.node,
                "kind": "peer_lost" if lost else "user_exception",
                "detail": (
                    f"rank {int(r.rank)} lost a peer ({kind_})"
                    if lost
                    else f"rank {int(r.rank)} raised {r.exception}"
                ),
                "line": str(r.exception)[:500],
                "time_ms": (r.script_ended_ns // 1_000_000) if r.script_ended_ns else None,
                "source": "exit_record",
                "fields": fields,
            }
        )
    return out


def _status(kind: str, detail: str, reason: str) -> dict[str, Any]:
    return {
        "host": None,
        "kind": kind,
        "detail": detail,
        "line": reason or None,
        "time_ms": None,
        "source": "status",
        "fields": {},
    }


def _host_rows(host: str, lines: pd.DataFrame) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    messages = lines["message"].astype(str).tolist()
    times = lines["time_ms"].tolist()
    for i, text in enumerate(messages):
        got = classify_line(text)
        if got is None or got[0] in seen:
            continue
        kind, fields = got
        seen.add(kind)
        out.append(
            {
                "host": host,
                "kind": kind,
                "detail": _detail(kind, fields),
                "line": text.strip()[:500],
                "time_ms": times[i],
                "source": "log",
                "fields": fields,
            }
        )
    tb = _first_traceback(messages)
    if tb is not None:
        fields, start = tb
        out.append(
            {
                "host": host,
                "kind": "user_exception",
                "detail": f"{fields['type']}: {fields.get('message', '')}".strip().rstrip(":"),
                "line": messages[start].strip()[:500],
                "time_ms": times[start],
                "source": "log",
                "fields": fields,
            }
        )
    return out


def _detail(kind: str, f: dict[str, str]) -> str:
    if kind == "collective_timeout":
        what = f.get("op", "a collective")
        seq = f" #{f['seq']}" if "seq" in f else ""
        rank = f" on rank {f['rank']}" if "rank" in f else ""
        after = f" after {int(f['timeout_ms']) / 1000:.0f} s" if "timeout_ms" in f else ""
        return f"{what}{seq} timed out{rank}{after}"
    if kind == "cuda_oom":
        return "CUDA out of memory" + (f" allocating {f['size']}" if "size" in f else "")
    if kind == "nonfinite_loss":
        return "the loss became " + f.get("value", "NaN or Inf")
    return "the kernel's OOM killer or a SIGKILL ended a worker"


def _first_traceback(messages: list[str]) -> tuple[dict[str, str], int] | None:
    """The first traceback's exception and innermost frame of the script's own code."""
    for start, text in enumerate(messages):
        if _TRACEBACK not in text:
            continue
        frames: list[dict[str, str]] = []
        for later in messages[start + 1 : start + 400]:
            body = later.split("] ", 1)[-1] if later.startswith("[") else later
            m = _FRAME_RE.match(body)
            if m:
                frames.append(m.groupdict())
                continue
            e = _EXCEPTION_RE.match(body.strip())
            if e and frames:
                fields = {k: v for k, v in e.groupdict().items() if v is not None}
                own = [f for f in frames if not LIBRARY_FRAME_RE.search(f["file"])]
                frame = (own or frames)[-1]
                fields.update(
                    {"file": frame["file"], "lineno": frame["line"], "function": frame["function"]}
                )
                return fields, start
    return None
