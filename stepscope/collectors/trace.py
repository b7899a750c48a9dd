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

Traces are named like ``rules.profiling`` names them, ``<node>_rank<R>.<time_ns>.pt.trace.json.gz``,
with the rank read when the trace is written (the process group is up by then), so ingest
finds the node in the name and the rank in ``distributedInfo`` or the name.

Any failure (no torch.profiler, a full disk, a profiler error) is one line on stderr, the
recorder switches itself off, and the training goes on. Standard library only at import.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import weakref
from pathlib import Path
from typing import Any

from stepscope.collectors import identity

#: the launcher's switch: the folder traces go to (absolute); unset = record nothing
ENV_DIR = "STEPSCOPE_RUN_DIR"
#: the profiler schedule, ``WAIT:WARMUP:ACTIVE`` optimizer steps
ENV_STEPS = "STEPSCOPE_RUN_STEPS"
#: the node name the launcher resolved, so every process of a node agrees on it
ENV_NODE = "STEPSCOPE_RUN_NODE"
#: one step skipped (the first iteration's one-off costs), one warm-up step, eight recorded:
#: the wait/warm-up of ``rules.profiling`` and the window of the bundled sample job
DEFAULT_STEPS = (1, 1, 8)


def parse_steps(text: str) -> tuple[int, int, int]:
    """``"1:1:8"`` -> (wait, warmup, active); ValueError with the reason otherwise."""
    parts = text.strip().split(":")
    if len(parts) != 3:
        raise ValueError(f"expected WAIT:WARMUP:ACTIVE (three whole numbers), got {text!r}")
    try:
        wait, warmup, active = (int(p) for p in parts)
    except ValueError:
        raise ValueError(f"expected WAIT:WARMUP:ACTIVE (three whole numbers), got {text!r}") from None
    if wait < 0 or warmup < 0 or active < 1:
        raise ValueError(f"WAIT and WARMUP must be >= 0 and ACTIVE >= 1, got {text!r}")
    return wait, warmup, active


def format_steps(steps: tuple[int, int, int]) -> str:
    return ":".join(str(n) for n in steps)


def warn(message: str) -> None:
    """The collector's one line on stderr; never raises (stderr may be closed)."""
    with contextlib.suppress(Exception):
        sys.stderr.write(f"stepscope: {message}\n")
        sys.stderr.flush()


trace_rank = identity.process_rank


class Recorder:
    """One process's profiler window, stepped by the global optimizer post-hook."""

    def __init__(self, out_dir: Path, steps: tuple[int, int, int], node: str) -> None:
        self.out_dir = out_dir
        self.wait, self.warmup, self.active = steps
        self.node = node
        self.handle: Any = None  # the hook's RemovableHandle
        self.prof: Any = None  # torch.profiler.profile while recording
        self.pace: weakref.ref[Any] | None = None  # the optimizer whose steps count
        self.steps_seen = 0
        self.trace_files: list[Path] = []
        self.pid = os.getpid()
        self.off = False  # switched off: window written, or a failure
        self.warned = False  # the one line on stderr is spent

    # -- the hook ------------------------------------------------------------------------

    def on_optimizer_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        """The global post-hook: every exception stays here (the training must not see it)."""
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
        if self.prof is None:
            self._start()
            return
        self.prof.step()
        if self.prof.step_num >= self.wait + self.warmup + self.active:
            self._finish()  # the window is written: no profiler, no hook from here on

    def _start(self) -> None:
        import torch
        from torch import profiler as tp

        if torch.autograd._profiler_enabled():
            # the script profiles itself: two profilers cannot run at once, and its own wins
            self.off = self.warned = True  # inert from here; removed at exit (see the module doc)
            warn(f"no trace from rank {trace_rank()}: the script runs its own torch.profiler")
            return
        activities = [tp.ProfilerActivity.CPU]
        if torch.cuda.is_available():
            activities.append(tp.ProfilerActivity.CUDA)
        prof = tp.profile(
            activities=activities,
            schedule=tp.schedule(wait=self.wait, warmup=self.warmup, active=self.active, repeat=1),
            on_trace_ready=self._write,
            profile_memory=True,  # the allocator rules read the [memory] events
            record_shapes=False,
            with_stack=False,
        )
        prof.start()
        self.prof = prof

    def _write(self, prof: Any) -> None:
        """on_trace_ready: name the file now, when the process group knows the rank."""
        from torch.profiler import tensorboard_trace_handler

        self.out_dir.mkdir(parents=True, exist_ok=True)
        before = set(self.out_dir.iterdir())
        worker = f"{self.node}_rank{trace_rank()}"
        tensorboard_trace_handler(str(self.out_dir), worker_name=worker, use_gzip=True)(prof)
        self.trace_files.extend(sorted(p for p in set(self.out_dir.iterdir()) - before
                                       if p.name.startswith(worker + ".")))

    def _finish(self) -> None:
        prof, self.prof = self.prof, None
        self.off = True  # the hook is inert now; its handle goes at exit (see the module doc)
        if prof is not None:
            prof.__exit__(None, None, None)  # stop, as a ``with`` block ends it

    def _unhook(self) -> None:
        """Remove the step hook: only from outside PyTorch's hook loop (at exit)."""
        handle, self.handle = self.handle, None
        if handle is not None:
            with contextlib.suppress(Exception):
                handle.remove()

    # -- the end -------------------------------------------------------------------------

    def close(self) -> None:
        """At exit: write what the window recorded so far, or say why there is no trace;
        then remove the (inert) step hook."""
        if os.getpid() != self.pid:  # a forked child never writes the parent's trace
            return
        if self.off:
            self._unhook()
            return
        try:
            prof, self.prof = self.prof, None
            self.off = True
            self._unhook()
            if prof is not None:
                prof.__exit__(None, None, None)  # inside the active steps: a shorter trace
            if not self.trace_files and self.steps_seen:
                first = self.wait + self.warmup + 1
                warn(
                    f"no trace from rank {trace_rank()}: it ran {self.steps_seen} optimizer "
                    f"step(s); recording starts at step {first} (stepscope run --steps)"
                )
        except Exception as exc:
            self.fail("writing the trace at exit", exc)

    def fail(self, what: str, exc: BaseException) -> None:
        """Switch the recorder off after one line on stderr; the training goes on."""
        self.off = True  # inert: it may be called from inside PyTorch's hook loop
        prof, self.prof = self.prof, None
        if prof is not None:
            with contextlib.suppress(Exception):
                prof.__exit__(None, None, None)
        if not self.warned:
            self.warned = True
            detail = str(exc).splitlines()[0] if str(exc) else ""
            warn(f"trace recorder off in this process: {what} failed "
                 f"({type(exc).__name__}: {detail}); training goes on")


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
    rec.handle = optimizer_module.register_optimizer_step_post_hook(rec.on_optimizer_step)
    atexit.register(rec.close)
    recorder = rec
    return rec
