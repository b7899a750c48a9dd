"""SageMaker Debugger system metrics of any size, with known bottlenecks injected.

Why: the analyses must be exercised at production scale (8 nodes x 1 h x 500 ms is
millions of records) and checked against a ground truth, and no real job gives both.

The output is what SageMaker's profiler agent writes: JSON lines in
``<out>/profiler-output/system/incremental/<YYYYMMDDHH>/<minute_epoch>.algo-<n>.json``, one
file per node per wall-clock minute, named after the minute that holds its first sample,
with records spelled as smdebug reads them (``Type``/``Name``/``Dimension``/``Value``/
``NodeId``/``Timestamp``). Per node and per sample (interval) the agent emits, in this order:

* ``memory``  / ``MemoryUsedPercent`` / ``""``                        (one row)
* ``i/o``     / ``IOPS``, ``ReadThroughputInBytesPerSecond``,
  ``WriteThroughputInBytesPerSecond`` / ``""``                         (three rows, optional)
* ``cpu``     / ``cpuN`` / ``CPUUtilization`` then ``I/OWaitPercentage`` (two rows per core;
  the I/O-wait rows are optional)
* ``network`` / ``ReceiveBytesPerSecond``, ``TransmitBytesPerSecond`` /
  ``Algorithm`` | ``Platform``                                        (four rows, optional)
* ``gpu``     / ``gpuN`` / ``GPUUtilization`` then ``GPUMemoryUtilization`` (two rows per GPU)

Rows of one group share a timestamp; groups of one sample lie a few ms apart (well inside
smdebug's 20 ms snapshot window), as the agent's threads do not wake at the same instant.

Speed: each minute-file is built as one numpy object array of string pieces (row prefix,
value text from a precomputed table of every 0.01 % step, timestamp suffix) and joined
once, so no per-record Python formatting happens; 8 nodes x 60 min x 500 ms x (96 CPUs,
8 GPUs) takes seconds, bounded by the disk.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "CPUBottleneck",
    "GPUMemoryGrowth",
    "GeneratedJob",
    "IOBottleneck",
    "InjectedTruth",
    "LowGPU",
    "Pattern",
    "StalledNode",
    "generate_system_metrics",
    "main",
    "rows_per_sample",
]

SYSTEM_SUBDIR = Path("profiler-output") / "system" / "incremental"

# Every percentage the generator can emit, 0.00 .. 100.00, as Python's json would print it
# ("4.76", "30.0", "100.0"): a table lookup replaces 10^7 float formattings.
_PCT_TEXT = np.array([repr(i / 100) for i in range(10_001)], dtype=object)

# Offsets (s) of each record group within one sample, as the agent's threads drift apart.
_OFFSET = {"memory": 0.0, "i/o": 0.00058, "cpu": 0.00068, "network": 0.0052, "gpu": 0.0061}


# --------------------------------------------------------------------------- patterns


def _node_name(node: int | str) -> str:
    return f"algo-{node}" if isinstance(node, int) else str(node)


@dataclass(frozen=True)
class LowGPU:
    """GPU utilization falls to ``level`` % (±2) on one GPU, or every GPU of the node when
    ``gpu`` is None, between ``start_s`` and ``end_s`` seconds after the job start.

    Why: the plain under-utilization case (smdebug's LowGPUUtilization) with nothing else
    changed, so an analysis must find it from GPU rows alone. ``node`` is the 1-based index
    of ``algo-<n>`` or the node name.
    """

    node: int | str
    gpu: int | None
    start_s: float
    end_s: float
    level: float = 5.0


@dataclass(frozen=True)
class CPUBottleneck:
    """Every core of the node runs at 92-100 % while its GPUs idle (0-5 %).

    Why: the signature smdebug's CPUBottleneck rule looks for (CPU above 90 %, GPU below
    10 % in the same snapshot), e.g. heavy augmentation on too few data-loader workers.
    """

    node: int | str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class IOBottleneck:
    """I/O wait reaches 60-95 % on every core, CPUs mostly idle, GPUs idle (0-5 %).

    Why: smdebug's IOBottleneck signature (``I/OWaitPercentage`` above 50 % while GPU is
    below 10 %), e.g. reading training data from a slow volume. Needs the I/O-wait rows.
    """

    node: int | str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class GPUMemoryGrowth:
    """GPU memory utilization of one GPU climbs linearly from ``from_pct`` at ``start_s``
    to ``to_pct`` at ``end_s`` and stays there until the job ends (memory is not given
    back, as with a leak or a growing cache).

    Why: the GPUMemoryIncrease case; the plateau after ``end_s`` keeps the truth honest for
    analyses that compare windows.
    """

    node: int | str
    gpu: int
    start_s: float
    end_s: float
    from_pct: float
    to_pct: float


@dataclass(frozen=True)
class StalledNode:
    """One node stops working: GPUs at 0-2 % (memory stays allocated), CPUs at 1-5 %, no
    collective traffic, while the other nodes look busy.

    Why: the straggler / hung-rank case in a multi-node job, which only shows as one node
    differing from its peers.
    """

    node: int | str
    start_s: float
    end_s: float


Pattern = LowGPU | CPUBottleneck | IOBottleneck | GPUMemoryGrowth | StalledNode


@dataclass(frozen=True)
class InjectedTruth:
    """Where one injected pattern landed, in the terms of the system_metrics table."""

    kind: str  # the pattern class name
    node: str  # algo-<n>
    devices: tuple[str, ...]  # Name values affected (cpuN, gpuN)
    dimensions: tuple[str, ...]  # Dimension values changed
    start: float  # epoch seconds, first affected sample is at or after this
    end: float  # epoch seconds, samples before this are affected
    start_s: float  # as declared, relative to the job start
    end_s: float
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class GeneratedJob:
    """What :func:`generate_system_metrics` wrote, and the ground truth of its patterns."""

    out_dir: Path
    system_dir: Path
    files: list[Path]
    rows: int
    bytes: int
    nodes: tuple[str, ...]
    samples_per_node: int
    rows_per_sample: int
    interval_s: float
    start: float  # epoch s of the first record
    end: float  # epoch s of the last record
    seconds: float  # wall time the generation took
    truth: tuple[InjectedTruth, ...]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["out_dir"] = str(self.out_dir)
        d["system_dir"] = str(self.system_dir)
        d["files"] = len(self.files)
        d["truth"] = [asdict(t) for t in self.truth]
        return d


# --------------------------------------------------------------------------- layout


def rows_per_sample(cpus: int, gpus: int, *, io_wait: bool = True, io_network: bool = True) -> int:
    """Records one node writes per sample interval."""
    return 1 + cpus * (2 if io_wait else 1) + 2 * gpus + (7 if io_network else 0)


@dataclass(frozen=True)
class _Layout:
    """Column order of one sample and where each kind of value sits in it."""

    prefixes: np.ndarray  # (R,) object: '{"Type":...,"Value":'
    group: np.ndarray  # (R,) int: index into groups
    groups: tuple[str, ...]
    mem: int
    io: slice | None  # 3 columns
    cpu: slice  # CPUUtilization columns (step 2 when io_wait)
    iowait: slice | None
    net: slice | None  # 4 columns
    gpu: slice  # GPUUtilization columns
    gpumem: slice
    pct_cols: np.ndarray  # columns holding percentages
    raw_cols: np.ndarray  # columns holding byte/op rates

    @property
    def width(self) -> int:
        return len(self.prefixes)


def _prefix(type_: str, name: str, dim: str) -> str:
    return f'{{"Type":"{type_}","Name":"{name}","Dimension":"{dim}","Value":'


def _layout(cpus: int, gpus: int, io_wait: bool, io_network: bool) -> _Layout:
    prefixes: list[str] = []
    group: list[int] = []
    groups: list[str] = []

    def add(g: str, items: list[tuple[str, str, str]]) -> slice:
        if g not in groups:
            groups.append(g)
        start = len(prefixes)
        prefixes.extend(_prefix(*it) for it in items)
        group.extend([groups.index(g)] * len(items))
        return slice(start, len(prefixes))

    add("memory", [("memory", "MemoryUsedPercent", "")])
    io = None
    if io_network:
        io = add(
            "i/o",
            [
                ("i/o", "IOPS", ""),
                ("i/o", "ReadThroughputInBytesPerSecond", ""),
                ("i/o", "WriteThroughputInBytesPerSecond", ""),
            ],
        )
    cpu_items: list[tuple[str, str, str]] = []
    for c in range(cpus):
        cpu_items.append(("cpu", f"cpu{c}", "CPUUtilization"))
        if io_wait:
            cpu_items.append(("cpu", f"cpu{c}", "I/OWaitPercentage"))
    cpu_all = add("cpu", cpu_items)
    step = 2 if io_wait else 1
    cpu = slice(cpu_all.start, cpu_all.stop, step)
    iowait = slice(cpu_all.start + 1, cpu_all.stop, 2) if io_wait else None
    net = None
    if io_network:
        net = add(
            "network",
            [
                ("network", "ReceiveBytesPerSecond", "Algorithm"),
                ("network", "TransmitBytesPerSecond", "Algorithm"),
                ("network", "ReceiveBytesPerSecond", "Platform"),
                ("network", "TransmitBytesPerSecond", "Platform"),
            ],
        )
    gpu_items: list[tuple[str, str, str]] = []
    for g in range(gpus):
        gpu_items.append(("gpu", f"gpu{g}", "GPUUtilization"))
        gpu_items.append(("gpu", f"gpu{g}", "GPUMemoryUtilization"))
    gpu_all = add("gpu", gpu_items)
    width = len(prefixes)
    raw = np.zeros(width, dtype=bool)
    if io is not None:
        raw[io] = True
    if net is not None:
        raw[net] = True
    return _Layout(
        prefixes=np.array(prefixes, dtype=object),
        group=np.array(group, dtype=np.intp),
        groups=tuple(groups),
        mem=0,
        io=io,
        cpu=cpu,
        iowait=iowait,
        net=net,
        gpu=slice(gpu_all.start, gpu_all.stop, 2),
        gpumem=slice(gpu_all.start + 1, gpu_all.stop, 2),
        pct_cols=np.flatnonzero(~raw),
        raw_cols=np.flatnonzero(raw),
    )


# --------------------------------------------------------------------------- values


@dataclass
class _NodeBase:
    """Per-device steady-state levels of one node, fixed for the whole job."""

    gpu_util: np.ndarray
    gpu_mem: np.ndarray
    cpu: np.ndarray
    mem: float


def _node_base(rng: np.random.Generator, cpus: int, gpus: int) -> _NodeBase:
    return _NodeBase(
        gpu_util=rng.uniform(89.0, 94.0, gpus),
        gpu_mem=rng.uniform(55.0, 65.0, gpus),
        cpu=rng.uniform(20.0, 40.0, cpus),
        mem=float(rng.uniform(25.0, 35.0)),
    )


@dataclass
class _Block:
    """Float values of one node's minute-file, before patterns and formatting."""

    rel: np.ndarray  # (S,) seconds since job start
    cpu: np.ndarray  # (S, C)
    iowait: np.ndarray | None  # (S, C)
    gpu: np.ndarray  # (S, G)
    gpumem: np.ndarray  # (S, G)
    mem: np.ndarray  # (S,)
    io: np.ndarray | None  # (S, 3)
    net: np.ndarray | None  # (S, 4)
    rng: np.random.Generator


