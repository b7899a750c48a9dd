"""Scale benchmark (issue 12): ``stepscope report`` on jobs of 64, 256 and 512 ranks.

    .venv/bin/python bench/bench_scale.py [--ranks 64,256,512] [--old-rev REV --old-ranks 64]
        [--hta-ranks 64,256,512] [--hta-budget-gb 10] [--skip-hta] [--skip-dask]
        [--work /tmp/stepscope-scale]

1. The jobs: copies of one real rank trace (the Kineto fixtures' NCCL rank, ``rank-0.json.gz``
   of ``nccl_2rank_rank0``), each renumbered (``distributedInfo.rank`` / ``world_size`` and
   its file name), written under ``--work`` (``/tmp``, never the repository). The largest job
   is written once; the smaller ones are hard links to its first files.
2. ``stepscope report <job> --cache <fresh> --format json`` in a child process per size:
   wall time, peak RSS of the whole process tree (the parse and analysis workers too,
   sampled from /proc every 20 ms, as ``bench_ingest.run_child`` does) and its CPU time
   (user + system of every process of the tree, sampled from /proc: on a shared machine
   wall time is noisy, CPU seconds per rank are not), then the warm reopen (``stepscope
   ingest`` on the same cache: nothing parsed again).
3. The code before the map (``--old-rev``, e.g. the commit before issue 12), extracted with
   ``git archive`` into ``--work`` and run the same way (``python -P``, so that the extracted
   code, not the checkout the bench runs from, is what the child imports), only at
   ``--old-ranks`` (its memory grows with the rank count, so 64 is the baseline).
4. Holistic Trace Analysis (``.venv-peers``, ``make peers``) on the same folders:
   ``TraceAnalysis`` plus its temporal, kernel-type and overlap analyses
   (``bench/peers/hta_reference.py --analyses``), at ``--hta-ranks``; a size whose memory,
   extrapolated from the largest size HTA ran, would pass ``--hta-budget-gb`` is skipped
   with the reason (the machine is shared).
5. The Dask engine (``--engine dask://``, docs/scale.md) at every ``--ranks`` size unless
   ``--skip-dask``: a fresh ``distributed.LocalCluster`` per size (2 worker processes, one
   thread each, loopback; the cache is a local folder, which the workers share), the same
   cold ``report`` as 2. through it: wall time, the client's tree peak RSS and CPU, and the
   workers' (each worker's own peak RSS and CPU from ``resource.getrusage``, summed over the
   workers; the warm reopen through the cluster is included, it parses nothing).

Prints a table with the ratios the issue sets: peak at the largest size / peak at the
smallest (goal <= 1.5x, and < 2.5 GB), seconds per rank (goal <= 0.2 s), new / old at the
baseline size, Dask / local. ``--json`` writes the figures to a file as well.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bench_ingest as bi  # the child-process runner (wall time, tree RSS)

REPO = Path(__file__).resolve().parents[1]
SOURCE_TRACE = ("kineto", "nccl_2rank_rank0", "rank-0.json.gz")
GOAL_GROWTH = 1.5
GOAL_PEAK_MB = 2.5 * 1024
GOAL_S_PER_RANK = 0.2
DASK_WORKERS = 2
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def source_trace() -> Path:
    from tests.support.fixtures import find_fixtures

    root = find_fixtures()
    path = None if root is None else root.joinpath(*SOURCE_TRACE)
    if path is None or not path.is_file():
        raise SystemExit(
            "bench_scale: the Kineto fixtures are missing: "
            "set STEPSCOPE_FIXTURES or ../shared/fixtures"
        )
    return path


def make_jobs(work: Path, sizes: list[int]) -> dict[int, Path]:
    """One folder per size: hard links to the first files of ``traces/``, which holds the
    renumbered copies (written once, extended when a larger size is asked for)."""
    src = source_trace()
    pool = work / "traces"
    pool.mkdir(parents=True, exist_ok=True)
    stamp = pool / ".params.json"
    # "rank": N with a space, as torch writes it: HTA finds a file's rank with r'"rank":\s+(\d+)'
    params = {"source": str(src), "size": src.stat().st_size, "layout": "rank-spaced"}
    have = json.loads(stamp.read_text()) if stamp.is_file() else {}
    if {k: have.get(k) for k in params} != params:
        shutil.rmtree(pool)
        pool.mkdir()
        have = {**params, "ranks": 0}
    need = max(sizes)
    if have["ranks"] < need:
        doc = orjson.loads(gzip.decompress(src.read_bytes()))
        t0 = time.perf_counter()
        for r in range(have["ranks"], need):
            # world_size is the largest job's: every size's files are the same bytes
            info = {**(doc.get("distributedInfo") or {}), "rank": r, "world_size": need}
            body = orjson.dumps({**doc, "distributedInfo": info}).replace(b'"rank":', b'"rank": ')
            (pool / f"rank-{r}.json.gz").write_bytes(gzip.compress(body, compresslevel=1))
        stamp.write_text(json.dumps({**params, "ranks": need}))
        print(
            f"wrote {need - have['ranks']} rank traces "
            f"({len(body) / 2**20:.0f} MB of JSON each) in "
            f"{time.perf_counter() - t0:.0f} s under {pool}",
            flush=True,
        )
    out = {}
    for n in sizes:
        d = work / f"ranks-{n}"
        if not (
            d.is_dir()
            and sorted(p.name for p in d.iterdir()) == sorted(f"rank-{r}.json.gz" for r in range(n))
            and all(
                (d / f"rank-{r}.json.gz").samefile(pool / f"rank-{r}.json.gz") for r in range(n)
            )
        ):
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir(parents=True)
            for r in range(n):
                os.link(pool / f"rank-{r}.json.gz", d / f"rank-{r}.json.gz")
        out[n] = d
    return out


def old_code(work: Path, rev: str) -> Path:
    """``rev`` of this repository, extracted (``git archive``: no checkout, no index change)."""
    sha = subprocess.run(
        ["git", "rev-parse", "--short", rev], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()
    dest = work / f"code-{sha}"
    if not (dest / "analyzer").is_dir():
        dest.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "archive", "--format=tar", sha], cwd=REPO, capture_output=True, check=True
        ).stdout
        with tempfile.TemporaryFile() as f:
            f.write(archive)
            f.seek(0)
            with tarfile.open(fileobj=f) as tar:
                tar.extractall(dest, filter="data")
    probe = subprocess.run(
        [sys.executable, "-c", "import analyzer; print(analyzer.__file__)"],
        env={**os.environ, "PYTHONPATH": str(dest)},
        capture_output=True,
        text=True,
        cwd=dest,
    )
    if not probe.stdout.strip().startswith(str(dest)):
        raise SystemExit(
            f"bench_scale: the old code at {dest} is not what Python imports "
            f"({probe.stdout.strip()})"
        )
    return dest


def _proc_table() -> dict[int, tuple[int, float]]:
    """pid → (parent pid, CPU seconds so far: user + system), for every process in /proc."""
    out: dict[int, tuple[int, float]] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return out
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        out[int(name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / CLOCK_TICKS)
    return out


def _descendants(
    procs: dict[int, tuple[int, float]], root: int, exclude: frozenset[int]
) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    tree: set[int] = set()
    todo = [p for p in children.get(root, []) if p not in exclude]
    while todo:
        pid = todo.pop()
        tree.add(pid)
        todo.extend(p for p in children.get(pid, []) if p not in exclude)
    return tree


@contextmanager
def tree_cpu(exclude: frozenset[int] = frozenset()) -> Iterator[dict[str, float]]:
    """CPU seconds (user + system) of this process's descendants while the block runs (the
    child a ``bench_ingest.run_child`` starts and everything it starts), sampled from /proc
    every 50 ms: each process counts with the last figure seen (a process that ends loses at
    most its last 50 ms). ``exclude``: processes (with their subtrees) left out, e.g. a
    Dask cluster's, which are counted on their own. Linux only (0 elsewhere)."""
    seen: dict[int, float] = {}
    result = {"cpu_s": 0.0}
    stop = threading.Event()

    def sample() -> None:
        procs = _proc_table()
        for pid in _descendants(procs, os.getpid(), exclude):
            seen[pid] = max(seen.get(pid, 0.0), procs[pid][1])

    def loop() -> None:
        while not stop.wait(0.05):
            sample()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield result
    finally:
        stop.set()
        thread.join()
        result["cpu_s"] = sum(seen.values())


