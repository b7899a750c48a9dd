"""Sharded and model-parallel training scripts (gloo, CPU, no profiling code) with known answers.

Why: the parallelism analysis (``analyzer.analyses.parallelism``) must tell the parallel
dimensions of a job apart and measure each: FSDP all-gathers exposed or hidden by
prefetching, pipeline bubbles against the schedule's ideal, the groups of a 2-D device
mesh. These are real PyTorch jobs, run as torchrun runs any script; what each records is
said in ``--mode``'s help and in the tests that use it (tests/test_parallelism_recorded.py).

* ``fsdp``: FSDP2 (``fully_shard``) over every rank, one unit per block. ``--prefetch``
  issues each unit's all-gather asynchronously one unit ahead (explicit forward and
  backward prefetching), so it runs on gloo's thread while the previous unit computes;
  without it each unit waits for its own all-gather. On CPU, communication overlaps compute
  only if the training thread leaves gloo's threads a core: ``--pause-ms`` gives each
  block's forward an operator that takes that long without the CPU (twice that in the
  backward), and the training thread runs at a lower priority than gloo's
  (``os.setpriority`` on its own thread id, after gloo's threads exist).
* ``pipeline``: one stage per rank (``torch.distributed.pipelining``, ``--schedule gpipe``
  or ``1f1b``, ``--microbatches m``); each stage's forward of a micro-batch takes
  ``--forward-ms`` and its backward twice that (an operator that sleeps, beside two small
  layers), stage ``--slow-stage`` ``--slow-factor`` times as long.
* ``tp``: tensor parallelism (DTensor ``parallelize_module``, column- then row-wise split
  blocks) over every rank.
* ``mesh``: a 2-D device mesh ``(dp, fsdp)`` (``--dp`` × world/dp): FSDP2 sharding over
  the ``fsdp`` dimension, replication (HSDP: all-reduce of the gradients) over ``dp``.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from typing import Any

import torch
import torch.distributed as dist
from ddp_end import end_ddp  # tests/support, on the script's sys.path
from torch import nn


@torch.library.custom_op("stepscope_test::pause", mutates_args=())
def pause(x: torch.Tensor, seconds: float) -> torch.Tensor:
    """An operator that takes ``seconds`` (a sleep): a stage's work of known length that the
    profiler records as an op (``stepscope_test::pause``) and that does not compete for the
    two cores, so the schedule's timing is the one the test computes."""
    time.sleep(seconds)
    return x.clone()


def _pause_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
    ctx.seconds = inputs[1]


def _pause_backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
    return pause(grad, ctx.seconds * BACKWARD_RATIO), None


#: a stage's backward of a micro-batch takes this many times its forward
BACKWARD_RATIO = 2.0
pause.register_autograd(_pause_backward, setup_context=_pause_context)


class Block(nn.Module):
    """A linear layer with a ReLU, and a pause of ``pause_s`` (forward; twice that in the
    backward) where asked: work of known length that leaves the cores to the collectives."""

    def __init__(self, width: int, pause_s: float = 0.0) -> None:
        super().__init__()
        self.lin = nn.Linear(width, width)
        self.pause_s = pause_s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.lin(x))
        return pause(y, self.pause_s) if self.pause_s else y


class Stage(nn.Module):
    """One pipeline stage: two blocks and a pause of known length per micro-batch (forward
    ``forward_s``, backward :data:`BACKWARD_RATIO` times that)."""

    def __init__(self, width: int, forward_s: float) -> None:
        super().__init__()
        self.blocks = nn.Sequential(Block(width), Block(width))
        self.forward_s = forward_s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pause(self.blocks(x), self.forward_s)


def _yield_to_communication() -> None:
    """Lower this (the training) thread's priority below gloo's worker threads, so that on a
    machine with fewer cores than threads the collectives progress while it computes."""
    os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)


