"""Step time with and without ``stepscope run``: what the zero-code launcher costs the training.

    .venv/bin/python bench/bench_launcher.py [--steps 200] [--repeats 8] [--width 512]

The launcher's promise (issue 11) is that profiling a job never slows it beyond the window it
records. One plain single-process PyTorch CPU training loop (an MLP, ``torch`` threads = 1 so
the figure is not scheduling noise between intra-op threads) runs ``--repeats`` times each way,
alternating so drift of the machine hits both alike; each run's median step, and of those the
best run per mode (noise on a shared machine only adds time):

* **plain**: ``python workload.py``;
* **launcher**: ``stepscope run --steps 1:1:8 --interval-ms 500 -- python workload.py``, i.e.
  the sampler process beside it, the bootstrap's import watcher, the optimizer hook, a Kineto
  trace of 8 steps, then the hook removed.

The loop itself times each optimizer step (after ``step()``), so interpreter start-up and the
launcher's own start are not counted as step time. Two clocks: the training thread's CPU time
per step (``time.thread_time``: what the training itself spends, steady on a shared machine),
the headline figure, and wall time per step (which also shows what the sampler process and the
machine's other load take from it; on a busy 2-core machine it is noise). Steps are split into
those *inside* the traced window (profiler on: expected to cost) and those *after* it (the
rest of the training: the figure that must stay at the plain run's). Medians per run, then the
median over runs. Needs ``.venv-torch`` (``make torch-env``). Results go to
``.bench/launcher.json`` and a summary on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TORCH_PY = REPO / ".venv-torch" / "bin" / "python"

WAIT, WARMUP, ACTIVE = 1, 1, 8

WORKLOAD = """
import json, sys, time
import torch
from torch import nn

steps, width, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
torch.set_num_threads(1)
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                      nn.Linear(width, 10))
opt = torch.optim.SGD(model.parameters(), lr=0.01)
loss_fn = nn.CrossEntropyLoss()
x = torch.randn(64, width)
y = torch.randint(0, 10, (64,))
wall, cpu = [time.perf_counter()], [time.thread_time()]
for _ in range(steps):
    opt.zero_grad()
    loss_fn(model(x), y).backward()
    opt.step()
    wall.append(time.perf_counter())
    cpu.append(time.thread_time())
with open(out, "w") as f:
    json.dump({"wall": [b - a for a, b in zip(wall, wall[1:])],
               "cpu": [b - a for a, b in zip(cpu, cpu[1:])]}, f)
