"""Holistic Trace Analysis's critical path on a Kineto trace folder, as JSON.

Runs INSIDE the peers env (bench/setup_peers.sh), the reference for
``tests/test_critical_path_hta.py``::

    .venv-peers/bin/python bench/peers/hta_critical_path.py <trace_dir> [--instance N] [--edges]

Prints one JSON object: ``ok`` (HTA's success flag), ``rank``, ``length_us`` (the sum of the
path's edge weights, in HTA's integer microseconds), ``bound_by_us`` (that sum per HTA's
``bound_by`` class, the zero-weight dependency edges under ``""``), ``edges`` (how many) and
with ``--edges`` the path's edges (type, weight, attributed event's name, bound_by); where
HTA raised, ``{"error": ...}``. HTA's own defaults: no zero-weight launch edges, no data
loading events, annotation ``ProfilerStep``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import sys


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("trace_dir")
    ap.add_argument("--instance", type=int, default=0)
    ap.add_argument("--annotation", default="ProfilerStep")
    ap.add_argument("--edges", action="store_true")
    args = ap.parse_args()
    logging.disable(logging.CRITICAL)
    out: dict[str, object]
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            from hta.trace_analysis import TraceAnalysis

            ta = TraceAnalysis(trace_dir=args.trace_dir)
            rank = sorted(ta.t.traces)[0]
            graph, ok = ta.critical_path_analysis(
                rank=rank, annotation=args.annotation, instance_id=args.instance
            )
            edges = graph.get_critical_path_breakdown() if ok else None
        out = {"ok": bool(ok), "rank": int(rank)}
        if edges is not None:
            out["length_us"] = float(edges["duration"].sum())
            out["bound_by_us"] = {
                str(k): float(v) for k, v in edges.groupby("bound_by")["duration"].sum().items()
            }
            out["edges"] = len(edges)
            if args.edges:
                cols = ["type", "duration", "s_name", "bound_by", "event_idx"]
                out["path"] = [
                    {c: (None if v != v else v) for c, v in zip(cols, row, strict=True)}
                    for row in edges[cols].itertuples(index=False)
                ]
    except Exception as exc:  # HTA's own failure is a result here, as REFERENCE.json has it
        out = {"error": f"{type(exc).__name__}: {exc}"}
    json.dump(out, sys.stdout, default=str)


if __name__ == "__main__":
    main()
