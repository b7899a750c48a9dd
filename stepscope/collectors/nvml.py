"""GPU readings through NVML (``nvidia-ml-py``, imported as ``pynvml``), as sampler rows.

Why a module of its own: NVML is the one source that may be missing (a CPU host, a
container without the driver library) or partly unsupported (power or clocks on some
boards), and each of those is one logged line, never an exception into the training job.
The NVML module is a parameter, so tests and the overhead bench can run the same code
against a stand-in on a machine without GPUs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

#: (Type, Name, Dimension, Value): one record of SageMaker Debugger's system metrics
Row = tuple[str, str, str, float]
#: ``warn(key, message)``: log ``message`` once per ``key``
Warn = Callable[[str, str], None]

#: the rows per GPU, in the order written. The first two are SageMaker's own names; the
#: others follow its naming (``ReadThroughputInBytesPerSecond``: quantity, then unit).
GPU_DIMENSIONS = (
    "GPUUtilization",  # % of the last sample period a kernel ran (nvmlDeviceGetUtilizationRates)
    "GPUMemoryUtilization",  # % of the GPU's memory in use (used / total)
    "GPUPowerInWatts",
    "GPUSMClockInMHz",
    "GPUTemperatureInCelsius",
)


def load_pynvml() -> Any | None:
    """The ``pynvml`` module, or None when nvidia-ml-py is not installed."""
    try:
        import pynvml
    except ImportError:
        return None
    return pynvml


class NvmlCounter:
    """Per GPU utilization, memory used %, power, SM clock and temperature.

    ``open()`` initialises NVML and finds the GPUs; when that fails there are no GPU rows
    (one warning). A field a GPU does not support is dropped for that GPU after the first
    try; any other failed call skips that value for this sample only, so a GPU that comes
    back is read again.
    """

    name = "gpu"

    def __init__(self, nvml: Any, warn: Warn) -> None:
        self._nvml = nvml
        self._warn = warn
        self._handles: list[Any] = []
        self._fields: list[list[tuple[str, Callable[[Any], float]]]] = []
        self._open = False

    def open(self) -> bool:
        nv = self._nvml
        if nv is None:
            self._warn("nvml", "no NVML (nvidia-ml-py not installed): sampling without GPU metrics")
            return False
        try:
            nv.nvmlInit()
            self._open = True
            count = int(nv.nvmlDeviceGetCount())
            self._handles = [nv.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        except Exception as exc:
            self._warn(
                "nvml", f"no NVML ({type(exc).__name__}: {exc}): sampling without GPU metrics"
            )
            self.close()
            return False
        sm_clock = getattr(nv, "NVML_CLOCK_SM", 1)
        gpu_sensor = getattr(nv, "NVML_TEMPERATURE_GPU", 0)
        readers: list[tuple[str, Callable[[Any], float]]] = [
            ("GPUUtilization", lambda h: float(nv.nvmlDeviceGetUtilizationRates(h).gpu)),
            ("GPUMemoryUtilization", _memory_used_pct(nv)),
            ("GPUPowerInWatts", lambda h: nv.nvmlDeviceGetPowerUsage(h) / 1000.0),  # mW
            ("GPUSMClockInMHz", lambda h: float(nv.nvmlDeviceGetClockInfo(h, sm_clock))),
            (
                "GPUTemperatureInCelsius",
                lambda h: float(nv.nvmlDeviceGetTemperature(h, gpu_sensor)),
            ),
        ]
        self._fields = [list(readers) for _ in self._handles]
        return True

    @property
    def gpus(self) -> int:
        return len(self._handles)

    def read(self, now: float) -> list[Row]:
        rows: list[Row] = []
        not_supported = getattr(self._nvml, "NVMLError_NotSupported", ())
        for i, (handle, fields) in enumerate(zip(self._handles, self._fields, strict=True)):
            name = f"gpu{i}"
            for field in list(fields):
                dim, reader = field
                try:
                    rows.append(("gpu", name, dim, reader(handle)))
                except Exception as exc:
                    if not_supported and isinstance(exc, not_supported):
                        fields.remove(field)  # never asked again on this GPU
                    self._warn(
                        f"nvml {dim}",
                        f"NVML {dim} failed on {name} ({type(exc).__name__}: {exc}); "
                        "the other metrics go on",
                    )
        return rows

    def close(self) -> None:
        if self._open:
            self._open = False
            with contextlib.suppress(Exception):  # shutting down: nothing left to report
                self._nvml.nvmlShutdown()
        self._handles, self._fields = [], []


def _memory_used_pct(nv: Any) -> Callable[[Any], float]:
    def read(handle: Any) -> float:
        mem = nv.nvmlDeviceGetMemoryInfo(handle)
        return mem.used / mem.total * 100.0 if mem.total else 0.0

    return read
