"""Record stepscope's bundled sample job: a real 2-rank PyTorch (gloo, CPU) training run.

Why a recording and not a synthetic file: the sample must be what torch.profiler and a
system monitor really write, so parsers and analyses are checked against real output; the
slowdowns are injected by design so the answer is known:

* input pipeline: the Dataset sleeps ``--loader-ms`` per batch, ``num_workers=0``, so the
  training loop waits for every batch in ``enumerate(DataLoader)#...__next__``;
* straggler: rank ``--straggler-rank`` sleeps ``--straggler-ms`` more per step after
  backward, so the other rank waits that long in the gradient all-reduce.

Output (see samples/README.md), mirroring a SageMaker job's S3 layout:

* ``<out>/tensorboard/algo-1_rank<R>.<time_ns>.pt.trace.json.gz`` - one Kineto trace per
  rank, written through ``rules.profiling.profile_training`` (wait=1, warmup=1, active=N);
* ``<out>/profiler-output/system/incremental/<YYYYMMDDHH>/<minute>.algo-1.json`` - real
  per-core CPU / I/O wait, memory, disk and network rows sampled every 0.5 s by
  stepscope's system sampler (``stepscope.collectors.system``), in SageMaker Debugger's
  record format;
* ``<out>/INJECTED.json`` - the injected truths, plus what the traces measured.

Run with the torch venv (torch is not a dependency of stepscope)::

    .venv-torch/bin/python samples/record_sample_job.py
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import socket
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from stepscope.collectors.system import SystemSampler  # noqa: E402 (after the sys.path insert)

NODE = "algo-1"  # SageMaker's name for the first (here: only) node


# --------------------------------------------------------------------------- training


def _worker(rank: int, cfg: dict[str, Any]) -> None:
    import torch
    import torch.distributed as dist
    from torch import nn
    from torch.utils.data import DataLoader, Dataset

    from rules.profiling import profile_training

    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(cfg["port"])
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=cfg["world_size"])
    torch.manual_seed(0)

    class SlowBatches(Dataset[tuple[torch.Tensor, torch.Tensor]]):
        """Each item is a whole batch and costs ``loader_ms``: a slow input pipeline."""

        def __len__(self) -> int:
            return cfg["steps"]

        def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
            time.sleep(cfg["loader_ms"] / 1000.0)
            g = torch.Generator().manual_seed(rank * 100_000 + i)
            x = torch.randn(cfg["batch"], cfg["features"], generator=g)
            return x, torch.randint(0, cfg["classes"], (cfg["batch"],), generator=g)

    loader = DataLoader(SlowBatches(), batch_size=None, shuffle=False, num_workers=0)
    model = nn.Sequential(
        nn.Linear(cfg["features"], cfg["hidden"]),
        nn.ReLU(),
        nn.Linear(cfg["hidden"], cfg["classes"]),
    )
    for p in model.parameters():  # same start on every rank, as DDP would broadcast
        dist.broadcast(p.data, src=0)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = nn.CrossEntropyLoss()
    params = list(model.parameters())

    with profile_training(
        enabled=True,
        out_dir=cfg["trace_dir"],
        wait=cfg["wait"],
        warmup=cfg["warmup"],
        active=cfg["active"],
        repeat=1,
        profile_memory=True,
        host=NODE,
    ) as prof:
        for x, y in loader:
            with prof.label("forward"):
                loss = loss_fn(model(x), y)
            with prof.label("backward"):
                opt.zero_grad(set_to_none=False)
                loss.backward()
            if rank == cfg["straggler_rank"]:
                time.sleep(cfg["straggler_ms"] / 1000.0)  # unlabelled, as real slowness is
            with prof.label("allreduce"):
                flat = torch.cat([p.grad.reshape(-1) for p in params])
                dist.all_reduce(flat)
                flat /= cfg["world_size"]
                off = 0
                for p in params:
                    n = p.numel()
                    p.grad.copy_(flat[off : off + n].view_as(p))
                    off += n
            with prof.label("optimizer"):
                opt.step()
            prof.step()
    dist.barrier()
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------- measurement


def _measure(trace_dir: Path) -> dict[str, Any]:
    """What the traces show: per rank, mean batch fetch, all-reduce and step times (ms)."""
    out: dict[str, Any] = {}
    for path in sorted(trace_dir.glob("*.pt.trace.json.gz")):
        with gzip.open(path, "rt") as f:
            trace = json.load(f)
        info = trace.get("distributedInfo", {})
        rank = info.get("rank")
        ev = [e for e in trace.get("traceEvents", []) if e.get("ph") == "X"]

        def mean_ms(pred: Any, events: list[dict[str, Any]] = ev) -> float | None:
            d = [e["dur"] / 1000.0 for e in events if pred(e["name"])]
            return round(statistics.mean(d), 3) if d else None

        steps = sorted(e["name"] for e in ev if e["name"].startswith("ProfilerStep#"))
        out[f"rank{rank}"] = {
            "file": path.name,
            "distributedInfo": {k: info.get(k) for k in ("rank", "world_size", "backend")},
            "profiler_steps": steps,
            "mean_step_ms": mean_ms(lambda n: n.startswith("ProfilerStep#")),
            "mean_dataloader_next_ms": mean_ms(
                lambda n: n.startswith("enumerate(DataLoader)#") and n.endswith("__next__")
            ),
            "mean_allreduce_label_ms": mean_ms(lambda n: n == "allreduce"),
            "mean_gloo_all_reduce_ms": mean_ms(lambda n: n == "gloo:all_reduce"),
            "collective_names": sorted(
                {e["name"] for e in ev if "gloo" in e["name"] or "c10d" in e["name"]}
            ),
            "events": len(trace.get("traceEvents", [])),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "sample-job")
    ap.add_argument("--world-size", type=int, default=2)
    ap.add_argument("--steps", type=int, default=60, help="training steps run (all ranks)")
    ap.add_argument("--active", type=int, default=8, help="profiled steps (after wait=1, warmup=1)")
    ap.add_argument("--loader-ms", type=float, default=40.0, help="Dataset sleep per batch")
    ap.add_argument("--straggler-rank", type=int, default=1)
    ap.add_argument("--straggler-ms", type=float, default=30.0, help="extra sleep per step")
    ap.add_argument("--interval", type=float, default=0.5, help="system metrics interval, s")
    a = ap.parse_args(argv)

    import torch
    import torch.multiprocessing as mp

    wait, warmup = 1, 1
    if a.steps < wait + warmup + a.active + 1:
        ap.error("--steps must exceed wait + warmup + active")
    if a.out.exists():
        shutil.rmtree(a.out)
    trace_dir = a.out / "tensorboard"
    cfg: dict[str, Any] = {
        "port": _free_port(),
        "world_size": a.world_size,
        "steps": a.steps,
        "wait": wait,
        "warmup": warmup,
        "active": a.active,
        "loader_ms": a.loader_ms,
        "straggler_rank": a.straggler_rank,
        "straggler_ms": a.straggler_ms,
        "batch": 32,
        "features": 32,
        "hidden": 64,
        "classes": 10,
        "trace_dir": str(trace_dir),
    }
    monitor = SystemSampler(a.out / "profiler-output", a.interval, node=NODE).start()
    time.sleep(1.0)  # an idle baseline before training starts
    t0 = time.time()
    mp.spawn(_worker, args=(cfg,), nprocs=a.world_size, join=True)
    t1 = time.time()
    time.sleep(1.0)
    monitor.stop()

    injected = {
        "description": "Real 2-rank CPU PyTorch job (gloo) with a slow DataLoader and a "
        "straggler rank; recorded by samples/record_sample_job.py",
        "world_size": a.world_size,
        "backend": "gloo",
        "node": NODE,
        "steps": a.steps,
        "profiler_schedule": {"wait": wait, "warmup": warmup, "active": a.active, "repeat": 1},
        "profiled_steps": list(range(wait + warmup, wait + warmup + a.active)),
        "dataloader_sleep_ms_per_batch": a.loader_ms,
        "dataloader_num_workers": 0,
        "straggler_rank": a.straggler_rank,
        "straggler_extra_ms_per_step": a.straggler_ms,
        "straggler_sleep_where": "after backward, before the gradient all-reduce (unlabelled)",
        "labels": ["forward", "backward", "allreduce", "optimizer"],
        "model": f"MLP {cfg['features']}-{cfg['hidden']}-{cfg['classes']}, batch {cfg['batch']}, SGD",
        "system_metrics_interval_s": a.interval,
        "system_metrics_samples": monitor.samples,
        "training_wall_s": round(t1 - t0, 3),
        "training_start_epoch_s": round(t0, 3),
        "torch_version": torch.__version__,
        "measured": _measure(trace_dir),
    }
    (a.out / "INJECTED.json").write_text(json.dumps(injected, indent=2) + "\n")
    print(json.dumps(injected["measured"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
