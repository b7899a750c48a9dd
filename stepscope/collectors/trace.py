"""The per-process trace recorder that ``stepscope run`` installs in every Python process.

Why it is driven by the optimizer: the user's script has no profiling code, so nothing
calls ``prof.step()``; the one step boundary every PyTorch training loop has is
``optimizer.step()``, and PyTorch calls every hook registered with
``torch.optim.optimizer.register_optimizer_step_post_hook`` after each one. The first
optimizer that steps sets the pace (a GAN's second optimizer does not count twice); if it is
garbage-collected, the next one that steps takes over.

Life of the recorder in one process:

* the bootstrap ``sitecustomize`` calls :func:`install` the moment ``torch.optim.optimizer``
  has been imported (torch is half-initialised then, so this only registers the hook);
* the first optimizer step starts ``torch.profiler`` (in the training thread, so the
  profiler's thread-local callbacks see the training loop and its autograd threads) with
  the schedule ``wait:warmup:active`` of ``stepscope run --steps`` and one repeat;
  ``ProfilerStep#N`` then runs from one optimizer step to the next, so the fetch of the
  next batch (PyTorch's ``enumerate(DataLoader)#...__next__`` range) falls inside the step
  that uses it, as in a loop that calls ``prof.step()`` at its end;
* when the window is written the profiler stops and the hook goes inert: the rest of the
  training pays one Python call per optimizer step (``if self.off: return``), and the
  handle is removed at interpreter exit. Not earlier: PyTorch iterates its dict of global
  hooks while it calls them, so a hook that removes itself breaks every hook registered
  after it ("OrderedDict mutated during iteration"), a library's or the health hooks'.
  A job that ends inside the window still gets a trace of the steps it recorded.

Traces are named like ``stepscope.collectors.profiling`` names them,
``<node>_rank<R>.<time_ns>.pt.trace.json.gz``, with the rank read when the trace is written
(the process group is up by then), so ingest finds the node in the name and the rank in
``distributedInfo`` or the name.

Any failure (no torch.profiler, a full disk, a profiler error) is one line on stderr, the
recorder switches itself off, and the training goes on. Standard library only at import.
"""

from __future__ import annotations

import contextlib
import os
import weakref
from pathlib import Path
from typing import Any

from stepscope.collectors import exits, hang, identity

#: the launcher's switch: the folder traces go to (absolute); unset = record nothing
ENV_DIR = "STEPSCOPE_RUN_DIR"
#: the profiler schedule, ``WAIT:WARMUP:ACTIVE`` optimizer steps
ENV_STEPS = "STEPSCOPE_RUN_STEPS"
#: the node name the launcher resolved, so every process of a node agrees on it
ENV_NODE = "STEPSCOPE_RUN_NODE"
#: one step skipped (the first iteration's one-off costs), one warm-up step, eight recorded:
#: the wait/warm-up of ``stepscope.collectors.profiling`` and the window of the bundled sample job
DEFAULT_STEPS = (1, 1, 8)


def parse_steps(text: str) -> tuple[int, int, int]:
    """``"1:1:8"`` -> (wait, warmup, active); ValueError with the reason otherwise."""
    parts = text.strip().split(":")
    if len(parts) != 3:
        raise ValueError(f"expected WAIT:WARMUP:ACTIVE (three whole numbers), got {text!r}")
    try:
        wait, warmup, active = (int(p) for p in parts)
    except ValueError:
        raise ValueError(
            f"expected WAIT:WARMUP:ACTIVE (three whole numbers), got {text!r}"
        ) from None
    if wait < 0 or warmup < 0 or active < 1:
        raise ValueError(f"WAIT and WARMUP must be >= 0 and ACTIVE >= 1, got {text!r}")
    return wait, warmup, active


def format_steps(steps: tuple[int, int, int]) -> str:
    return ":".join(str(n) for n in steps)


#: the collector's one line on stderr (health and the launcher import it from here)
warn = exits.warn


trace_rank = identity.process_rank


