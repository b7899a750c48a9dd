"""Time Holistic Trace Analysis (HTA, traceinsight) parsing a Kineto trace folder.

Runs INSIDE the peers env (bench/setup_peers.sh), in a fresh process per measurement::

    .venv-peers/bin/python bench/peers/hta_reference.py <trace_dir> [--analyses] [--summary]

Prints one JSON object on stdout:

* ``import_s``  -- ``from hta.trace_analysis import TraceAnalysis`` (not part of the parse)
* ``parse_s``   -- ``TraceAnalysis(trace_dir=...)`` wall time: what a user waits for before
  any analysis can run (HTA reads, decompresses and builds its DataFrames here)
* ``peak_rss_mb`` -- ``max(ru_maxrss of this process, of its reaped children)``: HTA parses
  several ranks in a forked ``multiprocessing`` pool, so the children count too
* ``peak_tree_rss_mb`` -- sum of RSS over this process and its live children, sampled every
  10 ms during the parse (the pool's workers are alive at the same time)
* ``ranks``, ``events`` -- what HTA loaded (rows of its per-rank trace DataFrames)
* with ``--analyses``: temporal breakdown, kernel-type breakdown (all ranks) and comm/comp
  overlap, each compared with ``REFERENCE.json`` beside the folder when present (``matches``),
  an HTA exception reported as ``{"error": ...}`` (as REFERENCE.json records them).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import resource
import sys
import threading
import time
from pathlib import Path
from typing import Any


def _rss_mb_now(proc: Any) -> float:
    total = 0
    procs = [proc]
    with contextlib.suppress(Exception):
        procs += proc.children(recursive=True)
    for p in procs:
        with contextlib.suppress(Exception):
            total += p.memory_info().rss
    return total / 2**20


class _TreeSampler:
    """Peak of the summed RSS of this process tree, sampled in a thread."""

    def __init__(self, interval_s: float = 0.01) -> None:
        import psutil

        self._proc = psutil.Process()
        self._interval = interval_s
        self._stop = threading.Event()
        self.peak_mb = _rss_mb_now(self._proc)
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, _rss_mb_now(self._proc))
            self._stop.wait(self._interval)

    def __enter__(self) -> _TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, _rss_mb_now(self._proc))


def _peak_rss_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, kids) / 1024  # Linux: KiB


def _records(df: Any) -> list[dict[str, Any]]:
    return json.loads(df.to_json(orient="records"))


def _close(a: Any, b: Any, rel: float = 1e-3, abs_: float = 0.51) -> bool:
    """Numbers equal up to HTA's own rounding (percentages to 2 dp, sums to 1 us)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k], rel, abs_) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y, rel, abs_) for x, y in zip(a, b, strict=True))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if a is None or b is None:
            return a is b
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return math.isclose(a, b, rel_tol=rel, abs_tol=abs_)
    return a == b


def _analyses(analyzer: Any) -> dict[str, Any]:
    calls = {
        "temporal_breakdown": lambda: _records(analyzer.get_temporal_breakdown(visualize=False)),
        "kernel_type_breakdown": lambda: _records(
            analyzer.get_gpu_kernel_breakdown(visualize=False, include_memory_kernels=True)[0]
        ),
        "comm_comp_overlap": lambda: _records(analyzer.get_comm_comp_overlap(visualize=False)),
    }
    out: dict[str, Any] = {}
    for name, call in calls.items():
        t0 = time.perf_counter()
        try:
            out[name] = {"value": call()}
        except Exception as e:  # HTA raises on traces without GPU events (cpu_only)
            out[name] = {"error": f"{type(e).__name__}: {e}"}
        out[name]["wall_s"] = round(time.perf_counter() - t0, 4)
    return out


def _compare(trace_dir: Path, analyses: dict[str, Any]) -> dict[str, Any] | None:
    ref_path = trace_dir.parent / "REFERENCE.json"
    if not ref_path.is_file():
        return None
    ref = json.loads(ref_path.read_text()).get(trace_dir.name)
    if ref is None:
        return None
    matches: dict[str, Any] = {}
    errors = ref.get("errors", {})
    for name, got in analyses.items():
        if name in errors:
            matches[name] = "error" in got  # HTA raised then; it must raise now
        elif name in ref:
            matches[name] = "value" in got and _close(got["value"], ref[name])
    return matches


def measure(trace_dir: Path, with_analyses: bool) -> dict[str, Any]:
    t0 = time.perf_counter()
    from hta.trace_analysis import TraceAnalysis

    import_s = time.perf_counter() - t0
    rss_before = _peak_rss_mb()
    with _TreeSampler() as sampler:
        t1 = time.perf_counter()
        analyzer = TraceAnalysis(trace_dir=str(trace_dir))
        parse_s = time.perf_counter() - t1
    traces = analyzer.t.get_all_traces()
    out: dict[str, Any] = {
        "trace_dir": str(trace_dir),
        "hta": _version(),
        "import_s": round(import_s, 4),
        "parse_s": round(parse_s, 4),
        "rss_after_import_mb": round(rss_before, 1),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "peak_tree_rss_mb": round(sampler.peak_mb, 1),
        "ranks": sorted(int(r) for r in traces),
        "events": {str(r): len(df) for r, df in sorted(traces.items())},
        "events_total": sum(len(df) for df in traces.values()),
    }
    if with_analyses:
        res = _analyses(analyzer)
        out["analyses"] = res
        out["matches_reference"] = _compare(trace_dir, res)
    return out


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("traceinsight", "HolisticTraceAnalysis"):
        with contextlib.suppress(PackageNotFoundError):
            return f"{dist} {version(dist)}"
    return "unknown"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("trace_dir", type=Path)
    ap.add_argument("--analyses", action="store_true", help="also run and check the analyses")
    ap.add_argument("--summary", action="store_true", help="leave the analysis values out")
    args = ap.parse_args(argv)
    if not args.trace_dir.is_dir():
        ap.error(f"not a folder: {args.trace_dir}")
    # HTA logs and prints to stdout; keep stdout pure JSON.
    sink = io.StringIO() if os.environ.get("HTA_REFERENCE_QUIET", "1") == "1" else sys.stderr
    with contextlib.redirect_stdout(sink):
        out = measure(args.trace_dir.resolve(), args.analyses)
    if args.summary:
        for item in out.get("analyses", {}).values():
            item.pop("value", None)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