def _baseline(
    rng: np.random.Generator,
    base: _NodeBase,
    rel: np.ndarray,
    duration: float,
    multi_node: bool,
    io_wait: bool,
    io_network: bool,
) -> _Block:
    s, c, g = len(rel), len(base.cpu), len(base.gpu_util)
    gpu = base.gpu_util + rng.normal(0.0, 2.5, (s, g))
    np.clip(gpu, 80.0, 100.0, out=gpu)
    gpumem = base.gpu_mem + rng.normal(0.0, 0.3, (s, g))
    cpu = base.cpu + rng.normal(0.0, 5.0, (s, c))
    np.clip(cpu, 0.0, 100.0, out=cpu)
    iowait = np.minimum(rng.exponential(0.3, (s, c)), 5.0) if io_wait else None
    # host memory creeps up slowly over the job, as page cache and pinned buffers fill
    mem = base.mem + 4.0 * rel / max(duration, 1.0) + rng.normal(0.0, 0.05, s)
    io = net = None
    if io_network:
        io = np.abs(
            np.column_stack(
                [rng.normal(400.0, 80.0, s), rng.normal(2.5e7, 5e6, s), rng.normal(3e5, 1e5, s)]
            )
        )
        algo = 1.2e9 if multi_node else 0.0
        net = np.abs(
            np.column_stack(
                [
                    rng.normal(algo, algo * 0.08 + 1.0, s),
                    rng.normal(algo, algo * 0.08 + 1.0, s),
                    rng.normal(5e4, 1e4, s),
                    rng.normal(3e4, 1e4, s),
                ]
            )
        )
    return _Block(rel, cpu, iowait, gpu, gpumem, mem, io, net, rng)


