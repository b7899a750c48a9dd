"""``stepscope run``: run a training command with stepscope's collectors, no change to the script.

What the launcher does, once per invocation:

1. resolves the output folder (``--out``, else :func:`identity.default_output_dir`: the folder
   SageMaker uploads during the job, or ``./stepscope-output``) and makes it absolute, so
   workers that change directory still write there;
2. starts the system-metrics sampler (``python -m stepscope.collectors.system``) unless
   another launcher of this node already samples into the same folder (a lock file per node
   and folder: ``mpirun -n 8 stepscope run ...`` or a nested ``stepscope run`` start one);
3. runs COMMAND with the bootstrap folder first on ``PYTHONPATH`` and the trace recorder's
   variables set (``stepscope.collectors.trace.ENV_*``): every Python process it spawns
   records a window of steps (see ``bootstrap/sitecustomize.py`` and ``trace.py``) and,
   with ``--health`` / ``--health-every N``, every N-th step's training health
   (``health.py``: loss, gradients, weights, update ratios, activations);
4. stops the sampler when COMMAND ends and exits as COMMAND did: the same exit code, or the
   same signal (re-raised on itself, so a shell or a scheduler sees what it would have seen).

Signals: SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 sent to the launcher go to
COMMAND. COMMAND stays in the launcher's process group (so it keeps the terminal), so a
Ctrl-C typed at the terminal already reaches it from the kernel; the launcher waits for its
signals with ``sigtimedwait``, which says who sent each one, and passes on only those that
COMMAND did not get already. Where ``sigtimedwait`` is missing (macOS) it falls back to
handlers and treats a SIGINT/SIGQUIT as typed at the terminal when its group is the
terminal's foreground group.

Any failure of the collectors (an output folder that cannot be made, a sampler that does not
start or dies) is one line on stderr, and COMMAND runs (or goes on) without them. Standard
library only: the launcher runs in the training container.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

from stepscope.collectors import hang, health, identity, trace
from stepscope.collectors.trace import DEFAULT_STEPS, format_steps, parse_steps, warn

#: put first on COMMAND's PYTHONPATH: holds the ``sitecustomize`` that installs the recorder
BOOTSTRAP_DIR = Path(__file__).resolve().parent / "bootstrap"
#: the system-metrics sampler's process entry (``--out DIR --interval-ms N --node NAME``)
SAMPLER_MODULE = "stepscope.collectors.system"
DEFAULT_INTERVAL_MS = 500
#: how long the sampler may take to write its last records once asked to stop
SAMPLER_STOP_TIMEOUT_S = 10.0
#: signals passed on to COMMAND (those this platform has)
FORWARDED: tuple[signal.Signals, ...] = tuple(
    getattr(signal, name)
    for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2")
    if hasattr(signal, name)
)
#: ``si_code`` of a signal the kernel raised (a key typed at the terminal, a hang-up)
SI_KERNEL = 0x80
#: what Python itself sets to "ignore" at start-up; COMMAND gets them back at their default
_PYTHON_IGNORED = tuple(getattr(signal, n) for n in ("SIGPIPE", "SIGXFSZ") if hasattr(signal, n))


def child_env(
    out_dir: Path,
    steps: tuple[int, int, int],
    node: str,
    base: dict[str, str] | None = None,
    health_every: int | None = None,
    stall_timeout: str = "auto",
    fr_buffer: int = hang.DEFAULT_FR_BUFFER,
) -> dict[str, str]:
    """COMMAND's environment: ours, plus the recorder's switch and the bootstrap folder, the
    health hooks' period when they are on (a launcher's own options win over those of a
    launcher it runs under), the stall watchdog's timeout, and PyTorch's Flight Recorder
    on (``TORCH_FR_BUFFER_SIZE``, unless the job sets its own; ``fr_buffer`` 0 leaves it)."""
    env = dict(os.environ if base is None else base)
    env[trace.ENV_DIR] = str(out_dir)
    env[trace.ENV_STEPS] = format_steps(steps)
    env[trace.ENV_NODE] = node
    env[hang.ENV_STALL] = stall_timeout
    if fr_buffer > 0 and not env.get(hang.FR_ENV):
        env[hang.FR_ENV] = str(fr_buffer)
    if health_every is not None:
        env[health.ENV_HEALTH] = str(health_every)
    else:
        env.pop(health.ENV_HEALTH, None)
    boot = str(BOOTSTRAP_DIR)
    rest = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != boot]
    env["PYTHONPATH"] = os.pathsep.join([boot, *rest])
    return env


# --------------------------------------------------------------------------- the sampler


def _node_lock(out_dir: Path, node: str) -> int | None:
    """An exclusive lock for sampling ``node`` into ``out_dir``, held while the fd is open;
    None when another launcher holds it. Where locks are not to be had, always granted."""
    try:
        import fcntl
    except ImportError:
        return -1
    key = hashlib.sha1(str(out_dir).encode()).hexdigest()[:12]
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in node)
    path = Path(tempfile.gettempdir()) / f"stepscope-sampler-{safe}-{key}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _die_with_parent() -> Callable[[], None] | None:
    """Linux: a ``preexec_fn`` making the sampler get SIGTERM if the launcher dies (even by
    SIGKILL), so no sampler outlives its job. Runs in the forked child: no allocation."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGTERM))

    return preexec


