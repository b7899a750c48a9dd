"""Record stepscope's bundled sample job and its baseline: real 2-rank PyTorch DDP runs (gloo, CPU).

Why a recording and not a synthetic file: the sample must be what torch.profiler and a system
monitor really write, collected the way a user collects it, so parsers, analyses and
``stepscope run`` are checked against real output. The training script,
``samples/train_sample.py``, has no profiling code: it runs under

    stepscope run --out <out> --steps 1:1:8 -- \\
        python -m torch.distributed.run --standalone --nproc-per-node 2 samples/train_sample.py ...

with ``SM_CURRENT_HOST=algo-1``, so node names are SageMaker's. The sample has two slowdowns
injected by design, so the answer is known:

* input pipeline: every batch's fetch sleeps ``--loader-ms`` (``num_workers=0``), so each rank
  waits that long in ``enumerate(DataLoader)#...__next__``;
* straggler: rank ``--straggler-rank`` sleeps ``--straggler-ms`` more per step between forward
  and backward, so the other rank waits that long in DDP's gradient all-reduce.

``--baseline`` records the same job with nothing injected (both sleeps 0) into
``samples/sample-baseline/``: the run ``stepscope report --baseline`` and the dashboard's
Compare page set the sample against.

Output: ``<out>/`` holds exactly what ``stepscope run`` writes (see docs/collect.md), so
``stepscope ingest`` reads every file in it; beside it, ``<out>.INJECTED.json`` holds what was
injected (nothing, for the baseline), how it was recorded, and what the raw traces measured.

Run with the torch venv (torch is not a dependency of stepscope), on an otherwise idle machine::

    .venv-torch/bin/python samples/record_sample_job.py              # samples/sample-job/
    .venv-torch/bin/python samples/record_sample_job.py --baseline   # samples/sample-baseline/
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
TRAIN = HERE / "train_sample.py"
NODE = "algo-1"  # SageMaker's name for the first (here: only) node
#: launcher variables a recorder run under ``stepscope run`` would pass on to its own child
LAUNCHER_ENV = ("STEPSCOPE_RUN_DIR", "STEPSCOPE_RUN_STEPS", "STEPSCOPE_RUN_NODE")


def truth_file(out: Path) -> Path:
    """``samples/sample-job`` -> ``samples/sample-job.INJECTED.json``: beside the job, not in
    it, so the job folder is only what the launcher wrote."""
    return out.with_name(out.name + ".INJECTED.json")


def _rel(path: Path) -> str:
    try:
        return path.resolve().relative_to(REPO).as_posix()
    except ValueError:
        return str(path)


# --------------------------------------------------------------------------- measurement


def _mean_ms(events: list[dict[str, Any]], pred: Any) -> float | None:
    d = [e["dur"] / 1000.0 for e in events if pred(e["name"])]
    return round(statistics.mean(d), 3) if d else None


def measure(out: Path) -> dict[str, Any]:
    """What the raw files show, read without stepscope: per rank the profiled steps and mean
    step, batch-fetch and all-reduce times (ms); the system-metrics samples; the bytes."""
    ranks: dict[str, Any] = {}
    for path in sorted(out.glob("*.pt.trace.json.gz")):
        with gzip.open(path, "rt") as f:
            trace = json.load(f)
        info = trace.get("distributedInfo", {})
        ev = [e for e in trace.get("traceEvents", []) if e.get("ph") == "X"]
        steps = sorted(
            (e["name"] for e in ev if e["name"].startswith("ProfilerStep#")),
            key=lambda n: int(n.split("#")[1]),
        )
        ranks[f"rank{info.get('rank')}"] = {
            "file": path.name,
            "distributedInfo": {k: info.get(k) for k in ("rank", "world_size", "backend")},
            "profiler_steps": steps,
            "mean_step_ms": _mean_ms(ev, lambda n: n.startswith("ProfilerStep#")),
            "mean_dataloader_next_ms": _mean_ms(
                ev, lambda n: n.startswith("enumerate(DataLoader)#") and n.endswith("__next__")
            ),
            "mean_gloo_all_reduce_ms": _mean_ms(ev, lambda n: n == "gloo:all_reduce"),
            "collective_names": sorted(
                {e["name"] for e in ev if "gloo" in e["name"] or "c10d" in e["name"]}
            ),
            "events": len(trace.get("traceEvents", [])),
        }
    files = sorted(out.glob("system/incremental/*/*.json"))
    records = [
        json.loads(line) for f in files for line in f.read_text().splitlines() if line.strip()
    ]
    stamps = [r["Timestamp"] for r in records]
    return {
        **ranks,
        "system_metrics": {
            "files": [_rel(f) for f in files],
            "samples": sum(1 for r in records if r["Name"] == "MemoryUsedPercent"),
            "nodes": sorted({r["NodeId"] for r in records}),
            "first_epoch_s": min(stamps) if stamps else None,
            "last_epoch_s": max(stamps) if stamps else None,
        },
        "bytes": sum(f.stat().st_size for f in out.rglob("*") if f.is_file()),
    }


def verdict(out: Path) -> list[tuple[str, Any]]:
    """(rule, rank) of every finding ``stepscope report`` makes on the recording, through the
    CLI a user runs, so the recorder can say at once whether the recording shows what it should."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "stepscope",
                "report",
                str(out),
                "--out",
                tmp,
                "--format",
                "json",
                "--fail-on",
                "never",
                "--cache",
                tmp,
                "-q",
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"stepscope report exited {proc.returncode}: {proc.stderr.strip()}")
        report = json.loads((Path(tmp) / "report.json").read_text())
    return sorted((f["rule"], f["evidence"].get("rank")) for f in report["findings"])


