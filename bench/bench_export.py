"""Export benchmark: ``stepscope export --perfetto`` on jobs of 64 and 512 ranks.

    .venv/bin/python bench/bench_export.py [--ranks 64,512] [--work /tmp/stepscope-export]
        [--window-step 5 --window-ranks 0-7] [--timeout 1800] [--json FILE]

1. The jobs, as ``bench/bench_scale.py`` makes them: copies of one real rank trace (the
   Kineto fixtures' NCCL rank, ``rank-0.json.gz`` of ``nccl_2rank_rank0``, 27 k events),
   each renumbered, written under ``--work`` (never the repository), the smaller job hard
   links to the larger one's first files. One difference: each rank's clock is moved by a
   known amount (``baseTimeNanoseconds`` + 0-5 ms, seeded), as if every rank were on a host
   of its own, so the export has real offsets to estimate and subtract, and the bench checks
   them against the known shifts.
2. Per size, each a child process (wall time, peak RSS of the whole process tree sampled
   every 20 ms, CPU seconds of the tree; ``bench_ingest.run_child``, ``bench_scale.tree_cpu``):

   * **cold**: ``stepscope export JOB --perfetto OUT.json.gz --cache <fresh>``: ingest, the
     rules (for the findings' markers), the cross-rank analysis and the export;
   * **warm**: the same on the same cache: the ingest and the evaluated report are reused,
     the cross-rank map and the export run again (what re-exporting costs);
   * **window**: warm, ``--steps S --ranks R`` (the dashboard's kind of export).

   For each: the file's size, the events written (the command's last line) and the JSON
   size; for the full export also the largest error of the applied clock offsets against
   the injected shifts (the reference rank's shift taken out).

Prints one line per run; ``--json`` writes the figures to a file as well.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bench_ingest as bi  # the child-process runner (wall time, tree RSS)
import bench_scale as bs  # the source trace, the tree's CPU seconds

MAX_SHIFT_NS = 5_000_000
SEED = 12
_LINE = re.compile(r"(?P<ranks>\d+) ranks?.*?, (?P<events>[\d,]+) events")


def shifts(n: int) -> np.ndarray:
    """Each rank's injected clock shift (ns), the same for every job size."""
    return np.random.default_rng(SEED).integers(0, MAX_SHIFT_NS, size=n)


def make_jobs(work: Path, sizes: list[int]) -> dict[int, Path]:
    """One folder per size, hard links into ``traces/`` (written once for the largest size)."""
    src = bs.source_trace()
    pool = work / "traces"
    pool.mkdir(parents=True, exist_ok=True)
    stamp = pool / ".params.json"
    need = max(sizes)
    params = {"source": str(src), "size": src.stat().st_size, "seed": SEED, "ranks": need}
    have = json.loads(stamp.read_text()) if stamp.is_file() else {}
    if have != params:
        shutil.rmtree(pool)
        pool.mkdir()
        doc = orjson.loads(gzip.decompress(src.read_bytes()))
        base = int(doc.get("baseTimeNanoseconds") or 0)
        t0 = time.perf_counter()
        for r, shift in enumerate(shifts(need)):
            info = {**(doc.get("distributedInfo") or {}), "rank": r, "world_size": need}
            body = orjson.dumps(
                {**doc, "distributedInfo": info, "baseTimeNanoseconds": base + int(shift)}
            )
            (pool / f"rank-{r}.json.gz").write_bytes(gzip.compress(body, compresslevel=1))
        stamp.write_text(json.dumps(params))
        print(f"wrote {need} rank traces in {time.perf_counter() - t0:.0f} s", flush=True)
    out = {}
    for n in sizes:
        d = work / f"ranks-{n}"
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        for r in range(n):
            os.link(pool / f"rank-{r}.json.gz", d / f"rank-{r}.json.gz")
        out[n] = d
    return out


def export(job: Path, out: Path, cache: Path, timeout: float, *extra: str) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "stepscope", "export", str(job), "--perfetto", str(out)]
    with bs.tree_cpu() as cpu:
        run = bi.run_child([*cmd, "--cache", str(cache), "--no-progress", *extra], timeout=timeout)
    res: dict[str, Any] = {
        "wall_s": run.wall_s,
        "cpu_s": cpu["cpu_s"],
        "peak_tree_mb": run.peak_tree_rss_mb,
        "peak_process_mb": run.peak_rss_mb,
        "error": run.error,
    }
    if run.error is None and out.is_file():
        res["file_mb"] = out.stat().st_size / 2**20
        m = _LINE.search(run.stderr_tail.strip().splitlines()[-1])
        res["events"] = int(m.group("events").replace(",", "")) if m else None
    return res


def check_offsets(out: Path, n: int) -> tuple[float, int]:
    """Largest |applied offset - injected shift| (ms, reference rank's shift taken out) and the
    JSON size (MB), reading the file once as a stream."""
    size = 0
    head = b""
    with gzip.open(out, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 24), b""):
            if len(head) < 1 << 20:
                head += chunk[: 1 << 20]
            size += len(chunk)
    meta = orjson.loads(head.split(b',"traceEvents":[', 1)[0] + b"}")
    applied = {int(k): v for k, v in meta["otherData"]["clock"]["applied_offsets_ns"].items()}
    injected = shifts(n)
    ref = min(applied)
    err = max(abs(applied[r] - (int(injected[r]) - int(injected[ref]))) for r in applied)
    return err / 1e6, size


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--ranks", default="64,512", help="job sizes, comma-separated")
    ap.add_argument("--work", default="/tmp/stepscope-export", help="where jobs and files go")
    ap.add_argument("--window-step", default="5", help="--steps of the window run")
    ap.add_argument("--window-ranks", default="0-7", help="--ranks of the window run")
    ap.add_argument("--timeout", type=float, default=1800.0)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()

    sizes = sorted({int(x) for x in args.ranks.split(",") if x})
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    jobs = make_jobs(work, sizes)
    results: dict[str, Any] = {"cpus": os.cpu_count(), "trace": str(bs.source_trace())}
    for n in sizes:
        cache = Path(tempfile.mkdtemp(prefix="cache-", dir=work))
        out = work / f"ranks-{n}.json.gz"
        part = work / f"ranks-{n}-window.json.gz"
        try:
            runs = {
                "cold": export(jobs[n], out, cache, args.timeout),
                "warm": export(jobs[n], out, cache, args.timeout),
                "window": export(
                    jobs[n],
                    part,
                    cache,
                    args.timeout,
                    "--steps",
                    args.window_step,
                    "--ranks",
                    args.window_ranks,
                ),
            }
            if runs["warm"]["error"] is None:
                err_ms, json_bytes = check_offsets(out, n)
                runs["warm"]["offset_error_ms"] = err_ms
                runs["warm"]["json_mb"] = json_bytes / 2**20
        finally:
            shutil.rmtree(cache, ignore_errors=True)
        results[str(n)] = runs
        for name, r in runs.items():
            extra = ""
            if "offset_error_ms" in r:
                extra = (
                    f", JSON {r['json_mb']:.0f} MB, offsets within {r['offset_error_ms']:.3f} ms"
                )
            print(
                f"{n:4d} ranks {name:6s}: {bs._fmt(r['wall_s'])} s, {bs._fmt(r['cpu_s'])} CPU s, "
                f"peak {bs._fmt(r['peak_tree_mb'], '.0f')} MB (main process "
                f"{bs._fmt(r['peak_process_mb'], '.0f')} MB), file "
                f"{bs._fmt(r.get('file_mb'))} MB, {r.get('events') or 0:,} events{extra}"
                f"{'  ' + r['error'] if r['error'] else ''}",
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
