"""Kineto traces in the shape PyTorch's profiler writes for NCCL jobs, built from a plan.

Why: the parallelism analysis and its rules need GPU traces of sharded, tensor-, pipeline-
and expert-parallel jobs with known answers (this machine has no GPU); the CPU jobs
recorded with torch cover what a real run shows (tests/test_parallelism_recorded.py).
Kernels carry what recent PyTorch puts on NCCL kernels (``Collective name``, ``In/Out msg
nelems``, ``Group size``, ``dtype``, ``Process Group Name``); ``distributedInfo.pg_config``
names the groups, as in the real NCCL fixtures (``../shared/fixtures/kineto``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

US = 1.0  # trace times are in microseconds
T0 = 1_000_000.0


class Trace:
    """One rank's Kineto trace, event by event (times in µs from T0). A kernel's launch call
    is written 5 µs before it, as the CPU enqueues it; the step of a collective is the one
    its launch falls in, so plans start their work a little after a step's start."""

    def __init__(self, rank: int, world: int, groups: list[dict[str, Any]]) -> None:
        self.rank, self.world, self.groups = rank, world, groups
        self.events: list[dict[str, Any]] = []
        self.correlation = 1000

    def cpu(self, name: str, ts: float, dur: float, cat: str = "cpu_op") -> None:
        self.events.append(
            {"ph": "X", "cat": cat, "name": name, "pid": 100, "tid": 100, "ts": T0 + ts, "dur": dur}
        )

    def kernel(self, name: str, ts: float, dur: float, stream: int = 7, **args: Any) -> None:
        self.correlation += 1
        self.events.append(
            {
                "ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernel", "pid": 100,
                "tid": 100, "ts": T0 + ts - 5, "dur": 2,
                "args": {"correlation": self.correlation, "External id": self.correlation},
            }
        )  # fmt: skip
        self.events.append(
            {
                "ph": "X", "cat": "kernel", "name": name, "pid": 0, "tid": stream,
                "ts": T0 + ts, "dur": dur,
                "args": {"device": 0, "stream": stream, "correlation": self.correlation,
                         "External id": self.correlation, **args},
            }
        )  # fmt: skip

    def collective(
        self, op: str, group: str, ts: float, dur: float, nelems: int, size: int
    ) -> None:
        kernel = {"allreduce": "AllReduce", "allgather": "AllGather",
                  "reduce_scatter": "ReduceScatter", "all_to_all": "SendRecv",
                  "send": "SendRecv", "recv": "SendRecv"}[op]  # fmt: skip
        self.kernel(
            f"ncclDevKernel_{kernel}_RING_LL(ncclDevComm*)",
            ts,
            dur,
            stream=20,
            **{
                "Collective name": op, "In msg nelems": nelems, "Out msg nelems": nelems,
                "Group size": size, "dtype": "Float", "Process Group Name": group,
            },
        )  # fmt: skip

    def write(self, folder: Path) -> None:
        doc = {
            "schemaVersion": 1,
            "distributedInfo": {
                "backend": "nccl", "rank": self.rank, "world_size": self.world,
                "pg_count": len(self.groups), "pg_config": self.groups,
            },
            "traceEvents": self.events,
            "displayTimeUnit": "ms",
            "baseTimeNanoseconds": 0,
        }  # fmt: skip
        (folder / f"rank{self.rank}.pt.trace.json").write_text(json.dumps(doc))


def pg(name: str, desc: str, ranks: list[int]) -> dict[str, Any]:
    return {"pg_name": name, "pg_desc": desc, "pg_size": len(ranks), "ranks": ranks}


def step(t: Trace, k: int, *, start: float, length: float = 10_000.0) -> tuple[float, float]:
    """ProfilerStep#k over [start, start + length); the backward starts at its middle."""
    t.cpu(f"ProfilerStep#{k}", start, length, cat="user_annotation")
    t.cpu("autograd::engine::evaluate_function: MmBackward0", start + length / 2, 100)
    t.cpu("Optimizer.step#SGD.step", start + length - 500, 400, cat="user_annotation")
    return start, start + length