# --------------------------------------------------------------------------- recording


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--baseline",
        action="store_true",
        help="the same job with nothing injected (default --out samples/sample-baseline)",
    )
    ap.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder, replaced (default samples/sample-job, or samples/sample-baseline)",
    )
    ap.add_argument("--world-size", type=int, default=2)
    ap.add_argument("--steps", type=int, default=30, help="training steps run (every rank)")
    ap.add_argument("--window", default="1:1:8", help="stepscope run --steps WAIT:WARMUP:ACTIVE")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--features", type=int, default=128)
    ap.add_argument("--hidden", type=int, default=4096)
    ap.add_argument("--loader-ms", type=float, default=50.0, help="data-loading sleep per batch")
    ap.add_argument("--straggler-rank", type=int, default=1)
    ap.add_argument(
        "--straggler-ms", type=float, default=40.0, help="extra sleep per step on that rank"
    )
    ap.add_argument("--interval-ms", type=int, default=500, help="system metrics interval")
    a = ap.parse_args(argv)

    if a.baseline:
        a.loader_ms = a.straggler_ms = 0.0
    out = (a.out or HERE / ("sample-baseline" if a.baseline else "sample-job")).resolve()
    wait, warmup, active = (int(x) for x in a.window.split(":"))
    if a.steps <= wait + warmup + active:
        ap.error("--steps must exceed the window's WAIT + WARMUP + ACTIVE")
    try:
        import torch
    except ImportError:
        ap.error(
            "torch is not installed here: run with .venv-torch/bin/python (see samples/README.md)"
        )

    train_args = [
        "--steps",
        str(a.steps),
        "--batch",
        str(a.batch),
        "--features",
        str(a.features),
        "--hidden",
        str(a.hidden),
        "--loader-ms",
        f"{a.loader_ms:g}",
        "--straggler-rank",
        str(a.straggler_rank),
        "--straggler-ms",
        f"{a.straggler_ms:g}",
    ]
    training = [
        "python",
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        str(a.world_size),
        _rel(TRAIN),
        *train_args,
    ]
    launch = [
        "stepscope",
        "run",
        "--out",
        _rel(out),
        "--steps",
        a.window,
        "--interval-ms",
        str(a.interval_ms),
        "--",
        *training,
    ]
    # the same command with this interpreter, so the torch venv's stepscope and torch run it
    argv_run = [
        sys.executable,
        "-m",
        "stepscope",
        *launch[1 : launch.index("--") + 1],
        sys.executable,
        *training[1:],
    ]
    argv_run[argv_run.index("--out") + 1] = str(out)
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_ENV}
    env["SM_CURRENT_HOST"] = NODE

    if out.exists():
        shutil.rmtree(out)
    started = time.time()
    proc = subprocess.run(argv_run, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    wall = time.time() - started
    ours = [line for line in proc.stderr.splitlines() if line.startswith("stepscope: ")]
    notes = [line for line in proc.stderr.splitlines() if line.startswith("stepscope sampler: ")]
    traces = sorted(out.glob("*.pt.trace.json.gz"))
    has_metrics = any(out.glob("system/incremental/*/*.json"))
    if proc.returncode != 0 or ours or len(traces) != a.world_size or not has_metrics:
        sys.stderr.write(proc.stderr[-6000:])
        print(
            f"recording failed: exit {proc.returncode}, {len(traces)} trace(s), system metrics: "
            f"{has_metrics} (the sampler needs psutil), collector lines: {ours}",
            file=sys.stderr,
        )
        return 1

    injected: dict[str, Any] = (
        {}
        if a.baseline
        else {
            "dataloader_sleep_ms_per_batch": a.loader_ms,
            "dataloader_num_workers": 0,
            "straggler_rank": a.straggler_rank,
            "straggler_extra_ms_per_step": a.straggler_ms,
            "straggler_sleep_where": (
                "between forward and backward (unlabelled), so the others wait in DDP's all-reduce"
            ),
        }
    )
    doc = {
        "description": (
            "Real 2-rank CPU PyTorch DDP job (gloo), recorded under `stepscope run` by "
            "samples/record_sample_job.py; "
            + (
                "the baseline: the same job as sample-job with nothing injected"
                if a.baseline
                else "a slow DataLoader and a straggler rank injected"
            )
        ),
        "job": _rel(out),
        "injected": injected,
        "command": f"SM_CURRENT_HOST={NODE} " + " ".join(launch),
        "world_size": a.world_size,
        "backend": "gloo",
        "node": NODE,
        "steps": a.steps,
        "window": {"wait": wait, "warmup": warmup, "active": active},
        "profiled_steps": list(range(wait + warmup, wait + warmup + active)),
        "model": (
            f"DDP MLP {a.features}-{a.hidden}-10, batch {a.batch} per rank, SGD, 1 thread per rank"
        ),
        "system_metrics_interval_ms": a.interval_ms,
        "recording": {
            "started_epoch_s": round(started, 3),
            "wall_s": round(wall, 3),
            "torch_version": torch.__version__,
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "sampler_notes": notes,  # e.g. no NVML on a CPU host
        },
        "measured": measure(out),
    }
    truth_file(out).write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(doc["measured"], indent=2))
    print(f"wrote {_rel(out)}/ and {_rel(truth_file(out))} ({wall:.1f} s)")

    expected = (
        []
        if a.baseline
        else sorted(
            [
                *(("DataLoaderStall", r) for r in range(a.world_size)),
                ("StragglerRank", a.straggler_rank),
            ]
        )
    )
    found = verdict(out)
    if found != expected:
        # ranks share this machine's cores: scheduling noise can make one rank's own work
        # look slower than the other's by more than StragglerRank's 15 %, above all in the
        # baseline, where nothing sleeps and both ranks compute at once
        print(
            f"stepscope report finds {found}, expected {expected}: re-record (on an idle machine)",
            file=sys.stderr,
        )
        return 3
    print(f"stepscope report finds {found or 'nothing'}, as expected")
    return 0


if __name__ == "__main__":
    sys.exit(main())
