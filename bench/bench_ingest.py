"""Ingest benchmark: stepscope against its peers (smdebug 1.0.34, HTA/traceinsight 0.6.1).

    .venv/bin/python bench/bench_ingest.py [--nodes 8 --minutes 60 --interval 0.5 \\
        --gpus 8 --cpus 96] [--quick]

1. Generates SageMaker system metrics (``tests.support.synthetic``) under ``.bench/``
   (reused while the parameters are unchanged; ``--regen`` forces a rewrite).
2. smdebug: ``PandasFrame(root).get_all_system_metrics()`` (which drives
   ``LocalSystemMetricsReader.get_events``) in the peers env, as a child process.
3. stepscope cold: ``stepscope ingest <dir> --cache <fresh> --json`` as a child process.
4. stepscope warm: the same command again on that cache (the dataset is reopened).
5. Each ``kineto/*`` fixture folder: HTA's ``TraceAnalysis(trace_dir=...)`` in a fresh child
   process vs ``stepscope ingest <folder> --json --cache <fresh>``; plus parse-only times
   (HTA's own ``parse_s`` vs stepscope's ``analyzer.ingest.ingest`` called in this process).

Every child is started by a tiny launcher that forks + execs it and reports its wall time
and ``wait4`` peak RSS (the largest process of its tree, as ``/usr/bin/time -v`` reports
it); the summed RSS of the whole tree is also sampled from /proc every 20 ms (HTA forks a
pool per rank; forked pages are counted once per process there). Targets: stepscope >= 15x
faster and <= 1/4 the peak memory of smdebug, >= 3x faster than HTA, warm reopen >= 20x
faster than cold. Results go to ``.bench/results.json`` and a table on stdout.

The peers env comes from ``bench/setup_peers.sh``; missing pieces (peers env, the stepscope
CLI, fixtures) are reported and their rows marked n/a, never a crash.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BENCH_DIR = REPO / ".bench"
PEERS_PY = Path(os.environ.get("STEPSCOPE_PEERS_VENV", REPO / ".venv-peers")) / "bin" / "python"
SMDEBUG_REF = REPO / "bench" / "peers" / "smdebug_reference.py"
HTA_REF = REPO / "bench" / "peers" / "hta_reference.py"

TARGET_SMDEBUG_SPEEDUP = 15.0
TARGET_SMDEBUG_MEM = 0.25
TARGET_HTA_SPEEDUP = 3.0
TARGET_WARM_SPEEDUP = 20.0

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


# ----------------------------------------------------------------------------- children


@dataclass
class Run:
    """One child process: what it cost and what it printed."""

    cmd: list[str]
    wall_s: float = 0.0
    peak_rss_mb: float = 0.0  # wait4 ru_maxrss: the largest single process of the tree
    peak_tree_rss_mb: float = 0.0  # sampled sum over the live tree
    user_s: float = 0.0
    sys_s: float = 0.0
    rc: int | None = None
    stdout: str = field(default="", repr=False)
    stderr_tail: str = ""
    error: str | None = None

    def json(self) -> Any:
        try:
            return json.loads(self.stdout)
        except ValueError:
            return None

    def brief(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("stdout")
        return d


def _page_kib() -> int:
    return os.sysconf("SC_PAGE_SIZE") // 1024


def _tree_rss_kib(root: int, include_root: bool = True) -> int:
    """Summed RSS of ``root`` and its descendants, from /proc (Linux only; 0 elsewhere)."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return 0
    for name in entries:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
            with open(f"/proc/{name}/statm", "rb") as f:
                pages = int(f.read().split()[1])
        except (OSError, ValueError, IndexError):
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        parents[int(name)] = int(fields[1])
        rss[int(name)] = pages
    tree = {root}
    changed = True
    while changed:
        changed = False
        for pid, ppid in parents.items():
            if ppid in tree and pid not in tree:
                tree.add(pid)
                changed = True
    if not include_root:
        tree.discard(root)
    return sum(rss.get(p, 0) for p in tree) * _page_kib()