class TraceWindow:
    """One ``torch.profiler`` window, written as ``<node>_rank<R>.<time_ns>.pt.trace.json.gz``.

    Why one class: the training-script helper (:mod:`stepscope.collectors.profiling`) and
    ``stepscope run``'s recorder must record the same way (CPU, and CUDA where present;
    memory events for the allocator rules; a wait/warm-up/active schedule), name their
    files alike, and flush the same way on every exit path (:mod:`stepscope.collectors.exits`:
    SIGTERM is armed while the window records). Only what drives ``step`` differs.
    """

    def __init__(
        self,
        out_dir: Path,
        *,
        node: str | None,
        wait: int,
        warmup: int,
        active: int,
        repeat: int = 1,
        profile_memory: bool = True,
        record_shapes: bool = False,
        with_stack: bool = False,
    ) -> None:
        self.out_dir = out_dir
        self.node = node  # None: resolved when a trace is written (identity.node_name)
        self.wait, self.warmup, self.active, self.repeat = wait, warmup, active, repeat
        self.profile_memory = profile_memory
        self.record_shapes = record_shapes
        self.with_stack = with_stack
        self.prof: Any = None  # torch.profiler.profile while recording
        self.trace_files: list[Path] = []
        self.rank: int | None = None  # the rank the last trace was written as

    @property
    def recording(self) -> bool:
        return self.prof is not None

    @property
    def length(self) -> int:
        """Steps of one cycle of the schedule (wait + warm-up + active)."""
        return self.wait + self.warmup + self.active

    def start(self) -> None:
        import torch
        from torch import profiler as tp

        activities = [tp.ProfilerActivity.CPU]
        if torch.cuda.is_available():
            activities.append(tp.ProfilerActivity.CUDA)
        prof = tp.profile(
            activities=activities,
            schedule=tp.schedule(
                wait=self.wait, warmup=self.warmup, active=self.active, repeat=self.repeat
            ),
            on_trace_ready=self._write,
            profile_memory=self.profile_memory,  # the allocator rules read the [memory] events
            record_shapes=self.record_shapes,
            with_stack=self.with_stack,
        )
        prof.start()
        self.prof = prof
        exits.arm_sigterm()

    def step(self) -> int:
        """One step boundary; returns the profiler's step count."""
        self.prof.step()
        return int(self.prof.step_num)

    def stop(self, exc_type: Any = None, exc: Any = None, tb: Any = None) -> None:
        """Stop, as a ``with`` block ends it: a cycle cut short is written with what it has."""
        prof, self.prof = self.prof, None
        exits.disarm_sigterm()
        if prof is not None:
            prof.__exit__(exc_type, exc, tb)

    def _write(self, prof: Any) -> None:
        """on_trace_ready: name the file now, when the process group knows the rank (it may
        have come up after the profiler started)."""
        from torch.profiler import tensorboard_trace_handler

        self.out_dir.mkdir(parents=True, exist_ok=True)
        before = set(self.out_dir.iterdir())
        self.rank = trace_rank()
        worker = f"{self.node or identity.node_name()}_rank{self.rank}"
        tensorboard_trace_handler(str(self.out_dir), worker_name=worker, use_gzip=True)(prof)
        new = sorted(
            p for p in set(self.out_dir.iterdir()) - before if p.name.startswith(worker + ".")
        )
        self.trace_files.extend(new)
        for path in new:  # the collectives' groups and sequence numbers, beside the trace
            hang.write_window_record(path, self.node or identity.node_name(), self.rank)


