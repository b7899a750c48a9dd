"""The system-metrics sampler: one per node, written as SageMaker Debugger writes them.

Why SageMaker's layout and field names: ``stepscope ingest``, every system-metric rule and
the live dashboard already read them, so a job profiled by this sampler and one profiled
by SageMaker Debugger are the same input. Files::

    <out>/system/incremental/<YYYYMMDDHH>/<minute epoch>.<node>.json

one JSON record a line (``Type``, ``Name``, ``Dimension``, ``Value``, ``NodeId``,
``Timestamp``), a new file for every wall-clock (UTC) minute, named after that minute;
each sample is written whole and flushed, so a running job's data can be read at once.
Per sample, in SageMaker's order, each group stamped with the time it was read:

* ``memory``  / ``MemoryUsedPercent`` / ``""``
* ``i/o``     / ``IOPS``, ``ReadThroughputInBytesPerSecond``,
  ``WriteThroughputInBytesPerSecond`` / ``""``
* ``cpu``     / ``cpuN`` / ``CPUUtilization`` (100 - idle - iowait), ``I/OWaitPercentage``
* ``network`` / ``ReceiveBytesPerSecond``, ``TransmitBytesPerSecond`` / ``Algorithm``
  (loopback) | ``Platform`` (every other interface)
* ``gpu``     / ``gpuN`` / ``GPUUtilization``, ``GPUMemoryUtilization`` and
  :data:`~stepscope.collectors.nvml.GPU_DIMENSIONS`' others (NVML)
* ``efa``     / ``<device>:<port>`` / ``EFAReceiveBytesPerSecond``, ``EFATransmitBytesPerSecond``
  (RDMA port counters under ``/sys/class/infiniband``, where it exists)

Rates and CPU shares need two readings: the thread takes a silent first one, so every
sample it writes is complete.

Nothing here raises into the host: a missing source (no NVML, no psutil) or a reading
that fails is one line on stderr, once, and the other metrics go on.

Run it as a thread (``SystemSampler(out).start()`` ... ``.stop()``) or as a process
(``python -m stepscope.collectors.system --out DIR --interval-ms 500``, stopped by
SIGTERM or SIGINT); a process keeps the sampling off the training's interpreter lock.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import IO, Any, Protocol

from stepscope.collectors import identity
from stepscope.collectors.nvml import NvmlCounter, Row, Warn, load_pynvml

DEFAULT_INTERVAL_S = 0.5
#: below this, sampling would cost more than it tells
MIN_INTERVAL_S = 0.01
#: where Linux lists RDMA devices (EFA, InfiniBand HCAs)
INFINIBAND_ROOT = Path("/sys/class/infiniband")
#: the sampler's files, under its output folder (SageMaker's profiler-output layout)
SYSTEM_SUBDIR = Path("system") / "incremental"
LOG_PREFIX = "stepscope sampler: "

_AUTO: Any = object()  # "import the module" (pynvml, psutil): None means "do without"


class Counter(Protocol):
    """One group of readings. ``read(now)`` returns its rows for the sample at ``now``
    (epoch seconds); a counter may also have ``open() -> bool`` (False: nothing to read
    on this host, drop it) and ``close()``."""

    name: str

    def read(self, now: float) -> Sequence[Row]: ...


class LogOnce:
    """``warn(key, message)`` writes ``message`` the first time ``key`` is seen.

    Why once: a sampler runs for days at 2 Hz; a failing counter must be reported, not
    repeated 170 000 times a day into the training's log."""

    def __init__(self, write: Callable[[str], None] | None = None) -> None:
        self._write = write
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, key: str, message: str) -> None:
        with self._lock:
            if key in self._seen:
                return
            self._seen.add(key)
        try:
            if self._write is not None:
                self._write(LOG_PREFIX + message)
            else:
                sys.stderr.write(LOG_PREFIX + message + "\n")
                sys.stderr.flush()
        except Exception:
            pass  # a closed stderr must not stop the sampling


# --------------------------------------------------------------------------- counters


class _Rates:
    """Per-second rates of monotonically growing counters between two readings."""

    def __init__(self) -> None:
        self._prev: tuple[float, dict[str, float]] | None = None

    def update(self, now: float, totals: dict[str, float]) -> dict[str, float] | None:
        prev, self._prev = self._prev, (now, totals)
        if prev is None or now <= prev[0]:
            return None
        dt = now - prev[0]
        out: dict[str, float] = {}
        for key, value in totals.items():
            before = prev[1].get(key)
            if before is not None and value >= before:  # a reset or wrap is no rate at all
                out[key] = (value - before) / dt
        return out