def _apply(p: Pattern, b: _Block) -> None:
    """Overwrite the block's values where pattern ``p`` is active (node already matched)."""
    rng = b.rng
    if isinstance(p, GPUMemoryGrowth):
        after = b.rel >= p.start_s
        if not after.any():
            return
        frac = np.clip((b.rel[after] - p.start_s) / max(p.end_s - p.start_s, 1e-9), 0.0, 1.0)
        ramp = p.from_pct + (p.to_pct - p.from_pct) * frac
        b.gpumem[after, p.gpu] = ramp + rng.normal(0.0, 0.1, len(ramp))
        return
    m = (b.rel >= p.start_s) & (b.rel < p.end_s)
    n = int(m.sum())
    if n == 0:
        return
    c, g = b.cpu.shape[1], b.gpu.shape[1]
    if isinstance(p, LowGPU):
        cols = slice(None) if p.gpu is None else slice(p.gpu, p.gpu + 1)
        k = g if p.gpu is None else 1
        b.gpu[m, cols] = p.level + rng.uniform(-2.0, 2.0, (n, k))
    elif isinstance(p, CPUBottleneck):
        b.cpu[m] = rng.uniform(92.0, 100.0, (n, c))
        b.gpu[m] = rng.uniform(0.0, 5.0, (n, g))
        if b.net is not None:
            b.net[m, :2] *= 0.05
    elif isinstance(p, IOBottleneck):
        assert b.iowait is not None  # checked before generation
        b.iowait[m] = rng.uniform(60.0, 95.0, (n, c))
        b.cpu[m] = rng.uniform(3.0, 12.0, (n, c))
        b.gpu[m] = rng.uniform(0.0, 5.0, (n, g))
        if b.io is not None:
            b.io[m, 0] = rng.uniform(3000.0, 6000.0, n)
            b.io[m, 1] = rng.uniform(1e6, 4e6, n)
        if b.net is not None:
            b.net[m, :2] *= 0.05
    elif isinstance(p, StalledNode):
        b.gpu[m] = rng.uniform(0.0, 2.0, (n, g))
        b.cpu[m] = rng.uniform(1.0, 5.0, (n, c))
        if b.iowait is not None:
            b.iowait[m] = rng.uniform(0.0, 0.5, (n, c))
        if b.net is not None:
            b.net[m, :2] = rng.uniform(0.0, 1e3, (n, 2))


