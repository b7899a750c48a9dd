"""A DDP training script (gloo, CPU, no profiling code) that hangs on purpose, one way or another.

Why: ``stepscope run``'s stall watchdog and the hang analysis must name, on a real hang, the
rank that never entered a collective, the collective, and the line that rank was at. Every
step the ranks average a metric over a process group of their own (``metrics``, all ranks:
a separate group, as real jobs keep for logging or for a model-parallel dimension); at step
``--at`` one rank breaks the pattern:

* ``--fault skip``: rank ``--rank`` skips that step's metric all-reduce (a data-dependent
  branch): the others wait in it forever, and the rank itself waits in the next step's
  gradient all-reduce, which they never reach;
* ``--fault other``: rank ``--rank`` calls a broadcast where the others all-reduce (another
  op at the same place of the group's sequence);
* ``--fault raise``: rank ``--rank`` raises (a bad batch) before that step's metric
  all-reduce: torchrun sees the rank fail and stops the others, and the job ends failed;
* ``--fault none``: no fault: a healthy job with two process groups, which ends.

Run it under ``stepscope run --stall-timeout 3 -- torchrun --nproc-per-node 2 ...``; with a
fault it never ends by itself, the caller stops it once the dumps are written.
"""

from __future__ import annotations

import argparse

import torch
import torch.distributed as dist
from ddp_end import end_ddp  # tests/support, on the script's sys.path
from torch import nn
from torch.nn.parallel import DistributedDataParallel


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--at", type=int, default=6, help="the step at which the fault happens")
    ap.add_argument("--rank", type=int, default=1, help="the rank that breaks the pattern")
    ap.add_argument("--fault", choices=("skip", "other", "raise", "none"), default="skip")
    a = ap.parse_args()

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    metrics = dist.new_group(list(range(world)))
    model = DistributedDataParallel(nn.Linear(16, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    for step in range(a.steps):
        x = torch.randn(8, 16)
        loss = model(x).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        faulty = step == a.at and rank == a.rank
        logged = loss.detach().clone()
        if faulty and a.fault == "raise":
            raise ValueError(f"bad batch at step {step}")  # the rank's own failure
        if faulty and a.fault == "other":
            dist.broadcast(logged, src=0, group=metrics)  # the wrong call, on this rank only
        elif not (faulty and a.fault == "skip"):
            dist.all_reduce(logged, group=metrics)  # the metric every rank logs
    end_ddp()  # no interpreter finalization: the gloo teardown abort (docs/collect.md)


if __name__ == "__main__":
    main()