def stepscope(
    job: Path,
    work: Path,
    code: Path | None,
    timeout: float,
    *,
    engine: str | None = None,
    exclude: frozenset[int] = frozenset(),
) -> dict[str, Any]:
    """Cold ``report`` (fresh cache) and warm ``ingest`` (reopen) of ``job`` in child processes;
    with ``engine`` (``dask://HOST:PORT``) the report runs through that cluster."""
    env = {"PYTHONPATH": str(code)} if code is not None else {}
    # -P: the extracted old code must win over the checkout (the child's cwd) on sys.path
    py = [sys.executable, "-P"] if code is not None else [sys.executable]
    cache = Path(tempfile.mkdtemp(prefix="cache-", dir=work))
    out = Path(tempfile.mkdtemp(prefix="out-", dir=work))
    on = ["--engine", engine] if engine else []
    try:
        with tree_cpu(exclude) as cpu:
            cold = bi.run_child(
                [
                    *py,
                    "-m",
                    "stepscope",
                    "report",
                    str(job),
                    "--out",
                    str(out),
                    "--format",
                    "json",
                    "--fail-on",
                    "never",
                    "--cache",
                    str(cache),
                    "-q",
                    *on,
                ],
                timeout=timeout,
                env=env,
            )
        res: dict[str, Any] = {
            "wall_s": cold.wall_s,
            "peak_tree_mb": cold.peak_tree_rss_mb,
            "peak_process_mb": cold.peak_rss_mb,
            "cpu_s": cpu["cpu_s"],
            "error": cold.error,
        }
        if cold.error is None:
            report = orjson.loads((out / "report.json").read_bytes())
            res["report_ranks"] = len(report["metrics"]["ranks"])
            warm = bi.run_child(
                [*py, "-m", "stepscope", "ingest", str(job), "--cache", str(cache), "-q", *on],
                timeout=timeout,
                env=env,
            )
            res["reopen_s"] = warm.wall_s if warm.error is None else None
            res["reopen_error"] = warm.error
        return res
    finally:
        shutil.rmtree(cache, ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)