def _truth(p: Pattern, start: float, duration: float, cpus: int, gpus: int) -> InjectedTruth:
    node = _node_name(p.node)
    all_cpu = tuple(f"cpu{i}" for i in range(cpus))
    all_gpu = tuple(f"gpu{i}" for i in range(gpus))
    end_s = duration if isinstance(p, GPUMemoryGrowth) else min(p.end_s, duration)
    params: dict[str, Any] = {}
    if isinstance(p, LowGPU):
        devices = all_gpu if p.gpu is None else (f"gpu{p.gpu}",)
        dims: tuple[str, ...] = ("GPUUtilization",)
        params = {"level": p.level}
    elif isinstance(p, CPUBottleneck):
        devices, dims = all_cpu + all_gpu, ("CPUUtilization", "GPUUtilization")
    elif isinstance(p, IOBottleneck):
        devices = all_cpu + all_gpu
        dims = ("I/OWaitPercentage", "CPUUtilization", "GPUUtilization")
    elif isinstance(p, GPUMemoryGrowth):
        devices, dims = (f"gpu{p.gpu}",), ("GPUMemoryUtilization",)
        params = {"from_pct": p.from_pct, "to_pct": p.to_pct, "ramp_end_s": p.end_s}
    else:
        devices = all_cpu + all_gpu
        dims = ("GPUUtilization", "CPUUtilization")
    return InjectedTruth(
        kind=type(p).__name__,
        node=node,
        devices=devices,
        dimensions=dims,
        start=start + max(p.start_s, 0.0),
        end=start + end_s,
        start_s=p.start_s,
        end_s=p.end_s,
        params=params,
    )