class MemoryCounter:
    name = "memory"

    def __init__(self, psutil: Any) -> None:
        self._ps = psutil

    def read(self, now: float) -> list[Row]:
        return [("memory", "MemoryUsedPercent", "", float(self._ps.virtual_memory().percent))]


class DiskCounter:
    """IOPS and read / write bytes per second, summed over the node's disks."""

    name = "i/o"

    def __init__(self, psutil: Any) -> None:
        self._ps = psutil
        self._rates = _Rates()

    def read(self, now: float) -> list[Row]:
        io = self._ps.disk_io_counters(nowrap=True)
        if io is None:  # no disk statistics on this host
            return []
        rates = self._rates.update(
            now,
            {"ops": io.read_count + io.write_count, "read": io.read_bytes, "write": io.write_bytes},
        )
        if not rates:
            return []
        return [
            ("i/o", "IOPS", "", rates.get("ops", 0.0)),
            ("i/o", "ReadThroughputInBytesPerSecond", "", rates.get("read", 0.0)),
            ("i/o", "WriteThroughputInBytesPerSecond", "", rates.get("write", 0.0)),
        ]


class CpuCounter:
    """Per core: the busy share (100 - idle - iowait) and the I/O-wait share, in %.

    Computed from two ``psutil.cpu_times(percpu=True)`` readings rather than with
    ``cpu_times_percent``, whose baseline is module-global: a training script that calls
    it too would reset ours (and we its)."""

    name = "cpu"

    def __init__(self, psutil: Any) -> None:
        self._ps = psutil
        self._prev: list[tuple[float, float, float]] | None = None
        self._names: list[tuple[str, str]] = []

    @staticmethod
    def _split(t: Any) -> tuple[float, float, float]:
        """(total, idle, iowait) jiffies; guest time is already in user time (as psutil)."""
        total = sum(t) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)
        return total, t.idle, getattr(t, "iowait", 0.0)

    def read(self, now: float) -> list[Row]:
        cur = [self._split(t) for t in self._ps.cpu_times(percpu=True)]
        prev, self._prev = self._prev, cur
        if prev is None or len(prev) != len(cur):  # first reading, or a core came or went
            return []
        if len(self._names) != len(cur):
            self._names = [(f"cpu{i}", "") for i in range(len(cur))]
        rows: list[Row] = []
        for (name, _), (t1, i1, w1), (t0, i0, w0) in zip(self._names, cur, prev, strict=True):
            total = t1 - t0
            if total <= 0:
                continue  # no tick on this core since the last sample
            iowait = max(0.0, (w1 - w0) / total * 100.0)
            busy = max(0.0, 100.0 - (i1 - i0) / total * 100.0 - iowait)
            rows.append(("cpu", name, "CPUUtilization", busy))
            rows.append(("cpu", name, "I/OWaitPercentage", iowait))
        return rows


class NetworkCounter:
    """Bytes per second received and sent: ``Algorithm`` is loopback (where collectives
    between the ranks of one node run), ``Platform`` every other interface."""

    name = "network"

    def __init__(self, psutil: Any) -> None:
        self._ps = psutil
        self._rates = _Rates()

    def read(self, now: float) -> list[Row]:
        totals = {"rx Algorithm": 0.0, "tx Algorithm": 0.0, "rx Platform": 0.0, "tx Platform": 0.0}
        for nic, c in self._ps.net_io_counters(pernic=True, nowrap=True).items():
            kind = "Algorithm" if nic == "lo" else "Platform"
            totals["rx " + kind] += c.bytes_recv
            totals["tx " + kind] += c.bytes_sent
        rates = self._rates.update(now, totals)
        if not rates:
            return []
        rows: list[Row] = []
        for kind in ("Algorithm", "Platform"):
            rows.append(("network", "ReceiveBytesPerSecond", kind, rates.get("rx " + kind, 0.0)))
            rows.append(("network", "TransmitBytesPerSecond", kind, rates.get("tx " + kind, 0.0)))
        return rows