class Sampler:
    """The node's system-metrics sampler process, as the launcher runs and stops it."""

    def __init__(self, proc: subprocess.Popen[bytes], lock_fd: int) -> None:
        self.proc = proc
        self.lock_fd = lock_fd
        self.stopping = False
        self.reported = False

    @classmethod
    def start(cls, out_dir: Path, interval_ms: int, node: str) -> Sampler | None:
        """Start it, or None: another launcher samples this node, or it cannot start (one
        line on stderr)."""
        lock: int | None = -1
        try:
            lock = _node_lock(out_dir, node)
            if lock is None:
                return None
            if importlib.util.find_spec(SAMPLER_MODULE) is None:
                raise ModuleNotFoundError(f"no module named {SAMPLER_MODULE}")
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    SAMPLER_MODULE,
                    "--out",
                    str(out_dir),
                    "--interval-ms",
                    str(interval_ms),
                    "--node",
                    node,
                ],
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl-C for the training does not cut its last records
                preexec_fn=_die_with_parent(),
            )
        except Exception as exc:
            if lock is not None and lock >= 0:
                os.close(lock)
            detail = str(exc).splitlines()[0] if str(exc) else ""
            warn(
                f"system metrics sampler not started ({type(exc).__name__}: {detail}); "
                "training goes on without system metrics"
            )
            return None
        return cls(proc, lock)

    def check(self) -> None:
        """One line if the sampler died while COMMAND runs."""
        code = self.proc.poll()
        if code is not None and code != 0 and not self.stopping and not self.reported:
            self.reported = True
            warn(
                f"system metrics sampler exited with code {code}; training goes on without "
                "system metrics"
            )

    def stop(self) -> None:
        """Ask it to write its last records (SIGTERM), kill it if it takes too long. Once."""
        if self.stopping:
            return
        try:
            self.check()
            self.stopping = True
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(SAMPLER_STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
                    warn(
                        "system metrics sampler did not stop within "
                        f"{SAMPLER_STOP_TIMEOUT_S:.0f} s: killed"
                    )
        except Exception as exc:
            warn(f"stopping the system metrics sampler failed ({type(exc).__name__}: {exc})")
        finally:
            if self.lock_fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(self.lock_fd)
                self.lock_fd = -1


# --------------------------------------------------------------------------- COMMAND


def _not_started(argv: Sequence[str], exc: OSError) -> int:
    """What a shell answers for a command that cannot start: 127 not found, 126 otherwise."""
    if isinstance(exc, FileNotFoundError):
        warn(f"error: command not found: {argv[0]}")
        return 127
    warn(f"error: cannot run {argv[0]}: {exc.strerror or exc}")
    return 126


@contextlib.contextmanager
def _blocked(signals: set[int]) -> Iterator[set[int]]:
    """Hold ``signals`` for ``sigtimedwait``; on the way out drop those still pending
    (COMMAND has ended: nothing left to pass them to) and restore the mask. Yields the mask
    the launcher had, which COMMAND starts with."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    try:
        yield old
    finally:
        with contextlib.suppress(OSError):
            while signal.sigpending() & signals:
                signal.sigtimedwait(signals, 0)
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _from_terminal(info: Any, pid: int) -> bool:
    """The kernel raised it (a key at the terminal, a hang-up) for a group COMMAND is in."""
    if info.si_code != SI_KERNEL:
        return False
    try:
        return os.getpgid(pid) == os.getpgrp()
    except OSError:
        return False


def _run_waiting(argv: list[str], env: dict[str, str], sampler: Sampler | None) -> int:
    """Linux: spawn COMMAND with our signals held, then pass on each one that COMMAND did not
    already get, until it exits. Returns its exit code, or -N for signal N."""
    watched: set[int] = {*FORWARDED, signal.SIGCHLD}
    with _blocked(watched) as mask:
        try:
            pid = os.posix_spawnp(argv[0], argv, env, setsigmask=mask, setsigdef=_PYTHON_IGNORED)
        except OSError as exc:
            return _not_started(argv, exc)
        while True:
            info = signal.sigtimedwait(watched, 1.0)
            if info is None or info.si_signo == signal.SIGCHLD:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done == pid:
                    if sampler is not None:  # still holding the signals: a late Ctrl-C
                        sampler.stop()  # cannot cut the sampler's stop short
                    return os.waitstatus_to_exitcode(status)
                if sampler is not None:
                    sampler.check()
                continue
            if _from_terminal(info, pid):
                continue
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, info.si_signo)


def _foreground() -> bool:
    """Whether our process group is the terminal's foreground group (where typed keys go)."""
    for stream in (sys.stdin, sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            if stream is not None and stream.isatty():
                return os.tcgetpgrp(stream.fileno()) == os.getpgrp()
    return False


def _run_handlers(argv: list[str], env: dict[str, str], sampler: Sampler | None) -> int:
    """Elsewhere: Popen and signal handlers that pass signals on (no sender to ask)."""
    try:
        proc = subprocess.Popen(argv, env=env)
    except OSError as exc:
        return _not_started(argv, exc)
    typed = {getattr(signal, n) for n in ("SIGINT", "SIGQUIT") if hasattr(signal, n)}

    def forward(signo: int, _frame: Any) -> None:
        if signo in typed and _foreground():
            return  # the terminal sent it to COMMAND too
        with contextlib.suppress(OSError):
            proc.send_signal(signo)

    old = {s: signal.signal(s, forward) for s in FORWARDED}
    try:
        while True:
            try:
                return proc.wait(1.0)
            except subprocess.TimeoutExpired:
                if sampler is not None:
                    sampler.check()
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def keep_resource_config(out: Path, source: Path | None = None) -> None:
    """Copy SageMaker's resourceconfig.json (instance type and hosts) into ``out``, so the
    report can price the job from the folder alone; nothing off SageMaker, and a copy that
    fails is one line on stderr, never a stopped training."""
    src = source if source is not None else identity.RESOURCE_CONFIG
    try:
        if src.is_file():
            shutil.copyfile(src, out / src.name)
    except OSError as exc:
        warn(f"could not copy {src} into {out} ({exc.strerror or exc})")


def run(
    command: Sequence[str],
    *,
    out_dir: str | Path | None = None,
    steps: tuple[int, int, int] = DEFAULT_STEPS,
    interval_ms: int = DEFAULT_INTERVAL_MS,
    system_metrics: bool = True,
    health_every: int | None = None,
    stall_timeout: str = "auto",
    fr_buffer: int = hang.DEFAULT_FR_BUFFER,
) -> int:
    """Run ``command`` under the collectors; returns its exit code (-N: killed by signal N).
    ``health_every``: record training health every N optimizer steps (None: off);
    ``stall_timeout``: the stall watchdog's seconds without a step ("auto", "off");
    ``fr_buffer``: PyTorch's Flight Recorder entries per group (0: not turned on).
    Hand the result to :func:`exit_with` to exit as the command did."""
    argv = [str(a) for a in command]
    if not argv:
        raise ValueError("no command to run")
    if health_every is not None and health_every < 1:
        raise ValueError(f"health_every must be >= 1, got {health_every}")
    hang.parse_stall_timeout(stall_timeout)  # a bad value is the caller's error, said now
    env = dict(os.environ)
    sampler: Sampler | None = None
    try:
        out = Path(out_dir if out_dir is not None else identity.default_output_dir()).absolute()
        out.mkdir(parents=True, exist_ok=True)
        node = identity.node_name()
        env = child_env(
            out,
            steps,
            node,
            health_every=health_every,
            stall_timeout=stall_timeout,
            fr_buffer=fr_buffer,
        )
        if system_metrics:
            sampler = Sampler.start(out, interval_ms, node)
        keep_resource_config(out)
    except Exception as exc:
        detail = str(exc).splitlines()[0] if str(exc) else ""
        warn(f"collectors off ({type(exc).__name__}: {detail}); running the command without them")
    try:
        if hasattr(signal, "sigtimedwait") and hasattr(os, "posix_spawnp"):
            return _run_waiting(argv, env, sampler)
        return _run_handlers(argv, env, sampler)
    finally:
        if sampler is not None:
            sampler.stop()


def exit_with(code: int) -> NoReturn:
    """Exit as COMMAND did: its exit code, or its fatal signal raised on ourselves."""
    if code >= 0:
        sys.exit(code)
    signo = -code
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    with contextlib.suppress(Exception):
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # COMMAND's core dump, not ours
    with contextlib.suppress(Exception):
        signal.signal(signo, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signo})
        os.kill(os.getpid(), signo)
    os._exit(128 + signo)  # a signal that does not end a process: the shell's convention


# --------------------------------------------------------------------------- python -m


def _steps_arg(text: str) -> tuple[int, int, int]:
    try:
        return parse_steps(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _interval_arg(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 10:
        raise argparse.ArgumentTypeError(
            f"expected a whole number of milliseconds >= 10, got {text!r}"
        )
    return value


def _every_arg(text: str) -> int:
    try:
        return health.parse_every(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _stall_arg(text: str) -> str:
    try:
        hang.parse_stall_timeout(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _fr_arg(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return int(text)


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """``python -m stepscope.collectors.launcher [options] -- COMMAND...``: what ``stepscope
    run`` does, for an interpreter without the CLI's dependencies."""
    args = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(
        prog="python -m stepscope.collectors.launcher",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    ap.add_argument(
        "--out",
        default=None,
        help="output folder (default: SageMaker's TensorBoard "
        "folder on SageMaker, else ./stepscope-output)",
    )
    ap.add_argument(
        "--steps",
        type=_steps_arg,
        default=DEFAULT_STEPS,
        help=f"profiled window WAIT:WARMUP:ACTIVE (default {format_steps(DEFAULT_STEPS)})",
    )
    ap.add_argument(
        "--interval-ms",
        type=_interval_arg,
        default=DEFAULT_INTERVAL_MS,
        help=f"system metrics interval (default {DEFAULT_INTERVAL_MS})",
    )
    ap.add_argument(
        "--health",
        action="store_true",
        help=f"record training health (loss, gradients, weights, update ratios, "
        f"activations) every {health.DEFAULT_EVERY} optimizer steps",
    )
    ap.add_argument(
        "--health-every",
        type=_every_arg,
        default=None,
        metavar="N",
        help="record training health every N optimizer steps (implies --health)",
    )
    ap.add_argument(
        "--stall-timeout",
        type=_stall_arg,
        default="auto",
        metavar="SECONDS",
        help="seconds without an optimizer step after which each rank dumps its Flight "
        "Recorder buffer and Python stacks into hangs/ (default auto: the larger of "
        f"{hang.DEFAULT_MIN_S:.0f} s and {hang.STEPS_PER_TIMEOUT} median steps; off: none)",
    )
    ap.add_argument(
        "--fr-buffer",
        type=_fr_arg,
        default=hang.DEFAULT_FR_BUFFER,
        metavar="N",
        help=f"PyTorch Flight Recorder entries kept per process group (default "
        f"{hang.DEFAULT_FR_BUFFER}; 0 leaves it off unless the job sets {hang.FR_ENV})",
    )
    if "--" in args:
        cut = args.index("--")
        opts, command = ap.parse_args(args[:cut]), args[cut + 1 :]
    else:
        ap.add_argument("command", nargs=argparse.REMAINDER)
        opts = ap.parse_args(args)
        command = opts.command
    if not command:
        ap.error("no COMMAND given (stepscope run [options] -- COMMAND...)")
    every = (
        opts.health_every
        if opts.health_every is not None
        else health.DEFAULT_EVERY
        if opts.health
        else None
    )
    exit_with(
        run(
            command,
            out_dir=opts.out,
            steps=opts.steps,
            interval_ms=opts.interval_ms,
            health_every=every,
            stall_timeout=opts.stall_timeout,
            fr_buffer=opts.fr_buffer,
        )
    )


if __name__ == "__main__":
    main()
