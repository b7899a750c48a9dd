"""Training-script helper: PyTorch profiler traces where stepscope (and SageMaker) look for them.

Why: SageMaker Debugger's own PyTorch framework profiling is deprecated; the supported path
is ``torch.profiler`` writing Kineto traces into the TensorBoard output folder, which
SageMaker uploads (``TensorBoardOutputConfig``). This wraps that in one context manager with
the settings stepscope's analyses need (a step schedule, memory events, one gzip'd trace per
rank named after host and rank) and that costs nothing when switched off::

    from stepscope.collectors.profiling import profile_training

    with profile_training(active=5) as prof:
        for batch in prof.iterate(loader):      # or: with prof.data_loading(): ...
            with prof.label("forward"):
                loss = model(batch)
            loss.backward()
            opt.step()
            prof.step()

Disabled (``enabled=False``, or ``STEPSCOPE_PROFILE=0`` with ``enabled=None``) the object
never imports torch.profiler and every method is a no-op; torch itself is only imported
lazily, so this module imports on machines without torch.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from stepscope.collectors import exits, identity
from stepscope.collectors.trace import TraceWindow

__all__ = [
    "DATA_LOADING_LABEL",
    "SAGEMAKER_TENSORBOARD_DIR",
    "TrainingProfiler",
    "default_out_dir",
    "on_sagemaker",
    "profile_training",
    "trace_host",
    "trace_rank",
]

SAGEMAKER_TENSORBOARD_DIR = Path("/opt/ml/output/tensorboard")
LOCAL_DIR = Path("stepscope-traces")
DATA_LOADING_LABEL = "stepscope:data_loading"

T = TypeVar("T")
_NULL = contextlib.nullcontext()


def on_sagemaker() -> bool:
    """A SageMaker training container sets ``SM_*`` variables and has /opt/ml/output."""
    return any(k.startswith("SM_") for k in os.environ) or SAGEMAKER_TENSORBOARD_DIR.is_dir()


def default_out_dir() -> Path:
    """SageMaker uploads /opt/ml/output/tensorboard (TensorBoardOutputConfig's LocalPath);
    elsewhere traces go to ./stepscope-traces."""
    return SAGEMAKER_TENSORBOARD_DIR if on_sagemaker() else LOCAL_DIR


#: global rank (torch.distributed's once initialised, else ``RANK``, else 0) and node name
#: (SageMaker's ``algo-<n>``, matching the system metrics' NodeId, else the host name): the
#: same identity ``stepscope run``'s recorder names its traces by
trace_rank = identity.process_rank
trace_host = identity.node_name


def _env_enabled() -> bool:
    return os.environ.get("STEPSCOPE_PROFILE", "1").strip().lower() not in (
        "0",
        "false",
        "no",
        "off",
        "",
    )


class TrainingProfiler:
    """The object ``profile_training`` yields; see the module docstring."""

    def __init__(
        self,
        *,
        enabled: bool | None = True,
        out_dir: str | Path | None = None,
        wait: int = 1,
        warmup: int = 1,
        active: int = 5,
        repeat: int = 1,
        profile_memory: bool = True,
        record_shapes: bool = False,
        with_stack: bool = False,
        host: str | None = None,
    ) -> None:
        self.enabled = _env_enabled() if enabled is None else bool(enabled)
        self.out_dir = Path(out_dir) if out_dir is not None else default_out_dir()
        self.wait, self.warmup, self.active, self.repeat = wait, warmup, active, repeat
        self.profile_memory = profile_memory
        self.record_shapes = record_shapes
        self.with_stack = with_stack
        self.host = host
        self.window: TraceWindow | None = None  # the recording, once entered
        self._record_function: Callable[[str], Any] | None = None

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def torch_profiler(self) -> Any:
        """torch.profiler.profile while recording, else None."""
        return self.window.prof if self.window is not None else None

    @property
    def trace_files(self) -> list[Path]:
        return self.window.trace_files if self.window is not None else []

    def __enter__(self) -> TrainingProfiler:
        if not self.enabled:
            return self
        import torch.profiler as tp

        self.window = TraceWindow(
            self.out_dir,
            node=self.host,
            wait=self.wait,
            warmup=self.warmup,
            active=self.active,
            repeat=self.repeat,
            profile_memory=self.profile_memory,
            record_shapes=self.record_shapes,
            with_stack=self.with_stack,
        )
        self.window.start()
        exits.on_exit(self._at_exit)  # os._exit or SIGTERM inside the block: what it has
        self._record_function = tp.record_function
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        exits.forget(self._at_exit)
        if self.window is not None and self.window.recording:
            self.window.stop(exc_type, exc, tb)  # flushes a cycle cut short by the end of training

    def _at_exit(self) -> None:
        if self.window is not None and self.window.recording:
            self.window.stop()

    # -- per step ----------------------------------------------------------------------

    def step(self) -> None:
        """Call once at the end of every training step (drives the wait/warmup/active schedule)."""
        if self.window is not None and self.window.recording:
            self.window.step()

    def label(self, name: str) -> contextlib.AbstractContextManager[Any]:
        """A named range in the trace (``torch.profiler.record_function``); free when disabled."""
        if self._record_function is None or self.torch_profiler is None:
            return _NULL
        return self._record_function(name)

    def data_loading(self) -> contextlib.AbstractContextManager[Any]:
        """Wrap the fetch of the next batch, so input-pipeline time is its own range."""
        return self.label(DATA_LOADING_LABEL)

    def iterate(self, loader: Iterable[T]) -> Iterator[T]:
        """Yield from ``loader`` with each fetch inside :meth:`data_loading`."""
        it = iter(loader)
        while True:
            with self.data_loading():
                try:
                    item = next(it)
                except StopIteration:
                    return
            yield item


def profile_training(
    enabled: bool | None = True,
    out_dir: str | Path | None = None,
    wait: int = 1,
    warmup: int = 1,
    active: int = 5,
    repeat: int = 1,
    profile_memory: bool = True,
    *,
    record_shapes: bool = False,
    with_stack: bool = False,
    host: str | None = None,
) -> TrainingProfiler:
    """Context manager profiling a training loop; ``prof.step()`` after each step.

    ``enabled=None`` reads ``STEPSCOPE_PROFILE`` (on unless 0/false/no/off). ``out_dir``
    defaults to /opt/ml/output/tensorboard on SageMaker, else ./stepscope-traces. One trace per
    rank and cycle: ``<host>_rank<R>.<time_ns>.pt.trace.json.gz``, host from ``host``, else
    ``SM_CURRENT_HOST``, else the host name.
    """
    return TrainingProfiler(
        enabled=enabled,
        out_dir=out_dir,
        wait=wait,
        warmup=warmup,
        active=active,
        repeat=repeat,
        profile_memory=profile_memory,
        record_shapes=record_shapes,
        with_stack=with_stack,
        host=host,
    )
