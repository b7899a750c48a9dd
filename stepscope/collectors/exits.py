"""The collectors' exit paths: whatever way a process ends, they flush what they hold, and the
exit status stays the script's own.

Why one module: a training process ends in four ways that matter, and each needs the
same "write what you have" without changing how the process ends:

* normal interpreter exit: one ``atexit`` handler, registered when the collectors install
  (during ``import torch``, before the script's own handlers, so it runs after them);
* ``os._exit(code)`` in the script (frameworks and our own test scripts end so): a wrapper
  flushes in the process that owns the collectors, then calls the real ``os._exit`` with
  the same code (a forked DataLoader or multiprocessing child calls it too: the pid check
  makes it the plain call there);
* SIGTERM (SageMaker's stop and spot interruptions, then SIGKILL 120 s later; torchrun's
  agent passing on a stop): only while a trace window records or the stall watchdog
  watches, and only where SIGTERM still has its default action, a handler writes the
  watchdog's dump, flushes, puts the default back and re-sends SIGTERM to the process,
  which so dies of SIGTERM as it would have. A main thread blocked in native code (a hung
  collective) cannot run a Python handler: a small thread woken through
  ``signal.set_wakeup_fd`` does the same for it after a second;
* DataLoader worker processes: forked children never flush the parent's collectors.

At the very end of a normal exit this module also does two things for the report:

* it waits (at most ``DRAIN_TIMEOUT_S``) until gloo's worker threads are parked. A gloo
  worker releases each finished work item right after marking it done; the last work
  issued during backward holds the autograd engine's stashed ``contextvars.Context`` (a
  Python object) in its captured thread-local state, and released after ``Py_FinalizeEx``
  began it asks a finalizing interpreter for the GIL and is made to exit inside a
  ``noexcept`` destructor: ``terminate called without an active exception`` (pytorch/pytorch
  #190489; docs/collect.md, "The exit abort"). Waiting here, with the GIL free, lets the
  release happen while Python is alive. It changes nothing in torch and costs a few
  milliseconds;
* it leaves an exit record, ``exits/<node>_rank<R>.json`` (the script's code ended, how many
  steps the recorder saw, and the exception that ended it, if one did: its type, message
  and frames, kept by a ``sys.excepthook`` that then calls the one it replaced, so the
  traceback still prints as before) and, where the script has not enabled ``faulthandler`` itself,
  points ``faulthandler`` at ``exits/<node>_rank<R>.fault``: a rank that then dies in
  finalization leaves its fatal-signal dump there, and the report names a teardown abort
  at exit for what it is instead of a failed training.

Standard library only; nothing here raises into the training.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: how long the exit waits for gloo's worker threads to park (a collective still running
#: at exit, e.g. a peer that never came, is not waited for longer)
DRAIN_TIMEOUT_S = 1.0
#: the name gloo gives its worker threads (``ProcessGroupGloo::runLoop``)
GLOO_THREAD = "pt_gloo_runloop"
#: the folder of the exit records, under the collector's output folder
EXITS_DIR = "exits"
EXIT_RECORD_VERSION = 1

_flushers: list[Callable[[], None]] = []
_owner_pid: int | None = None
_flushed = False
_real_exit: Callable[[int], Any] | None = None
_sigterm_armed = False
_record: tuple[Path, str, Callable[[], tuple[int, int]]] | None = None  # folder, node, facts
_fault_file: Any = None
#: the uncaught exception that ended the script (``sys.excepthook``), for the exit record
_exception: dict[str, Any] | None = None
#: the frames an exit record keeps of that exception (the innermost ones)
EXCEPTION_FRAMES = 32


def warn(message: str) -> None:
    """The collector's one line on stderr; never raises (stderr may be closed). The lowest
    collector module holds it, so every collector (trace, health, launcher) says it alike."""
    with contextlib.suppress(Exception):
        sys.stderr.write(f"stepscope: {message}\n")
        sys.stderr.flush()


def install() -> None:
    """Take over the exit paths in this process (idempotent; the first call's process owns them)."""
    global _owner_pid, _real_exit
    if _owner_pid == os.getpid():
        return
    _owner_pid = os.getpid()
    atexit.register(_at_exit)
    _keep_exception()
    if _real_exit is None:
        _real_exit = os._exit
        os._exit = _exit  # type: ignore[assignment]


def _keep_exception() -> None:
    """Chain ``sys.excepthook``: remember the exception that ends the script (the exit
    record names it: which rank raised, what, where), then hand it on unchanged."""
    previous = sys.excepthook

    def hook(kind: type[BaseException], value: BaseException, tb: Any) -> None:
        global _exception
        with contextlib.suppress(Exception):
            import traceback

            frames = traceback.extract_tb(tb)[-EXCEPTION_FRAMES:]
            _exception = {
                "type": kind.__name__,
                "message": str(value)[:2000],
                "frames": [
                    {"file": f.filename, "line": f.lineno, "function": f.name, "code": f.line}
                    for f in frames
                ],
            }
        previous(kind, value, tb)

    sys.excepthook = hook


def on_exit(flush: Callable[[], None]) -> None:
    """Call ``flush`` once when this process ends (any of the module doc's paths)."""
    install()
    if flush not in _flushers:
        _flushers.append(flush)


def forget(flush: Callable[[], None]) -> None:
    with contextlib.suppress(ValueError):
        _flushers.remove(flush)


def flush_all() -> None:
    """Run every flusher once, in the owning process only; never raises."""
    global _flushed
    if _flushed or os.getpid() != _owner_pid:
        return
    _flushed = True
    for flush in list(_flushers):
        try:
            flush()
        except Exception as exc:  # a flusher says its own failures; this is the last guard
            warn(f"flushing at exit failed ({type(exc).__name__}: {exc}); the exit goes on")


def _exit(code: int = 0) -> Any:
    """``os._exit`` under the collectors: flush first (owning process only), same code."""
    with contextlib.suppress(BaseException):
        flush_all()
    assert _real_exit is not None
    return _real_exit(code)


# -- SIGTERM while a window records or a watchdog watches --------------------------------

#: what runs on SIGTERM before the flush (the stall watchdog's dump), each at most once
_term_callbacks: list[Callable[[], None]] = []
#: how long the SIGTERM watcher gives the main thread to run the Python handler itself
TERM_GRACE_S = 1.0
_sigterm_holders = 0
_term_lock = threading.Lock()
_terminating = False
_wake: tuple[int, int] | None = None  # the wakeup pipe (read end, write end) while armed


def on_sigterm(callback: Callable[[], None]) -> None:
    """Run ``callback`` on SIGTERM (while armed), before the flush and the exit."""
    _term_callbacks.append(callback)


def arm_sigterm() -> None:
    """Flush on SIGTERM while someone holds it armed (a trace window that records, a stall
    watchdog): main thread only, and only where SIGTERM has its default action."""
    global _sigterm_armed, _sigterm_holders
    if threading.current_thread() is not threading.main_thread():
        return
    if _sigterm_holders == 0:
        with contextlib.suppress(Exception):
            if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
                signal.signal(signal.SIGTERM, _on_sigterm)
                _sigterm_armed = True
                _watch_blocked_main_thread()
        if not _sigterm_armed:
            return
    _sigterm_holders += 1


def disarm_sigterm() -> None:
    """Drop one hold; with none left put the default SIGTERM action back, unless the script
    has set its own meanwhile."""
    global _sigterm_armed, _sigterm_holders
    if not _sigterm_armed or threading.current_thread() is not threading.main_thread():
        return
    _sigterm_holders = max(0, _sigterm_holders - 1)
    if _sigterm_holders:
        return
    _sigterm_armed = False
    _unwatch()
    with contextlib.suppress(Exception):
        if signal.getsignal(signal.SIGTERM) is _on_sigterm:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _on_sigterm(signo: int, frame: Any) -> None:
    _terminate()


def _terminate() -> None:
    """On SIGTERM, in whichever thread gets here first: the callbacks, the flush, then death
    by SIGTERM with the default action, as without us."""
    global _terminating, _sigterm_armed
    with _term_lock:
        if _terminating:
            return
        _terminating = True
    for cb in _term_callbacks:
        with contextlib.suppress(BaseException):
            cb()
    if threading.current_thread() is threading.main_thread():
        with contextlib.suppress(BaseException):
            flush_all()
        _sigterm_armed = False
        with contextlib.suppress(Exception):
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
    else:
        _default_sigterm_from_any_thread()
    os.kill(os.getpid(), signal.SIGTERM)  # dies of SIGTERM, as without us


def _default_sigterm_from_any_thread() -> None:
    """The C library's default SIGTERM action back, from a thread other than the main one
    (``signal.signal`` only works there): libc's ``signal()``, through ctypes."""
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.signal.restype = ctypes.c_void_p
        libc.signal.argtypes = (ctypes.c_int, ctypes.c_void_p)
        libc.signal(int(signal.SIGTERM), 0)  # SIG_DFL is 0


def _watch_blocked_main_thread() -> None:
    """Python runs a signal handler in the main thread between two bytecodes: a main thread
    blocked in native code (a rank waiting in a collective that never completes) never runs
    it, and the process would outlive SIGTERM, unlike without us. So a wakeup pipe
    (``signal.set_wakeup_fd``, where nobody else holds one) tells a small thread of each
    SIGTERM; if the handler has not started within TERM_GRACE_S, the thread runs the
    callbacks (the stall watchdog's dump) and lets SIGTERM kill the process. The trace is
    not written from there: the profiler belongs to the blocked thread."""
    global _wake
    if _wake is not None:
        return
    r, w = os.pipe()
    os.set_blocking(w, False)
    try:
        previous = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
    except (ValueError, OSError):
        os.close(r)
        os.close(w)
        return
    if previous != -1:  # someone else's (an event loop's): leave it to them
        signal.set_wakeup_fd(previous)
        os.close(r)
        os.close(w)
        return
    _wake = (r, w)
    threading.Thread(target=_wake_loop, args=(r,), name="stepscope-sigterm", daemon=True).start()


def _wake_loop(fd: int) -> None:
    while True:
        try:
            data = os.read(fd, 64)
        except OSError:
            return  # closed: disarmed
        if not data:
            return
        if signal.SIGTERM in data:
            deadline = time.monotonic() + TERM_GRACE_S
            while time.monotonic() < deadline and not _terminating:
                time.sleep(0.02)
            if not _terminating:
                _terminate()
            return


def _unwatch() -> None:
    global _wake
    if _wake is None:
        return
    r, w = _wake
    _wake = None
    with contextlib.suppress(Exception):
        previous = signal.set_wakeup_fd(-1)
        if previous not in (w, -1):  # someone else's set after ours: theirs stays
            signal.set_wakeup_fd(previous)
    with contextlib.suppress(OSError):
        os.close(w)
    with contextlib.suppress(OSError):
        os.close(r)


# -- the normal exit ---------------------------------------------------------------------


def keep_exit_record(out_dir: Path, node: str, facts: Callable[[], tuple[int, int]]) -> None:
    """Write this rank's exit record at a normal exit (see the module doc); ``facts`` gives
    (rank, optimizer steps) then. A process that ran no optimizer step (torchrun's agent, a
    DataLoader worker) writes none, unless it is a rank that raised."""
    global _record
    install()
    _record = (out_dir, node, facts)


def _at_exit() -> None:
    if os.getpid() != _owner_pid:
        return
    flush_all()
    with contextlib.suppress(Exception):
        drain_gloo_threads()
    with contextlib.suppress(Exception):
        _write_exit_record()


def _write_exit_record() -> None:
    global _fault_file
    if _record is None:
        return
    out_dir, node, facts = _record
    rank, steps = facts()
    # a rank that raised before its first step still says so; a launcher (torchrun's agent,
    # which raises when a worker failed) is no rank and writes none
    from stepscope.collectors.identity import known_rank

    if steps <= 0 and (_exception is None or known_rank() is None):
        return
    folder = out_dir / EXITS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{node}_rank{rank}"
    import faulthandler

    fault = None
    if not faulthandler.is_enabled():  # the script's own fault handler stays where it is
        fault = folder / f"{stem}.fault"
        _fault_file = fault.open("w")  # kept open: finalization is where it is written
        faulthandler.enable(file=_fault_file, all_threads=True)
    record = {
        "version": EXIT_RECORD_VERSION,
        "node": node,
        "rank": rank,
        "pid": os.getpid(),
        "script_ended_ns": time.time_ns(),
        "optimizer_steps": steps,
        "fault_file": fault.name if fault is not None else None,
        "exception": _exception,
    }
    write_json(folder / f"{stem}.json", record)


def write_json(path: Path, doc: Any) -> None:
    """Write ``doc`` as JSON to ``path`` whole or not at all (a hidden temporary file, then a
    rename): ingest reading a running job's folder never meets half a record."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc, default=str), encoding="utf-8")
    tmp.replace(path)


def _thread_state(tid: str) -> tuple[str, int] | None:
    """(state letter, context switches) of one of this process's threads, from /proc."""
    try:
        with open(f"/proc/self/task/{tid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        switches = 0
        with open(f"/proc/self/task/{tid}/status") as f:
            for line in f:
                if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                    switches += int(line.split()[1])
        return state, switches
    except (OSError, IndexError, ValueError):
        return None  # the thread is gone


def gloo_threads() -> list[str]:
    """Thread ids of gloo's worker threads in this process (Linux; empty elsewhere)."""
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return []
    found = []
    for tid in tids:
        with contextlib.suppress(OSError), open(f"/proc/self/task/{tid}/comm") as f:
            if f.read().strip() == GLOO_THREAD:
                found.append(tid)
    return found


def drain_gloo_threads(timeout_s: float = DRAIN_TIMEOUT_S, poll_s: float = 0.002) -> bool:
    """Wait, with the GIL free, until every gloo worker thread is parked: asleep with no
    context switch between two polls (a thread that just finished a work item is running,
    or waiting for the GIL, which it gets while this sleeps). True when parked (or none)."""
    if "torch.distributed" not in sys.modules:
        return True
    tids = gloo_threads()
    if not tids:
        return True
    deadline = time.monotonic() + timeout_s
    before = {t: _thread_state(t) for t in tids}
    while True:
        time.sleep(poll_s)
        now = {t: _thread_state(t) for t in tids}
        if all(s is None or (s[0] == "S" and before.get(t) == s) for t, s in now.items()):
            return True
        if time.monotonic() >= deadline:
            return False
        before = now