def _check(p: Pattern, names: Sequence[str], gpus: int, io_wait: bool) -> None:
    if _node_name(p.node) not in names:
        raise ValueError(f"{p!r}: node {_node_name(p.node)} not in {names[0]}..{names[-1]}")
    if not p.end_s > p.start_s:
        raise ValueError(f"{p!r}: end_s must be after start_s")
    gpu = getattr(p, "gpu", None)
    if gpu is not None and not 0 <= gpu < gpus:
        raise ValueError(f"{p!r}: gpu {gpu} out of range 0..{gpus - 1}")
    if isinstance(p, IOBottleneck) and not io_wait:
        raise ValueError(f"{p!r} needs the I/O-wait rows (io_wait=True)")


# --------------------------------------------------------------------------- formatting


def _format_block(b: _Block, lay: _Layout, ts: np.ndarray, node: str) -> str:
    """One minute-file's text: a (S, R, 3) array of string pieces joined once."""
    s, r = len(ts), lay.width
    vals = np.empty((s, r), dtype=np.float64)
    vals[:, lay.mem] = b.mem
    vals[:, lay.cpu] = b.cpu
    if lay.iowait is not None and b.iowait is not None:
        vals[:, lay.iowait] = b.iowait
    vals[:, lay.gpu] = b.gpu
    vals[:, lay.gpumem] = b.gpumem
    if lay.io is not None and b.io is not None:
        vals[:, lay.io] = b.io
    if lay.net is not None and b.net is not None:
        vals[:, lay.net] = b.net

    pieces = np.empty((s, r, 3), dtype=object)
    pieces[:, :, 0] = lay.prefixes
    pct = vals[:, lay.pct_cols]
    idx = np.rint(pct * 100.0)
    np.clip(idx, 0, 10_000, out=idx)
    pieces[:, lay.pct_cols, 1] = _PCT_TEXT[idx.astype(np.intp)]
    if len(lay.raw_cols):
        raw = np.round(vals[:, lay.raw_cols], 2)
        pieces[:, lay.raw_cols, 1] = np.array(
            [repr(v) for v in raw.ravel().tolist()], dtype=object
        ).reshape(raw.shape)
    offsets = np.array([_OFFSET[g] for g in lay.groups])
    suffix = np.array(
        [
            f',"NodeId":"{node}","Timestamp":{t!r}}}\n'
            for t in (ts[:, None] + offsets[None, :]).ravel().tolist()
        ],
        dtype=object,
    ).reshape(s, len(lay.groups))
    pieces[:, :, 2] = suffix[:, lay.group]
    return "".join(pieces.ravel().tolist())


# --------------------------------------------------------------------------- generator


