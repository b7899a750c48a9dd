"""A plain DDP training script (gloo, CPU) with two slowdowns of known size and no profiling code.

Why one script for two uses: the bundled sample job (samples/record_sample_job.py) and the
known-answer test of ``stepscope run`` (tests/test_collector_launcher.py) both run it under
``stepscope run -- torchrun ...``, and the report must find exactly what it injects, measured
by traces the script never asked for:

* a slow input pipeline: every batch costs ``--loader-ms`` in the Dataset's fetch
  (``__getitem__``, ``num_workers=0``), so each rank waits that long for each batch;
* a straggler: rank ``--straggler-rank`` sleeps ``--straggler-ms`` per step between forward
  and backward (unlabelled, as real slowness is), so the other ranks wait that long for its
  gradients in DDP's all-reduce.

``--loader-ms 0 --straggler-ms 0`` is the same job with nothing injected (the sample's
baseline run). ``--features`` and ``--hidden`` size the MLP: more compute per step makes the
ranks' own work large against scheduling noise, so a healthy run looks healthy.

Run it as torchrun runs any script (RANK, WORLD_SIZE, MASTER_ADDR/PORT from the environment)::

    torchrun --standalone --nproc-per-node 2 samples/train_sample.py --steps 14
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import NoReturn

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler

CLASSES = 10


class SlowBatches(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Random batches made up front, each ``sleep_s`` slow to fetch (and nothing else: the
    wait a rank sees is the sleep, not the making or collating of the data, so a run with no
    sleep shows almost no wait). Each item is a whole batch (``batch_size=None``), a common
    shape for pre-batched or streamed data."""

    def __init__(
        self, batches: int, batch: int, features: int, classes: int, sleep_s: float
    ) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(batches, batch, features, generator=g)
        self.y = torch.randint(0, classes, (batches, batch), generator=g)
        self.sleep_s = sleep_s

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.sleep_s > 0:
            time.sleep(self.sleep_s)
        return self.x[i], self.y[i]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--steps", type=int, default=14, help="training steps per rank")
    ap.add_argument("--batch", type=int, default=4, help="samples per batch and rank")
    ap.add_argument("--features", type=int, default=32, help="MLP input width")
    ap.add_argument("--hidden", type=int, default=64, help="MLP hidden width")
    ap.add_argument("--loader-ms", type=float, default=50.0, help="data-loading time per batch")
    ap.add_argument("--straggler-rank", type=int, default=1)
    ap.add_argument(
        "--straggler-ms", type=float, default=40.0, help="extra time per step on that rank"
    )
    a = ap.parse_args(argv)

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    data = SlowBatches(a.steps * world, a.batch, a.features, CLASSES, a.loader_ms / 1000.0)
    loader = DataLoader(
        data, batch_size=None, sampler=DistributedSampler(data, shuffle=False), num_workers=0
    )
    model = DistributedDataParallel(
        nn.Sequential(nn.Linear(a.features, a.hidden), nn.ReLU(), nn.Linear(a.hidden, CLASSES))
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = nn.CrossEntropyLoss()
    for x, y in loader:
        loss = loss_fn(model(x), y)
        if rank == a.straggler_rank and a.straggler_ms > 0:
            time.sleep(a.straggler_ms / 1000.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    dist.barrier()
    dist.destroy_process_group()
    return 0


def exit_without_finalizing(code: int) -> NoReturn:
    """End the process without interpreter finalization, so it cannot die of PyTorch's
    teardown abort at exit (a gloo worker thread releasing the last work item while Python
    finalizes: ``terminate called without an active exception``, pytorch/pytorch#190489;
    docs/collect.md, "The exit abort"). Nothing is left to finalize: the training is over,
    the process group destroyed, the output flushed here, and ``stepscope run``'s collectors
    flush their own on ``os._exit``."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_without_finalizing(main())