# A child spawned straight from this (large) process would inherit its RSS as the starting
# ru_maxrss (Linux carries the old mm's high-water mark across exec, and subprocess uses
# vfork). So each measured command is started by this tiny launcher (python -I -S, a few
# MB), which forks + execs it and reports wait4's rusage and the wall time of that child.
_LAUNCHER = r"""
import json, os, sys, time
out, cmd = sys.argv[1], sys.argv[2:]
t0 = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(cmd[0], cmd)
    finally:
        os._exit(127)
_, status, ru = os.wait4(pid, 0)
wall = time.perf_counter() - t0
with open(out, "w") as f:
    json.dump({"wall_s": wall, "maxrss_kib": ru.ru_maxrss, "user_s": ru.ru_utime,
               "sys_s": ru.ru_stime}, f)
code = os.waitstatus_to_exitcode(status)
sys.exit(128 - code if code < 0 else code)
"""


def run_child(cmd: list[str], *, timeout: float, env: dict[str, str] | None = None) -> Run:
    run = Run(cmd=[str(c) for c in cmd])
    peak_tree = 0
    fd, stats_path = tempfile.mkstemp(prefix="bench-rusage-", suffix=".json")
    os.close(fd)
    started = time.perf_counter()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _LAUNCHER, stats_path, *run.cmd],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, **(env or {})},
            cwd=REPO,
            start_new_session=True,  # so a timeout can kill the whole tree
        )
    except OSError as e:
        run.error = f"cannot start: {e}"
        os.unlink(stats_path)
        return run
    out_chunks: list[bytes] = []
    err_chunks: list[bytes] = []

    def pump(stream: Any, sink: list[bytes]) -> None:
        for chunk in iter(lambda: stream.read(65536), b""):
            sink.append(chunk)

    pumps = [
        threading.Thread(target=pump, args=(proc.stdout, out_chunks), daemon=True),
        threading.Thread(target=pump, args=(proc.stderr, err_chunks), daemon=True),
    ]
    for t in pumps:
        t.start()
    deadline = started + timeout
    while proc.poll() is None:
        # the launcher itself is left out of the tree sum
        peak_tree = max(peak_tree, _tree_rss_kib(proc.pid, include_root=False))
        if time.perf_counter() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            run.error = f"timed out after {timeout:.0f} s"
            break
        time.sleep(0.02)
    outer_wall = time.perf_counter() - started
    for t in pumps:
        t.join()
    run.rc = proc.returncode
    run.stdout = b"".join(out_chunks).decode(errors="replace")
    run.stderr_tail = b"".join(err_chunks).decode(errors="replace")[-2000:]
    try:
        with open(stats_path) as f:
            stats = json.load(f)
        run.wall_s = stats["wall_s"]
        run.peak_rss_mb = stats["maxrss_kib"] / 1024  # Linux: KiB
        run.user_s = stats["user_s"]
        run.sys_s = stats["sys_s"]
    except (OSError, ValueError, KeyError):
        run.wall_s = outer_wall
    finally:
        os.unlink(stats_path)
    run.peak_tree_rss_mb = max(peak_tree / 1024, run.peak_rss_mb)
    if run.rc != 0 and run.error is None:
        last = run.stderr_tail.strip().splitlines()[-1:] or ["(no stderr)"]
        run.error = f"exit {run.rc}: {last[0][:300]}"
    return run