def run_fsdp(a: argparse.Namespace) -> None:
    from torch.distributed.fsdp import fully_shard

    torch.manual_seed(0)
    blocks = [Block(a.width, a.pause_ms / 1e3) for _ in range(a.layers)]
    model = nn.Sequential(*blocks)
    mesh = None
    if a.mode == "mesh":
        from torch.distributed.device_mesh import init_device_mesh

        world = dist.get_world_size()
        mesh = init_device_mesh("cpu", (a.dp, world // a.dp), mesh_dim_names=("dp", "fsdp"))
    for b in blocks:
        fully_shard(b, mesh=mesh)
    fully_shard(model, mesh=mesh)
    if a.prefetch:
        for i, b in enumerate(blocks):
            b._set_unshard_async_op(True)  # type: ignore[operator]
            if i + 1 < len(blocks):
                b.set_modules_to_forward_prefetch([blocks[i + 1]])  # type: ignore[operator]
            if i > 0:
                b.set_modules_to_backward_prefetch([blocks[i - 1]])  # type: ignore[operator]
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    _yield_to_communication()
    g = torch.Generator().manual_seed(dist.get_rank())
    for _ in range(a.steps):
        x = torch.randn(a.batch, a.width, generator=g)
        loss = model(x).pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()


class MLP(nn.Module):
    """A transformer-style feed-forward block: up-projection, ReLU, down-projection."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.up = nn.Linear(width, 4 * width)
        self.down = nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(torch.relu(self.up(x)))


def run_tensor_parallel(a: argparse.Namespace) -> None:
    """Megatron-style tensor parallelism with DTensor: each block's up-projection split by
    columns, its down-projection by rows, so the block's output is all-reduced in the
    forward (and its input gradient in the backward) over the ``tp`` mesh dimension."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor.parallel import (
        ColwiseParallel,
        RowwiseParallel,
        parallelize_module,
    )

    mesh = init_device_mesh("cpu", (dist.get_world_size(),), mesh_dim_names=("tp",))
    torch.manual_seed(0)  # the same weights on every rank before they are split
    blocks = nn.Sequential(*[MLP(a.width) for _ in range(a.layers)])
    for block in blocks:
        parallelize_module(block, mesh, {"up": ColwiseParallel(), "down": RowwiseParallel()})
    opt = torch.optim.SGD(blocks.parameters(), lr=0.01)
    g = torch.Generator().manual_seed(0)  # every rank of the group sees the same batch
    for _ in range(a.steps):
        x = torch.randn(a.batch, a.width, generator=g)
        loss = blocks(x).pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()


def run_pipeline(a: argparse.Namespace) -> None:
    from torch.distributed.pipelining import PipelineStage, Schedule1F1B, ScheduleGPipe

    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(rank)
    slow = a.slow_factor if rank == a.slow_stage else 1.0
    stage_module = Stage(a.width, slow * a.forward_ms / 1e3)
    stage = PipelineStage(stage_module, rank, world, torch.device("cpu"))
    schedule_cls = ScheduleGPipe if a.schedule == "gpipe" else Schedule1F1B
    schedule = schedule_cls(stage, a.microbatches, loss_fn=lambda out, y: (out - y).pow(2).mean())
    opt = torch.optim.SGD(stage_module.parameters(), lr=0.01)
    g = torch.Generator().manual_seed(0)
    for _ in range(a.steps):
        x = torch.randn(a.batch, a.width, generator=g)
        y = torch.randn(a.batch, a.width, generator=g)
        if rank == 0:
            schedule.step(x)
        elif rank == world - 1:
            schedule.step(target=y)
        else:
            schedule.step()
        opt.step()
        opt.zero_grad()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--mode", choices=("fsdp", "pipeline", "mesh", "tp"), required=True)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--prefetch", action="store_true")
    ap.add_argument("--pause-ms", type=float, default=0.0)
    ap.add_argument("--dp", type=int, default=2)
    ap.add_argument("--schedule", choices=("gpipe", "1f1b"), default="gpipe")
    ap.add_argument("--microbatches", type=int, default=8)
    ap.add_argument("--forward-ms", type=float, default=4.0)
    ap.add_argument("--slow-stage", type=int, default=-1)
    ap.add_argument("--slow-factor", type=float, default=2.0)
    a = ap.parse_args(argv)

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    if a.mode == "pipeline":
        run_pipeline(a)
    elif a.mode == "tp":
        run_tensor_parallel(a)
    else:
        run_fsdp(a)
    end_ddp()


if __name__ == "__main__":
    main()