def generate_system_metrics(
    out_dir: str | Path,
    *,
    nodes: int = 2,
    gpus: int = 8,
    cpus: int = 96,
    minutes: float = 10,
    interval_s: float = 0.5,
    start: float = 1700000000.0,
    seed: int = 0,
    patterns: Sequence[Pattern] = (),
    io_wait: bool = True,
    io_network: bool = True,
) -> GeneratedJob:
    """Write ``minutes`` of system metrics for ``nodes`` nodes under ``out_dir``.

    Baseline is a healthy busy job (GPU 85-100 %, GPU memory ~60 %, CPU 20-40 %, I/O wait
    near 0); ``patterns`` then overwrite their windows, later ones winning. ``io_wait`` and
    ``io_network`` drop the per-core I/O-wait rows and the i/o + network rows (SageMaker
    writes them; leave them on unless a benchmark wants the smaller GPU + CPU-only record
    set). Output is deterministic for a given ``seed`` and arguments.
    """
    t0 = time.perf_counter()
    if nodes < 1 or cpus < 1 or gpus < 0 or interval_s <= 0 or minutes <= 0:
        raise ValueError("nodes, cpus >= 1, gpus >= 0, minutes and interval_s > 0")
    out = Path(out_dir)
    system_dir = out / SYSTEM_SUBDIR
    names = tuple(f"algo-{i}" for i in range(1, nodes + 1))
    for p in patterns:
        _check(p, names, gpus, io_wait)
    lay = _layout(cpus, gpus, io_wait, io_network)

    duration = minutes * 60.0
    n = max(1, round(duration / interval_s))
    rel_nominal = np.arange(n, dtype=np.float64) * interval_s
    # the agent wakes a little late each time; a few ms at most, never reordering samples
    jitter_max = min(0.003, interval_s * 0.01)
    jitter = np.random.default_rng((seed, 0xD17)).uniform(0.0, jitter_max, n)
    ts_all = start + rel_nominal + jitter
    minute = np.floor(ts_all / 60.0).astype(np.int64)
    cuts = np.flatnonzero(np.diff(minute)) + 1
    bounds = np.concatenate([[0], cuts, [n]])

    files: list[Path] = []
    rows = nbytes = 0
    for ni, name in enumerate(names, start=1):
        node_rng = np.random.default_rng((seed, ni))
        base = _node_base(node_rng, cpus, gpus)
        mine = [p for p in patterns if _node_name(p.node) == name]
        for fi in range(len(bounds) - 1):
            lo, hi = int(bounds[fi]), int(bounds[fi + 1])
            epoch = int(minute[lo]) * 60
            rng = np.random.default_rng((seed, ni, fi))
            block = _baseline(
                rng, base, rel_nominal[lo:hi], duration, nodes > 1, io_wait, io_network
            )
            for p in mine:
                _apply(p, block)
            text = _format_block(block, lay, ts_all[lo:hi], name)
            hour = dt.datetime.fromtimestamp(epoch, tz=dt.UTC).strftime("%Y%m%d%H")
            path = system_dir / hour / f"{epoch}.{name}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            data = text.encode("ascii")
            path.write_bytes(data)
            files.append(path)
            rows += (hi - lo) * lay.width
            nbytes += len(data)

    offsets = [_OFFSET[g] for g in lay.groups]
    return GeneratedJob(
        out_dir=out,
        system_dir=system_dir,
        files=files,
        rows=rows,
        bytes=nbytes,
        nodes=names,
        samples_per_node=n,
        rows_per_sample=lay.width,
        interval_s=interval_s,
        start=float(ts_all[0]) + min(offsets),
        end=float(ts_all[-1]) + max(offsets),
        seconds=time.perf_counter() - t0,
        truth=tuple(_truth(p, start, duration, cpus, gpus) for p in patterns),
    )


# --------------------------------------------------------------------------- CLI


def _num(s: str) -> float:
    v = float(s)
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"not a finite number: {s}")
    return v


def _node_arg(s: str) -> int | str:
    return int(s) if s.isdigit() else s