def stepscope_cmd() -> list[str] | None:
    """The stepscope CLI of this venv, or None when it cannot be run yet."""
    exe = Path(sys.executable).with_name("stepscope")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "stepscope"]
    try:
        probe = subprocess.run(
            [*cmd, "ingest", "--help"], capture_output=True, text=True, timeout=120, cwd=REPO
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return cmd if probe.returncode == 0 else None


# ----------------------------------------------------------------------------- steps


def generate(args: argparse.Namespace) -> dict[str, Any]:
    params = {
        "nodes": args.nodes,
        "gpus": args.gpus,
        "cpus": args.cpus,
        "minutes": args.minutes,
        "interval_s": args.interval,
    }
    tag = f"system-{args.nodes}n-{args.minutes:g}m-{args.interval:g}s-{args.gpus}g-{args.cpus}c"
    out_dir = BENCH_DIR / tag
    stamp = out_dir / "params.json"
    info: dict[str, Any] = {"dir": str(out_dir), "params": params}
    if not args.regen and stamp.exists() and json.loads(stamp.read_text()).get("params") == params:
        info.update(json.loads(stamp.read_text()))
        info["reused"] = True
        return info
    try:
        from tests.support.synthetic import generate_system_metrics
    except ImportError as e:
        info["error"] = f"generator not available (tests.support.synthetic): {e}"
        return info
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    t0 = time.perf_counter()
    job = generate_system_metrics(
        out_dir,
        nodes=args.nodes,
        gpus=args.gpus,
        cpus=args.cpus,
        minutes=args.minutes,
        interval_s=args.interval,
    )
    info.update(
        rows=int(job.rows),
        bytes=int(job.bytes),
        files=len(job.files),
        system_dir=str(job.system_dir),
        generate_s=round(time.perf_counter() - t0, 2),
    )
    stamp.write_text(json.dumps(info, indent=1))
    info["reused"] = False
    return info


def smdebug_root(data_dir: Path) -> Path:
    """The folder smdebug's readers take: the parent of ``system/``."""
    for cand in (data_dir / "profiler-output", data_dir):
        if (cand / "system").is_dir():
            return cand
    hits = sorted(p.parent for p in data_dir.rglob("system") if p.is_dir())
    return hits[0] if hits else data_dir


def bench_smdebug(data_dir: Path, timeout: float) -> dict[str, Any]:
    if not PEERS_PY.exists():
        return {"error": "smdebug env not set up: run bench/setup_peers.sh"}
    root = smdebug_root(data_dir)
    run = run_child(
        [str(PEERS_PY), str(SMDEBUG_REF), "--parts", "sys-pandas", "--summary", str(root)],
        timeout=timeout,
        env={"SMDEBUG_LOG_ALL_TO_STDOUT": "false", "SMDEBUG_LOG_LEVEL": "error"},
    )
    res: dict[str, Any] = {"run": run.brief(), "root": str(root)}
    doc = run.json()
    if doc:
        pandas = doc.get("system", {}).get("pandas", {})
        res.update(rows=pandas.get("rows"), inner_s=pandas.get("wall_s"))
        if "error" in pandas:
            res["error"] = f"smdebug raised: {pandas['error']}"
    if run.error:
        res["error"] = run.error
    return res


def bench_stepscope_cli(
    cli: list[str] | None, source: Path, cache: Path, timeout: float
) -> dict[str, Any]:
    if cli is None:
        return {"error": "stepscope ingest not available yet (CLI missing or failing): skipped"}
    run = run_child(
        [*cli, "ingest", str(source), "--cache", str(cache), "--json", "--no-progress", "-q"],
        timeout=timeout,
    )
    res: dict[str, Any] = {"run": run.brief()}
    doc = run.json()
    if isinstance(doc, dict):
        res.update(
            tables=doc.get("tables"),
            reopened=(doc.get("cache") or {}).get("reopened"),
            duration_s=doc.get("duration_s"),
            skipped=len(doc.get("skipped") or []),
        )
    if run.error:
        res["error"] = run.error
    return res


def stepscope_in_process(folder: Path, repeat: int = 3) -> dict[str, Any]:
    """Best of ``repeat`` cold in-process ingests (fresh cache each), imports excluded."""
    try:
        from analyzer.ingest import ingest
        from analyzer.sources import open_source
    except ImportError as e:
        return {"error": f"analyzer.ingest not importable: {e}"}
    times = []
    rows = None
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(prefix="stepscope-bench-") as tmp:
            t0 = time.perf_counter()
            try:
                result = ingest(open_source(str(folder)), cache_dir=tmp)
            except Exception as e:
                return {"error": f"{type(e).__name__}: {e}"}
            times.append(time.perf_counter() - t0)
            rows = result.dataset.row_counts.get("kineto_events")
    return {"parse_s": min(times), "all_s": [round(t, 4) for t in times], "kineto_events": rows}


def bench_kineto(cli: list[str] | None, timeout: float) -> list[dict[str, Any]]:
    from tests.support.fixtures import find_fixtures

    root = find_fixtures()
    if root is None or not (root / "kineto").is_dir():
        return [
            {"error": "shared fixtures not found: set STEPSCOPE_FIXTURES or ../shared/fixtures"}
        ]
    return [
        bench_kineto_folder(folder, folder.name, cli, timeout)
        for folder in sorted(p for p in (root / "kineto").iterdir() if p.is_dir())
    ]


def bench_kineto_folder(
    folder: Path, label: str, cli: list[str] | None, timeout: float
) -> dict[str, Any]:
    """HTA's TraceAnalysis and ``stepscope ingest`` on one trace folder, each a fresh process."""
    item: dict[str, Any] = {"folder": label}
    if PEERS_PY.exists():
        run = run_child([str(PEERS_PY), str(HTA_REF), str(folder)], timeout=timeout)
        doc = run.json() or {}
        item["hta"] = {
            "run": run.brief(),
            "parse_s": doc.get("parse_s"),
            "import_s": doc.get("import_s"),
            "events": doc.get("events_total"),
            "error": run.error,
        }
    else:
        item["hta"] = {"error": "HTA env not set up: run bench/setup_peers.sh"}
    with tempfile.TemporaryDirectory(prefix="stepscope-bench-") as tmp:
        item["stepscope"] = bench_stepscope_cli(cli, folder, Path(tmp), timeout)
    item["stepscope_in_process"] = stepscope_in_process(folder)
    return item


def kineto_scale_folder(ranks: int) -> Path | None:
    """``ranks`` copies of the 2-rank NCCL fixture's rank 0, each renumbered (its
    ``distributedInfo``), under ``.bench/``: a job of many ranks from a real GPU trace."""
    from tests.support.fixtures import find_fixtures

    root = find_fixtures()
    src = None if root is None else root / "kineto" / "nccl_2rank_rank0" / "rank-0.json.gz"
    if src is None or not src.is_file():
        return None
    out = BENCH_DIR / f"kineto-{ranks}ranks"
    stamp = out / "params.json"
    if stamp.is_file() and json.loads(stamp.read_text()).get("ranks") == ranks:
        return out
    import gzip

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    doc = json.loads(gzip.decompress(src.read_bytes()))
    for r in range(ranks):
        doc.setdefault("distributedInfo", {}).update(rank=r, world_size=ranks)
        (out / f"rank-{r}.json.gz").write_bytes(
            gzip.compress(json.dumps(doc).encode(), compresslevel=1)
        )
    stamp.write_text(json.dumps({"ranks": ranks, "source": str(src)}))
    return out


# ----------------------------------------------------------------------------- report


def _verdict(value: float | None, target: float, higher_is_better: bool = True) -> str:
    if value is None:
        return "n/a"
    ok = value >= target if higher_is_better else value <= target
    return "PASS" if ok else "FAIL"


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b <= 0:
        return None
    return a / b


def _wall(part: dict[str, Any]) -> float | None:
    if part.get("error") or "run" not in part:
        return None
    return part["run"]["wall_s"]


def _rss(part: dict[str, Any]) -> float | None:
    if part.get("error") or "run" not in part:
        return None
    return part["run"]["peak_rss_mb"]


def build_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    sysb = results.get("system")
    if sysb:
        sd, cold, warm = sysb["smdebug"], sysb["stepscope_cold"], sysb["stepscope_warm"]
        speed = _ratio(_wall(sd), _wall(cold))
        mem = _ratio(_rss(cold), _rss(sd))
        rows.append(
            dict(
                case=f"system {results['dataset']['label']}: cold ingest vs smdebug",
                peer="smdebug PandasFrame",
                peer_s=_wall(sd),
                ours_s=_wall(cold),
                peer_mb=_rss(sd),
                ours_mb=_rss(cold),
                speedup=speed,
                mem_ratio=mem,
                target=f">={TARGET_SMDEBUG_SPEEDUP:g}x, mem<={TARGET_SMDEBUG_MEM:g}",
                verdict=_combine(
                    _verdict(speed, TARGET_SMDEBUG_SPEEDUP),
                    _verdict(mem, TARGET_SMDEBUG_MEM, higher_is_better=False),
                ),
            )
        )
        # The same comparison without process start-up and imports: smdebug's own timing of
        # PandasFrame.get_all_system_metrics() vs the ingest's summary duration_s.
        inner_peer = sd.get("inner_s") if not sd.get("error") else None
        inner_cold = cold.get("duration_s") if not cold.get("error") else None
        inner_warm = warm.get("duration_s") if not warm.get("error") else None
        speed_inner = _ratio(inner_peer, inner_cold)
        rows.append(
            dict(
                case=f"system {results['dataset']['label']}: in-process time only",
                peer="smdebug PandasFrame",
                peer_s=inner_peer,
                ours_s=inner_cold,
                peer_mb=None,
                ours_mb=None,
                speedup=speed_inner,
                mem_ratio=None,
                target=f">={TARGET_SMDEBUG_SPEEDUP:g}x",
                verdict=_verdict(speed_inner, TARGET_SMDEBUG_SPEEDUP),
            )
        )
        warm_speed = _ratio(_wall(cold), _wall(warm))
        rows.append(
            dict(
                case=f"system {results['dataset']['label']}: warm reopen vs cold",
                peer="stepscope cold",
                peer_s=_wall(cold),
                ours_s=_wall(warm),
                peer_mb=_rss(cold),
                ours_mb=_rss(warm),
                speedup=warm_speed,
                mem_ratio=_ratio(_rss(warm), _rss(cold)),
                target=f">={TARGET_WARM_SPEEDUP:g}x",
                verdict=_verdict(warm_speed, TARGET_WARM_SPEEDUP),
            )
        )
        warm_inner = _ratio(inner_cold, inner_warm)
        rows.append(
            dict(
                case=f"system {results['dataset']['label']}: warm vs cold, in-process",
                peer="stepscope cold",
                peer_s=inner_cold,
                ours_s=inner_warm,
                peer_mb=None,
                ours_mb=None,
                speedup=warm_inner,
                mem_ratio=None,
                target=f">={TARGET_WARM_SPEEDUP:g}x",
                verdict=_verdict(warm_inner, TARGET_WARM_SPEEDUP),
            )
        )
    scale = results.get("kineto_scale")
    if isinstance(scale, dict) and "folder" in scale:
        rows.extend(_kineto_rows(scale))
    kin = [k for k in results.get("kineto", []) if "folder" in k]
    tot_peer = tot_ours = tot_peer_parse = tot_ours_parse = 0.0
    complete = bool(kin)
    complete_parse = bool(kin)
    for k in kin:
        rows.extend(_kineto_rows(k))
        peer_s, ours_s = _wall(k["hta"]), _wall(k["stepscope"])
        p_parse = k["hta"].get("parse_s") if not k["hta"].get("error") else None
        o_parse = k["stepscope_in_process"].get("parse_s")
        if peer_s is None or ours_s is None:
            complete = False
        else:
            tot_peer += peer_s
            tot_ours += ours_s
        if p_parse is None or o_parse is None:
            complete_parse = False
        else:
            tot_peer_parse += p_parse
            tot_ours_parse += o_parse
    if kin:
        for label, ok, p, o in (
            ("all kineto folders: fresh process", complete, tot_peer, tot_ours),
            ("all kineto folders: parse only", complete_parse, tot_peer_parse, tot_ours_parse),
        ):
            speed = _ratio(p, o) if ok else None
            rows.append(
                dict(
                    case=label,
                    peer="HTA",
                    peer_s=p if ok else None,
                    ours_s=o if ok else None,
                    peer_mb=None,
                    ours_mb=None,
                    speedup=speed,
                    mem_ratio=None,
                    target=f">={TARGET_HTA_SPEEDUP:g}x",
                    verdict=_verdict(speed, TARGET_HTA_SPEEDUP),
                )
            )
    return rows


def _kineto_rows(k: dict[str, Any]) -> list[dict[str, Any]]:
    peer_s, ours_s = _wall(k["hta"]), _wall(k["stepscope"])
    p_parse = k["hta"].get("parse_s") if not k["hta"].get("error") else None
    o_parse = k["stepscope_in_process"].get("parse_s")
    return [
        dict(
            case=f"kineto {k['folder']}: fresh process",
            peer="HTA TraceAnalysis",
            peer_s=peer_s,
            ours_s=ours_s,
            peer_mb=_rss(k["hta"]),
            ours_mb=_rss(k["stepscope"]),
            speedup=_ratio(peer_s, ours_s),
            mem_ratio=_ratio(_rss(k["stepscope"]), _rss(k["hta"])),
            target=f">={TARGET_HTA_SPEEDUP:g}x",
            verdict=_verdict(_ratio(peer_s, ours_s), TARGET_HTA_SPEEDUP),
        ),
        dict(
            case=f"kineto {k['folder']}: parse only (in-process)",
            peer="HTA parse_s",
            peer_s=p_parse,
            ours_s=o_parse,
            peer_mb=None,
            ours_mb=None,
            speedup=_ratio(p_parse, o_parse),
            mem_ratio=None,
            target=f">={TARGET_HTA_SPEEDUP:g}x",
            verdict=_verdict(_ratio(p_parse, o_parse), TARGET_HTA_SPEEDUP),
        ),
    ]


def _combine(*verdicts: str) -> str:
    if "FAIL" in verdicts:
        return "FAIL"
    if "n/a" in verdicts:
        return "n/a"
    return "PASS"


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def print_table(rows: list[dict[str, Any]]) -> None:
    head = (
        "case",
        "peer s",
        "stepscope s",
        "speedup",
        "peer MB",
        "stepscope MB",
        "mem",
        "target",
        "",
    )
    lines = [head]
    for r in rows:
        lines.append(
            (
                r["case"],
                _fmt(r["peer_s"], ".3f"),
                _fmt(r["ours_s"], ".3f"),
                _fmt(r["speedup"], ".1f") + ("x" if r["speedup"] is not None else ""),
                _fmt(r["peer_mb"], ".0f"),
                _fmt(r["ours_mb"], ".0f"),
                _fmt(r["mem_ratio"], ".2f"),
                r["target"],
                r["verdict"],
            )
        )
    widths = [max(len(row[i]) for row in lines) for i in range(len(head))]
    for n, row in enumerate(lines):
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:-2], widths[1:-2], strict=True)
        ]
        cells += [row[-2].ljust(widths[-2]), row[-1]]
        print("  ".join(cells))
        if n == 0:
            print("  ".join("-" * w for w in widths))