class InfinibandCounter:
    """Received and transmitted bytes per second of every RDMA port (EFA, InfiniBand).

    EFA ports count bytes in ``ports/<p>/hw_counters/{rx,tx}_bytes``; other RDMA devices
    have the InfiniBand port counters ``ports/<p>/counters/port_{rcv,xmit}_data``, which
    count 4-byte words (the kernel's sysfs ABI: "octets divided by 4")."""

    name = "efa"

    def __init__(self, root: Path, warn: Warn) -> None:
        self._root = Path(root)
        self._warn = warn
        self._ports: list[tuple[str, Path, Path, int]] = []
        self._rates = _Rates()

    def open(self) -> bool:
        if not self._root.is_dir():
            return False  # no RDMA device on this host: nothing to say
        for dev in sorted(self._root.iterdir()):
            ports = dev / "ports"
            if not ports.is_dir():
                continue
            for port in sorted(ports.iterdir(), key=lambda p: (len(p.name), p.name)):
                hw, pma = port / "hw_counters", port / "counters"
                label = f"{dev.name}:{port.name}"
                if (hw / "rx_bytes").is_file() and (hw / "tx_bytes").is_file():
                    self._ports.append((label, hw / "rx_bytes", hw / "tx_bytes", 1))
                elif (pma / "port_rcv_data").is_file() and (pma / "port_xmit_data").is_file():
                    self._ports.append((label, pma / "port_rcv_data", pma / "port_xmit_data", 4))
        if not self._ports:
            self._warn(
                "efa",
                f"no RDMA port byte counters under {self._root}: sampling without EFA metrics",
            )
        return bool(self._ports)

    def read(self, now: float) -> list[Row]:
        totals: dict[str, float] = {}
        for label, rx, tx, scale in self._ports:
            try:
                totals["rx " + label] = int(rx.read_bytes()) * scale
                totals["tx " + label] = int(tx.read_bytes()) * scale
            except (OSError, ValueError) as exc:
                self._warn(
                    f"efa {label}",
                    f"RDMA counters of {label} unreadable ({type(exc).__name__}: {exc}); "
                    "the other metrics go on",
                )
        rates = self._rates.update(now, totals)
        if not rates:
            return []
        rows: list[Row] = []
        for label, *_ in self._ports:
            if "rx " + label in rates and "tx " + label in rates:
                rows.append(("efa", label, "EFAReceiveBytesPerSecond", rates["rx " + label]))
                rows.append(("efa", label, "EFATransmitBytesPerSecond", rates["tx " + label]))
        return rows


def default_counters(
    warn: Warn, *, nvml: Any = _AUTO, infiniband_root: Path = INFINIBAND_ROOT, psutil: Any = _AUTO
) -> list[Counter]:
    """The node's counters in SageMaker's order. ``nvml`` / ``psutil``: the modules to read
    through (default: import them; None: do without), so a test or the bench can stand in
    for hardware this machine lacks."""
    counters: list[Counter] = []
    if psutil is _AUTO:
        try:
            import psutil as psutil_module
        except ImportError:
            psutil_module = None
        psutil = psutil_module
    if psutil is None:
        warn("psutil", "no psutil: sampling without CPU, memory, disk and network metrics")
    else:
        counters += [
            MemoryCounter(psutil),
            DiskCounter(psutil),
            CpuCounter(psutil),
            NetworkCounter(psutil),
        ]
    counters.append(NvmlCounter(load_pynvml() if nvml is _AUTO else nvml, warn))
    counters.append(InfinibandCounter(infiniband_root, warn))
    return counters


# --------------------------------------------------------------------------- files


def minute_file(out_dir: Path, minute: int, node: str) -> Path:
    """``<out>/system/incremental/<YYYYMMDDHH>/<minute>.<node>.json`` (UTC hour)."""
    hour = time.strftime("%Y%m%d%H", time.gmtime(minute))
    return Path(out_dir) / SYSTEM_SUBDIR / hour / f"{minute}.{node}.json"


def _file_safe(node: str) -> str:
    """Ingest reads the node back from the file name, which must stay one path segment."""
    return "".join("_" if c in "/\\" or c.isspace() else c for c in node) or "unknown"