def _split(spec: str, n_min: int, n_max: int, what: str) -> list[str]:
    parts = spec.split(":")
    if not n_min <= len(parts) <= n_max:
        raise argparse.ArgumentTypeError(
            f"{what}: expected {n_min}-{n_max} ':'-fields, got {spec!r}"
        )
    return parts


def _low_gpu(spec: str) -> LowGPU:
    p = _split(spec, 4, 5, "--low-gpu node:gpu|all:start:end[:level]")
    gpu = None if p[1] in ("all", "*", "") else int(p[1])
    level = _num(p[4]) if len(p) == 5 else 5.0
    return LowGPU(_node_arg(p[0]), gpu, _num(p[2]), _num(p[3]), level)


def _window(cls: type[CPUBottleneck] | type[IOBottleneck] | type[StalledNode], flag: str) -> Any:
    def parse(spec: str) -> Any:
        p = _split(spec, 3, 3, f"{flag} node:start:end")
        return cls(_node_arg(p[0]), _num(p[1]), _num(p[2]))

    return parse


def _mem_growth(spec: str) -> GPUMemoryGrowth:
    p = _split(spec, 6, 6, "--gpu-mem-growth node:gpu:start:end:from:to")
    return GPUMemoryGrowth(
        _node_arg(p[0]), int(p[1]), _num(p[2]), _num(p[3]), _num(p[4]), _num(p[5])
    )


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m tests.support.synthetic",
        description="Write synthetic SageMaker Debugger system metrics (times in seconds "
        "after the job start; node is the n of algo-<n>).",
    )
    ap.add_argument("out", type=Path, help="job folder; files go under profiler-output/system")
    ap.add_argument("--nodes", type=int, default=2)
    ap.add_argument("--gpus", type=int, default=8)
    ap.add_argument("--cpus", type=int, default=96)
    ap.add_argument("--minutes", type=_num, default=10.0)
    ap.add_argument("--interval", type=_num, default=0.5, help="sample interval, seconds")
    ap.add_argument("--start", type=_num, default=1700000000.0, help="epoch seconds")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-io-wait", action="store_true", help="omit per-core I/OWaitPercentage")
    ap.add_argument("--no-io-network", action="store_true", help="omit i/o and network rows")
    ap.add_argument(
        "--low-gpu",
        type=_low_gpu,
        action="append",
        default=[],
        metavar="NODE:GPU|all:START:END[:LEVEL]",
    )
    ap.add_argument(
        "--cpu-bottleneck",
        type=_window(CPUBottleneck, "--cpu-bottleneck"),
        action="append",
        default=[],
        metavar="NODE:START:END",
    )
    ap.add_argument(
        "--io-bottleneck",
        type=_window(IOBottleneck, "--io-bottleneck"),
        action="append",
        default=[],
        metavar="NODE:START:END",
    )
    ap.add_argument(
        "--stalled-node",
        type=_window(StalledNode, "--stalled-node"),
        action="append",
        default=[],
        metavar="NODE:START:END",
    )
    ap.add_argument(
        "--gpu-mem-growth",
        type=_mem_growth,
        action="append",
        default=[],
        metavar="NODE:GPU:START:END:FROM:TO",
    )
    ap.add_argument("--truth", type=Path, help="also write the summary + ground truth here")
    a = ap.parse_args(argv)
    patterns: list[Pattern] = [
        *a.low_gpu,
        *a.cpu_bottleneck,
        *a.io_bottleneck,
        *a.stalled_node,
        *a.gpu_mem_growth,
    ]
    try:
        job = generate_system_metrics(
            a.out,
            nodes=a.nodes,
            gpus=a.gpus,
            cpus=a.cpus,
            minutes=a.minutes,
            interval_s=a.interval,
            start=a.start,
            seed=a.seed,
            patterns=patterns,
            io_wait=not a.no_io_wait,
            io_network=not a.no_io_network,
        )
    except ValueError as e:
        ap.error(str(e))
    summary = job.to_dict()
    if a.truth:
        a.truth.write_text(json.dumps(summary, indent=2) + "\n")
    summary.pop("truth")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