def _machine() -> dict[str, Any]:
    mem_gib = None
    try:
        with open("/proc/meminfo") as f:
            mem_gib = round(int(f.readline().split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "mem_gib": mem_gib,
    }


def add_dataset_args(ap: argparse.ArgumentParser) -> None:
    """The generated job's shape, shared by every bench (8 nodes x 60 min by default)."""
    ap.add_argument("--nodes", type=int, default=8)
    ap.add_argument("--minutes", type=float, default=60)
    ap.add_argument("--interval", type=float, default=0.5, help="sampling interval, seconds")
    ap.add_argument("--gpus", type=int, default=8)
    ap.add_argument("--cpus", type=int, default=96)
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 nodes x 5 minutes")
    ap.add_argument("--regen", action="store_true", help="regenerate the dataset")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_dataset_args(ap)
    ap.add_argument("--skip-smdebug", action="store_true")
    ap.add_argument("--skip-kineto", action="store_true")
    ap.add_argument("--skip-system", action="store_true")
    ap.add_argument(
        "--kineto-ranks",
        type=int,
        default=64,
        help="also a job of this many ranks, copies of a real NCCL trace (0: skip)",
    )
    ap.add_argument("--timeout", type=float, default=3600, help="per child process, seconds")
    ap.add_argument(
        "--table", action="store_true", help="only re-print the table of .bench/results.json"
    )
    args = ap.parse_args(argv)
    if args.table:
        saved = json.loads((BENCH_DIR / "results.json").read_text())
        print_table(build_rows(saved))
        return 0
    if args.quick:
        args.nodes, args.minutes = 2, 5

    BENCH_DIR.mkdir(exist_ok=True)
    cli = stepscope_cmd()
    if cli is None:
        print(
            "note: `stepscope ingest` is not runnable yet; stepscope rows will be n/a",
            file=sys.stderr,
        )
    if not PEERS_PY.exists():
        print("note: peers env missing: run bench/setup_peers.sh (peer rows n/a)", file=sys.stderr)

    label = (
        f"{args.nodes}x{args.minutes:g}min@{args.interval:g}s ({args.gpus} GPU, {args.cpus} CPU)"
    )
    results: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": _machine(),
        "stepscope_cli": cli,
        "peers_python": str(PEERS_PY) if PEERS_PY.exists() else None,
        "targets": {
            "smdebug_speedup": TARGET_SMDEBUG_SPEEDUP,
            "smdebug_mem_ratio": TARGET_SMDEBUG_MEM,
            "hta_speedup": TARGET_HTA_SPEEDUP,
            "warm_speedup": TARGET_WARM_SPEEDUP,
        },
        "dataset": {"label": label},
    }

    if not args.skip_system:
        print(f"[1/4] dataset {label} ...", file=sys.stderr, flush=True)
        data = generate(args)
        results["dataset"].update(data)
        if "error" in data:
            print(f"  {data['error']}", file=sys.stderr)
        else:
            data_dir = Path(data["dir"])
            print(
                f"  {data.get('rows', '?'):,} rows, {data.get('bytes', 0) / 2**20:,.0f} MiB"
                f"{' (reused)' if data.get('reused') else ''}",
                file=sys.stderr,
            )
            system: dict[str, Any] = {}
            if args.skip_smdebug:
                system["smdebug"] = {"error": "skipped (--skip-smdebug)"}
            else:
                print(
                    "[2/4] smdebug LocalSystemMetricsReader + PandasFrame ...",
                    file=sys.stderr,
                    flush=True,
                )
                system["smdebug"] = bench_smdebug(data_dir, args.timeout)
            cache = Path(tempfile.mkdtemp(prefix="stepscope-bench-cache-", dir=BENCH_DIR))
            try:
                print("[3/4] stepscope ingest, cold cache ...", file=sys.stderr, flush=True)
                system["stepscope_cold"] = bench_stepscope_cli(cli, data_dir, cache, args.timeout)
                print(
                    "      stepscope ingest, warm cache (reopen) ...", file=sys.stderr, flush=True
                )
                system["stepscope_warm"] = bench_stepscope_cli(cli, data_dir, cache, args.timeout)
            finally:
                shutil.rmtree(cache, ignore_errors=True)
            ours_rows = (system["stepscope_cold"].get("tables") or {}).get("system_metrics")
            peer_rows = system["smdebug"].get("rows")
            system["rows_equal"] = (
                None if ours_rows is None or peer_rows is None else ours_rows == peer_rows
            )
            results["system"] = system
            for name, part in system.items():
                if isinstance(part, dict) and part.get("error"):
                    print(f"  {name}: {part['error']}", file=sys.stderr)
            if system["rows_equal"] is False:
                print(
                    f"  WARNING: row counts differ: stepscope {ours_rows:,} "
                    f"vs smdebug {peer_rows:,}",
                    file=sys.stderr,
                )

    if not args.skip_kineto:
        print("[4/4] kineto fixtures: HTA vs stepscope ...", file=sys.stderr, flush=True)
        results["kineto"] = bench_kineto(cli, args.timeout)

    if not args.skip_kineto and args.kineto_ranks > 0:
        folder = kineto_scale_folder(args.kineto_ranks)
        if folder is None:
            results["kineto_scale"] = {
                "error": "shared fixtures not found: kineto scale run skipped"
            }
        else:
            print(
                f"      kineto, {args.kineto_ranks} ranks: HTA vs stepscope ...",
                file=sys.stderr,
                flush=True,
            )
            results["kineto_scale"] = bench_kineto_folder(
                folder,
                f"{args.kineto_ranks} ranks (nccl_2rank_rank0 x {args.kineto_ranks})",
                cli,
                args.timeout,
            )

    rows = build_rows(results)
    results["table"] = rows
    out = BENCH_DIR / "results.json"
    out.write_text(json.dumps(results, indent=1, default=str))
    print()
    print_table(rows)
    print(f"\nresults: {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
