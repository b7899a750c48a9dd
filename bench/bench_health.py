"""Training-health hooks' overhead: step time with the hooks off, every 50 steps, every step.

    .venv-torch/bin/python bench/bench_health.py [--rounds 3] [--steps 100] [--pairs 150] \\
        [--width 1024] [--layers 4] [--batch 64] [--threads 1] [--device cpu]

Goal (issue 13): under 3 % of step time at ``--health-every 50``.

The model is a small but real one: an MLP of ``--layers`` Linear+ReLU layers ``--width``
wide (4 x 1024: 4.2 M parameters), batch ``--batch``, SGD with momentum, MSE loss. The
hooks are the ones ``stepscope run --health`` installs (``HealthRecorder.hook`` on the
real ``torch.optim.optimizer``), writing their records to a temporary folder.

Two measurements, because the machine is shared and its speed drifts by several percent
from one second to the next (more than the effect):

1. **Interleaved steps** (the figure): ``--pairs`` times, one step each with the hooks
   off, installed but not sampling, and sampling, in a shuffled order; the hooks are
   installed and removed between the timed steps. What a step that is not sampled pays
   (two optimizer hooks that return at once, the ``backward`` wrapper's flag check) is a
   few microseconds, far below a step's noise, so it is timed directly as well. Overhead
   at N is ``(sampled - off) / N + hook calls * (N - 1) / N`` over the hooks-off mean.
2. **Runs** (a cross-check): ``--rounds`` of ``--steps`` steps in each setting back to
   back (off, ``--health-every 50``, every step), each round's ratio to its own hooks-off
   run, the median over rounds. Honest, but at N = 50 its noise is about as large as
   the effect.

On the CPU with one torch thread the clock is the thread's CPU time (what other processes
take of the core does not count); elsewhere wall time, after a device sync per step.
Results go to ``.bench/health.json`` and a summary on stdout.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.optim import optimizer as optimizer_module  # noqa: E402

from stepscope.collectors.health import HealthRecorder  # noqa: E402

GOAL_PCT = 3.0
SETTINGS: tuple[int | None, ...] = (None, 50, 1)  # hooks off, --health-every 50, every step


def build(width: int, layers: int, device: str) -> tuple[nn.Module, torch.optim.Optimizer]:
    mods: list[nn.Module] = []
    for _ in range(layers):
        mods += [nn.Linear(width, width), nn.ReLU()]
    net = nn.Sequential(*mods).to(device)
    return net, torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


#: the clock: on the CPU with one torch thread all the work is this thread's, and its CPU
#: time does not count the time other processes of a shared machine take the core away
clock = time.perf_counter


def run_steps(
    net: nn.Module,
    opt: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    steps: int,
    device: str,
) -> list[float]:
    """Seconds per step, each measured from one optimizer step's end to the next's."""
    times = []
    _sync(device)
    last = clock()
    for _ in range(steps):
        loss = nn.functional.mse_loss(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        _sync(device)
        now = clock()
        times.append(now - last)
        last = now
    return times


def measure(
    every: int | None,
    out: Path,
    net: nn.Module,
    opt: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    steps: int,
    device: str,
) -> dict[str, Any]:
    rec = None
    if every is not None:
        rec = HealthRecorder(out / f"every{every}", every, "bench")
        rec.hook(optimizer_module)
    try:
        times = run_steps(net, opt, x, y, steps, device)
    finally:
        if rec is not None:
            rec.close()
    if rec is not None and rec.warned:
        raise SystemExit("bench_health: the hooks failed (see the line above)")
    return {"times": times}


def interleaved(
    pairs: int,
    out: Path,
    net: nn.Module,
    opt: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    device: str,
) -> dict[str, list[float]]:
    """One step at a time in each state (see the module's docstring, 1.)."""
    rng = random.Random(1)
    times: dict[str, list[float]] = {"off": [], "unsampled": [], "sampled": []}
    for _ in range(pairs):
        states = list(times)
        rng.shuffle(states)
        for state in states:
            rec = None
            if state != "off":
                rec = HealthRecorder(out / "interleaved", 1 << 30, "bench")
                rec.hook(optimizer_module)  # armed: the next step is step 1, a sampled one
                if state == "unsampled":
                    rec._disarm_forward()
                    rec.armed = False
                    rec.steps_done = 1
            try:
                (t,) = run_steps(net, opt, x, y, 1, device)
            finally:
                if rec is not None:
                    rec.close()
            if rec is not None and rec.warned:
                raise SystemExit("bench_health: the hooks failed (see the line above)")
            times[state].append(t)
    return times


def hook_calls(out: Path, opt: torch.optim.Optimizer, reps: int = 4000) -> float:
    """Seconds the hooks add to a step that is not sampled, timed directly (a step's own
    noise is far larger): the two optimizer hooks as PyTorch calls them, plus the
    ``backward`` wrapper against PyTorch's own ``backward`` on a one-element graph."""
    rec = HealthRecorder(out / "calls", 1 << 30, "bench")
    rec.hook(optimizer_module)
    rec._disarm_forward()
    rec.armed = False
    rec.steps_done = 1
    try:
        t0 = time.perf_counter()
        for _ in range(reps):
            rec.on_pre_step(opt, (), {})
            rec.on_post_step(opt, (), {})
        hooks = (time.perf_counter() - t0) / reps
        w = torch.ones(1, requires_grad=True)
        wrapped, plain = torch.autograd.backward, rec.original_backward
        diffs = []
        for _ in range(40):
            block = {}
            for name, fn in (("wrapped", wrapped), ("plain", plain)):
                t0 = time.perf_counter()
                for _ in range(reps // 40):
                    fn((w * 2.0).sum())
                block[name] = (time.perf_counter() - t0) / (reps // 40)
            diffs.append(block["wrapped"] - block["plain"])
    finally:
        rec.close()
    return hooks + max(statistics.median(diffs), 0.0)


def main(argv: list[str] | None = None) -> int:
    global clock
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=100, help="steps per setting and round (>= 50)")
    ap.add_argument("--pairs", type=int, default=150, help="interleaved steps per state")
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument(
        "--threads", type=int, default=1, help="torch intra-op threads (0: torch's default)"
    )
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", type=Path, default=REPO / ".bench" / "health.json")
    args = ap.parse_args(argv)
    if args.steps < 50 or args.rounds < 0 or args.pairs < 1:
        ap.error("--steps must be >= 50, --rounds >= 0 and --pairs >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cpu" and torch.get_num_threads() == 1:
        clock = time.thread_time
    torch.manual_seed(0)
    net, opt = build(args.width, args.layers, args.device)
    x = torch.randn(args.batch, args.width, device=args.device)
    y = torch.randn(args.batch, args.width, device=args.device)
    n_params = sum(p.numel() for p in net.parameters())
    print(
        f"model: {args.layers} x Linear({args.width}, {args.width}) + ReLU, "
        f"{n_params / 1e6:.1f} M parameters, "
        f"batch {args.batch}, {args.device}, {torch.get_num_threads()} thread(s), "
        f"torch {torch.__version__}; "
        f"clock: {'thread CPU time' if clock is time.thread_time else 'wall'}",
        flush=True,
    )
    run_steps(net, opt, x, y, 20, args.device)  # warm-up: allocator, momentum buffers, caches

    with tempfile.TemporaryDirectory() as tmp:
        steps = interleaved(args.pairs, Path(tmp), net, opt, x, y, args.device)
        lines = 0
        for f in (Path(tmp) / "interleaved" / "health").glob("*.health.jsonl"):
            lines += len(f.read_text().splitlines())
        mean = {k: statistics.fmean(v) for k, v in steps.items()}
        sampled = mean["sampled"] - mean["off"]
        unsampled_steps = mean["unsampled"] - mean["off"]  # within the noise: a cross-check
        unsampled = hook_calls(Path(tmp), opt)

        def at(n: int) -> float:
            return (sampled / n + unsampled * (n - 1) / n) / mean["off"] * 100.0

        print(
            f"interleaved, {args.pairs} steps per state: off {mean['off'] * 1e3:.2f} ms, "
            f"not sampled {unsampled_steps * 1e6:+.0f} us, sampled {sampled * 1e3:+.2f} ms; "
            f"hook calls of a step not sampled: {unsampled * 1e6:.1f} us",
            flush=True,
        )

        rng = random.Random(0)
        ratios: dict[int, list[float]] = {50: [], 1: []}
        for r in range(args.rounds):
            order = list(SETTINGS)
            rng.shuffle(order)
            got = {
                every: measure(every, Path(tmp) / str(r), net, opt, x, y, args.steps, args.device)
                for every in order
            }
            off = statistics.fmean(got[None]["times"])
            for every in (50, 1):
                ratios[every].append((statistics.fmean(got[every]["times"]) - off) / off * 100.0)
            print(
                f"round {r + 1}: off {off * 1e3:.2f} ms/step, every 50 {ratios[50][-1]:+.2f} %, "
                f"every step {ratios[1][-1]:+.2f} %",
                flush=True,
            )

    result = {
        "model": {
            "layers": args.layers,
            "width": args.width,
            "batch": args.batch,
            "params": n_params,
            "device": args.device,
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
        },
        "clock": "thread_time" if clock is time.thread_time else "perf_counter",
        "step_ms_off": mean["off"] * 1e3,
        "sampled_step_extra_ms": sampled * 1e3,
        "unsampled_step_extra_us": unsampled * 1e6,
        "unsampled_step_extra_us_interleaved": unsampled_steps * 1e6,
        "records_per_sampled_step": lines // args.pairs,
        "overhead_pct": {"every50": at(50), "every10": at(10), "every1": at(1)},
        "runs": {
            "rounds": args.rounds,
            "steps": args.steps,
            "overhead_pct_every50": statistics.median(ratios[50]) if ratios[50] else None,
            "overhead_pct_every1": statistics.median(ratios[1]) if ratios[1] else None,
        },
        "goal_pct": GOAL_PCT,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print()
    print(f"step time, hooks off:        {mean['off'] * 1e3:.2f} ms")
    print(
        f"a sampled step costs:        {sampled * 1e3:+.2f} ms "
        f"({sampled / mean['off'] * 100:.0f} % of a step, "
        f"{result['records_per_sampled_step']} records)"
    )
    print(
        f"a step not sampled costs:    {unsampled * 1e6:.1f} us "
        "(its hook calls; interleaved steps: "
        f"{unsampled_steps * 1e6:+.0f} us, within the noise)"
    )
    print(
        f"overhead, --health-every 50: {at(50):.2f} %  (goal < {GOAL_PCT:.0f} %)"
        + (f"; runs: {result['runs']['overhead_pct_every50']:+.2f} %" if ratios[50] else "")
    )
    print(f"overhead, --health-every 10: {at(10):.2f} %")
    print(
        f"overhead, every step:        {at(1):.2f} %"
        + (f"; runs: {result['runs']['overhead_pct_every1']:+.2f} %" if ratios[1] else "")
    )
    print(f"written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
