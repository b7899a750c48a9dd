"""The stall watchdog ``stepscope run`` starts in every training process: when a job hangs,
each rank writes what a diagnosis needs, once, and the training goes on.

Why: the costliest failure of a distributed job is a hang. One rank never enters a
collective (a data-dependent branch, an exception caught on one rank only, a dead link),
the others wait in it until the collective times out (10 to 30 minutes) or the job reaches
its MaxRuntime, and nothing says which rank, which collective or why. PyTorch's Flight
Recorder keeps each rank's last collectives (``TORCH_FR_BUFFER_SIZE``, gloo and NCCL alike;
the launcher turns it on), but only a dump taken *during* the hang shows where every rank
stands, and the Python stacks show the line a missing rank is at.

How: the launcher's optimizer step hook (``stepscope.collectors.trace``) calls
:meth:`Watchdog.beat` at every optimizer step, one clock read. A daemon thread wakes once a
second; when no step has come for the stall timeout it writes
``hangs/<node>_rank<R>.<time_ns>.json``: the rank, the steps seen, how long it has stalled,
the process groups (name, description, ranks), the Flight Recorder buffer
(``torch._C._distributed_c10d._dump_fr_trace_json``) and the Python stack of every thread
(``sys._current_frames``). Once per process: a second stall writes nothing more. On
SIGTERM (SageMaker's stop, a spot interruption) the same dump is written before the process
dies of it (``stepscope.collectors.exits``; also when the main thread is blocked in a
collective and cannot run a Python signal handler). The
watchdog never kills, pauses or signals anything; any failure of its own is one line on
stderr and it stops.

The timeout: ``stepscope run --stall-timeout SECONDS``; by default the larger of
:data:`DEFAULT_MIN_S` and :data:`STEPS_PER_TIMEOUT` median steps, so a job with slow steps is
not called hung between two of them. Before the first step the timer runs from the start
(a hang in start-up, a first collective never reached, counts too).

The watchdog of a distributed worker (``RANK`` and the like set) starts with the process;
any other process's at its first optimizer step, so a launcher's agent, which imports torch
but never trains, never dumps. Standard library only at import (``torch`` is imported when
a dump is written).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from stepscope.collectors import exits, identity
from stepscope.collectors.exits import warn

#: ``stepscope run --stall-timeout``: seconds without a step, or "auto"
ENV_STALL = "STEPSCOPE_RUN_STALL_S"
#: PyTorch's Flight Recorder buffer size (entries per process group); the launcher sets it
FR_ENV = "TORCH_FR_BUFFER_SIZE"
DEFAULT_FR_BUFFER = 2000
#: the automatic timeout: at least this long, and this many median steps
DEFAULT_MIN_S = 300.0
STEPS_PER_TIMEOUT = 20
#: the subfolder of the output folder the dumps go to
HANGS_DIR = "hangs"
#: step intervals kept for the median (the recent ones)
_KEEP = 64


#: ``--stall-timeout off``: no watchdog
OFF = "off"


def parse_stall_timeout(text: str | None) -> float | None:
    """``"auto"`` (or empty) → None (automatic); ``"off"`` → 0.0 (no watchdog); else a
    positive number of seconds; anything else is a ValueError."""
    if text is None or text.strip().lower() in ("", "auto"):
        return None
    if text.strip().lower() == OFF:
        return 0.0
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ValueError(f"expected seconds > 0, 'auto' or 'off', got {text!r}")
    return value


class Watchdog:
    """One process's stall watchdog (module docstring)."""

    def __init__(self, out_dir: Path, node: str, timeout_s: float | None) -> None:
        self.out_dir, self.node, self.fixed = out_dir, node, timeout_s
        self.started = self.last = time.monotonic()
        self.steps = 0
        self.intervals: list[float] = []
        self.dumped: Path | None = None
        self.reason = "stall"  # why the dump was written: stall | SIGTERM
        self.pid = os.getpid()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the step path: one clock read and an append ---------------------------------------
    def beat(self) -> None:
        now = time.monotonic()
        if self.steps:
            self.intervals.append(now - self.last)
            if len(self.intervals) > _KEEP:
                del self.intervals[: len(self.intervals) - _KEEP]
        self.steps += 1
        self.last = now

    # -- the watcher -------------------------------------------------------------------------
    def timeout_s(self) -> float:
        if self.fixed is not None:
            return self.fixed
        if not self.intervals:
            return DEFAULT_MIN_S
        ordered = sorted(self.intervals)
        median = ordered[len(ordered) // 2]
        return max(DEFAULT_MIN_S, STEPS_PER_TIMEOUT * median)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._watch, name="stepscope-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def dump_on_sigterm(self) -> None:
        """SIGTERM (a stop, a spot interruption): the same dump, once, before the exit."""
        if self.dumped is None:
            self.reason = "SIGTERM"
            self.dumped = self.dump()

    def stalled_s(self) -> float:
        return time.monotonic() - self.last

    def _watch(self) -> None:
        poll = min(1.0, max(0.05, (self.fixed or DEFAULT_MIN_S) / 10))
        while not self._stop.wait(poll):
            if os.getpid() != self.pid:  # a forked child inherits no thread, but be sure
                return
            if self.stalled_s() >= self.timeout_s():
                if self.dumped is not None:
                    return
                try:
                    self.dumped = self.dump()
                except Exception as exc:
                    detail = str(exc).splitlines()[0] if str(exc) else ""
                    warn(f"stall watchdog: no dump ({type(exc).__name__}: {detail})")
                return  # once per process

    # -- the dump ----------------------------------------------------------------------------
    def dump(self) -> Path:
        """Write this rank's hang dump (module docstring) and return its path."""
        rank = identity.known_rank()
        doc: dict[str, Any] = {
            "stepscope_hang": 1,
            "node": self.node,
            "rank": rank,
            "pid": self.pid,
            "time_ns": time.time_ns(),
            "reason": self.reason,
            "stalled_s": round(self.stalled_s(), 3),
            "timeout_s": round(self.timeout_s(), 3),
            "steps_seen": self.steps,
            "process_groups": _process_groups(),
            "flight_recorder": None,
            "flight_recorder_error": None,
            "threads": _stacks(),
        }
        try:
            doc["flight_recorder"] = _flight_recorder()
        except Exception as exc:
            doc["flight_recorder_error"] = f"{type(exc).__name__}: {exc}"[:500]
        folder = self.out_dir / HANGS_DIR
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self.node}_rank{rank if rank is not None else 'X'}.{doc['time_ns']}.json"
        exits.write_json(path, doc)
        if self.reason != "SIGTERM":  # a stop is no anomaly: its dump goes without a line
            warn(
                f"stall watchdog: rank {rank} made no step for {doc['stalled_s']:.0f} s; wrote "
                f"{path} (Flight Recorder and Python stacks); training goes on"
            )
        return path