def _worker_usage() -> dict[str, float]:
    """A Dask worker's own peak RSS and CPU seconds so far (run on each worker)."""
    import resource

    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {"maxrss_mb": ru.ru_maxrss / 1024, "cpu_s": ru.ru_utime + ru.ru_stime}  # Linux: KiB


def dask_missing() -> str | None:
    """None when the Dask column can run here, else why not."""
    try:
        import distributed  # noqa: F401
    except ImportError:
        return "the 'distributed' package is not installed (pip install 'stepscope[dask]')"
    return None


def dask(job: Path, work: Path, timeout: float) -> dict[str, Any]:
    """The same cold ``report`` through ``--engine dask://`` on a fresh LocalCluster: two
    worker processes of one thread on loopback, sharing this machine's disk (the cache).
    The client's figures are its process tree's (as for the local engine); the workers'
    are each worker's own getrusage (peak RSS and CPU of the run), summed over workers."""
    from distributed import Client, LocalCluster

    before = frozenset(_proc_table())
    with warnings.catch_warnings():
        # the scheduler's HTTP endpoint (metrics) says so when :8787 is taken, e.g. by
        # another cluster on this machine, and picks another port: nothing to act on
        warnings.filterwarnings("ignore", message="Port .* is already in use", category=UserWarning)
        cluster = LocalCluster(
            n_workers=DASK_WORKERS,
            processes=True,
            threads_per_worker=1,
            host="127.0.0.1",
            dashboard_address=None,
        )
    with cluster, Client(cluster, set_as_default=False) as client:
        procs = _proc_table()
        started = frozenset(
            _descendants(procs, os.getpid(), frozenset()) - before
        )  # nannies and workers
        start = client.run(_worker_usage)
        res = stepscope(
            job, work, None, timeout, engine=f"dask://{cluster.scheduler_address}", exclude=started
        )
        end = client.run(_worker_usage)
    res["client_peak_mb"] = res.pop("peak_tree_mb")
    res["client_cpu_s"] = res.pop("cpu_s")
    res["workers"] = len(end)
    res["workers_peak_mb"] = sum(u["maxrss_mb"] for u in end.values())
    res["workers_cpu_s"] = sum(
        u["cpu_s"] - start.get(w, {"cpu_s": 0.0})["cpu_s"] for w, u in end.items()
    )
    res["peak_mb"] = res["client_peak_mb"] + res["workers_peak_mb"]
    res["cpu_s"] = res["client_cpu_s"] + res["workers_cpu_s"]
    return res


