"""A DDP training script (gloo, CPU, no profiling code) with per-step slowdowns on chosen ranks.

Why: the cross-rank analysis (``analyzer.analyses.cross_rank``) must name, step by step, the
rank the others waited for and what it did more than them. This script makes the answer
known: on the steps of one parity, rank ``--loader-rank`` waits ``--loader-ms`` more for its
batch (a sleep in the Dataset's fetch: the data loader); on the steps of the other parity,
rank ``--compute-rank`` computes ``--compute-ms`` more between forward and backward (real
matrix products, CPU ops the profiler records). After each step the ranks average the loss
for logging (a second all-reduce per step, as training loops do). Every rank reads its own
batches in order, so the loop's iteration ``i`` fetches item ``i``; under ``stepscope run
--steps 1:1:N`` the profiler's ``ProfilerStep#k`` is iteration ``k - 1`` (the step hook
counts the first optimizer step as step 1).

Run it as torchrun runs any script::

    torchrun --standalone --nproc-per-node 4 tests/support/culprit_train.py --steps 12
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.distributed as dist
from ddp_end import end_ddp  # tests/support, on the script's sys.path
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset

CLASSES = 10


class Batches(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Item ``i`` is the batch of iteration ``i``; slow (``sleep_s``) on the steps listed."""

    def __init__(self, steps: int, batch: int, features: int, slow: set[int], sleep_s: float):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(steps, batch, features, generator=g)
        self.y = torch.randint(0, CLASSES, (steps, batch), generator=g)
        self.slow, self.sleep_s = slow, sleep_s

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if i in self.slow:
            time.sleep(self.sleep_s)
        return self.x[i], self.y[i]


def busy_compute(ms: float) -> None:
    """Matrix products for ``ms`` milliseconds of wall time (recorded as ``aten::mm``)."""
    a = torch.randn(64, 64)
    deadline = time.perf_counter() + ms / 1000.0
    while time.perf_counter() < deadline:
        a = torch.mm(a, a).clamp_(-1, 1)


def parity_steps(parity: str, steps: int) -> set[int]:
    return {i for i in range(steps) if (i % 2 == 0) == (parity == "even")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--features", type=int, default=32)
    ap.add_argument("--loader-rank", type=int, default=2)
    ap.add_argument("--loader-ms", type=float, default=60.0)
    ap.add_argument("--loader-steps", choices=("even", "odd"), default="even")
    ap.add_argument("--compute-rank", type=int, default=3)
    ap.add_argument("--compute-ms", type=float, default=40.0)
    ap.add_argument("--compute-steps", choices=("even", "odd"), default="odd")
    a = ap.parse_args(argv)

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    slow = parity_steps(a.loader_steps, a.steps) if rank == a.loader_rank else set()
    loader = DataLoader(
        Batches(a.steps, a.batch, a.features, slow, a.loader_ms / 1000.0),
        batch_size=None,
        shuffle=False,
        num_workers=0,
    )
    heavy = parity_steps(a.compute_steps, a.steps) if rank == a.compute_rank else set()
    model = DistributedDataParallel(
        nn.Sequential(nn.Linear(a.features, 64), nn.ReLU(), nn.Linear(64, CLASSES))
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = nn.CrossEntropyLoss()
    for i, (x, y) in enumerate(loader):
        loss = loss_fn(model(x), y)
        if i in heavy:
            busy_compute(a.compute_ms)
        opt.zero_grad()
        loss.backward()
        opt.step()
        logged = loss.detach().clone()
        dist.all_reduce(logged)  # the mean loss for the log line
    end_ddp()  # no interpreter finalization: the gloo teardown abort (docs/collect.md)


if __name__ == "__main__":
    main()