"""


def run_once(mode: str, steps: int, width: int, work: Path, i: int) -> dict[str, list[float]]:
    script = work / "workload.py"
    times_file = work / f"{mode}-{i}.json"
    base = [str(TORCH_PY), str(script), str(steps), str(width), str(times_file)]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    if mode == "launcher":
        out = work / f"prof-{i}"
        cmd = [
            str(TORCH_PY),
            "-m",
            "stepscope.collectors.launcher",
            "--out",
            str(out),
            "--steps",
            f"{WAIT}:{WARMUP}:{ACTIVE}",
            "--interval-ms",
            "500",
            "--",
            *base,
        ]
    else:
        cmd = base
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise SystemExit(
            f"bench_launcher: {mode} run failed ({proc.returncode}): {proc.stderr.strip()[-400:]}"
        )
    if mode == "launcher" and not list((work / f"prof-{i}").glob("*.pt.trace.json*")):
        raise SystemExit(
            f"bench_launcher: the launcher wrote no trace: {proc.stderr.strip()[-400:]}"
        )
    times: dict[str, list[float]] = json.loads(times_file.read_text())
    return times


def split(times: dict[str, list[float]]) -> dict[str, float]:
    """Median step time (ms) in the profiled window and after it, per clock, skipping the
    first steps after the window (allocator and cache warm-up are the same either way)."""
    out: dict[str, float] = {}
    for clock, series in times.items():
        window = series[WAIT : WAIT + WARMUP + ACTIVE + 1]  # +1: the step that writes the trace
        after = series[WAIT + WARMUP + ACTIVE + 1 + 5 :]
        out[f"{clock}_window_ms"] = statistics.median(window) * 1e3
        out[f"{clock}_after_ms"] = statistics.median(after) * 1e3
    return out


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=8)
    ap.add_argument("--width", type=int, default=512)
    a = ap.parse_args()
    if not TORCH_PY.exists():
        print(f"bench_launcher: {TORCH_PY} missing: run `make torch-env` first", file=sys.stderr)
        return 2

    runs: dict[str, list[dict[str, float]]] = {"plain": [], "launcher": []}
    with tempfile.TemporaryDirectory(prefix="stepscope-bench-launcher-") as tmp:
        work = Path(tmp)
        (work / "workload.py").write_text(WORKLOAD)
        t0 = time.perf_counter()
        for i in range(a.repeats):
            for mode in ("plain", "launcher"):
                runs[mode].append(split(run_once(mode, a.steps, a.width, work, i)))
                r = runs[mode][-1]
                print(
                    f"  run {i + 1}/{a.repeats} {mode:<8}: "
                    f"cpu after the window {r['cpu_after_ms']:.3f} ms, "
                    f"in it {r['cpu_window_ms']:.3f} ms; wall after {r['wall_after_ms']:.3f} ms",
                    flush=True,
                )
        wall = time.perf_counter() - t0

    def med(mode: str, key: str) -> float:
        """The least disturbed run of each mode (timeit's rule: on a shared machine noise only
        ever adds time), of each run's median step."""
        return min(r[key] for r in runs[mode])

    result: dict[str, Any] = {
        "steps": a.steps,
        "repeats": a.repeats,
        "width": a.width,
        "window_steps": f"{WAIT}:{WARMUP}:{ACTIVE}",
        "runs": runs,
        "wall_s": round(wall, 1),
        "cpus": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
    for mode in runs:  # the spread between runs of one mode: what a difference must exceed
        per_run = [r["cpu_after_ms"] for r in runs[mode]]
        result[f"{mode}_cpu_after_ms_runs"] = {
            "min": round(min(per_run), 3),
            "median": round(statistics.median(per_run), 3),
            "max": round(max(per_run), 3),
        }
    for clock in ("cpu", "wall"):
        plain = med("plain", f"{clock}_after_ms")
        after = med("launcher", f"{clock}_after_ms")
        window = med("launcher", f"{clock}_window_ms")
        result[clock] = {
            "plain_step_ms": round(plain, 4),
            "launcher_after_window_step_ms": round(after, 4),
            "launcher_window_step_ms": round(window, 4),
            "after_window_overhead_pct": round((after / plain - 1) * 100, 2),
            "window_overhead_pct": round((window / plain - 1) * 100, 2),
        }
    out = REPO / ".bench"
    out.mkdir(exist_ok=True)
    (out / "launcher.json").write_text(json.dumps(result, indent=2))
    print(
        f"\nstep time, best of {a.repeats} runs' medians x {a.steps} steps "
        f"(MLP {a.width} wide, batch 64, 1 thread; "
        f"load average {result['load_avg_1m']} on {os.cpu_count()} cores):"
    )
    for clock, label in (("cpu", "training thread's CPU time"), ("wall", "wall time")):
        r = result[clock]
        print(f"  {label}:")
        print(f"    plain python                         {r['plain_step_ms']:8.3f} ms")
        print(
            "    stepscope run, after the window      "
            f"{r['launcher_after_window_step_ms']:8.3f} ms  "
            f"({r['after_window_overhead_pct']:+.2f} %)"
        )
        print(
            f"    stepscope run, the {WARMUP + ACTIVE + 1} traced steps     "
            f"{r['launcher_window_step_ms']:8.3f} ms  "
            f"({r['window_overhead_pct']:+.2f} %: the profiler's own cost while it records)"
        )
    print("  run-to-run spread of the after-window CPU medians (min / median / max):")
    for mode in runs:
        sp = result[f"{mode}_cpu_after_ms_runs"]
        print(f"    {mode:<8} {sp['min']:.3f} / {sp['median']:.3f} / {sp['max']:.3f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