def hta(job: Path, timeout: float) -> dict[str, Any]:
    with tree_cpu() as cpu:
        run = bi.run_child(
            [str(bi.PEERS_PY), str(bi.HTA_REF), str(job), "--analyses"], timeout=timeout
        )
    doc = run.json() or {}
    return {
        "wall_s": run.wall_s,
        "peak_tree_mb": run.peak_tree_rss_mb,
        "cpu_s": cpu["cpu_s"],
        "parse_s": doc.get("parse_s"),
        "error": run.error,
    }


def hta_env() -> str | None:
    """None when HTA can run, else why not (after trying ``make peers`` once)."""
    if bi.PEERS_PY.exists():
        return None
    print("building the peers env (make peers) ...", flush=True)
    proc = subprocess.run(["make", "peers"], cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0 or not bi.PEERS_PY.exists():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        return f"the peers env could not be built (make peers: {tail[0][:200]})"
    return None


def _ratio(a: float | None, b: float | None) -> float | None:
    """a / b, None when either is unknown or b is 0 (CPU times where /proc is not there)."""
    return a / b if a is not None and b else None


def _fmt(v: float | None, spec: str = ".1f") -> str:
    return "-" if v is None else format(v, spec)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--ranks", default="64,256,512", help="job sizes, comma-separated")
    ap.add_argument(
        "--old-rev", help="git revision of the code before the map, measured at --old-ranks"
    )
    ap.add_argument("--old-ranks", default="64")
    ap.add_argument(
        "--hta-ranks",
        default="64,256,512",
        help="sizes HTA runs at (each skipped when it would pass the budget)",
    )
    ap.add_argument(
        "--hta-budget-gb", type=float, default=10.0, help="skip HTA sizes expected to need more"
    )
    ap.add_argument("--skip-hta", action="store_true")
    ap.add_argument(
        "--skip-dask",
        action="store_true",
        help="no Dask engine column (a LocalCluster at every size)",
    )
    ap.add_argument(
        "--work", default="/tmp/stepscope-scale", help="where the jobs and caches are written"
    )
    ap.add_argument("--timeout", type=float, default=1800.0)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()

    sizes = sorted({int(x) for x in args.ranks.split(",") if x})
    old_sizes = sorted({int(x) for x in args.old_ranks.split(",") if x}) if args.old_rev else []
    hta_sizes = [] if args.skip_hta else sorted({int(x) for x in args.hta_ranks.split(",") if x})
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    jobs = make_jobs(work, sorted(set(sizes) | set(old_sizes) | set(hta_sizes)))
    results: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "trace": str(source_trace()),
        "new": {},
        "old": {},
        "hta": {},
        "dask": {},
    }

    for n in sizes:
        r = stepscope(jobs[n], work, None, args.timeout)
        results["new"][n] = r
        print(
            f"stepscope     {n:4d} ranks: {_fmt(r['wall_s'])} s, {_fmt(r['cpu_s'])} CPU s, peak "
            f"{_fmt(r['peak_tree_mb'], '.0f')} MB (reopen {_fmt(r.get('reopen_s'), '.2f')} s)"
            f"{'  ' + r['error'] if r['error'] else ''}",
            flush=True,
        )
    why_not_dask = "--skip-dask" if args.skip_dask else dask_missing()
    if why_not_dask is not None:
        print(f"Dask skipped: {why_not_dask}", flush=True)
        results["dask_skipped"] = why_not_dask
    for n in sizes if why_not_dask is None else []:
        r = dask(jobs[n], work, args.timeout)
        results["dask"][n] = r
        print(
            f"Dask ({r['workers']} workers) {n:4d} ranks: {_fmt(r['wall_s'])} s, "
            f"{_fmt(r['cpu_s'])} CPU s "
            f"(workers {_fmt(r['workers_cpu_s'])}), peak {_fmt(r['peak_mb'], '.0f')} MB (client "
            f"{_fmt(r['client_peak_mb'], '.0f')} + workers {_fmt(r['workers_peak_mb'], '.0f')})"
            f"{'  ' + r['error'] if r['error'] else ''}",
            flush=True,
        )
    if old_sizes:
        code = old_code(work, args.old_rev)
        for n in old_sizes:
            r = stepscope(jobs[n], work, code, args.timeout)
            results["old"][n] = r
            print(
                f"before (old)  {n:4d} ranks: {_fmt(r['wall_s'])} s, "
                f"{_fmt(r['cpu_s'])} CPU s, peak "
                f"{_fmt(r['peak_tree_mb'], '.0f')} MB"
                f"{'  ' + r['error'] if r['error'] else ''}",
                flush=True,
            )
    if hta_sizes:
        why = hta_env()
        if why is not None:
            print(f"HTA skipped: {why}", flush=True)
            results["hta_skipped"] = why
        per_rank_mb: float | None = None
        for n in hta_sizes:
            if why is not None:
                break
            if per_rank_mb is not None and per_rank_mb * n > args.hta_budget_gb * 1024:
                reason = (
                    f"HTA would need ~{per_rank_mb * n / 1024:.1f} GB at {n} ranks "
                    f"(> --hta-budget-gb {args.hta_budget_gb:g} on this shared machine)"
                )
                print(f"HTA           {n:4d} ranks: skipped: {reason}", flush=True)
                results["hta"][n] = {"skipped": reason}
                continue
            r = hta(jobs[n], args.timeout)
            results["hta"][n] = r
            if r["error"] is None and r["peak_tree_mb"]:
                per_rank_mb = r["peak_tree_mb"] / n
            print(
                f"HTA           {n:4d} ranks: {_fmt(r['wall_s'])} s, "
                f"{_fmt(r['cpu_s'])} CPU s, peak "
                f"{_fmt(r['peak_tree_mb'], '.0f')} MB"
                f"{'  ' + r['error'] if r['error'] else ''}",
                flush=True,
            )

    print()
    print(
        f"{'ranks':>6} {'stepscope s':>12} {'s/rank':>7} {'CPU s':>7} {'CPU/rank':>8} "
        f"{'peak MB':>8} {'reopen s':>9} "
        f"{'old s':>7} {'old MB':>7} {'HTA s':>7} {'HTA MB':>7} {'Dask s':>7} "
        f"{'Dask CPU':>8} {'Dask MB':>8}"
    )
    for n in sorted(set(sizes) | set(old_sizes) | set(hta_sizes)):
        new, old, peer = (
            results["new"].get(n, {}),
            results["old"].get(n, {}),
            results["hta"].get(n, {}),
        )
        dsk = results["dask"].get(n, {})
        per = new["wall_s"] / n if new.get("wall_s") and not new.get("error") else None
        cpu_per = new["cpu_s"] / n if new.get("cpu_s") and not new.get("error") else None
        print(
            f"{n:>6} {_fmt(new.get('wall_s')):>12} {_fmt(per, '.3f'):>7} "
            f"{_fmt(new.get('cpu_s')):>7} "
            f"{_fmt(cpu_per, '.3f'):>8} {_fmt(new.get('peak_tree_mb'), '.0f'):>8} "
            f"{_fmt(new.get('reopen_s'), '.2f'):>9} {_fmt(old.get('wall_s')):>7} "
            f"{_fmt(old.get('peak_tree_mb'), '.0f'):>7} "
            f"{_fmt(peer.get('wall_s')):>7} {_fmt(peer.get('peak_tree_mb'), '.0f'):>7} "
            f"{_fmt(dsk.get('wall_s')):>7} {_fmt(dsk.get('cpu_s')):>8} "
            f"{_fmt(dsk.get('peak_mb'), '.0f'):>8}"
        )
    ok = {n: r for n, r in results["new"].items() if not r.get("error")}
    ratios: dict[str, Any] = {}
    if len(ok) >= 2:
        lo, hi = min(ok), max(ok)
        growth = ok[hi]["peak_tree_mb"] / ok[lo]["peak_tree_mb"]
        ratios["peak_growth"] = {"from": lo, "to": hi, "ratio": growth, "goal": GOAL_GROWTH}
        print(
            f"peak RSS {hi} / {lo} ranks: {growth:.2f}x (goal <= {GOAL_GROWTH}x); at {hi} ranks "
            f"{ok[hi]['peak_tree_mb'] / 1024:.2f} GB (goal < {GOAL_PEAK_MB / 1024:.1f} GB); "
            f"time {hi} / {lo} ranks: {ok[hi]['wall_s'] / ok[lo]['wall_s']:.2f}x "
            f"for {hi / lo:.0f}x the ranks"
        )
    for n, r in ok.items():
        print(
            f"{n} ranks: {r['wall_s'] / n:.3f} s per rank (goal <= {GOAL_S_PER_RANK} s), "
            f"{r['cpu_s'] / n:.3f} CPU s "
            f"per rank, report with {r.get('report_ranks')} ranks"
        )
    for n, old in results["old"].items():
        new = ok.get(n)
        if new and not old.get("error"):
            ratios[f"new_vs_old_{n}"] = {
                "time": new["wall_s"] / old["wall_s"],
                "cpu": _ratio(new["cpu_s"], old["cpu_s"]),
                "peak": new["peak_tree_mb"] / old["peak_tree_mb"],
            }
            print(
                f"{n} ranks, new / old: time {new['wall_s'] / old['wall_s']:.2f}x, "
                f"CPU {_fmt(_ratio(new['cpu_s'], old['cpu_s']), '.2f')}x, "
                f"peak RSS {new['peak_tree_mb'] / old['peak_tree_mb']:.2f}x"
            )
    for n, peer in results["hta"].items():
        new = ok.get(n)
        if new and peer.get("wall_s") and not peer.get("error"):
            ratios[f"new_vs_hta_{n}"] = {
                "time": new["wall_s"] / peer["wall_s"],
                "cpu": _ratio(new["cpu_s"], peer["cpu_s"]),
                "peak": new["peak_tree_mb"] / peer["peak_tree_mb"],
            }
            print(
                f"{n} ranks, stepscope / HTA: time {new['wall_s'] / peer['wall_s']:.2f}x, "
                f"CPU {_fmt(_ratio(new['cpu_s'], peer['cpu_s']), '.2f')}x, "
                f"peak RSS {new['peak_tree_mb'] / peer['peak_tree_mb']:.2f}x"
            )
    for n, dsk in results["dask"].items():
        new = ok.get(n)
        if new and dsk.get("wall_s") and not dsk.get("error"):
            ratios[f"dask_vs_local_{n}"] = {
                "time": dsk["wall_s"] / new["wall_s"],
                "cpu": _ratio(dsk["cpu_s"], new["cpu_s"]),
                "peak": dsk["peak_mb"] / new["peak_tree_mb"],
            }
            print(
                f"{n} ranks, Dask LocalCluster / local engine: "
                f"time {dsk['wall_s'] / new['wall_s']:.2f}x, "
                f"CPU {_fmt(_ratio(dsk['cpu_s'], new['cpu_s']), '.2f')}x, "
                f"peak RSS {dsk['peak_mb'] / new['peak_tree_mb']:.2f}x "
                f"(client {dsk['client_peak_mb']:.0f} MB + {dsk['workers']} workers "
                f"{dsk['workers_peak_mb']:.0f} MB); "
                f"same ranks in the report: {dsk.get('report_ranks') == new.get('report_ranks')}"
            )
    results["ratios"] = ratios
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