class _MinuteFiles:
    """The current minute's file, opened for appending; a sample goes wholly into the
    file of the minute it started in."""

    def __init__(self, out_dir: Path, node: str, warn: Warn) -> None:
        self._out, self._node, self._warn = Path(out_dir), _file_safe(node), warn
        self._minute: int | None = None
        self._file: IO[str] | None = None
        self.paths: list[Path] = []

    def write(self, ts: float, text: str) -> None:
        minute = int(ts // 60) * 60
        if minute != self._minute:
            self.close()
            self._minute = minute  # a failed open is retried at the next minute, not each sample
            path = minute_file(self._out, minute, self._node)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                self._file = path.open("a", encoding="utf-8")
                if path not in self.paths:
                    self.paths.append(path)
            except OSError as exc:
                self._warn(
                    f"open {path.parent}", f"cannot write {path} ({exc}); samples are dropped"
                )
                return
        if self._file is None:
            return
        try:
            self._file.write(text)
            self._file.flush()
        except OSError as exc:
            self._warn("write", f"cannot write {self._file.name} ({exc}); samples are dropped")

    def close(self) -> None:
        f, self._file, self._minute = self._file, None, None
        if f is not None:
            with contextlib.suppress(OSError):
                f.close()


# --------------------------------------------------------------------------- sampler


class SystemSampler:
    """Samples this node every ``interval_s`` into ``out_dir`` (see the module doc).

    ``start()`` runs it on a daemon thread, ``stop()`` ends it and closes its file;
    ``sample_once()`` takes one sample now (what the thread does each tick). ``clock``
    stamps the rows and picks the minute file (a test can move it across a minute);
    ``extra_counters`` are read after the built-in ones. No method raises: what fails is
    logged once (``log``, default stderr) and the sampling goes on.
    """

    def __init__(
        self,
        out_dir: str | os.PathLike[str],
        interval_s: float = DEFAULT_INTERVAL_S,
        node: str | None = None,
        *,
        nvml: Any = _AUTO,
        psutil: Any = _AUTO,
        infiniband_root: str | os.PathLike[str] = INFINIBAND_ROOT,
        extra_counters: Sequence[Counter] = (),
        clock: Callable[[], float] = time.time,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.warn = LogOnce(log)
        try:
            interval = float(interval_s)
        except (TypeError, ValueError):
            interval = math.nan
        if not interval >= MIN_INTERVAL_S:  # NaN too
            self.warn(
                "interval",
                f"interval {interval_s!r} s is not >= {MIN_INTERVAL_S}: using {DEFAULT_INTERVAL_S}",
            )
            interval = DEFAULT_INTERVAL_S
        self.interval_s = interval
        self.out_dir = Path(out_dir)
        self.node = node or identity.node_name()
        self.samples = 0
        self._clock = clock
        self._sources = (nvml, psutil, Path(infiniband_root), tuple(extra_counters))
        self._counters: list[Counter] | None = None
        self._files = _MinuteFiles(self.out_dir, self.node, self.warn)
        self._node_json = json.dumps(self.node)
        self._prefixes: dict[tuple[str, str, str], str] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one sample at a time (thread vs a direct call)

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> SystemSampler:
        """Sample on a daemon thread until :meth:`stop`; a second call does nothing."""
        try:
            if self._thread is None:
                self._stop.clear()
                self._thread = threading.Thread(
                    target=self.run, name="stepscope-system-sampler", daemon=True
                )
                self._thread.start()
        except Exception as exc:
            self.warn("start", f"cannot start the sampler thread ({type(exc).__name__}: {exc})")
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """End the sampling (after the sample in progress) and close the files."""
        self._stop.set()
        thread, self._thread = self._thread, None
        try:
            if thread is not None and thread is not threading.current_thread():
                thread.join(timeout)
                if thread.is_alive():
                    return  # stuck in a reading (a hung GPU): its run() closes when it ends
        except Exception:
            pass
        self.close()

    def run(self, stop: threading.Event | None = None) -> None:
        """Sample every ``interval_s`` until ``stop`` (default: :meth:`stop`'s event) is
        set. A late tick is not caught up: after a stall sampling resumes on a new beat."""
        stop = stop or self._stop
        try:
            self._prime()
            next_t = time.monotonic()
            while not stop.wait(max(0.0, next_t + self.interval_s - time.monotonic())):
                next_t += self.interval_s
                self.sample_once()
                if next_t + self.interval_s < time.monotonic():
                    next_t = time.monotonic()
        except Exception as exc:
            self.warn("run", f"sampling stopped ({type(exc).__name__}: {exc})")
        finally:
            self.close()

    def close(self) -> None:
        with self._lock:
            self._files.close()
            for counter in self._counters or ():
                try:
                    close = getattr(counter, "close", None)
                    if close is not None:
                        close()
                except Exception:
                    pass
            self._counters = None

    def __enter__(self) -> SystemSampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def files(self) -> list[Path]:
        """Every file written to so far, oldest first."""
        return list(self._files.paths)

    # -- one sample ---------------------------------------------------------------------
    def _open_counters(self) -> list[Counter]:
        nvml, psutil, ib_root, extra = self._sources
        counters: list[Counter] = []
        for counter in [
            *default_counters(self.warn, nvml=nvml, infiniband_root=ib_root, psutil=psutil),
            *extra,
        ]:
            try:
                opener = getattr(counter, "open", None)
                if opener is None or opener():
                    counters.append(counter)
            except Exception as exc:
                self.warn(
                    f"open {counter.name}",
                    f"{counter.name} metrics unavailable ({type(exc).__name__}: {exc})",
                )
        return counters

    def _prime(self) -> None:
        """Open the counters and take a first reading, discarded: rates and CPU shares
        need a previous one, so the first sample the thread writes is complete."""
        with self._lock:
            if self._counters is None:
                self._counters = self._open_counters()
            for counter in self._counters:
                self._read(counter, self._clock())

    def _read(self, counter: Counter, now: float) -> Sequence[Row]:
        try:
            return counter.read(now)
        except Exception as exc:
            self.warn(
                f"read {counter.name}",
                f"{counter.name} metrics failed ({type(exc).__name__}: {exc}); "
                "the other metrics go on",
            )
            return ()

    def sample_once(self) -> int:
        """Read every counter once and append the rows to this minute's file; returns the
        number of rows written. A counter that fails is skipped (and logged once)."""
        try:
            with self._lock:
                if self._counters is None:
                    self._counters = self._open_counters()
                start: float | None = None
                chunks: list[str] = []
                written = 0
                for counter in self._counters:
                    now = self._clock()
                    start = now if start is None else start
                    rows = self._read(counter, now)
                    if rows:
                        text, n = self._format(rows, now)
                        chunks.append(text)
                        written += n
                if chunks and start is not None:
                    self._files.write(start, "".join(chunks))
                self.samples += 1
                return written
        except Exception as exc:
            self.warn("sample", f"a sample failed ({type(exc).__name__}: {exc})")
            return 0

    def _format(self, rows: Sequence[Row], ts: float) -> tuple[str, int]:
        """Rows as JSON lines; a row prefix is built once per (Type, Name, Dimension), since
        a 96-core node writes the same 200 prefixes every sample."""
        suffix = f',"NodeId":{self._node_json},"Timestamp":{ts!r}}}\n'
        prefixes = self._prefixes
        parts: list[str] = []
        for type_, name, dim, value in rows:
            key = (type_, name, dim)
            prefix = prefixes.get(key)
            if prefix is None:
                prefix = prefixes[key] = (
                    f'{{"Type":{json.dumps(type_)},"Name":{json.dumps(name)},'
                    f'"Dimension":{json.dumps(dim)},"Value":'
                )
            try:
                v = float(value)
            except (TypeError, ValueError):
                continue  # a counter's bad value costs its row, not the sample
            if not math.isfinite(v):
                continue  # NaN / inf are not JSON
            parts.append(f"{prefix}{v:.2f}{suffix}")
        return "".join(parts), len(parts)


# --------------------------------------------------------------------------- process entry


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m stepscope.collectors.system``: sample until SIGTERM or SIGINT."""
    ap = argparse.ArgumentParser(
        prog="python -m stepscope.collectors.system",
        description="Sample this node's system metrics in SageMaker Debugger's layout.",
    )
    ap.add_argument(
        "--out",
        type=Path,
        default=None,
        help=(
            "output folder "
            "(default: SageMaker's TensorBoard folder on SageMaker, else ./stepscope-output)"
        ),
    )
    ap.add_argument(
        "--interval-ms",
        type=int,
        default=int(DEFAULT_INTERVAL_S * 1000),
        help="sampling period (ms)",
    )
    ap.add_argument(
        "--node",
        default=None,
        help="node name (default: SageMaker's current_host, else the host name)",
    )
    ap.add_argument("--infiniband-root", type=Path, default=INFINIBAND_ROOT, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _on_signal)
    sampler = SystemSampler(
        a.out if a.out is not None else identity.default_output_dir(),
        a.interval_ms / 1000.0,
        a.node,
        infiniband_root=a.infiniband_root,
    )
    sampler.run(stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