class Recorder:
    """One process's profiler window, stepped by the global optimizer post-hook."""

    def __init__(self, out_dir: Path, steps: tuple[int, int, int], node: str) -> None:
        wait, warmup, active = steps
        self.window = TraceWindow(out_dir, node=node, wait=wait, warmup=warmup, active=active)
        self.handle: Any = None  # the hook's RemovableHandle
        self.pace: weakref.ref[Any] | None = None  # the optimizer whose steps count
        self.steps_seen = 0
        self.pid = os.getpid()
        self.off = False  # switched off: window written, or a failure
        self.warned = False  # the one line on stderr is spent
        self.watchdog: hang.Watchdog | None = None  # the stall watchdog, beaten each step
        self.watch_started = False
        self.out_dir, self.node = out_dir, node

    @property
    def prof(self) -> Any:
        return self.window.prof

    @property
    def trace_files(self) -> list[Path]:
        return self.window.trace_files

    # -- the hook ------------------------------------------------------------------------

    def on_optimizer_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        """The global post-hook: every exception stays here (the training must not see it)."""
        if self.watchdog is not None:
            self.watchdog.beat()  # step progress, for the stall watchdog (all the training)
        elif not self.watch_started:  # not a distributed worker: it starts at the first step
            self.watch_started = True
            self.watchdog = _start_watchdog(self.out_dir, self.node)
        if self.off:
            return
        try:
            self._step(optimizer)
        except Exception as exc:
            self.fail("recording the trace", exc)

    def _step(self, optimizer: Any) -> None:
        pace = self.pace() if self.pace is not None else None
        if pace is None:  # the first optimizer, or the pacing one is gone: this one paces
            self.pace = weakref.ref(optimizer)
        elif pace is not optimizer:
            return
        self.steps_seen += 1
        if not self.window.recording:
            self._start()
            return
        if self.window.step() >= self.window.length:
            self._finish()  # the window is written: no profiler, no hook from here on

    def _start(self) -> None:
        import torch

        if torch.autograd._profiler_enabled():
            # the script profiles itself: two profilers cannot run at once, and its own wins
            self.off = self.warned = True  # inert from here; removed at exit (see the module doc)
            warn(f"no trace from rank {trace_rank()}: the script runs its own torch.profiler")
            return
        self.window.start()

    def _finish(self) -> None:
        self.off = True  # the hook is inert now; its handle goes at exit (see the module doc)
        self.window.stop()

    def _unhook(self) -> None:
        """Remove the step hook: only from outside PyTorch's hook loop (at exit)."""
        handle, self.handle = self.handle, None
        if handle is not None:
            with contextlib.suppress(Exception):
                handle.remove()

    # -- the end -------------------------------------------------------------------------

    def exit_facts(self) -> tuple[int, int]:
        """(rank, optimizer steps seen) for the exit record: the rank its trace was written
        as (the process group may be gone by exit), else the rank known now."""
        rank = self.window.rank if self.window.rank is not None else trace_rank()
        return rank, self.steps_seen

    def close(self) -> None:
        """At exit (any path, :mod:`stepscope.collectors.exits`): write what the window
        recorded so far, or say why there is no trace; then remove the (inert) step hook."""
        if os.getpid() != self.pid:  # a forked child never writes the parent's trace
            return
        if self.off:
            self._unhook()
            return
        try:
            self.off = True
            self._unhook()
            self.window.stop()  # inside the active steps: a shorter trace
            if not self.trace_files and self.steps_seen:
                first = self.window.wait + self.window.warmup + 1
                warn(
                    f"no trace from rank {trace_rank()}: it ran {self.steps_seen} optimizer "
                    f"step(s); recording starts at step {first} (stepscope run --steps)"
                )
        except Exception as exc:
            self.fail("writing the trace at exit", exc)

    def fail(self, what: str, exc: BaseException) -> None:
        """Switch the recorder off after one line on stderr; the training goes on."""
        self.off = True  # inert: it may be called from inside PyTorch's hook loop
        with contextlib.suppress(Exception):
            self.window.stop()
        if not self.warned:
            self.warned = True
            detail = str(exc).splitlines()[0] if str(exc) else ""
            warn(
                f"trace recorder off in this process: {what} failed "
                f"({type(exc).__name__}: {detail}); training goes on"
            )


def _start_watchdog(out_dir: Path, node: str) -> hang.Watchdog | None:
    try:
        return hang.install(out_dir, node)
    except Exception as exc:
        warn(f"stall watchdog off ({type(exc).__name__}: {exc}); training goes on")
        return None


#: this process's recorder, once torch.optim is imported under ``stepscope run``
recorder: Recorder | None = None


def install(optimizer_module: Any) -> Recorder | None:
    """Register the step hook on the just-imported ``torch.optim.optimizer``.

    Called by the bootstrap ``sitecustomize`` while torch is still initialising: this only
    reads the launcher's environment and registers the hook. Returns None (after one line on
    stderr when the environment is damaged) when nothing is to be recorded."""
    global recorder
    if recorder is not None:
        return recorder
    out = os.environ.get(ENV_DIR)
    if not out:
        return None
    try:
        steps = parse_steps(os.environ.get(ENV_STEPS) or format_steps(DEFAULT_STEPS))
    except ValueError as exc:
        warn(f"trace recorder off: {ENV_STEPS}: {exc}; training goes on")
        return None
    node = os.environ.get(ENV_NODE) or identity.node_name()
    rec = Recorder(Path(out), steps, node)
    if hang.distributed_worker():  # a hang before the first step counts too
        rec.watch_started = True
        rec.watchdog = _start_watchdog(Path(out), node)
    rec.handle = optimizer_module.register_optimizer_step_post_hook(rec.on_optimizer_step)
    exits.on_exit(rec.close)
    exits.keep_exit_record(Path(out), node, rec.exit_facts)
    recorder = rec
    return rec