#: the variables a distributed launcher sets in each worker (torchrun, MPI, SLURM); the
#: launcher's own process (torchrun's agent) has none
_WORKER_VARS = ("RANK", "LOCAL_RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK", "SLURM_PROCID")


def distributed_worker() -> bool:
    """Whether this process is a rank of a distributed job (then the watchdog starts at
    once: a hang before the first step counts); other processes that import torch (a
    launcher's agent, a data worker) start it only at their first optimizer step."""
    return any(os.environ.get(v, "").isdigit() for v in _WORKER_VARS)


def _process_groups() -> list[dict[str, Any]]:
    """Each process group this rank knows: its name (Flight Recorder's ``pg_id`` names it
    too), description and global ranks."""
    out: list[dict[str, Any]] = []
    with contextlib.suppress(Exception):
        import torch.distributed as dist
        from torch.distributed import distributed_c10d as c10d

        if not (dist.is_available() and dist.is_initialized()):
            return out
        world = c10d._world
        for pg, name in list(world.pg_names.items()):
            ranks = sorted(int(r) for r in world.pg_group_ranks.get(pg, {}))
            desc = None
            with contextlib.suppress(Exception):
                desc = pg.group_desc
            out.append({"name": str(name), "desc": desc, "ranks": ranks})
    return out