def write(folder: Path, traces: list[Trace]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for t in traces:
        t.write(folder)
    return folder


def tp_dp(folder: Path, descs: tuple[str, str]) -> Path:
    """4 ranks: tensor-parallel pairs {0,1}, {2,3} (an all-reduce after each layer's forward
    and backward matmul) and data-parallel pairs {0,2}, {1,3} (gradient all-reduces at the
    end of the backward). Each step: forward [0, 5) ms, backward [5, 10) ms."""
    tp, dp = descs
    groups = [pg("0", "default_pg", [0, 1, 2, 3]), pg("1", tp, [0, 1]), pg("2", tp, [2, 3]),
              pg("3", dp, [0, 2]), pg("4", dp, [1, 3])]  # fmt: skip
    traces = []
    for r in range(4):
        t = Trace(r, 4, groups)
        tp_group, dp_group = ("1" if r < 2 else "2"), ("3" if r % 2 == 0 else "4")
        for k in range(3):
            s0, _ = step(t, k + 1, start=k * 10_000.0)
            for layer in range(4):
                f = s0 + layer * 1_000
                t.kernel("ampere_sgemm_128x64_nn", f, 700)
                t.collective("allreduce", tp_group, f + 700, 200, 1 << 20, 2)  # exposed 200 µs
                b = s0 + 5_000 + layer * 1_000
                t.kernel("ampere_sgemm_128x64_nt", b, 700)
                t.collective("allreduce", tp_group, b + 700, 200, 1 << 20, 2)
            # the gradient all-reduce, [8.5, 9.5) ms: the last backward matmul hides 0.2 ms
            t.collective("allreduce", dp_group, s0 + 8_500, 1_000, 1 << 24, 2)
        traces.append(t)
    return write(folder, traces)


def zero3(folder: Path) -> Path:
    """DeepSpeed ZeRO-3 on 2 ranks (its groups carry no description): per step, four
    parameter all-gathers in the forward, each before its layer's matmul, and four
    reduce-scatters in the backward, each after its layer's matmul: 1.2 ms of each exposed
    per step, the last reduce-scatter a 0.3 ms tail."""
    groups = [pg("0", "undefined", [0, 1])]
    traces = []
    for r in range(2):
        t = Trace(r, 2, groups)
        for k in range(2):
            s0, _ = step(t, k + 1, start=k * 10_000.0)
            for layer in range(4):
                f = s0 + 100 + layer * 1_000
                t.collective("allgather", "0", f, 300, 1 << 20, 2)
                t.kernel("ampere_sgemm_128x64_nn", f + 300, 600)
                b = s0 + 5_000 + layer * 1_000
                t.kernel("ampere_sgemm_128x64_nt", b, 600)
                t.collective("reduce_scatter", "0", b + 600, 300, 1 << 20, 2)
        traces.append(t)
    return write(folder, traces)


def moe(folder: Path, heavy_rank: int = 2, factor: int = 3) -> Path:
    """4 ranks of an expert group (``mesh_ep``): two all-to-alls per step; ``heavy_rank``
    sends ``factor`` times the bytes of the others, and takes that much longer."""
    groups = [pg("0", "default_pg", [0, 1, 2, 3]), pg("5", "mesh_ep", [0, 1, 2, 3])]
    traces = []
    for r in range(4):
        t = Trace(r, 4, groups)
        heavy = factor if r == heavy_rank else 1
        for k in range(2):
            s0, _ = step(t, k + 1, start=k * 10_000.0)
            for layer in range(2):
                t.collective(
                    "all_to_all", "5", s0 + 100 + layer * 2_000, 200 * heavy, heavy << 20, 4
                )
        traces.append(t)
    return write(folder, traces)


def small_collectives(folder: Path) -> Path:
    """2 ranks: 80 all-reduces of 16 K floats (64 KiB) per step in the backward, 20 µs each
    with nothing computing meanwhile (1.6 ms exposed per step)."""
    groups = [pg("0", "default_pg", [0, 1])]
    traces = []
    for r in range(2):
        t = Trace(r, 2, groups)
        for k in range(2):
            s0, _ = step(t, k + 1, start=k * 10_000.0)
            for i in range(80):
                t.collective("allreduce", "0", s0 + 5_100 + i * 50, 20, 1 << 14, 2)
        traces.append(t)
    return write(folder, traces)


def gpipe_times(
    work: list[tuple[float, float]], m: int
) -> tuple[list[list[tuple[float, float]]], list[list[tuple[float, float]]], float]:
    """GPipe's timing for stages of ``work[k] = (forward, backward)`` per micro-batch: all
    forwards, then all backwards, each as soon as its stage is free and its input arrived
    (the previous stage's forward, the next stage's backward). Per stage the forward and
    backward (start, end) of each micro-batch, and the step's length (the first stage's
    last backward)."""
    p = len(work)
    fw = [[(0.0, 0.0)] * m for _ in range(p)]
    bw = [[(0.0, 0.0)] * m for _ in range(p)]
    for i in range(m):
        for k in range(p):
            start = max(fw[k][i - 1][1] if i else 0.0, fw[k - 1][i][1] if k else 0.0)
            fw[k][i] = (start, start + work[k][0])
    for i in range(m):
        for k in reversed(range(p)):
            start = max(
                bw[k][i - 1][1] if i else fw[k][m - 1][1], bw[k + 1][i][1] if k < p - 1 else 0.0
            )
            bw[k][i] = (start, start + work[k][1])
    return fw, bw, bw[0][m - 1][1]


def gpipe(folder: Path, work: list[tuple[float, float]], m: int, steps: int = 2) -> Path:
    """A GPipe pipeline of ``len(work)`` stages on GPUs, one per rank, timed by
    :func:`gpipe_times` (µs): each micro-batch's forward and backward a compute kernel
    inside the schedule's ``Forward i`` / ``Backward i`` mark, the waits for activations
    and gradients NCCL receive kernels, each output a short send kernel."""
    p = len(work)
    fw, bw, length = gpipe_times(work, m)
    groups = [pg("0", "default_pg", list(range(p)))]
    traces = []
    for k in range(p):
        t = Trace(k, p, groups)
        for s in range(steps):
            s0 = 100.0 + s * (length + 200.0)
            t.cpu(f"ProfilerStep#{s + 1}", s0, length, cat="user_annotation")
            edge = 0.0
            for phase, spans, wait in (("Forward", fw[k], k > 0), ("Backward", bw[k], k < p - 1)):
                for i, (a, b) in enumerate(spans):
                    if wait and a > edge:
                        t.collective("recv", "0", s0 + edge, a - edge, 1 << 16, 2)
                    t.cpu(f"{phase} {i}", s0 + a, b - a, cat="user_annotation")
                    t.kernel("ampere_sgemm_128x64_nn", s0 + a, b - a)
                    if (phase == "Forward" and k < p - 1) or (phase == "Backward" and k > 0):
                        t.collective("send", "0", s0 + b, 10, 1 << 16, 2)
                    edge = b
        traces.append(t)
    return write(folder, traces)
