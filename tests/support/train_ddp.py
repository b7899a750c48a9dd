"""A plain DDP training script (gloo, CPU) with two slowdowns of known size and no profiling code.

Why: the known-answer test of ``stepscope run`` (tests/test_collector_launcher.py) runs it
under ``stepscope run -- torchrun ...`` and checks that the report finds exactly what this
script injects, measured by traces the script never asked for:

* a slow input pipeline: every batch costs ``--loader-ms`` in the Dataset's fetch
  (``__getitems__``, ``num_workers=0``), so each rank waits that long for each batch;
* a straggler: rank ``--straggler-rank`` sleeps ``--straggler-ms`` per step between forward
  and backward (unlabelled, as real slowness is), so the other ranks wait that long for its
  gradients in DDP's all-reduce.

Run it as torchrun runs any script (RANK, WORLD_SIZE, MASTER_ADDR/PORT from the environment)::

    torchrun --standalone --nproc-per-node 2 tests/support/train_ddp.py --steps 14
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler


class SlowSamples(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Random samples made up front, each ``sleep_s`` slow to fetch (and nothing else: the
    wait a rank sees is the sleep, not the making of the data)."""

    def __init__(self, n: int, features: int, classes: int, sleep_s: float) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, features, generator=g)
        self.y = torch.randint(0, classes, (n,), generator=g)
        self.sleep_s = sleep_s

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        time.sleep(self.sleep_s)
        return self.x[i], self.y[i]

    def __getitems__(self, indices: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The DataLoader's batched fetch: one sleep for the whole batch, so the wait is the
        injected time and not also one timer overshoot per sample."""
        time.sleep(self.sleep_s * len(indices))
        return [(self.x[i], self.y[i]) for i in indices]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=14, help="training steps per rank")
    ap.add_argument("--batch", type=int, default=4, help="samples per batch and rank")
    ap.add_argument("--loader-ms", type=float, default=50.0, help="data-loading time per batch")
    ap.add_argument("--straggler-rank", type=int, default=1)
    ap.add_argument("--straggler-ms", type=float, default=40.0, help="extra time per step on that rank")
    a = ap.parse_args(argv)

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    data = SlowSamples(a.steps * a.batch * world, 32, 10, a.loader_ms / a.batch / 1000.0)
    loader = DataLoader(data, batch_size=a.batch, sampler=DistributedSampler(data, shuffle=False),
                        num_workers=0)
    model = DistributedDataParallel(nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10)))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = nn.CrossEntropyLoss()
    for x, y in loader:
        loss = loss_fn(model(x), y)
        if rank == a.straggler_rank:
            time.sleep(a.straggler_ms / 1000.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    dist.barrier()
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