def _flight_recorder() -> Any:
    """The Flight Recorder buffer as PyTorch dumps it (JSON), parsed; None without one."""
    import torch._C._distributed_c10d as c10d_c

    dump = getattr(c10d_c, "_dump_fr_trace_json", None)
    if dump is None:
        raise RuntimeError("this torch has no Flight Recorder JSON dump")
    raw = dump(True, False)  # include collectives, not only the active ones
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return json.loads(text)


def _stacks() -> list[dict[str, Any]]:
    """Every thread's Python stack, innermost frame last (as ``traceback`` orders them)."""
    names = {t.ident: (t.name, t.daemon) for t in threading.enumerate()}
    main = threading.main_thread().ident
    out = []
    for ident, frame in sys._current_frames().items():
        if ident == threading.get_ident():
            continue  # the watchdog itself
        name, daemon = names.get(ident, (f"thread {ident}", None))
        out.append(
            {
                "thread": name,
                "ident": ident,
                "main": ident == main,
                "daemon": daemon,
                "frames": [
                    {"file": f.filename, "line": f.lineno, "function": f.name, "code": f.line}
                    for f in traceback.extract_stack(frame)
                ],
            }
        )
    return out


#: the suffix of the Flight Recorder record written beside each trace
WINDOW_RECORD_SUFFIX = ".fr.json"


def write_window_record(trace: Path, node: str, rank: int | None) -> Path | None:
    """Beside a trace just written, the Flight Recorder buffer and the rank's process groups
    (``<trace stem>.fr.json``): the trace's host-side collectives (gloo's) name no process
    group, and the buffer gives each its group and sequence number. Only where the Flight
    Recorder is on (``TORCH_FR_BUFFER_SIZE``, which ``stepscope run`` sets); nothing, and no
    line, where it is off or unavailable; a failure to write is one line on stderr."""
    if not os.environ.get(FR_ENV, "").strip() or os.environ.get(FR_ENV, "").strip() == "0":
        return None
    try:
        fr = _flight_recorder()
    except Exception:
        return None  # no Flight Recorder in this torch or this process: nothing to add
    if not isinstance(fr, dict) or not fr.get("entries"):
        return None
    name = trace.name.split(".pt.trace.json")[0] + WINDOW_RECORD_SUFFIX
    path = trace.with_name(name)
    doc = {
        "stepscope_fr_window": 1,
        "node": node,
        "rank": rank,
        "time_ns": time.time_ns(),
        "process_groups": _process_groups(),
        "flight_recorder": fr,
    }
    try:
        exits.write_json(path, doc)
    except OSError as exc:
        warn(f"no Flight Recorder record beside {trace.name} ({exc}); the trace is complete")
        return None
    return path


#: this process's watchdog, once torch.optim is imported under ``stepscope run``
watchdog: Watchdog | None = None


def install(out_dir: Path, node: str) -> Watchdog | None:
    """Start the watchdog (once per process); None, after one stderr line, when the launcher's
    setting is unusable."""
    global watchdog
    if watchdog is not None:
        return watchdog
    try:
        timeout = parse_stall_timeout(os.environ.get(ENV_STALL))
    except ValueError as exc:
        warn(f"stall watchdog off: {ENV_STALL}: {exc}; training goes on")
        return None
    if timeout == 0.0:
        return None  # --stall-timeout off
    dog = Watchdog(out_dir, node, timeout)
    dog.start()
    exits.on_sigterm(dog.dump_on_sigterm)
    exits.arm_sigterm()  # held for the whole run: a stop writes the dump too
    watchdog = dog
    return dog
